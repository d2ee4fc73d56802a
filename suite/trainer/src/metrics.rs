//! The metrics file: one CSV row per logging window, appended and flushed as training goes, so a
//! crash loses at most the rows after the last checkpoint (and a resume rewrites exactly those).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

pub const HEADER: &str =
    "iteration,epoch,lr,train_loss,train_error,test_loss,test_error,images_per_s,wall_s";

/// One row: training figures averaged over the window that ends at `iteration`, test figures when
/// an evaluation ran there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub iteration: u64,
    /// Epochs of training data seen (fractional).
    pub epoch: f64,
    /// The learning rate of the window's last iteration.
    pub lr: f64,
    pub train_loss: f64,
    pub train_error: f64,
    pub test_loss: Option<f64>,
    pub test_error: Option<f64>,
    /// Training images per second over the window (evaluation time excluded).
    pub images_per_s: f64,
    /// Seconds of training and evaluation so far, over every session of the run.
    pub wall_s: f64,
}

impl Row {
    fn to_csv(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        format!(
            "{},{},{},{},{},{},{},{:.1},{:.1}",
            self.iteration,
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_error,
            opt(self.test_loss),
            opt(self.test_error),
            self.images_per_s,
            self.wall_s
        )
    }

    fn from_csv(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        let num = |s: &str| s.parse::<f64>().ok();
        let opt = |s: &str| {
            if s.is_empty() {
                Some(None)
            } else {
                num(s).map(Some)
            }
        };
        Some(Self {
            iteration: f[0].parse().ok()?,
            epoch: num(f[1])?,
            lr: num(f[2])?,
            train_loss: num(f[3])?,
            train_error: num(f[4])?,
            test_loss: opt(f[5])?,
            test_error: opt(f[6])?,
            images_per_s: num(f[7])?,
            wall_s: num(f[8])?,
        })
    }
}

/// Reads every row of a metrics file; a malformed line is an error naming the file and the line.
pub fn read(path: &Path) -> Result<Vec<Row>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut rows = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if n == 0 {
            if line != HEADER {
                return Err(Error::Metrics {
                    path: path.to_path_buf(),
                    msg: format!("line 1: expected the header `{HEADER}`"),
                });
            }
            continue;
        }
        rows.push(Row::from_csv(&line).ok_or_else(|| Error::Metrics {
            path: path.to_path_buf(),
            msg: format!("line {}: not a metrics row: `{line}`", n + 1),
        })?);
    }
    Ok(rows)
}

/// An open metrics file, appending rows.
pub struct MetricsFile {
    path: PathBuf,
    file: File,
}

impl MetricsFile {
    /// Opens `path` for a run that has completed `completed` iterations: rows after that (written
    /// after the last checkpoint by a session that then stopped) are dropped, atomically. Returns
    /// the file and the last row kept.
    pub fn open(path: &Path, completed: u64) -> Result<(Self, Option<Row>), Error> {
        let kept: Vec<Row> = if path.is_file() && completed > 0 {
            read(path)?
                .into_iter()
                .filter(|r| r.iteration <= completed)
                .collect()
        } else {
            Vec::new()
        };
        let mut text = format!("{HEADER}\n");
        for row in &kept {
            text.push_str(&row.to_csv());
            text.push('\n');
        }
        files::write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let file = Self {
            path: path.to_path_buf(),
            file,
        };
        Ok((file, kept.into_iter().last()))
    }

    pub fn append(&mut self, row: &Row) -> Result<(), Error> {
        writeln!(self.file, "{}", row.to_csv())
            .and_then(|()| self.file.flush())
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(iteration: u64, test: Option<f64>) -> Row {
        Row {
            iteration,
            epoch: iteration as f64 / 390.0,
            lr: 0.1,
            train_loss: 2.3025851249694824,
            train_error: 0.9,
            test_loss: test,
            test_error: test.map(|t| t / 10.0),
            images_per_s: 123.45,
            wall_s: 6.0,
        }
    }

    #[test]
    fn rows_round_trip_and_a_resume_drops_rows_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let (mut m, last) = MetricsFile::open(&path, 0).unwrap();
        assert_eq!(last, None);
        for (i, t) in [(100, None), (200, Some(2.1)), (300, None)] {
            m.append(&row(i, t)).unwrap();
        }
        drop(m);
        let rows = read(&path).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].test_loss, Some(2.1));
        assert_eq!(rows[0].train_loss, 2.3025851249694824, "full precision");
        assert_eq!(rows[0].images_per_s, 123.5);
        let (mut m, last) = MetricsFile::open(&path, 200).unwrap();
        assert_eq!(last.map(|r| r.iteration), Some(200));
        m.append(&row(300, Some(1.0))).unwrap();
        let rows = read(&path).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.iteration).collect::<Vec<_>>(),
            [100, 200, 300]
        );
        assert_eq!(rows[2].test_loss, Some(1.0));
    }

    #[test]
    fn a_damaged_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, format!("{HEADER}\n1,2,3\n")).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("metrics.csv") && err.contains("line 2"),
            "{err}"
        );
    }
}
