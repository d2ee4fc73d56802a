//! A run, fully described: model, data, optimiser, schedule, seed, device and reporting knobs.
//! Serialised as `spec.json` in the run's directory; `suite run --spec FILE` reads it from TOML or
//! JSON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use datasets::imagenet::Classes;
use nets::Kernels;

use crate::Error;
use crate::device::DeviceName;
use crate::optim::SgdConfig;
use crate::protocol::{CifarProtocol, ImageNetProtocol};
use crate::schedule::Schedule;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// A model name (`suite list models`), e.g. `resnet20`.
    pub model: String,
    pub data: DataSpec,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Training iterations (SGD steps) in all.
    pub iterations: u64,
    pub schedule: Schedule,
    #[serde(default)]
    pub optimizer: SgdConfig,
    /// Seeds the initial weights, the epochs' sample order and each sample's augmentation.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceName,
    /// `fast` (the kernels crate's ops) or `stock` (candle's).
    #[serde(default)]
    pub kernels: Kernels,
    /// On CUDA, deterministic cuDNN algorithms instead of the fastest, so that a killed and
    /// resumed run equals an uninterrupted one bit for bit (see `kernels::CudnnAlgorithms`). The
    /// CPU kernels are deterministic either way. Left out of `spec.json` when false, so that
    /// specs written before it keep their run ids.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// Iterations per metrics row (training loss and error are averaged over these).
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Iterations between evaluations on the test split (a multiple of `log_every`); 0: only at the end.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Iterations between checkpoints (a multiple of `log_every`); the end is always checkpointed.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

fn default_batch() -> usize {
    128
}
fn default_log_every() -> u64 {
    100
}
fn default_eval_every() -> u64 {
    1000
}
fn default_checkpoint_every() -> u64 {
    500
}

/// Which data a run trains and evaluates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// `cifar10` or `imagenet`.
    pub dataset: String,
    /// CIFAR-10: a local copy (parquet or binary version); `None`: the Hugging Face hub.
    /// ImageNet (required): a directory with `train/<wnid>/<image>` and the validation images in
    /// one of the layouts `datasets::imagenet::Layout` reads.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Train on the paper's 45k part and evaluate on the held-out 5k of the training set (how the
    /// paper chose its schedule) instead of the full training and test sets.
    #[serde(default)]
    pub holdout: bool,
    /// Train on a class-balanced subset of this many images (smoke runs).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Evaluate on a class-balanced subset of this many images.
    #[serde(default)]
    pub eval_subset: Option<usize>,
    /// Background threads preparing batches; `None`: one per core.
    #[serde(default)]
    pub loader_threads: Option<usize>,
    /// ImageNet: train and evaluate on these classes only (a count spread over the sorted wnids,
    /// or a list of wnids); the net gets one output per class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Classes>,
    /// ImageNet: the side of the training crop (the paper's 224). The shorter-side range of the
    /// scale augmentation ([256, 480]) and the evaluation resize (256) scale with it, so a smaller
    /// resolution keeps the paper's ratios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<u32>,
}

/// The datasets a run can train on.
pub const CIFAR10: &str = "cifar10";
pub const IMAGENET: &str = "imagenet";

impl DataSpec {
    /// All of `dataset` at `path`, with the defaults of every other option.
    pub fn new(dataset: &str, path: Option<PathBuf>) -> Self {
        Self {
            dataset: dataset.into(),
            path,
            holdout: false,
            train_subset: None,
            eval_subset: None,
            loader_threads: None,
            classes: None,
            resolution: None,
        }
    }
}

