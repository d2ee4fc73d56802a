//! Results on disk: tables as CSV and parquet, written atomically (temporary file, then rename), so a
//! reader never sees half a file and an interrupted write leaves the previous version in place.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::Error;

/// Runs `write` on a temporary file beside `path`, then renames it over `path` (creating the parent
/// directory): `path` holds either its old content or all of the new.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), Error>,
) -> Result<(), Error> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".partial-");
    // Readable like any other file the user writes (temporary files start private).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    write(tmp.as_file_mut())?;
    tmp.as_file_mut().flush().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes `df` as `<dir>/<stem>.csv` and `<dir>/<stem>.parquet`; returns both paths.
pub fn write_table(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, Error> {
    let csv = dir.join(format!("{stem}.csv"));
    let parquet = dir.join(format!("{stem}.parquet"));
    write_atomic(&csv, |f| {
        CsvWriter::new(f)
            .finish(df)
            .map_err(|source| Error::Polars {
                path: csv.clone(),
                source,
            })
    })?;
    write_atomic(&parquet, |f| {
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
    write_atomic(path, |f| {
        f.write_all(text.as_bytes()).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}
