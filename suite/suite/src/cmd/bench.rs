//! `suite bench`: training throughput and per-op speed, measured the same way every time.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use nets::Kernels;
use nets::layers::{BatchNorm, Conv2d};

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite bench train --model resnet20 --batch 128
  suite bench train --model resnet50 --batch 16 --kernels stock --json
  suite bench op --batch 128 --channels 16 --size 32";

/// Measure training speed (images/s of full training steps) or the speed of single ops.
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
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  suite bench train --model resnet20 --batch 128
  suite bench train --model resnet56 --batch 128 --steps 20 --json
  suite bench train --model resnet20 --batch 128 --kernels stock";

/// Images/s of full training steps (forward, cross-entropy, backward, momentum-SGD update) on one
/// random batch, after warm-up steps; prints the median, min and max over the timed steps.
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
    device: String,
    /// fast (the kernels crate's ops) or stock (candle's own)
    #[arg(long, default_value = "fast")]
    kernels: Kernels,
    /// Untimed steps first
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps
    #[arg(long, default_value_t = 10)]
    steps: usize,
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
    device: String,
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

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Train(args) => train(args),
        What::Op(args) => op(args),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0,
        "--batch and --steps must be positive"
    );
    let spec: nets::ModelSpec = args.model.parse()?;
    let device = trainer::device::open(&args.device).map_err(anyhow::Error::msg)?;
    let mut model = nets::Model::new(spec, 0, &device)?;
    model.net.set_kernels(args.kernels);
    let side = spec.default_input_size();
    let images = Tensor::randn(0f32, 1.0, (args.batch, 3, side, side), &device)?;
    let labels: Vec<u32> = (0..args.batch as u32)
        .map(|i| i % spec.num_classes as u32)
        .collect();
    let labels = Tensor::new(labels, &device)?;
    let mut sgd = trainer::Sgd::new(nets::weights::trainable(&model.vars), Default::default())?;
    let bar = indicatif::ProgressBar::new(args.steps as u64)
        .with_message(format!("{spec} b{}", args.batch));
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {pos}/{len} steps, {eta} left",
    )?);
    let throughput = trainer::step::time_steps(
        &model.net,
        &mut sgd,
        (&images, &labels),
        (args.warmup, args.steps),
        |_| bar.inc(1),
    )
    .with_context(|| format!("training {spec} at batch {}", args.batch))?;
    bar.finish_and_clear();
    let report = serde_json::json!({
        "model": spec.to_string(),
        "batch": args.batch,
        "device": trainer::device::name(&device),
        "kernels": args.kernels.to_string(),
        "threads": threads(),
        "images_per_s": throughput.median,
        "images_per_s_min": throughput.min,
        "images_per_s_max": throughput.max,
        "steps": throughput.steps,
        "peak_rss_mib": peak_rss_mib(),
    });
    if args.json {
        println!("{report}");
    } else {
        let peak = peak_rss_mib().map_or(String::new(), |m| format!(", peak memory {m:.0} MiB"));
        println!(
            "{spec} batch {} on {} ({} kernels, {} threads): {:.1} images/s (min {:.1}, max {:.1}, {} steps{peak})",
            args.batch,
            trainer::device::name(&device),
            args.kernels,
            threads(),
            throughput.median,
            throughput.min,
            throughput.max,
            throughput.steps
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The process's peak resident memory so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Median seconds of `repeats` runs of `f`, after one warm-up run; each run waits for `device` to
/// finish its work, so a GPU's queued kernels are timed, not just their launch.
fn median_seconds(
    device: &Device,
    repeats: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

struct OpRow {
    op: &'static str,
    ms: f64,
    /// Floating-point operations of one run, where the op is a product (convs, sgemm).
    flops: Option<u64>,
}

fn op(args: OpArgs) -> anyhow::Result<ExitCode> {
    let dev = trainer::device::open(&args.device).map_err(anyhow::Error::msg)?;
    let (n, c, s) = (args.batch, args.channels, args.size);
    let c_out = args.out_channels.unwrap_or(c);
    anyhow::ensure!(
        n > 0 && c > 0 && c_out > 0 && s > 0,
        "--batch, --channels, --out-channels and --size must be positive"
    );
    let x = Tensor::randn(0f32, 1.0, (n, c, s, s), &dev)?;
    let w = Tensor::randn(0f32, 0.1, (c_out, c, args.kernel, args.kernel), &dev)?;
    let mut conv = Conv2d::from_weight(w.clone(), args.stride, args.kernel / 2);
    conv.kernels = args.kernels;
    let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), args.stride, args.kernel / 2)?;
    let flops = Some(geometry.flops());
    let r = args.repeats;
    let mut rows = Vec::new();

    let forward = median_seconds(&dev, r, || conv.forward(&x).map(drop))?;
    rows.push(OpRow {
        op: "conv forward",
        ms: forward,
        flops,
    });
    // One gradient at a time: the other argument is a constant, so its gradient is not computed.
    let xv = Var::from_tensor(&x)?;
    let both = median_seconds(&dev, r, || {
        conv.forward(xv.as_tensor())?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    rows.push(OpRow {
        op: "conv input gradient",
        ms: both - forward,
        flops,
    });
    let wv = Var::from_tensor(&w)?;
    let mut wconv = Conv2d::from_weight(wv.as_tensor().clone(), args.stride, args.kernel / 2);
    wconv.kernels = args.kernels;
    let both = median_seconds(&dev, r, || {
        wconv.forward(&x)?.sum_all()?.backward().map(drop)
    })?;
    rows.push(OpRow {
        op: "conv weight gradient",
        ms: both - forward,
        flops,
    });

    if args.kernels == Kernels::Fast {
        // Each pass alone, outside candle's autograd: the rows above include the reduction, the
        // broadcast and the zero-tensor accumulation around the op, these do not. On the CPU the
        // passes run on plain slices, on a GPU on device tensors.
        let dy = Tensor::randn(0f32, 1.0, geometry.output_shape().to_vec(), &dev)?;
        let passes_ms = if dev.is_cpu() {
            let passes = kernels::ConvPasses {
                geometry,
                algorithm: kernels::ConvAlgorithm::Auto,
            };
            let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
            let (xs, ws, dys) = (flat(&x)?, flat(&w)?, flat(&dy)?);
            [
                median_seconds(&dev, r, || passes.forward(&xs, &ws).map(drop))?,
                median_seconds(&dev, r, || passes.input_grad(&ws, &dys).map(drop))?,
                median_seconds(&dev, r, || passes.weight_grad(&xs, &dys).map(drop))?,
            ]
        } else {
            let padding = args.kernel / 2;
            [
                median_seconds(&dev, r, || {
                    kernels::conv2d(&x, &w, padding, args.stride).map(drop)
                })?,
                median_seconds(&dev, r, || {
                    kernels::conv2d_input_grad(&w, &dy, &geometry).map(drop)
                })?,
                median_seconds(&dev, r, || {
                    kernels::conv2d_weight_grad(&x, &dy, &geometry).map(drop)
                })?,
            ]
        };
        let names = [
            "conv forward, pass alone",
            "conv input gradient, pass alone",
            "conv weight gradient, pass alone",
        ];
        for (op, ms) in names.into_iter().zip(passes_ms) {
            rows.push(OpRow { op, ms, flops });
        }
    }

    let vars = VarMap::new();
    let mut bn = BatchNorm::new(c, VarBuilder::from_varmap(&vars, DType::F32, &dev))?;
    bn.kernels = args.kernels;
    let ms = median_seconds(&dev, r, || {
        bn.forward_train(xv.as_tensor(), false)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    rows.push(OpRow {
        op: "batch norm forward+backward",
        ms,
        flops: None,
    });
    let ms = median_seconds(&dev, r, || {
        nets::layers::relu(xv.as_tensor(), args.kernels)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    rows.push(OpRow {
        op: "relu forward+backward",
        ms,
        flops: None,
    });
    let ms = median_seconds(&dev, r, || {
        nets::layers::max_pool2d(xv.as_tensor(), (3, 2, 1), args.kernels)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    rows.push(OpRow {
        op: "max pool 3x3/2 forward+backward",
        ms,
        flops: None,
    });
    // The forward alone, on a tensor that tracks its gradient: the indices of the maxima that the
    // backward needs are part of it, as in training.
    let ms = median_seconds(&dev, r, || {
        nets::layers::max_pool2d(xv.as_tensor(), (3, 2, 1), args.kernels).map(drop)
    })?;
    rows.push(OpRow {
        op: "max pool 3x3/2 forward",
        ms,
        flops: None,
    });
    let side = 1024;
    let a = Tensor::randn(0f32, 1.0, (side, side), &dev)?;
    let ms = median_seconds(&dev, r, || a.matmul(&a).map(drop))?;
    rows.push(OpRow {
        op: "sgemm 1024 (reference)",
        ms,
        flops: Some(2 * side as u64 * side as u64 * side as u64),
    });

    let gflops = |row: &OpRow| row.flops.map(|f| f as f64 / row.ms / 1e9);
    if args.json {
        let ops: Vec<_> = rows
            .iter()
            .map(|row| serde_json::json!({ "op": row.op, "ms": row.ms * 1e3, "gflop_per_s": gflops(row) }))
            .collect();
        let report = serde_json::json!({
            "batch": n, "channels": c, "out_channels": c_out, "size": s, "kernel": args.kernel,
            "stride": args.stride, "device": trainer::device::name(&dev),
            "kernels": args.kernels.to_string(), "threads": threads(), "ops": ops,
        });
        println!("{report}");
    } else {
        println!(
            "{n}x{c}x{s}x{s}, {k}x{k} conv to {c_out} channels stride {st} on {}, {} kernels, {} threads",
            trainer::device::name(&dev),
            args.kernels,
            threads(),
            k = args.kernel,
            st = args.stride
        );
        for row in &rows {
            match gflops(row) {
                Some(g) => println!(
                    "  {:<34} {:>9.3} ms {:>8.1} GFLOP/s",
                    row.op,
                    row.ms * 1e3,
                    g
                ),
                None => println!("  {:<34} {:>9.3} ms", row.op, row.ms * 1e3),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
