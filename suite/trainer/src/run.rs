//! The training loop of one run, resumable at any point.
//!
//! A run lives in one directory:
//! - `spec.json`: the [`RunSpec`]; a rerun with a different spec in the same directory is refused;
//! - `metrics.csv`: one [`Row`] per `log_every` iterations (see [`crate::metrics`]);
//! - `checkpoint.safetensors`: weights, momentum and loop state every `checkpoint_every`
//!   iterations and at the end (see [`crate::checkpoint`]);
//! - `weights.safetensors`: the final weights under torchvision's names;
//! - `summary.json`: the final figures; its presence marks the run finished.
//! - `.lock`: held by the process writing the run (`files::DirLock`), so a second process on the
//!   same directory stops with an error naming the first instead of writing beside it.
//!
//! Rerunning an unfinished run resumes from its checkpoint. Everything random derives from the seed
//! and the loader position, and the CPU kernels are deterministic, so a resumed run's metrics equal
//! those of an uninterrupted one bit for bit (the time columns aside).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_nn::ModuleT;
use datasets::Position;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, LoopState};
use crate::metrics::{MetricsFile, Row};
use crate::optim::Sgd;
use crate::spec::RunSpec;
use crate::step::{StepOutcome, count_errors, read_outcomes, train_step};
use crate::{Error, data};

pub const SPEC_FILE: &str = "spec.json";
pub const METRICS_FILE: &str = "metrics.csv";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const SUMMARY_FILE: &str = "summary.json";

/// Where the software that ran came from, recorded in the summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub suite_version: String,
    pub git_commit: Option<String>,
}

impl Provenance {
    /// This software: `suite_version` and the commit of the git checkout the process runs in
    /// (`+dirty` with local changes; `None` outside a checkout or without git).
    pub fn detect(suite_version: &str) -> Self {
        Self {
            suite_version: suite_version.into(),
            git_commit: git_commit(),
        }
    }
}

fn git_commit() -> Option<String> {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = out(&["rev-parse", "HEAD"])?;
    let dirty =
        out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}+dirty")
    } else {
        commit
    })
}

/// The final figures of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub model: String,
    pub parameters: u64,
    pub iterations: u64,
    pub epochs: f64,
    pub final_lr: f64,
    /// Training loss and error over the last metrics window.
    pub final_train_loss: f64,
    pub final_train_error: f64,
    /// On the evaluation split (the test set, or the held-out 5k), after the last iteration.
    pub final_test_loss: f64,
    pub final_test_error: f64,
    pub eval_images: usize,
    pub train_images: usize,
    /// Seconds of training and evaluation, over every session of the run.
    pub wall_s: f64,
    /// Training images per second over the whole run (evaluation time included in `wall_s` only).
    pub images_per_s: f64,
    pub device: String,
    pub kernels: String,
    pub threads: usize,
    pub resumes: u32,
    pub data_checksum: String,
    pub suite_version: String,
    pub candle_version: String,
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch when the run finished.
    pub finished_at: u64,
}

/// What the loop tells whoever watches it (a progress bar, a log).
pub trait Observer {
    /// The loop starts at `from` of `spec.iterations` completed iterations.
    fn started(&mut self, _spec: &RunSpec, _from: u64) {}
    /// Iteration `iteration` (1-based count of completed iterations) is done; its loss is read
    /// with the window's, and shows in the next [`Row`].
    fn step(&mut self, _iteration: u64) {}
    fn evaluating(&mut self, _iteration: u64) {}
    fn row(&mut self, _row: &Row) {}
    fn checkpointed(&mut self, _iteration: u64) {}
}

/// Watches nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// How a call to [`run`] ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The run trained to its last iteration in this call (possibly after resuming).
    Finished(Summary),
    /// The directory already held the finished run; nothing was done.
    AlreadyFinished(Summary),
}

