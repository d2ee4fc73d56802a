//! `suite train` and `suite run`: one training run, resumable, with a progress bar.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nets::Kernels;
use trainer::metrics::Row;
use trainer::{DeviceName, Observer, Outcome, RunSpec};

use crate::cli::Global;

const TRAIN_EXAMPLES: &str = "\
Examples:
  suite train --model resnet20 --iterations 2000 --data cifar10=../shared/data/cifar10
  suite train --model plain20 --iterations 64000 --out results/train/plain20
  suite train --model resnet110 --iterations 64000 --device cuda:0
  suite train --model resnet34-a --iterations 600000 --data imagenet=/data/imagenet --device cuda
  suite train --model resnet18 --iterations 20000 --classes 100 --resolution 128 \\
              --schedule steps --step-every 5000 --data imagenet=/data/imagenet --device cuda

The protocol is read from configs/reference/paper.toml. CIFAR nets (on CIFAR-10): the paper's
schedule (lr 0.1, divided by 10 at 32k and 48k iterations of 64k) with its milestones scaled to
--iterations, momentum 0.9, weight decay 1e-4, batch 128; ResNet-110 and deeper warm up at lr 0.01
until the training error falls below 80%. ImageNet nets (on --data imagenet=DIR, with
DIR/train/<wnid>/<image> and the validation images): batch 256, lr 0.1 divided by 10 when the
center-crop validation error plateaus (no improvement by more than 0.1 points over 3 evaluations,
one every --eval-every iterations), or every --step-every iterations with --schedule steps;
momentum 0.9, weight decay 1e-4, shorter side resized to a random length in [256, 480], a random
224 crop, flip, AlexNet's colour augmentation (all scaled with --resolution). Run the same command
again to resume an interrupted run (it continues from the last checkpoint) or to see a finished
one's figures.";

/// Train a model with the paper's protocol (CIFAR-10 for CIFAR nets, ImageNet for ImageNet nets),
/// writing metrics, checkpoints and a summary
#[derive(Debug, clap::Args)]
#[command(after_help = TRAIN_EXAMPLES)]
pub struct TrainArgs {
    /// Model name (see `suite list models`)
    #[arg(long)]
    model: String,
    /// Training iterations (SGD steps)
    #[arg(long)]
    iterations: u64,
    /// Batch size [default: the paper's, 128 on CIFAR-10 and 256 on ImageNet]
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the initial weights, the sample order and the augmentation
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory [default: <results>/train/<run-id>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Iterations between checkpoints (a multiple of --log-every)
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Iterations between test-set evaluations (a multiple of --log-every; 0: only at the end)
    #[arg(long, default_value_t = 1000)]
    eval_every: u64,
    /// Iterations per metrics row
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// fast (the kernels crate's ops) or stock (candle's own)
    #[arg(long, default_value = "fast")]
    kernels: Kernels,
    /// On CUDA, deterministic cuDNN algorithms instead of the fastest: a killed and resumed run
    /// then equals an uninterrupted one bit for bit (no effect on the CPU, always deterministic)
    #[arg(long)]
    deterministic: bool,
    /// Train on 45k images and evaluate on the held-out 5k (how the paper chose its schedule)
    #[arg(long)]
    holdout: bool,
    /// Train on a class-balanced subset of this many images
    #[arg(long, value_name = "N")]
    train_subset: Option<usize>,
    /// Evaluate on a class-balanced subset of this many images
    #[arg(long, value_name = "N")]
    eval_subset: Option<usize>,
    /// ImageNet: train on this many classes, spread evenly over the sorted wnids
    #[arg(long, value_name = "N")]
    classes: Option<usize>,
    /// ImageNet: the training crop's side (the paper's 224; the scale range and the evaluation
    /// resize scale with it)
    #[arg(long, value_name = "PIXELS")]
    resolution: Option<u32>,
    /// ImageNet: the paper's plateau rule, or division by 10 every --step-every iterations
    #[arg(long, value_enum, default_value = "plateau")]
    schedule: ImageNetSchedule,
    /// ImageNet with --schedule steps: iterations between divisions (150000: 30 epochs of the full
    /// training set at batch 256)
    #[arg(long, value_name = "N", default_value_t = 150_000)]
    step_every: u64,
    /// Print no progress bar
    #[arg(long)]
    quiet: bool,
}

const RUN_EXAMPLES: &str = "\
Examples:
  suite run --spec configs/runs/resnet20-short.toml --data cifar10=../shared/data/cifar10
  suite run --spec results/train/resnet20-seed0-1a2b3c4d/spec.json --out /tmp/rerun

A spec is TOML or JSON with the fields of spec.json in any run directory: model, data, batch_size,
iterations, schedule, optimizer, seed, device, kernels, deterministic, log_every, eval_every,
checkpoint_every; data has dataset (cifar10 or imagenet), path, holdout, train_subset,
eval_subset, loader_threads, and for ImageNet classes (a count or a list of wnids) and resolution.
`--data NAME=PATH` for the spec's dataset replaces its data.path.";

/// Execute one run described by a spec file; rerunning resumes it or reports it done.
#[derive(Debug, clap::Args)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// The run spec (TOML or JSON)
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Run directory [default: <results>/runs/<run-id>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print no progress bar
    #[arg(long)]
    quiet: bool,
}

/// How an ImageNet run's learning rate falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImageNetSchedule {
    /// Divide by 10 when the validation error plateaus (the paper's rule, made precise)
    Plateau,
    /// Divide by 10 every --step-every iterations
    Steps,
}

