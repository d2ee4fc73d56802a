//! The training and evaluation loaders a run spec asks for.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use datasets::imagenet::{self, Validation};
use datasets::{
    CifarDataset, Dataset, FolderDataset, ImageFolder, Loader, LoaderConfig, Normalize, Transform,
    cifar, split,
};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::spec::{IMAGENET, RunSpec};

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

/// The loaders of `spec`'s dataset; `cache_dir` holds decoded CIFAR-10 (ImageNet is decoded as
/// it streams).
pub fn load(spec: &RunSpec, cache_dir: Option<&Path>, device: &Device) -> Result<RunData, Error> {
    if spec.data.dataset == IMAGENET {
        return load_imagenet(spec, device);
    }
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
    let train_set = Arc::new(CifarDataset::new(train, normalize.clone(), true));
    let eval_set = Arc::new(CifarDataset::new(eval, normalize, false));
    loaders(spec, train_set, eval_set, device, data.checksum)
}

/// The training and evaluation loaders over two datasets, as every run uses them.
fn loaders(
    spec: &RunSpec,
    train_set: Arc<dyn Dataset>,
    eval_set: Arc<dyn Dataset>,
    device: &Device,
    checksum: String,
) -> Result<RunData, Error> {
    let (train_len, eval_len) = (train_set.len(), eval_set.len());
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
        checksum,
    })
}

/// A class-balanced subset of `size` of `folder`'s images (all of them when `size` is `None` or
/// larger).
fn folder_subset(folder: ImageFolder, size: Option<usize>, seed: u64) -> ImageFolder {
    match size {
        Some(n) if n < folder.len() => {
            let labels: Vec<usize> = folder.samples.iter().map(|s| s.1).collect();
            let (_, chosen) = split::stratified(&labels, n, seed);
            ImageFolder {
                samples: chosen.iter().map(|&i| folder.samples[i].clone()).collect(),
                ..folder
            }
        }
        _ => folder,
    }
}

/// An ImageNet run's copy (`data.path`) and the classes it trains on: its subset of the class
/// folders of `train/`, in the net's class order. Only the folder names are read.
fn imagenet_classes(spec: &RunSpec) -> Result<(&Path, Vec<String>), Error> {
    let root = spec
        .data
        .path
        .as_deref()
        .ok_or_else(|| Error::invalid("data.path", "ImageNet needs a local copy"))?;
    let train_root = imagenet::training_root(root)?;
    let available = datasets::folder::class_names(&train_root)?;
    let classes = match &spec.data.classes {
        None => available,
        Some(subset) => subset
            .choose(&available)
            .map_err(|msg| Error::invalid("data.classes", msg))?,
    };
    Ok((root, classes))
}

/// The validation images an ImageNet run evaluates on (those of its classes, its evaluation
/// subset), labelled in its class order.
pub fn imagenet_eval(spec: &RunSpec) -> Result<ImageFolder, Error> {
    let (root, classes) = imagenet_classes(spec)?;
    eval_folder(spec, root, &classes)
}

fn eval_folder(spec: &RunSpec, root: &Path, classes: &[String]) -> Result<ImageFolder, Error> {
    let eval = folder_subset(
        Validation::open_only(root, classes)?.into_folder(),
        spec.data.eval_subset,
        spec.seed,
    );
    if eval.is_empty() {
        return Err(datasets::Error::Source {
            path: root.to_path_buf(),
            msg: "holds no validation images of the classes the run trains on".into(),
        }
        .into());
    }
    Ok(eval)
}

/// The side of an ImageNet run's crops: its resolution, else the paper's 224.
pub fn imagenet_crop(spec: &RunSpec) -> u32 {
    spec.data.resolution.unwrap_or(Transform::TRAIN.crop_size())
}

/// ImageNet from `DIR/train/<wnid>/` and the validation images under `DIR`: the paper's
/// augmentation (scale, crop, flip, colour) for training, the center crop for evaluation, both at
/// the spec's resolution.
fn load_imagenet(spec: &RunSpec, device: &Device) -> Result<RunData, Error> {
    let (root, classes) = imagenet_classes(spec)?;
    let train = folder_subset(
        imagenet::restrict(ImageFolder::open(&root.join("train"))?, &classes),
        spec.data.train_subset,
        spec.seed,
    );
    let eval = eval_folder(spec, root, &classes)?;
    let checksum = listing_checksum(root, &train, &eval)?;
    let crop = imagenet_crop(spec);
    let train_set = Arc::new(FolderDataset {
        folder: train,
        transform: Transform::train_at(crop),
    });
    let eval_set = Arc::new(FolderDataset {
        folder: eval,
        transform: Transform::center_at(crop),
    });
    loaders(spec, train_set, eval_set, device, checksum)
}

/// SHA-256 of the file list the run reads (each path relative to `root`, its size and label):
/// hashing 150 GB of images per run start would cost more than the run's first hour.
fn listing_checksum(root: &Path, train: &ImageFolder, eval: &ImageFolder) -> Result<String, Error> {
    let mut hash = Sha256::new();
    for (part, folder) in [("train", train), ("eval", eval)] {
        for (path, label) in &folder.samples {
            let size = std::fs::metadata(path)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            let rel = path.strip_prefix(root).unwrap_or(path);
            hash.update(format!("{part} {} {size} {label}\n", rel.display()).as_bytes());
        }
    }
    Ok(format!("{:x}", hash.finalize()))
}
