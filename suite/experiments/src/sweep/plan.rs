//! From a config, a profile and the user's options to the list of runs: each run's spec, its
//! directory in the run store, whether it is done, half done or new, and how long it should take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trainer::{DeviceName, PlateauRule, Protocols, RunSpec};

use super::config::{ProfileSchedule, SweepConfig};
use crate::Error;

/// Where a run stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `summary.json` is there.
    Done,
    /// A checkpoint at this iteration is there; the run resumes from it.
    HalfDone {
        iteration: u64,
    },
    New,
}

impl Status {
    pub fn label(self) -> String {
        match self {
            Status::Done => "done".into(),
            Status::HalfDone { iteration } => format!("half done ({iteration})"),
            Status::New => "new".into(),
        }
    }
}

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub model: String,
    pub seed: u64,
    pub spec: RunSpec,
    /// `<store>/<run-id>`: the same spec always lands in the same directory, whichever experiment
    /// asks for it.
    pub dir: PathBuf,
    pub status: Status,
    pub params: u64,
    /// Multiply-adds of one 32x32 image's forward pass.
    pub flops: u64,
    /// Seconds still to go on this device, when a throughput probe could tell.
    pub estimate_s: Option<f64>,
}

/// What the user chose besides the sweep and the profile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub device: DeviceName,
    /// Restrict the sweep to these models (`core`: the profile's CPU core); empty: all.
    pub models: Vec<String>,
    /// A local copy of the sweep's dataset; `None`: the Hugging Face hub for CIFAR-10, and for
    /// ImageNet (which is never downloaded) a plan that cannot train.
    pub data: Option<PathBuf>,
    pub kernels: nets::Kernels,
    /// Deterministic cuDNN algorithms on CUDA (`RunSpec::deterministic`).
    pub deterministic: bool,
    /// Seeds per model instead of the profile's `seeds_per_model` (see [`seeds_of`]).
    pub seeds: Option<usize>,
}

/// The data path an ImageNet plan's specs name when no copy was given: such a plan is shown, never
/// trained.
pub const NO_IMAGENET: &str = "<imagenet: not given>";

