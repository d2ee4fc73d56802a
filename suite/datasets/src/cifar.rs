//! CIFAR-10 from three sources behind one interface, decoded once and cached.
//!
//! - The Hugging Face hub (the default): dataset `uoft-cs/cifar10`, parquet files at revision
//!   `refs/convert/parquet`, through hf-hub's cache (`HF_HOME`; `HF_HUB_OFFLINE=1` reads the cache
//!   only).
//! - A local directory of parquet files of the same schema (`img` = struct {bytes, path}, `label`).
//! - The binary version (`cifar-10-batches-bin/`: records of 1 label byte + 3,072 pixel bytes).
//!
//! Decoded images are kept in a cache file keyed by the SHA-256 of the source files, so a later
//! load reads one file instead of decoding 60,000 images.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Error;

/// Side of a CIFAR image.
pub const SIDE: usize = 32;
/// Bytes of one decoded image, (32, 32, 3) row-major RGB.
pub const IMAGE_BYTES: usize = SIDE * SIDE * 3;
/// Class names in label order.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

pub const HUB_REPO: &str = "uoft-cs/cifar10";
pub const HUB_REVISION: &str = "refs/convert/parquet";
const HUB_FILES: [&str; 2] = [
    "plain_text/train/0000.parquet",
    "plain_text/test/0000.parquet",
];

/// One split of decoded images: `images` holds `len()` images of (32, 32, 3) u8, HWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Split {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Mean over the images of each pixel and channel, (32, 32, 3) in [0, 255]: the paper's
    /// "per-pixel mean" (§4.2).
    pub fn pixel_mean(&self) -> Vec<f32> {
        let mut sum = vec![0f64; IMAGE_BYTES];
        for image in self.images.chunks_exact(IMAGE_BYTES) {
            for (s, &p) in sum.iter_mut().zip(image) {
                *s += p as f64;
            }
        }
        let n = self.len().max(1) as f64;
        sum.into_iter().map(|s| (s / n) as f32).collect()
    }

    /// Mean and (population) standard deviation of each channel, in [0, 255].
    pub fn channel_stats(&self) -> ([f32; 3], [f32; 3]) {
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for px in self.images.chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as f64;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        let n = (self.images.len() / 3).max(1) as f64;
        let mean = sum.map(|s| s / n);
        let std = [0, 1, 2].map(|c| ((sq[c] / n - mean[c] * mean[c]).max(0.0)).sqrt() as f32);
        (mean.map(|m| m as f32), std)
    }
}

/// Where CIFAR-10 comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Hub { repo: String, revision: String },
    Parquet(PathBuf),
    Binary(PathBuf),
}

impl Default for Source {
    fn default() -> Self {
        Source::Hub {
            repo: HUB_REPO.into(),
            revision: HUB_REVISION.into(),
        }
    }
}

/// The source files of each split, and the source they came from.
#[derive(Debug, Clone)]
pub struct Files {
    pub source: Source,
    pub train: Vec<PathBuf>,
    pub test: Vec<PathBuf>,
}

