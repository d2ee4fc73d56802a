//! Experiments of the paper as data: configs and their validation, the paper's reference numbers,
//! claims with verdicts, results as polars tables written as CSV and parquet, and regression
//! checks of results against committed baselines.
//!
//! This crate and the reports are the only ones that know polars; the crates that train (`nets`,
//! `trainer`) write plain files that land here. The paper's numbers come from the `paper` crate.

pub mod precision;
pub mod registry;
pub mod regress;
pub mod store;
pub mod sweep;
pub mod table1;
pub mod text;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Whether a claim of the paper held in this reproduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Held,
    Failed,
    /// The runs are there but the gap is within the noise margin.
    Inconclusive,
    NotRun,
    /// The claim is decided on another profile's results.
    NotApplicable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotRun => "not run",
            Verdict::NotApplicable => "n/a",
        }
    }

    /// Any failed: failed; else any inconclusive: inconclusive; else any held: held; otherwise
    /// not run (claims that are not run or not applicable do not count).
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::NotRun;
        for v in verdicts {
            match v {
                Verdict::Failed => return Verdict::Failed,
                Verdict::Inconclusive => out = Verdict::Inconclusive,
                Verdict::Held if out == Verdict::NotRun => out = Verdict::Held,
                _ => {}
            }
        }
        out
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A config or the paper's reference that cannot be read, parsed or accepted.
    #[error(transparent)]
    Config(#[from] paper::Error),
    #[error("{}: {source}", .path.display())]
    Polars {
        path: PathBuf,
        source: polars::error::PolarsError,
    },
    #[error("{}: column `{column}`: {source}", .path.display())]
    Column {
        path: PathBuf,
        column: String,
        source: polars::error::PolarsError,
    },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Model(#[from] nets::Error),
    #[error(transparent)]
    Train(#[from] trainer::Error),
    #[error("run {}: {source}", .dir.display())]
    Run {
        dir: PathBuf,
        source: trainer::Error,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("--models: {0}")]
    Selection(String),
    #[error("cannot start the sweep's thread pools: {0}")]
    Threads(String),
    /// A baseline or bench file that parses but cannot be used.
    #[error("{}: {message}", .path.display())]
    Baseline { path: PathBuf, message: String },
    #[error("no results in {} (run `{command}` first)", .dir.display())]
    NoResults { dir: PathBuf, command: String },
    #[error(
        "no experiment `{name}` is implemented (available: {available}; configs in {})",
        .configs.display()
    )]
    UnknownExperiment {
        name: String,
        available: String,
        configs: PathBuf,
    },
}

impl From<files::Error> for Error {
    fn from(e: files::Error) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_combine() {
        use Verdict::*;
        assert_eq!(Verdict::all([Held, Held]), Held);
        assert_eq!(Verdict::all([Held, Failed, NotRun]), Failed);
        assert_eq!(Verdict::all([NotRun, Held]), Held);
        assert_eq!(Verdict::all([]), NotRun);
        assert_eq!(
            Verdict::all([Held, Inconclusive, NotApplicable]),
            Inconclusive
        );
        assert_eq!(Verdict::all([NotApplicable, NotRun]), NotRun);
    }
}