impl Outcome {
    pub fn summary(&self) -> &Summary {
        match self {
            Self::Finished(s) | Self::AlreadyFinished(s) => s,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the summary of a finished run in `dir`, if there is one.
pub fn read_summary(dir: &Path) -> Result<Option<Summary>, Error> {
    let path = dir.join(SUMMARY_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Metrics {
            path,
            msg: e.to_string(),
        })
}

/// Records `spec` in `dir`, or checks it against the one already there.
fn claim_directory(spec: &RunSpec, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(SPEC_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let existing: RunSpec = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            path: Some(path.clone()),
            key: ".".into(),
            msg: format!("not a run spec: {e}"),
        })?;
        if existing != *spec {
            return Err(Error::SpecMismatch {
                dir: dir.to_path_buf(),
            });
        }
        return Ok(());
    }
    let json = serde_json::to_string_pretty(spec).expect("a spec serialises");
    Ok(files::write_atomic(&path, json.as_bytes())?)
}

/// Mean cross-entropy and error rate over the evaluation loader, BN in evaluation mode.
fn evaluate(net: &nets::ResNet, loader: &datasets::Loader) -> Result<(f64, f64), Error> {
    let (mut loss_sum, mut errors, mut count) = (0f64, 0usize, 0usize);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let logits = net.forward_t(&batch.images, false)?.detach();
        let n = batch.labels.elem_count();
        let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * n as f64;
        errors += count_errors(&logits, &batch.labels)?;
        count += n;
    }
    Ok((loss_sum / count as f64, errors as f64 / count as f64))
}

/// Training figures accumulated over one metrics window. The steps' losses and error counts stay
/// on the device until the window closes, so a GPU never waits for the host inside it.
#[derive(Default)]
struct Window {
    outcomes: Vec<StepOutcome>,
    images: usize,
    seconds: f64,
}

/// A closed window's figures, read from the device.
struct WindowFigures {
    loss_sum: f64,
    errors: usize,
    /// The first step whose loss is not finite, as (its iteration, the loss).
    diverged: Option<(u64, f32)>,
}

impl Window {
    /// Reads the window whose last step was `last_iteration`.
    fn read(&self, last_iteration: u64) -> Result<WindowFigures, Error> {
        let values = read_outcomes(&self.outcomes)?;
        let first_iteration = last_iteration + 1 - values.len() as u64;
        let diverged = (first_iteration..)
            .zip(&values)
            .find(|(_, (loss, _))| !loss.is_finite())
            .map(|(iteration, &(loss, _))| (iteration, loss));
        Ok(WindowFigures {
            loss_sum: values.iter().map(|&(loss, _)| loss as f64).sum(),
            errors: values.iter().map(|&(_, errors)| errors).sum(),
            diverged,
        })
    }
}

