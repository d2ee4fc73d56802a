//! Results on disk: tables as CSV and parquet, written atomically through [`files`], so a reader
//! never sees half a file and an interrupted write leaves the previous version in place.

use std::fs::File;
use std::path::{Path, PathBuf};

use files::write_atomic_with;

use polars::prelude::*;

use crate::Error;

/// Writes `df` as `<dir>/<stem>.csv` and `<dir>/<stem>.parquet`; returns both paths.
pub fn write_table(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, Error> {
    let csv = dir.join(format!("{stem}.csv"));
    let parquet = dir.join(format!("{stem}.parquet"));
    write_atomic_with(&csv, |f| {
        CsvWriter::new(f)
            .finish(df)
            .map_err(|source| Error::Polars {
                path: csv.clone(),
                source,
            })
    })?;
    write_atomic_with(&parquet, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map(|_| ())
            .map_err(|source| Error::Polars {
                path: parquet.clone(),
                source,
            })
    })?;
    Ok(vec![csv, parquet])
}

/// Reads a parquet file written by [`write_table`].
pub fn read_parquet(path: &Path) -> Result<DataFrame, Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::Polars {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), Error> {
    Ok(files::write_atomic(path, text.as_bytes())?)
}

/// Typed columns of a table read from `path`. A missing column or a wrong type is an error naming
/// the file and the column; nulls read as empty strings, zeros and NaN, or as `None` where asked.
pub struct Columns<'a> {
    df: &'a DataFrame,
    path: &'a Path,
}

impl<'a> Columns<'a> {
    pub fn new(df: &'a DataFrame, path: &'a Path) -> Self {
        Self { df, path }
    }

    fn column(&self, name: &str) -> Result<&'a Column, Error> {
        self.df.column(name).map_err(|e| self.error(name, e))
    }

    fn error(&self, column: &str, source: PolarsError) -> Error {
        Error::Column {
            path: self.path.to_path_buf(),
            column: column.into(),
            source,
        }
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>, Error> {
        let ca = self.column(name)?.str().map_err(|e| self.error(name, e))?;
        Ok(ca
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }

    /// A string column added to a table's schema later: where a table predates it, every row
    /// reads as empty.
    pub fn strings_or_empty(&self, name: &str) -> Result<Vec<String>, Error> {
        if self.df.column(name).is_err() {
            return Ok(vec![String::new(); self.df.height()]);
        }
        self.strings(name)
    }

    pub fn u64s(&self, name: &str) -> Result<Vec<u64>, Error> {
        let ca = self.column(name)?.u64().map_err(|e| self.error(name, e))?;
        Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
    }

    pub fn f64s(&self, name: &str) -> Result<Vec<f64>, Error> {
        Ok(self
            .optional_f64s(name)?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    }

    pub fn optional_f64s(&self, name: &str) -> Result<Vec<Option<f64>>, Error> {
        let ca = self.column(name)?.f64().map_err(|e| self.error(name, e))?;
        Ok(ca.iter().collect())
    }

    pub fn bools(&self, name: &str) -> Result<Vec<bool>, Error> {
        let ca = self.column(name)?.bool().map_err(|e| self.error(name, e))?;
        Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
    }
}