pub fn train(args: TrainArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let reference =
        crate::paths::configs_dir(global.configs.as_deref()).join("reference/paper.toml");
    let model: nets::ModelSpec = args.model.parse()?;
    let mut spec = if model.is_cifar() {
        if args.classes.is_some() || args.resolution.is_some() {
            anyhow::bail!("--classes and --resolution apply to ImageNet nets, not `{model}`");
        }
        let data_path = global.data_path("cifar10").map(Path::to_path_buf);
        let protocol = trainer::CifarProtocol::read(&reference)?;
        RunSpec::cifar(&protocol, &args.model, args.iterations, data_path)
    } else {
        let data_path = global.data_path("imagenet").with_context(|| {
            format!(
                "`{model}` trains on ImageNet, which is not downloaded: pass --data imagenet=DIR \
                 (DIR/train/<wnid>/<image> and DIR/val/<wnid>/<image>)"
            )
        })?;
        let protocol = trainer::ImageNetProtocol::read(&reference)?;
        let schedule = match args.schedule {
            ImageNetSchedule::Plateau => protocol.plateau(trainer::PlateauRule::SUITE),
            ImageNetSchedule::Steps => protocol.steps(args.step_every, args.iterations),
        };
        let mut spec = RunSpec::imagenet(
            &protocol,
            &args.model,
            args.iterations,
            schedule,
            data_path.to_path_buf(),
        );
        spec.data.classes = args.classes.map(datasets::imagenet::Classes::Count);
        spec.data.resolution = args.resolution;
        spec
    };
    if let Some(batch) = args.batch {
        spec.batch_size = batch;
    }
    spec.seed = args.seed;
    spec.device = args.device;
    spec.kernels = args.kernels;
    spec.deterministic = args.deterministic;
    spec.log_every = args.log_every;
    spec.eval_every = args.eval_every;
    spec.checkpoint_every = args.checkpoint_every;
    spec.data.holdout = args.holdout;
    spec.data.train_subset = args.train_subset;
    spec.data.eval_subset = args.eval_subset;
    spec.validate()?;
    let dir = args
        .out
        .unwrap_or_else(|| trainer::run::default_dir(&global.results.join("train"), &spec));
    execute(&spec, &dir, args.quiet)
}

pub fn run(args: RunArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let mut spec = RunSpec::read(&args.spec)?;
    if let Some(path) = global.data_path(&spec.data.dataset) {
        spec.data.path = Some(path.to_path_buf());
    }
    let dir = args
        .out
        .unwrap_or_else(|| trainer::run::default_dir(&global.results.join("runs"), &spec));
    execute(&spec, &dir, args.quiet)
}

fn execute(spec: &RunSpec, dir: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let provenance = trainer::Provenance::detect(env!("CARGO_PKG_VERSION"));
    let mut progress = Progress::new(quiet);
    let cache = datasets::cifar::default_cache_dir();
    let outcome = trainer::run(spec, dir, Some(&cache), &provenance, &mut progress)
        .with_context(|| format!("run in {}", dir.display()))?;
    progress.bar.finish_and_clear();
    let summary = outcome.summary();
    let verb = match outcome {
        Outcome::Finished(_) => "finished",
        Outcome::AlreadyFinished(_) => "already finished (nothing to do)",
    };
    println!(
        "{} {verb}: {} iterations, final train loss {:.4}, train error {:.2}%, test error {:.2}% \
         on {} images; {:.1} images/s, {:.0} s ({} resume(s))",
        summary.run_id,
        summary.iterations,
        summary.final_train_loss,
        100.0 * summary.final_train_error,
        100.0 * summary.final_test_error,
        summary.eval_images,
        summary.images_per_s,
        summary.wall_s,
        summary.resumes
    );
    println!("run directory: {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// A progress bar with ETA, metrics rows printed above it.
struct Progress {
    bar: indicatif::ProgressBar,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} it, {per_sec}, ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        Self { bar, quiet }
    }
}

impl Observer for Progress {
    fn started(&mut self, spec: &RunSpec, from: u64) {
        self.bar.set_length(spec.iterations);
        self.bar.set_position(from);
        self.bar.reset_eta();
        if from > 0 && !self.quiet {
            eprintln!("resuming at iteration {from}");
        }
        self.bar.set_message(spec.model.clone());
    }

    fn step(&mut self, iteration: u64) {
        self.bar.set_position(iteration);
    }

    fn evaluating(&mut self, _iteration: u64) {
        self.bar.set_message("evaluating");
    }

    fn row(&mut self, row: &Row) {
        self.bar.set_message(format!("loss {:.3}", row.train_loss));
        if self.quiet {
            return;
        }
        let test = match row.test_error {
            Some(e) => format!(
                ", test loss {:.4} error {:.2}%",
                row.test_loss.unwrap_or(f64::NAN),
                100.0 * e
            ),
            None => String::new(),
        };
        let line = format!(
            "iter {:>6} (epoch {:.2}) lr {:.4}: train loss {:.4} error {:.2}%{test}, {:.0} images/s",
            row.iteration,
            row.epoch,
            row.lr,
            row.train_loss,
            100.0 * row.train_error,
            row.images_per_s
        );
        // Without a terminal the bar draws nothing, its println included: log plainly instead.
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}