/// Trains (or resumes, or reports finished) the run `spec` in `dir`. `cache_dir` is where decoded
/// datasets are cached (`None`: no cache).
pub fn run(
    spec: &RunSpec,
    dir: &Path,
    cache_dir: Option<&Path>,
    provenance: &Provenance,
    observer: &mut dyn Observer,
) -> Result<Outcome, Error> {
    spec.validate()?;
    // Held until the run returns: a second process on the same directory stops here.
    let _lock = files::DirLock::acquire(dir)?;
    claim_directory(spec, dir)?;
    if let Some(summary) = read_summary(dir)? {
        return Ok(Outcome::AlreadyFinished(summary));
    }
    let model_spec = spec.model_spec()?;
    let device = spec.device.open()?;
    // Process-wide: the runs of one sweep share the flag, as they share the command line.
    kernels::set_cudnn_algorithms(if spec.deterministic {
        kernels::CudnnAlgorithms::Deterministic
    } else {
        kernels::CudnnAlgorithms::Fastest
    });
    let mut model = nets::Model::new(model_spec, spec.seed, &device)?;
    model.net.set_kernels(spec.kernels);
    let mut sgd = Sgd::new(nets::weights::trainable(&model.vars), spec.optimizer)?;

    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let mut state = LoopState::default();
    if checkpoint_path.is_file() {
        let loaded = checkpoint::load(&checkpoint_path, &device)?;
        checkpoint::restore(&checkpoint_path, &model.vars, &loaded.tensors)?;
        sgd.load_state(&loaded.momentum)
            .map_err(|e| Error::Checkpoint {
                path: checkpoint_path.clone(),
                msg: e.to_string(),
            })?;
        state = loaded.state;
        state.resumes += 1;
    }
    let data = data::load(spec, cache_dir, &device)?;
    let (mut metrics, mut last_row) = MetricsFile::open(&dir.join(METRICS_FILE), state.iteration)?;
    observer.started(spec, state.iteration);

    let session_start = Instant::now();
    let wall_before = state.wall_s;
    let wall = || wall_before + session_start.elapsed().as_secs_f64();
    let mut window = Window::default();
    let mut stream = data.train.stream(Position {
        epoch: state.epoch,
        batch: state.batch,
    });
    while state.iteration < spec.iterations {
        let step_start = Instant::now();
        let batch = stream.next().ok_or(Error::StreamEnded {
            iteration: state.iteration,
        })??;
        let lr = spec.schedule.lr(state.iteration, &state.schedule);
        let outcome = train_step(&model.net, &mut sgd, &batch.images, &batch.labels, lr)?;
        state.iteration += 1;
        (state.epoch, state.batch) = (batch.next.epoch, batch.next.batch);
        window.outcomes.push(outcome);
        window.images += batch.labels.elem_count();
        window.seconds += step_start.elapsed().as_secs_f64();
        observer.step(state.iteration);

        let done = state.iteration == spec.iterations;
        if state.iteration % spec.log_every != 0 && !done {
            continue;
        }
        // The one point per window where the host waits for the device. A step's non-finite loss
        // is found here, before anything of its window is evaluated or checkpointed, so a
        // checkpoint never holds diverged weights.
        let read_start = Instant::now();
        let figures = window.read(state.iteration)?;
        // On a GPU the steps only queued their work; the wait for it is part of their time.
        window.seconds += read_start.elapsed().as_secs_f64();
        if let Some((iteration, loss)) = figures.diverged {
            return Err(Error::Diverged {
                iteration,
                loss,
                checkpoint: checkpoint_path.is_file().then_some(checkpoint_path),
            });
        }
        let train_error = figures.errors as f64 / window.images as f64;
        spec.schedule
            .observe_train_error(train_error, &mut state.schedule);
        let evaluate_now = done || (spec.eval_every > 0 && state.iteration % spec.eval_every == 0);
        let test = if evaluate_now {
            observer.evaluating(state.iteration);
            let (loss, error) = evaluate(&model.net, &data.eval)?;
            spec.schedule.observe_eval_error(error, &mut state.schedule);
            Some((loss, error))
        } else {
            None
        };
        state.wall_s = wall();
        let row = Row {
            iteration: state.iteration,
            epoch: (state.iteration * spec.batch_size as u64) as f64 / data.train_len as f64,
            lr,
            train_loss: figures.loss_sum / window.outcomes.len() as f64,
            train_error,
            test_loss: test.map(|t| t.0),
            test_error: test.map(|t| t.1),
            images_per_s: window.images as f64 / window.seconds,
            wall_s: state.wall_s,
        };
        metrics.append(&row)?;
        observer.row(&row);
        last_row = Some(row);
        window = Window::default();
        if state.iteration % spec.checkpoint_every == 0 || done {
            checkpoint::save(&checkpoint_path, &model.vars, &sgd.state(), &state)?;
            observer.checkpointed(state.iteration);
        }
    }
    drop(stream);

    // A session that trains ends on a row; one that trains nothing relies on the kept rows.
    let last = last_row.ok_or_else(|| Error::Metrics {
        path: dir.join(METRICS_FILE),
        msg: "the checkpoint is at the last iteration but no metrics row is left".into(),
    })?;
    // A run whose last session only re-read a finished checkpoint still has its final evaluation
    // in the last row.
    let (final_test_loss, final_test_error) = match (last.test_loss, last.test_error) {
        (Some(l), Some(e)) => (l, e),
        _ => evaluate(&model.net, &data.eval)?,
    };
    model.save(&dir.join(WEIGHTS_FILE))?;
    let summary = Summary {
        run_id: spec.run_id(),
        model: model_spec.to_string(),
        parameters: model.cost().params,
        iterations: state.iteration,
        epochs: last.epoch,
        final_lr: last.lr,
        final_train_loss: last.train_loss,
        final_train_error: last.train_error,
        final_test_loss,
        final_test_error,
        eval_images: data.eval_len,
        train_images: data.train_len,
        wall_s: state.wall_s,
        images_per_s: (state.iteration * spec.batch_size as u64) as f64 / state.wall_s,
        device: crate::device::name(&device),
        kernels: spec.kernels.to_string(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        resumes: state.resumes,
        data_checksum: data.checksum,
        suite_version: provenance.suite_version.clone(),
        candle_version: CANDLE_VERSION.into(),
        git_commit: provenance.git_commit.clone(),
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let json = serde_json::to_string_pretty(&summary).expect("a summary serialises");
    files::write_atomic(&dir.join(SUMMARY_FILE), json.as_bytes())?;
    Ok(Outcome::Finished(summary))
}

/// The candle release the workspace pins (the kernels and nets are built against it).
const CANDLE_VERSION: &str = "0.11.1";

/// The directory a run gets under `root` when none is given: `<root>/<run-id>`.
pub fn default_dir(root: &Path, spec: &RunSpec) -> PathBuf {
    root.join(spec.run_id())
}