impl RunSpec {
    /// `model` trained on `data` for `iterations` steps of `batch_size` with `schedule` and
    /// `optimizer`; seed 0 on the CPU's fast kernels, metrics, evaluations and checkpoints at the
    /// default intervals.
    fn new(
        model: &str,
        data: DataSpec,
        (batch_size, iterations): (usize, u64),
        schedule: Schedule,
        optimizer: SgdConfig,
    ) -> Self {
        Self {
            model: model.into(),
            data,
            batch_size,
            iterations,
            schedule,
            optimizer,
            seed: 0,
            device: DeviceName::Cpu,
            kernels: Kernels::Fast,
            deterministic: false,
            log_every: default_log_every(),
            eval_every: default_eval_every(),
            checkpoint_every: default_checkpoint_every(),
        }
    }

    /// The paper's CIFAR-10 protocol for `model` over `iterations`, the schedule's milestones scaled
    /// to them (the paper's own at its 64,000), with the warm-up for the 110- and 1202-layer nets.
    pub fn cifar(
        protocol: &CifarProtocol,
        model: &str,
        iterations: u64,
        data_path: Option<PathBuf>,
    ) -> Self {
        let mut schedule = protocol.schedule(iterations);
        if model
            .parse::<nets::ModelSpec>()
            .is_ok_and(|spec| spec.depth() >= 110)
        {
            schedule = protocol.with_warmup(schedule);
        }
        Self::new(
            model,
            DataSpec::new(CIFAR10, data_path),
            (protocol.batch_size, iterations),
            schedule,
            protocol.optimizer,
        )
    }

    /// The paper's ImageNet protocol for `model` over `iterations` with `schedule` (the plateau
    /// rule or fixed steps, see [`ImageNetProtocol`]), on the ImageNet copy at `data_path`.
    pub fn imagenet(
        protocol: &ImageNetProtocol,
        model: &str,
        iterations: u64,
        schedule: Schedule,
        data_path: PathBuf,
    ) -> Self {
        Self::new(
            model,
            DataSpec::new(IMAGENET, Some(data_path)),
            (protocol.batch_size, iterations),
            schedule,
            protocol.optimizer,
        )
    }