/// The runs of `config` under `profile` with `options`, their status read from `store`.
pub fn plan(
    config: &SweepConfig,
    profile_name: &str,
    protocols: &Protocols,
    options: &Options,
    store: &Path,
) -> Result<Vec<PlannedRun>, Error> {
    let profile = config.profile(profile_name)?;
    let imagenet = config.header.dataset == trainer::spec::IMAGENET;
    let selected = selection(config, profile_name, &options.models)?;
    let data = match &options.data {
        // The spec records the data's absolute path, so the run reads the same files from
        // whichever directory it is resumed.
        Some(path) => Some(std::fs::canonicalize(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let iterations = profile.iterations.unwrap_or(if imagenet {
        protocols.imagenet.max_iterations
    } else {
        protocols.cifar.iterations
    });
    let mut runs = Vec::new();
    for group in &config.runs {
        let seeds = seeds_of(&group.seeds, profile.seeds_per_model, options.seeds);
        for model in &group.models {
            if !selected.iter().any(|m| m == model) {
                continue;
            }
            for &seed in &seeds {
                let mut spec = if imagenet {
                    let p = &protocols.imagenet;
                    let schedule = match profile.schedule {
                        None => p.plateau(PlateauRule::SUITE),
                        Some(ProfileSchedule::Plateau {
                            patience,
                            threshold,
                        }) => p.plateau(PlateauRule {
                            patience,
                            threshold,
                        }),
                        Some(ProfileSchedule::Steps { every }) => p.steps(every, iterations),
                    };
                    // Without a copy the plan can be shown but not trained.
                    let path = data.clone().unwrap_or_else(|| PathBuf::from(NO_IMAGENET));
                    let mut spec = RunSpec::imagenet(p, model, iterations, schedule, path);
                    spec.data.classes = profile.classes.map(trainer::spec::Classes::Count);
                    spec.data.resolution = profile.resolution;
                    spec
                } else {
                    RunSpec::cifar(&protocols.cifar, model, iterations, data.clone())
                };
                spec.seed = seed;
                spec.device = options.device;
                spec.kernels = options.kernels;
                spec.deterministic = options.deterministic;
                if let Some(batch) = profile.batch_size {
                    spec.batch_size = batch;
                }
                spec.data.train_subset = profile.train_subset;
                spec.data.eval_subset = profile.eval_subset;
                spec.log_every = profile.log_every;
                spec.eval_every = profile.eval_every;
                spec.checkpoint_every = profile.checkpoint_every;
                spec.validate().map_err(|e| {
                    Error::Config(paper::Error::Invalid {
                        path: config.path.clone(),
                        key: format!("profiles.{profile_name}"),
                        msg: format!("{model} seed {seed}: {e}"),
                    })
                })?;
                let dir = trainer::run::default_dir(store, &spec);
                let side = if imagenet {
                    spec.data.resolution.unwrap_or(protocols.imagenet.crop) as usize
                } else {
                    32
                };
                let cost = nets::cost_of(&spec.model_spec()?, side, side);
                runs.push(PlannedRun {
                    model: model.clone(),
                    seed,
                    status: status(&dir)?,
                    spec,
                    dir,
                    params: cost.params,
                    flops: cost.flops,
                    estimate_s: None,
                });
            }
        }
    }
    Ok(runs)
}

/// The seeds a run group trains. A chosen count takes the group's first seeds and, where the group
/// lists fewer, goes on with the integers after its largest: more seeds than a config lists is a
/// user's way to measure the seed spread of a profile that runs one. Without one, the profile's
/// `seeds_per_model` cuts the list, and no cut keeps it whole.
pub fn seeds_of(listed: &[u64], per_profile: Option<usize>, chosen: Option<usize>) -> Vec<u64> {
    let Some(count) = chosen else {
        let keep = per_profile.unwrap_or(listed.len()).min(listed.len());
        return listed[..keep].to_vec();
    };
    let mut seeds: Vec<u64> = listed.iter().copied().take(count).collect();
    let mut next = listed.iter().max().map_or(0, |largest| largest + 1);
    while seeds.len() < count {
        seeds.push(next);
        next += 1;
    }
    seeds
}

/// The models `--models` names, `core` expanded to the profile's core; all models when empty.
pub fn selection(
    config: &SweepConfig,
    profile_name: &str,
    models: &[String],
) -> Result<Vec<String>, Error> {
    let all: Vec<String> = config.models().into_iter().map(String::from).collect();
    if models.is_empty() {
        return Ok(all);
    }
    let profile = config.profile(profile_name)?;
    let mut chosen = Vec::new();
    for name in models {
        if name == "core" {
            if profile.core.is_empty() {
                return Err(Error::Selection(format!(
                    "profile `{profile_name}` of {} has no core list",
                    config.name
                )));
            }
            chosen.extend(profile.core.iter().cloned());
            continue;
        }
        let canonical = name
            .parse::<nets::ModelSpec>()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| name.clone());
        if !all.contains(&canonical) {
            return Err(Error::Selection(format!(
                "`{name}` is not a run of {} (runs: {}; or `core`)",
                config.name,
                all.join(", ")
            )));
        }
        chosen.push(canonical);
    }
    Ok(chosen)
}

/// Done when the summary is there, half done when a checkpoint is.
pub fn status(dir: &Path) -> Result<Status, Error> {
    if dir.join(trainer::run::SUMMARY_FILE).is_file() {
        return Ok(Status::Done);
    }
    if dir.join(trainer::run::CHECKPOINT_FILE).is_file() {
        let rows = trainer::metrics::read(&dir.join(trainer::run::METRICS_FILE))?;
        let iteration = rows.last().map_or(0, |r| r.iteration);
        return Ok(Status::HalfDone { iteration });
    }
    Ok(Status::New)
}

/// Measured training throughputs (images/s), cached per build, device, threads, model and batch.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProbeCache {
    pub images_per_s: BTreeMap<String, f64>,
}

/// Evaluation is a forward pass only; a training step costs about three forward passes.
const EVAL_SPEEDUP: f64 = 3.0;

/// Fills each unfinished run's `estimate_s` from a short training-speed probe of its model (a warm-up
/// step and two timed steps at the run's batch), cached in `cache_file` so a second plan is
/// instant. A probe that fails leaves the estimate empty.
pub fn estimate(runs: &mut [PlannedRun], cache_file: Option<&Path>, threads: usize) {
    let mut cache: ProbeCache = cache_file
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let build = build_id();
    let mut dirty = false;
    let mut counted = BTreeMap::new();
    for run in runs.iter_mut().filter(|r| r.status != Status::Done) {
        // ImageNet runs of the shorter profiles train at smaller crops than the paper's 224.
        let resolution = run.spec.data.resolution.map(|side| side as usize);
        let key = format!(
            "{build}|{}|{}|{threads}|{}|{}|{}",
            run.spec.device,
            run.spec.kernels,
            run.model,
            run.spec.batch_size,
            resolution.map_or("own".to_string(), |side| side.to_string())
        );
        let ips = match cache.images_per_s.get(&key) {
            Some(v) => Some(*v),
            None => {
                let bench = trainer::bench::TrainBench {
                    model: match run.spec.model_spec() {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                    batch: run.spec.batch_size,
                    device: run.spec.device,
                    kernels: run.spec.kernels,
                    warmup: 1,
                    steps: 2,
                    mode: Default::default(),
                    resolution,
                };
                let probed = trainer::bench::train(&bench, |_| {})
                    .ok()
                    .map(|r| r.images_per_s);
                if let Some(v) = probed {
                    cache.images_per_s.insert(key, v);
                    dirty = true;
                }
                probed
            }
        };
        let Some(ips) = ips else { continue };
        // Runs of one sweep share their copy, classes and subset: one listing serves them all.
        let data = &run.spec.data;
        let eval_key = format!("{:?}|{:?}|{:?}", data.path, data.classes, data.eval_subset);
        let eval = *counted
            .entry(eval_key)
            .or_insert_with(|| eval_images(&run.spec));
        run.estimate_s = Some(seconds_left(&run.spec, run.status, ips, eval));
    }
    if let (true, Some(path)) = (dirty, cache_file) {
        let json = serde_json::to_string_pretty(&cache).expect("a cache serialises");
        // A cache that cannot be written only costs a probe next time.
        let _ = path
            .parent()
            .map(std::fs::create_dir_all)
            .map(|_| files::write_atomic(path, json.as_bytes()));
    }
}

/// The images one evaluation of `spec` reads: its evaluation subset, else the whole validation
/// split. For ImageNet that is the copy's validation images of the run's classes, counted on disk;
/// without a readable copy, the 50 a class of ImageNet's own validation set.
pub fn eval_images(spec: &RunSpec) -> usize {
    if spec.data.dataset == trainer::spec::IMAGENET
        && let Ok(folder) = trainer::data::imagenet_eval(spec)
    {
        return folder.len();
    }
    let full = match (spec.data.dataset.as_str(), &spec.data.classes) {
        (trainer::spec::IMAGENET, Some(classes)) => 50 * classes.len(),
        (trainer::spec::IMAGENET, None) => 50_000,
        _ if spec.data.holdout => 5000,
        _ => 10_000,
    };
    spec.data.eval_subset.unwrap_or(full)
}

/// Training and evaluation seconds a run still needs at `images_per_s` training throughput, each
/// evaluation reading `eval_images` images ([`eval_images`]).
pub fn seconds_left(spec: &RunSpec, status: Status, images_per_s: f64, eval_images: usize) -> f64 {
    let from = match status {
        Status::HalfDone { iteration } => iteration,
        Status::Done => spec.iterations,
        Status::New => 0,
    };
    let left = spec.iterations.saturating_sub(from);
    let train = left as f64 * spec.batch_size as f64 / images_per_s;
    let evals = match spec.eval_every {
        0 => 1,
        every => left / every + u64::from(!spec.iterations.is_multiple_of(every)),
    };
    train + evals as f64 * eval_images as f64 / (images_per_s * EVAL_SPEEDUP)
}

/// This executable's identity (size and modification time), so a rebuilt binary probes afresh.
fn build_id() -> String {
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!("{}-{mtime}", m.len())
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The probe cache's default place: `<user cache>/resnet-repro/probes.json`.
pub fn default_probe_cache() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("resnet-repro").join("probes.json"))
}
