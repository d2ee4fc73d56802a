//! One training run of a paper net, end to end: momentum SGD ([`optim`]), the paper's learning-rate
//! schedules ([`schedule`]), a serialisable run description ([`spec`]), and the loop with metrics,
//! atomic checkpoints and exact resume ([`run`]); the benchmark harness ([`bench`]) times its
//! training step ([`step`]); [`eval`] scores a net on ImageNet with the paper's testing protocols.
//! Errors are [`Error`], whose variants name the file and key at fault.
//!
//! The crate writes plain files (JSON, CSV, safetensors) and depends on neither polars nor
//! plotters, so a run can be shipped alone to a GPU box or a cluster node.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod eval;
pub mod metrics;
pub mod optim;
pub mod protocol;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod step;

pub use device::DeviceName;

use std::path::{Path, PathBuf};

pub use optim::{Sgd, SgdConfig};
pub use protocol::{CifarProtocol, ImageNetProtocol, PlateauRule, Protocols};
pub use run::{Observer, Outcome, Provenance, Quiet, Summary, run};
pub use schedule::{Schedule, ScheduleState};
pub use spec::{DataSpec, RunSpec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A run spec, schedule or option the trainer cannot run; `path` is the file it came from.
    #[error(
        "{}`{key}`: {msg}",
        .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
    )]
    Invalid {
        path: Option<PathBuf>,
        key: String,
        msg: String,
    },
    #[error("device `{name}`: {msg}")]
    Device { name: String, msg: String },
    /// The paper's reference file (for the protocol) or a TOML spec could not be read.
    #[error(transparent)]
    Config(#[from] paper::Error),
    /// Another live process is writing the run directory.
    #[error(transparent)]
    Locked(#[from] files::LockError),
    /// The data loader's stream ended before the run's last iteration.
    #[error("the training stream ended at iteration {iteration}")]
    StreamEnded { iteration: u64 },
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

impl From<files::Error> for Error {
    fn from(e: files::Error) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl Error {
    /// An [`Error::Invalid`] about `key`, not yet tied to a file.
    pub fn invalid(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Invalid {
            path: None,
            key: key.into(),
            msg: msg.into(),
        }
    }

    /// The same error, naming `path` as the file it came from where it names none yet.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Invalid {
                path: None,
                key,
                msg,
            } => Self::Invalid {
                path: Some(path.to_path_buf()),
                key,
                msg,
            },
            other => other,
        }
    }
}

impl From<nets::Error> for Error {
    fn from(e: nets::Error) -> Self {
        Self::Model(Box::new(e))
    }
}
