//! The training and evaluation loaders a run spec asks for.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use datasets::{CifarDataset, Loader, LoaderConfig, Normalize, cifar, split};

use crate::Error;
use crate::spec::RunSpec;

/// Images per evaluation batch: large enough to keep the kernels busy, small enough for any device.
pub const EVAL_BATCH: usize = 500;

pub struct RunData {
    pub train: Loader,
    pub eval: Loader,
    pub train_len: usize,
    pub eval_len: usize,
    /// SHA-256 of the dataset's source files.
    pub checksum: String,
}

/// A class-balanced subset of `size` samples of `part` (all of it when `size` is `None` or larger).
fn subset(part: cifar::Split, size: Option<usize>, seed: u64) -> cifar::Split {
    match size {
        Some(n) if n < part.len() => {
            let (_, chosen) = split::stratified(&part.labels, n, seed);
            part.select(&chosen)
        }
        _ => part,
    }
}

pub fn load(spec: &RunSpec, cache_dir: Option<&Path>, device: &Device) -> Result<RunData, Error> {
    let source = match &spec.data.path {
        Some(path) => cifar::Source::local(path)?,
        None => cifar::Source::default(),
    };
    let data = cifar::load(&source, cache_dir)?;
    let (train, eval) = if spec.data.holdout {
        // The paper's 45k/5k split of the training set (§4.2), drawn once from seed 0 so every run
        // holds out the same images.
        let (train, val) = split::stratified(&data.train.labels, 5000, 0);
        (data.train.select(&train), data.train.select(&val))
    } else {
        (data.train, data.test)
    };
    let train = subset(train, spec.data.train_subset, spec.seed);
    let eval = subset(eval, spec.data.eval_subset, spec.seed);
    let normalize = Normalize::pixel_mean(&train);
    let (train_len, eval_len) = (train.len(), eval.len());
    let train_set = Arc::new(CifarDataset::new(train, normalize.clone(), true));
    let eval_set = Arc::new(CifarDataset::new(eval, normalize, false));
    let train = Loader::new(
        train_set,
        LoaderConfig {
            batch_size: spec.batch_size,
            shuffle: true,
            drop_last: true,
            seed: spec.seed,
            prefetch: 2,
            skip_unreadable: false,
            threads: spec.data.loader_threads,
        },
        device,
    )?;
    let eval = Loader::new(
        eval_set,
        LoaderConfig {
            batch_size: EVAL_BATCH.min(eval_len.max(1)),
            shuffle: false,
            drop_last: false,
            seed: spec.seed,
            prefetch: 2,
            skip_unreadable: false,
            threads: spec.data.loader_threads,
        },
        device,
    )?;
    Ok(RunData {
        train,
        eval,
        train_len,
        eval_len,
        checksum: data.checksum,
    })
}
