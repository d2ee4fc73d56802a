//! `suite bench`: training throughput and per-op speed, measured the same way every time.

use std::process::ExitCode;

use anyhow::Context;
use nets::Kernels;
use trainer::DeviceName;
use trainer::bench::{BenchMode, OpBench, TrainBench};

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite bench train --model resnet20 --batch 128
  suite bench train --model resnet50 --batch 16 --kernels stock --json
  suite bench op --batch 128 --channels 16 --size 32
  suite bench data --data imagenet=../shared/data/imagenet-sample";

/// Measure training speed (images/s of full training steps), the speed of single ops, or how fast
/// the ImageNet input pipeline feeds them.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    Train(TrainArgs),
    Op(OpArgs),
    Data(DataArgs),
}

const DATA_EXAMPLES: &str = "\
Examples:
  suite bench data --data imagenet=../shared/data/imagenet-sample
  suite bench data --data imagenet=/data/imagenet --images 2000 --json
  suite bench data --data imagenet=/data/imagenet --resolution 128

Reads DIR/train/<wnid>/ if there is one, else the validation folders. The files are read once
before timing, so the figures are of decoding and transforming, not of the disk.";

/// Images/s of the ImageNet training pipeline (decode, scale augmentation, crop, flip, colour,
/// normalisation, batching) on real JPEGs: decoding alone and the whole transform on one core, and
/// the loader's batches on every core
#[derive(Debug, clap::Args)]
#[command(after_help = DATA_EXAMPLES)]
struct DataArgs {
    /// Images to time (the folder's first, in file order)
    #[arg(long, default_value_t = 500)]
    images: usize,
    /// The training crop's side (the paper's 224; the scale range scales with it)
    #[arg(long, default_value_t = 224)]
    resolution: u32,
    /// Images per batch of the loader
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  suite bench train --model resnet20 --batch 128
  suite bench train --model resnet56 --batch 128 --steps 20 --json
  suite bench train --model resnet20 --batch 128 --kernels stock
  suite bench train --model resnet50 --batch 256 --device cuda --inference --json
  suite bench train --model resnet34-a --batch 256 --resolution 128 --device cuda
                                          at the ImageNet quick profiles' 128x128 crops

On a GPU the report also gives the most device memory the process's tensors held at once
(peak_device_mib), as PyTorch's torch.cuda.max_memory_allocated counts it.";

/// Images/s of full training steps (forward, cross-entropy, backward, momentum-SGD update) on one
/// random batch, after warm-up steps, or of inference with --inference; prints the median, min and
/// max over the timed steps.
#[derive(Debug, clap::Args)]
#[command(after_help = TRAIN_EXAMPLES)]
struct TrainArgs {
    /// Model name (see `suite list models`)
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// fast (the kernels crate's ops) or stock (candle's own)
    #[arg(long, default_value = "fast")]
    kernels: Kernels,
    /// Untimed steps first
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Time forward passes in evaluation mode (inference) instead of training steps
    #[arg(long)]
    inference: bool,
    /// Input images' side [default: the net's own: 32 for CIFAR nets, 224 for ImageNet ones]
    #[arg(long, value_name = "PIXELS")]
    resolution: Option<usize>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

const OP_EXAMPLES: &str = "\
Examples:
  suite bench op --batch 128 --channels 16 --size 32
  suite bench op --batch 128 --channels 32 --size 16 --stride 2
  suite bench op --batch 128 --channels 16 --out-channels 32 --size 32 --stride 2
  suite bench op --batch 16 --channels 64 --size 56 --kernels stock --json
  suite bench op --batch 128 --channels 16 --size 32 --device cuda:0";

/// Per-op timings with GFLOP/s at one activation shape (batch x channels x size x size): a 3x3
/// conv's forward, input gradient and weight gradient (through candle's autograd, and with the fast
/// kernels each pass alone), batch norm forward+backward, ReLU, the 3x3/2 max pool, and a large
/// sgemm for reference. The nets' strided convs double the channels: `--out-channels` sets the
/// conv's output channels (default: as many as it takes in). On a GPU every timed run ends by
/// waiting for the device, and the passes alone run on device tensors (cuDNN's three calls).
#[derive(Debug, clap::Args)]
#[command(after_help = OP_EXAMPLES)]
struct OpArgs {
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Channels of the activations (the conv's input)
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// The conv's output channels [default: --channels]
    #[arg(long)]
    out_channels: Option<usize>,
    /// Height and width
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Conv kernel size
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Conv stride
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// fast (the kernels crate's ops) or stock (candle's own)
    #[arg(long, default_value = "fast")]
    kernels: Kernels,
    /// Timed repetitions per op (after one warm-up)
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Train(args) => train(args),
        What::Op(args) => op(args),
        What::Data(args) => data(args, global),
    }
}

fn data(args: DataArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let dir = global
        .data_path("imagenet")
        .context("pass the images with --data imagenet=DIR")?;
    let root = [dir.join("train"), dir.join("val"), dir.to_path_buf()]
        .into_iter()
        .find(|p| p.is_dir() && datasets::ImageFolder::open(p).is_ok())
        .with_context(|| {
            format!(
                "{}: no image folders (train/<wnid>/, val/<wnid>/ or <wnid>/)",
                dir.display()
            )
        })?;
    let folder = datasets::ImageFolder::open(&root)?;
    let report = trainer::bench::data(&folder, args.resolution, args.images, args.batch)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} images of {} (mean {:.0} kpixels), {}x{} crops:",
            report.images,
            root.display(),
            report.mean_pixels / 1e3,
            report.crop,
            report.crop
        );
        println!(
            "  decode only, 1 thread:         {:>8.1} images/s",
            report.decode_per_s_1_thread
        );
        println!(
            "  whole transform, 1 thread:     {:>8.1} images/s",
            report.pipeline_per_s_1_thread
        );
        println!(
            "  loader batches, {:>2} threads:    {:>8.1} images/s",
            report.threads, report.pipeline_per_s_all_threads
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0,
        "--batch and --steps must be positive"
    );
    let bench = TrainBench {
        model: args.model.parse()?,
        batch: args.batch,
        device: args.device,
        kernels: args.kernels,
        warmup: args.warmup,
        steps: args.steps,
        mode: if args.inference {
            BenchMode::Inference
        } else {
            BenchMode::Train
        },
        resolution: args.resolution,
    };
    let bar = indicatif::ProgressBar::new(args.steps as u64)
        .with_message(format!("{} b{}", bench.model, args.batch));
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {pos}/{len} steps, {eta} left",
    )?);
    let r = trainer::bench::train(&bench, |_| bar.inc(1))
        .with_context(|| format!("training {} at batch {}", bench.model, args.batch))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let mut peak = r
            .peak_rss_mib
            .map_or(String::new(), |m| format!(", peak memory {m:.0} MiB"));
        if let Some(m) = r.peak_device_mib {
            peak += &format!(", peak device memory {m:.0} MiB");
        }
        println!(
            "{} batch {} on {} ({} kernels, {} threads), {}: {:.1} images/s (min {:.1}, max {:.1}, {} steps{peak})",
            r.model,
            r.batch,
            r.device,
            r.kernels,
            r.threads,
            r.mode,
            r.images_per_s,
            r.images_per_s_min,
            r.images_per_s_max,
            r.steps
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn op(args: OpArgs) -> anyhow::Result<ExitCode> {
    let out_channels = args.out_channels.unwrap_or(args.channels);
    anyhow::ensure!(
        args.batch > 0 && args.channels > 0 && out_channels > 0 && args.size > 0,
        "--batch, --channels, --out-channels and --size must be positive"
    );
    let r = trainer::bench::ops(&OpBench {
        batch: args.batch,
        channels: args.channels,
        out_channels,
        size: args.size,
        kernel: args.kernel,
        stride: args.stride,
        device: args.device,
        kernels: args.kernels,
        repeats: args.repeats,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{n}x{c}x{s}x{s}, {k}x{k} conv to {o} channels stride {st} on {}, {} kernels, {} threads",
        r.device,
        r.kernels,
        r.threads,
        n = r.batch,
        c = r.channels,
        s = r.size,
        k = r.kernel,
        o = r.out_channels,
        st = r.stride
    );
    for t in &r.ops {
        match t.gflop_per_s {
            Some(g) => println!("  {:<34} {:>9.3} ms {:>8.1} GFLOP/s", t.op, t.ms, g),
            None => println!("  {:<34} {:>9.3} ms", t.op, t.ms),
        }
    }
    Ok(ExitCode::SUCCESS)
}
