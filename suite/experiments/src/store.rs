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