    /// Reads a spec from TOML (`.toml`) or JSON (anything else); errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let spec: Self = if path.extension().is_some_and(|e| e == "toml") {
            paper::read_toml(path)?
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de).map_err(|e| Error::Invalid {
                path: Some(path.to_path_buf()),
                key: e.path().to_string(),
                msg: e.into_inner().to_string(),
            })?
        };
        spec.validate().map_err(|e| e.in_file(path))?;
        Ok(spec)
    }

    /// Checks what serde cannot: names that must parse, and intervals that must line up.
    pub fn validate(&self) -> Result<(), Error> {
        let model = self.model_spec()?;
        match self.data.dataset.as_str() {
            CIFAR10 => {
                if !model.is_cifar() {
                    return Err(Error::invalid(
                        "model",
                        format!("`{model}` is an ImageNet net; CIFAR-10 trains the CIFAR family"),
                    ));
                }
                for (key, set) in [
                    ("data.classes", self.data.classes.is_some()),
                    ("data.resolution", self.data.resolution.is_some()),
                ] {
                    if set {
                        return Err(Error::invalid(key, "applies to ImageNet runs only"));
                    }
                }
            }
            IMAGENET => {
                if model.is_cifar() {
                    return Err(Error::invalid(
                        "model",
                        format!("`{model}` is a CIFAR net; ImageNet trains the ImageNet family"),
                    ));
                }
                if self.data.path.is_none() {
                    return Err(Error::invalid(
                        "data.path",
                        "ImageNet is not downloaded: name a local copy (train/<wnid>/<image> \
                         and the validation images)",
                    ));
                }
                if self.data.holdout {
                    return Err(Error::invalid(
                        "data.holdout",
                        "applies to CIFAR-10 runs only (ImageNet evaluates on its validation set)",
                    ));
                }
                if self.data.classes.as_ref().is_some_and(Classes::is_empty) {
                    return Err(Error::invalid(
                        "data.classes",
                        "must name at least one class",
                    ));
                }
                if let Some(r) = self.data.resolution
                    && !(32..=1024).contains(&r)
                {
                    return Err(Error::invalid(
                        "data.resolution",
                        format!("must be between 32 and 1024 pixels, got {r}"),
                    ));
                }
            }
            other => {
                return Err(Error::invalid(
                    "data.dataset",
                    format!(
                        "`{other}` is not a dataset the trainer runs (expected `{CIFAR10}` or \
                         `{IMAGENET}`)"
                    ),
                ));
            }
        }
        for (key, value) in [
            ("batch_size", self.batch_size as u64),
            ("iterations", self.iterations),
            ("log_every", self.log_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value == 0 {
                return Err(Error::invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value % self.log_every != 0 {
                return Err(Error::invalid(
                    key,
                    format!(
                        "{value} must be a multiple of log_every ({})",
                        self.log_every
                    ),
                ));
            }
        }
        self.schedule.validate()
    }

    /// The parsed model name, with one output per class of an ImageNet class subset.
    pub fn model_spec(&self) -> Result<nets::ModelSpec, Error> {
        let mut spec: nets::ModelSpec = self
            .model
            .parse()
            .map_err(|e: nets::Error| Error::invalid("model", e.to_string()))?;
        if let Some(classes) = &self.data.classes
            && !spec.is_cifar()
        {
            spec.num_classes = classes.len();
        }
        Ok(spec)
    }

    /// A short name for the run's directory: model, seed and a hash of the whole spec, so two
    /// different specs never share a directory.
    pub fn run_id(&self) -> String {
        let json = serde_json::to_string(self).expect("a spec serialises");
        let digest = Sha256::digest(json.as_bytes());
        let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-seed{}-{hash}", self.model, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> CifarProtocol {
        CifarProtocol::read(&paper::Paper::repository_file()).unwrap()
    }

    #[test]
    fn the_cifar_protocol_and_its_checks() {
        let p = protocol();
        let spec = RunSpec::cifar(&p, "resnet110", 64_000, None);
        assert_eq!(spec.schedule, p.with_warmup(p.schedule(64_000)));
        assert!(matches!(&spec.schedule, Schedule::Warmup { lr, .. } if *lr == 0.01));
        spec.validate().unwrap();
        assert_eq!(
            RunSpec::cifar(&p, "resnet20", 64_000, None).schedule,
            p.schedule(64_000)
        );
        let mut bad = RunSpec::cifar(&p, "resnet20", 2000, None);
        bad.eval_every = 250;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("`eval_every`: 250"), "{err}");
        bad.model = "resnet21".into();
        let err = bad.validate().unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { key, .. } if key == "model"),
            "{err}"
        );
    }

    #[test]
    fn specs_round_trip_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let spec = RunSpec::cifar(&protocol(), "plain20", 2000, Some("/data/cifar10".into()));
        let path = dir.path().join("run.json");
        std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
        assert_eq!(RunSpec::read(&path).unwrap(), spec);
        let toml_path = dir.path().join("run.toml");
        std::fs::write(
            &toml_path,
            "model = \"resnet20\"\niterations = 10\nbatch = 4\n[data]\ndataset = \"cifar10\"\n[schedule]\nkind = \"multi-step\"\nlr = 0.1\nmilestones = []\n",
        )
        .unwrap();
        let err = RunSpec::read(&toml_path).unwrap_err().to_string();
        assert!(err.contains("run.toml") && err.contains("batch"), "{err}");
        let json_path = dir.path().join("bad.json");
        let text = serde_json::to_string(&spec)
            .unwrap()
            .replace("\"fast\"", "\"quick\"");
        std::fs::write(&json_path, text).unwrap();
        let err = RunSpec::read(&json_path).unwrap_err().to_string();
        assert!(err.contains("bad.json") && err.contains("kernels"), "{err}");
        // The id changes with anything in the spec.
        let mut other = spec.clone();
        other.batch_size = 64;
        assert_ne!(spec.run_id(), other.run_id());
        assert!(spec.run_id().starts_with("plain20-seed0-"));
    }
}
