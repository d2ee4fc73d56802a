//! Data for the paper's experiments: CIFAR-10 (from the Hugging Face hub, local parquet or the
//! binary version) and ImageNet-style image folders, the paper's augmentation and test views, and a
//! seeded, prefetching loader that yields candle tensors.
//!
//! ```no_run
//! use std::sync::Arc;
//! use datasets::{cifar, CifarDataset, Loader, LoaderConfig, Normalize, Position};
//!
//! let data = cifar::load(&cifar::Source::local("data/cifar10".as_ref())?, Some(&cifar::default_cache_dir()))?;
//! let normalize = Normalize::pixel_mean(&data.train);
//! let train = Arc::new(CifarDataset::new(data.train, normalize, true));
//! let loader = Loader::new(train, LoaderConfig::default(), &candle_core::Device::Cpu)?;
//! for batch in loader.stream(Position::default()).take(10) {
//!     let batch = batch?;
//!     assert_eq!(batch.images.dims(), &[128, 3, 32, 32]);
//! }
//! # Ok::<(), datasets::Error>(())
//! ```

pub mod augment;
pub mod cifar;
pub mod folder;
pub mod imagenet;
pub mod info;
pub mod loader;
pub mod matfile;
mod seed;
pub mod split;

use std::path::PathBuf;

use rand_chacha::ChaCha8Rng;

pub use augment::{Normalize, View};
pub use folder::{FolderDataset, ImageFolder, Transform};
pub use loader::{Batch, Dataset, Loader, LoaderConfig, Position, Stream};

impl From<files::Error> for Error {
    fn from(e: files::Error) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", .path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error("{}: {msg}", .path.display())]
    Source { path: PathBuf, msg: String },
    #[error(
        "cannot get `{file}` of dataset `{repo}` (revision {revision}) from the Hugging Face hub: {why}. \
         The hub cache is {} (set HF_HOME to move it); or pass a local copy, e.g. --data cifar10=PATH",
        .cache.display()
    )]
    Hub {
        repo: String,
        revision: String,
        file: String,
        cache: PathBuf,
        why: String,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// A CIFAR split as a [`Dataset`]: normalised, and with `augment` the paper's random crop and flip.
pub struct CifarDataset {
    split: cifar::Split,
    normalize: Normalize,
    augment: bool,
}

impl CifarDataset {
    pub fn new(split: cifar::Split, normalize: Normalize, augment: bool) -> Self {
        Self {
            split,
            normalize,
            augment,
        }
    }

    pub fn split(&self) -> &cifar::Split {
        &self.split
    }
}

impl Dataset for CifarDataset {
    fn len(&self) -> usize {
        self.split.len()
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        (3, cifar::SIDE, cifar::SIDE)
    }

    fn label(&self, index: usize) -> usize {
        self.split.labels[index] as usize
    }

    fn prepare(&self, index: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) -> Result<(), Error> {
        if !self.augment {
            self.normalize.apply(self.split.image(index), out);
            return Ok(());
        }
        let mut normalised = [0f32; cifar::IMAGE_BYTES];
        self.normalize
            .apply(self.split.image(index), &mut normalised);
        augment::crop_flip(&normalised, View::random(rng), out);
        Ok(())
    }
}