impl Source {
    /// A local directory: parquet files (`train.parquet`, `plain_text/train/*.parquet` or
    /// `train/*.parquet`, likewise for test) or the binary version (`data_batch_*.bin` and
    /// `test_batch.bin`, directly or in `cifar-10-batches-bin/`).
    pub fn local(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::Source {
                path: dir.to_path_buf(),
                msg: "is not a directory".into(),
            });
        }
        if !parquet_files(dir, "train").is_empty() {
            return Ok(Source::Parquet(dir.to_path_buf()));
        }
        for candidate in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
            if candidate.join("test_batch.bin").is_file() {
                return Ok(Source::Binary(candidate));
            }
        }
        Err(Error::Source {
            path: dir.to_path_buf(),
            msg:
                "holds neither CIFAR-10 parquet files (train.parquet, plain_text/train/*.parquet) \
                  nor the binary version (data_batch_*.bin, test_batch.bin)"
                    .into(),
        })
    }

    /// Finds (downloading from the hub if needed) the files of both splits.
    pub fn files(&self) -> Result<Files, Error> {
        let (train, test) = match self {
            Source::Hub { repo, revision } => {
                let [train, test] = HUB_FILES.map(|f| hub_file(repo, revision, f));
                (vec![train?], vec![test?])
            }
            Source::Parquet(dir) => (parquet_files(dir, "train"), parquet_files(dir, "test")),
            Source::Binary(dir) => {
                let mut train: Vec<PathBuf> = list(dir)
                    .into_iter()
                    .filter(|p| {
                        let name = p.file_name().unwrap_or_default().to_string_lossy();
                        name.starts_with("data_batch_") && name.ends_with(".bin")
                    })
                    .collect();
                train.sort();
                (train, vec![dir.join("test_batch.bin")])
            }
        };
        for (split, files) in [("train", &train), ("test", &test)] {
            if files.is_empty() {
                return Err(Error::Source {
                    path: self.location(),
                    msg: format!("has no {split} files"),
                });
            }
        }
        Ok(Files {
            source: self.clone(),
            train,
            test,
        })
    }

    /// A path-like description for messages.
    pub fn location(&self) -> PathBuf {
        match self {
            Source::Hub { repo, revision } => {
                PathBuf::from(format!("hf://datasets/{repo}@{revision}"))
            }
            Source::Parquet(p) | Source::Binary(p) => p.clone(),
        }
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn parquet_files(dir: &Path, split: &str) -> Vec<PathBuf> {
    let single = dir.join(format!("{split}.parquet"));
    if single.is_file() {
        return vec![single];
    }
    for sub in [dir.join("plain_text").join(split), dir.join(split)] {
        let mut files: Vec<PathBuf> = list(&sub)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        if !files.is_empty() {
            files.sort();
            return files;
        }
    }
    Vec::new()
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The default hub source's files, if hf-hub's cache already holds them (no network).
pub fn hub_cached_files() -> Option<Files> {
    let repo = hf_hub::Repo::with_revision(
        HUB_REPO.into(),
        hf_hub::RepoType::Dataset,
        HUB_REVISION.into(),
    );
    let cache = hf_hub::Cache::from_env().repo(repo);
    let [train, test] = HUB_FILES.map(|f| cache.get(f));
    Some(Files {
        source: Source::default(),
        train: vec![train?],
        test: vec![test?],
    })
}

fn hub_file(repo: &str, revision: &str, file: &str) -> Result<PathBuf, Error> {
    let hub_repo =
        hf_hub::Repo::with_revision(repo.into(), hf_hub::RepoType::Dataset, revision.into());
    let cache = hf_hub::Cache::from_env();
    if let Some(path) = cache.repo(hub_repo.clone()).get(file) {
        return Ok(path);
    }
    let failed = |why: String| Error::Hub {
        repo: repo.into(),
        revision: revision.into(),
        file: file.into(),
        cache: cache.path().clone(),
        why,
    };
    if offline() {
        return Err(failed(
            "HF_HUB_OFFLINE is set and the file is not in the cache".into(),
        ));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    api.repo(hub_repo)
        .get(file)
        .map_err(|e| failed(format!("download failed ({e})")))
}

/// Both splits, decoded.
#[derive(Debug, Clone)]
pub struct Cifar10 {
    pub train: Split,
    pub test: Split,
    /// SHA-256 of the source files (the cache key), hex.
    pub checksum: String,
    pub source: Source,
}

/// Where decoded datasets are cached: `$RESNET_REPRO_CACHE`, else the user cache directory
/// (`~/.cache/resnet-repro` on Linux), else the system temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RESNET_REPRO_CACHE") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("resnet-repro")
}

/// Loads CIFAR-10 from `source`, through the decoded cache in `cache_dir` (`None`: no cache).
pub fn load(source: &Source, cache_dir: Option<&Path>) -> Result<Cifar10, Error> {
    let files = source.files()?;
    let checksum = checksum(files.train.iter().chain(&files.test))?;
    let cache_file = cache_dir.map(|d| d.join(format!("cifar10-{checksum}.u8")));
    if let Some(path) = &cache_file
        && path.is_file()
    {
        match read_cache(path) {
            Ok((train, test)) => {
                return Ok(Cifar10 {
                    train,
                    test,
                    checksum,
                    source: source.clone(),
                });
            }
            // A damaged cache is rebuilt from the source, never trusted.
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let decode = |files: &[PathBuf]| -> Result<Split, Error> {
        let mut out = Split {
            images: Vec::new(),
            labels: Vec::new(),
        };
        for f in files {
            let part = match source {
                Source::Binary(_) => read_binary(f)?,
                _ => read_parquet(f)?,
            };
            out.images.extend(part.images);
            out.labels.extend(part.labels);
        }
        Ok(out)
    };
    let train = decode(&files.train)?;
    let test = decode(&files.test)?;
    if let Some(path) = &cache_file {
        write_cache(path, &train, &test)?;
    }
    Ok(Cifar10 {
        train,
        test,
        checksum,
        source: source.clone(),
    })
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 over the files' contents, in order.
pub fn checksum<'a>(files: impl IntoIterator<Item = &'a PathBuf>) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = File::open(path).map_err(io_error(path))?;
        loop {
            let n = f.read(&mut buf).map_err(io_error(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The binary version: records of 1 label byte, then 1,024 red, 1,024 green, 1,024 blue bytes.
pub fn read_binary(path: &Path) -> Result<Split, Error> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    const RECORD: usize = 1 + IMAGE_BYTES;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            msg: format!(
                "{} bytes is not a whole number of {RECORD}-byte records",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / RECORD;
    let mut images = vec![0u8; n * IMAGE_BYTES];
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        if record[0] >= 10 {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                msg: format!("record {i} has label {}, expected 0..=9", record[0]),
            });
        }
        labels.push(record[0]);
        let planes = &record[1..];
        let image = &mut images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES];
        for p in 0..SIDE * SIDE {
            for c in 0..3 {
                image[p * 3 + c] = planes[c * SIDE * SIDE + p];
            }
        }
    }
    Ok(Split { images, labels })
}

/// Parquet in the hub's schema: `img` (struct with `bytes`, an encoded PNG or JPEG) and `label`.
pub fn read_parquet(path: &Path) -> Result<Split, Error> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let corrupt = |msg: String| Error::Corrupt {
        path: path.to_path_buf(),
        msg,
    };
    let file = File::open(path).map_err(io_error(path))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| corrupt(format!("not a parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| corrupt(format!("unreadable rows: {e}")))?;
    let mut encoded: Vec<(Vec<u8>, u8)> = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| corrupt(format!("row {i}: {e}")))?;
        let (mut bytes, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("img", Field::Group(group)) => {
                    for (inner, value) in group.get_column_iter() {
                        if let ("bytes", Field::Bytes(b)) = (inner.as_str(), value) {
                            bytes = Some(b.data().to_vec());
                        }
                    }
                }
                ("label", Field::Long(l)) => label = Some(*l),
                ("label", Field::Int(l)) => label = Some(*l as i64),
                _ => {}
            }
        }
        let bytes =
            bytes.ok_or_else(|| corrupt(format!("row {i}: no `img.bytes` column value")))?;
        let label = label.ok_or_else(|| corrupt(format!("row {i}: no integer `label`")))?;
        if !(0..10).contains(&label) {
            return Err(corrupt(format!("row {i}: label {label}, expected 0..=9")));
        }
        encoded.push((bytes, label as u8));
    }
    let decoded: Vec<Vec<u8>> = encoded
        .par_iter()
        .enumerate()
        .map(|(i, (bytes, _))| {
            let img = image::load_from_memory(bytes)
                .map_err(|e| corrupt(format!("row {i}: image does not decode: {e}")))?
                .to_rgb8();
            if img.dimensions() != (SIDE as u32, SIDE as u32) {
                return Err(corrupt(format!(
                    "row {i}: image is {:?}, expected 32x32",
                    img.dimensions()
                )));
            }
            Ok(img.into_raw())
        })
        .collect::<Result<_, Error>>()?;
    Ok(Split {
        images: decoded.concat(),
        labels: encoded.iter().map(|(_, l)| *l).collect(),
    })
}

const CACHE_MAGIC: &[u8; 8] = b"RRCIFAR1";

fn write_cache(path: &Path, train: &Split, test: &Split) -> Result<(), Error> {
    let io = |source| files::Error {
        path: path.to_path_buf(),
        source,
    };
    files::write_atomic_with(path, |w| {
        w.write_all(CACHE_MAGIC).map_err(io)?;
        for split in [train, test] {
            w.write_all(&(split.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&split.labels).map_err(io)?;
            w.write_all(&split.images).map_err(io)?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(())
}

fn read_cache(path: &Path) -> Result<(Split, Split), Error> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let corrupt = || Error::Corrupt {
        path: path.to_path_buf(),
        msg: "not a complete decoded-CIFAR cache file".into(),
    };
    if bytes.get(..8) != Some(CACHE_MAGIC.as_slice()) {
        return Err(corrupt());
    }
    let mut at = 8;
    let mut take = |n: usize| -> Result<&[u8], Error> {
        let s = bytes.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(s)
    };
    let mut split = || -> Result<Split, Error> {
        let n = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let labels = take(n)?.to_vec();
        let images = take(n * IMAGE_BYTES)?.to_vec();
        Ok(Split { images, labels })
    };
    let train = split()?;
    let test = split()?;
    if at != bytes.len() {
        return Err(corrupt());
    }
    Ok((train, test))
}
