//! One training run of a paper net, end to end: momentum SGD ([`optim`]), the paper's learning-rate
//! schedules ([`schedule`]), a serialisable run description ([`spec`]), and the loop with metrics,
//! atomic checkpoints and exact resume ([`run`]). Benchmarks reuse its training step ([`step`]).
//!
//! The crate writes plain files (JSON, CSV, safetensors) and depends on neither polars nor
//! plotters, so a run can be shipped alone to a GPU box or a cluster node.

pub mod checkpoint;
mod data;
pub mod device;
pub mod metrics;
pub mod optim;
pub mod protocol;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod step;

use std::path::{Path, PathBuf};

pub use optim::{Sgd, SgdConfig};
pub use protocol::CifarProtocol;
pub use run::{Observer, Outcome, Provenance, Quiet, Summary, run};
pub use schedule::{Schedule, ScheduleState};
pub use spec::{DataSpec, RunSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run spec: {0}")]
    Spec(String),
    #[error(
        "{} holds a different run (its spec.json differs); choose another directory or remove it",
        .dir.display()
    )]
    SpecMismatch { dir: PathBuf },
    #[error(
        "the loss became {loss} at iteration {iteration}; training stopped. {}",
        match .checkpoint {
            Some(p) => format!("The last good checkpoint is kept at {}", p.display()),
            None => "No checkpoint had been written yet".to_string(),
        }
    )]
    Diverged {
        iteration: u64,
        loss: f32,
        checkpoint: Option<PathBuf>,
    },
    #[error("{}: {msg}", .path.display())]
    Checkpoint { path: PathBuf, msg: String },
    #[error("{}: {msg}", .path.display())]
    Metrics { path: PathBuf, msg: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    // Boxed: both are large, and every result of the loop carries this type.
    #[error(transparent)]
    Data(Box<datasets::Error>),
    #[error(transparent)]
    Model(Box<nets::Error>),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<datasets::Error> for Error {
    fn from(e: datasets::Error) -> Self {
        Self::Data(Box::new(e))
    }
}

impl From<nets::Error> for Error {
    fn from(e: nets::Error) -> Self {
        Self::Model(Box::new(e))
    }
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // Readable like any other file the user writes (temporary files start private).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
