//! The benchmark harness behind `suite bench` and the regression checks: training throughput
//! ([`train`]) and single-op timings ([`ops`]), measured the same way every time.
//!
//! Every timed run ends by waiting for the device, so a GPU's queued kernels are timed, not only
//! their launch. Reports serialise to the JSON that `suite bench --json` prints and
//! `bench/results/*.json` keep.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, ModuleT, VarBuilder, VarMap};
use nets::layers::{BatchNorm, Conv2d};
use nets::{Kernels, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::{DeviceName, Error, Sgd};

/// Training steps of one model on one random batch.
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub model: ModelSpec,
    pub batch: usize,
    pub device: DeviceName,
    pub kernels: Kernels,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// What a step is: training (forward, loss, backward, update) or inference.
    pub mode: BenchMode,
    /// The input images' side; `None`: the net's own (32 for CIFAR nets, the paper's 224 crop for
    /// ImageNet ones). Shorter runs train ImageNet nets at smaller crops.
    pub resolution: Option<usize>,
}

/// What a benchmark step does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Forward, cross-entropy, backward and the momentum-SGD update.
    #[default]
    Train,
    /// The forward pass alone, in evaluation mode (batch norm with running statistics).
    Inference,
}

impl BenchMode {
    fn is_train(&self) -> bool {
        *self == Self::Train
    }
}

impl std::fmt::Display for BenchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Inference => "inference",
        })
    }
}

/// Images/s of full training steps (forward, cross-entropy, backward, momentum-SGD update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub model: String,
    pub batch: usize,
    pub device: String,
    pub kernels: String,
    pub threads: usize,
    /// Median over the timed steps.
    pub images_per_s: f64,
    pub images_per_s_min: f64,
    pub images_per_s_max: f64,
    pub steps: usize,
    /// The process's resident peak (Linux), which includes the model and the batch.
    pub peak_rss_mib: Option<f64>,
    /// Training steps unless it says otherwise (reports written before inference was measured
    /// have no mode).
    #[serde(default, skip_serializing_if = "BenchMode::is_train")]
    pub mode: BenchMode,
    /// On a GPU: the most device memory the process's tensors held at once (the model, the
    /// batch, activations, gradients), as PyTorch's `torch.cuda.max_memory_allocated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_device_mib: Option<f64>,
    /// The input side where it is not the net's own (see [`TrainBench::resolution`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
}

/// Runs `bench`, calling `on_step` with each timed step's seconds (for a progress display).
pub fn train(bench: &TrainBench, on_step: impl FnMut(f64)) -> Result<TrainReport, Error> {
    if bench.batch == 0 || bench.steps == 0 {
        return Err(Error::invalid("batch, steps", "must be positive"));
    }
    let spec = bench.model;
    let device = bench.device.open()?;
    let mut model = nets::Model::new(spec, 0, &device)?;
    model.net.set_kernels(bench.kernels);
    let side = bench.resolution.unwrap_or(spec.default_input_size());
    if side == 0 {
        return Err(Error::invalid("resolution", "must be positive"));
    }
    let images = Tensor::randn(0f32, 1.0, (bench.batch, 3, side, side), &device)?;
    let labels: Vec<u32> = (0..bench.batch as u32)
        .map(|i| i % spec.num_classes as u32)
        .collect();
    let labels = Tensor::new(labels, &device)?;
    let throughput = match bench.mode {
        BenchMode::Train => {
            let mut sgd = Sgd::new(nets::weights::trainable(&model.vars), Default::default())?;
            crate::step::time_steps(
                &model.net,
                &mut sgd,
                (&images, &labels),
                (bench.warmup, bench.steps),
                on_step,
            )?
        }
        BenchMode::Inference => {
            crate::step::time_repeated(&images, (bench.warmup, bench.steps), on_step, || {
                model.net.forward_t(&images, false).map(drop)
            })?
        }
    };
    let peak_device_mib = kernels::memory_pool::pool_memory(&device)?
        .map(|m| m.used_peak as f64 / kernels::memory_pool::PoolMemory::MIB);
    Ok(TrainReport {
        model: spec.to_string(),
        batch: bench.batch,
        device: bench.device.to_string(),
        kernels: bench.kernels.to_string(),
        threads: threads(),
        images_per_s: throughput.median,
        images_per_s_min: throughput.min,
        images_per_s_max: throughput.max,
        steps: throughput.steps,
        peak_rss_mib: peak_rss_mib(),
        mode: bench.mode,
        peak_device_mib,
        resolution: bench
            .resolution
            .filter(|&side| side != spec.default_input_size()),
    })
}

/// The ops of one activation shape (batch x channels x size x size) and one conv.
#[derive(Debug, Clone)]
pub struct OpBench {
    pub batch: usize,
    /// Channels of the activations (the conv's input).
    pub channels: usize,
    /// The conv's output channels (the nets' strided convs double them).
    pub out_channels: usize,
    pub size: usize,
    /// The conv's kernel size (padding keeps "same" geometry: `kernel / 2`).
    pub kernel: usize,
    pub stride: usize,
    pub device: DeviceName,
    pub kernels: Kernels,
    /// Timed repetitions per op, after one warm-up.
    pub repeats: usize,
}

/// One op's median time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpTiming {
    pub op: String,
    /// Median milliseconds per run.
    pub ms: f64,
    /// Where the op is a product (convs, sgemm): floating-point operations per second, in 1e9.
    pub gflop_per_s: Option<f64>,
}

impl OpTiming {
    fn new(op: &str, seconds: f64, flops: Option<u64>) -> Self {
        Self {
            op: op.into(),
            ms: seconds * 1e3,
            gflop_per_s: flops.map(|f| f as f64 / seconds / 1e9),
        }
    }
}

/// Timings of every op at one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub batch: usize,
    pub channels: usize,
    pub out_channels: usize,
    pub size: usize,
    pub kernel: usize,
    pub stride: usize,
    pub device: String,
    pub kernels: String,
    pub threads: usize,
    pub ops: Vec<OpTiming>,
}

/// Times a 3x3 conv's forward, input gradient and weight gradient (through candle's autograd, and
/// with the fast kernels each pass alone), batch norm forward+backward, ReLU, the 3x3/2 max pool,
/// and a 1024 sgemm for reference.
pub fn ops(bench: &OpBench) -> Result<OpReport, Error> {
    let (n, c, s, c_out) = (bench.batch, bench.channels, bench.size, bench.out_channels);
    if n == 0 || c == 0 || c_out == 0 || s == 0 || bench.kernel == 0 || bench.stride == 0 {
        return Err(Error::invalid(
            "batch, channels, out_channels, size, kernel, stride",
            "must be positive",
        ));
    }
    let dev = bench.device.open()?;
    let (kernel, stride, padding, r) =
        (bench.kernel, bench.stride, bench.kernel / 2, bench.repeats);
    let x = Tensor::randn(0f32, 1.0, (n, c, s, s), &dev)?;
    let w = Tensor::randn(0f32, 0.1, (c_out, c, kernel, kernel), &dev)?;
    let mut conv = Conv2d::from_weight(w.clone(), stride, padding);
    conv.kernels = bench.kernels;
    let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), stride, padding)?;
    let flops = Some(geometry.flops());
    let mut timings = Vec::new();

    let forward = median_seconds(&dev, r, || conv.forward(&x).map(drop))?;
    timings.push(OpTiming::new("conv forward", forward, flops));
    // One gradient at a time: the other argument is a constant, so its gradient is not computed.
    let xv = Var::from_tensor(&x)?;
    let both = median_seconds(&dev, r, || {
        conv.forward(xv.as_tensor())?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    timings.push(OpTiming::new("conv input gradient", both - forward, flops));
    let wv = Var::from_tensor(&w)?;
    let mut wconv = Conv2d::from_weight(wv.as_tensor().clone(), stride, padding);
    wconv.kernels = bench.kernels;
    let both = median_seconds(&dev, r, || {
        wconv.forward(&x)?.sum_all()?.backward().map(drop)
    })?;
    timings.push(OpTiming::new("conv weight gradient", both - forward, flops));

    if bench.kernels == Kernels::Fast {
        // Each pass alone, outside candle's autograd: the rows above include the reduction, the
        // broadcast and the zero-tensor accumulation around the op, these do not. On the CPU the
        // passes run on plain slices, on a GPU on device tensors.
        let dy = Tensor::randn(0f32, 1.0, geometry.output_shape().to_vec(), &dev)?;
        let passes = if dev.is_cpu() {
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
            [
                median_seconds(&dev, r, || {
                    kernels::conv2d(&x, &w, padding, stride).map(drop)
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
        for (op, seconds) in names.into_iter().zip(passes) {
            timings.push(OpTiming::new(op, seconds, flops));
        }
    }

    let vars = VarMap::new();
    let mut bn = BatchNorm::new(c, VarBuilder::from_varmap(&vars, DType::F32, &dev))?;
    bn.kernels = bench.kernels;
    let seconds = median_seconds(&dev, r, || {
        bn.forward_train(xv.as_tensor(), false)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    timings.push(OpTiming::new("batch norm forward+backward", seconds, None));
    let seconds = median_seconds(&dev, r, || {
        nets::layers::relu(xv.as_tensor(), bench.kernels)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    timings.push(OpTiming::new("relu forward+backward", seconds, None));
    let seconds = median_seconds(&dev, r, || {
        nets::layers::max_pool2d(xv.as_tensor(), (3, 2, 1), bench.kernels)?
            .sum_all()?
            .backward()
            .map(drop)
    })?;
    timings.push(OpTiming::new(
        "max pool 3x3/2 forward+backward",
        seconds,
        None,
    ));
    // The forward alone, on a tensor that tracks its gradient: the indices of the maxima that the
    // backward needs are part of it, as in training.
    let seconds = median_seconds(&dev, r, || {
        nets::layers::max_pool2d(xv.as_tensor(), (3, 2, 1), bench.kernels).map(drop)
    })?;
    timings.push(OpTiming::new("max pool 3x3/2 forward", seconds, None));
    let side = 1024;
    let a = Tensor::randn(0f32, 1.0, (side, side), &dev)?;
    let seconds = median_seconds(&dev, r, || a.matmul(&a).map(drop))?;
    let sgemm_flops = 2 * (side as u64).pow(3);
    timings.push(OpTiming::new(
        "sgemm 1024 (reference)",
        seconds,
        Some(sgemm_flops),
    ));

    Ok(OpReport {
        batch: n,
        channels: c,
        out_channels: c_out,
        size: s,
        kernel,
        stride,
        device: bench.device.to_string(),
        kernels: bench.kernels.to_string(),
        threads: threads(),
        ops: timings,
    })
}

/// Median seconds of `repeats` runs of `f` (at least one), after one warm-up run; each run waits
/// for `device` to finish its work.
pub fn median_seconds(
    device: &Device,
    repeats: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The process's peak resident memory so far (Linux `VmHWM`), in MiB; `None` elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The threads the CPU kernels may use.
/// How fast the ImageNet training pipeline turns files into batches.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataReport {
    /// The images timed (the first of the folder, in file order).
    pub images: usize,
    /// Their mean size in pixels (width x height).
    pub mean_pixels: f64,
    /// The training crop's side.
    pub crop: u32,
    /// Decoding alone, one thread.
    pub decode_per_s_1_thread: f64,
    /// Decode, scale augmentation, crop, flip, colour and normalisation, one thread.
    pub pipeline_per_s_1_thread: f64,
    /// The loader's batches (the same work, plus batching into a tensor) on `threads` threads.
    pub pipeline_per_s_all_threads: f64,
    pub threads: usize,
}

/// Times the training pipeline of `folder` at crop `crop` (the paper's 224, or a run's
/// resolution) on its first `images` images: decoding alone and the whole transform on one thread,
/// then the loader's batches of `batch` on every core.
pub fn data(
    folder: &datasets::ImageFolder,
    crop: u32,
    images: usize,
    batch: usize,
) -> Result<DataReport, Error> {
    use std::sync::Arc;

    use datasets::{FolderDataset, Loader, LoaderConfig, Position, Transform};
    use rand::SeedableRng;

    let n = images.min(folder.len());
    if n == 0 || batch == 0 {
        return Err(Error::invalid("images, batch", "must be positive"));
    }
    let sample = datasets::ImageFolder {
        samples: folder.samples[..n].to_vec(),
        ..folder.clone()
    };
    let transform = Transform::train_at(crop);
    // Warm the page cache, so that every pass reads from memory, as a training epoch mostly does.
    let mut pixels = 0f64;
    for (path, _) in &sample.samples {
        let (w, h) = datasets::folder::decode(path)?.dimensions();
        pixels += (w * h) as f64;
    }
    let start = Instant::now();
    for (path, _) in &sample.samples {
        std::hint::black_box(datasets::folder::decode(path)?);
    }
    let decode = n as f64 / start.elapsed().as_secs_f64();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut out = vec![0f32; 3 * (crop * crop) as usize];
    let start = Instant::now();
    for (path, _) in &sample.samples {
        let img = datasets::folder::decode(path)?;
        transform
            .apply(&img, &mut rng, &mut out)
            .map_err(|msg| datasets::Error::Corrupt {
                path: path.clone(),
                msg,
            })?;
        std::hint::black_box(&out);
    }
    let pipeline = n as f64 / start.elapsed().as_secs_f64();

    let threads = threads();
    let batch = batch.min(n);
    let loader = Loader::new(
        Arc::new(FolderDataset {
            folder: sample,
            transform,
        }),
        LoaderConfig {
            batch_size: batch,
            shuffle: false,
            threads: Some(threads),
            ..Default::default()
        },
        &candle_core::Device::Cpu,
    )?;
    let batches = loader.batches_per_epoch();
    let start = Instant::now();
    for b in 0..batches {
        std::hint::black_box(loader.batch(Position { epoch: 0, batch: b })?);
    }
    let all = (batches as usize * batch) as f64 / start.elapsed().as_secs_f64();
    Ok(DataReport {
        images: n,
        mean_pixels: pixels / n as f64,
        crop,
        decode_per_s_1_thread: decode,
        pipeline_per_s_1_thread: pipeline,
        pipeline_per_s_all_threads: all,
        threads,
    })
}

pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_training_bench_reports_what_it_ran() {
        let bench = TrainBench {
            model: "resnet20".parse().unwrap(),
            batch: 4,
            device: DeviceName::Cpu,
            kernels: Kernels::Fast,
            warmup: 1,
            steps: 2,
            mode: BenchMode::Train,
            resolution: None,
        };
        let mut seen = 0;
        let report = train(&bench, |_| seen += 1).unwrap();
        assert_eq!(seen, 2, "the timed steps");
        assert_eq!(
            (report.model.as_str(), report.batch, report.steps),
            ("resnet20", 4, 2)
        );
        assert!(report.images_per_s_min <= report.images_per_s);
        assert!(report.images_per_s <= report.images_per_s_max);
        assert!(report.images_per_s > 0.0);
        assert_eq!(report.peak_device_mib, None, "no device pool on the CPU");
        // Reports of training leave the mode out, so older reports read the same.
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            !json.contains(r#""mode""#) && !json.contains("peak_device"),
            "{json}"
        );
        let inference = TrainBench {
            mode: BenchMode::Inference,
            ..bench.clone()
        };
        let mut seen = 0;
        let report = train(&inference, |_| seen += 1).unwrap();
        assert_eq!((seen, report.mode), (2, BenchMode::Inference));
        assert!(report.images_per_s > 0.0);
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""mode":"inference""#), "{json}");
        let back: TrainReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        // An ImageNet net at a run's smaller crop says so; at its own side it says nothing.
        let small = TrainBench {
            model: "resnet18".parse().unwrap(),
            batch: 2,
            resolution: Some(64),
            ..bench.clone()
        };
        let report = train(&small, |_| {}).unwrap();
        assert_eq!(report.resolution, Some(64));
        assert!(
            serde_json::to_string(&report)
                .unwrap()
                .contains(r#""resolution":64"#)
        );
        let own = TrainBench {
            resolution: Some(32),
            ..bench.clone()
        };
        assert_eq!(train(&own, |_| {}).unwrap().resolution, None);
        let zero = TrainBench { steps: 0, ..bench };
        assert!(
            train(&zero, |_| {})
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
    }

    #[test]
    fn op_timings_cover_every_op_and_convert_units() {
        let report = ops(&OpBench {
            batch: 2,
            channels: 4,
            out_channels: 8,
            size: 8,
            kernel: 3,
            stride: 2,
            device: DeviceName::Cpu,
            kernels: Kernels::Fast,
            repeats: 1,
        })
        .unwrap();
        let names: Vec<&str> = report.ops.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(names.len(), 11, "{names:?}");
        assert!(names.contains(&"conv weight gradient, pass alone"));
        let sgemm = report.ops.last().unwrap();
        assert!(sgemm.ms > 0.0 && sgemm.gflop_per_s.unwrap() > 0.0);
        // GFLOP/s and milliseconds describe the same time.
        let flops = 2.0 * 1024f64.powi(3);
        let implied = flops / (sgemm.ms / 1e3) / 1e9;
        assert!((implied - sgemm.gflop_per_s.unwrap()).abs() < 1e-6 * implied);
        assert!(report.ops.iter().all(|o| o.ms.is_finite()));
    }

    #[test]
    fn the_median_of_runs() {
        let mut calls = 0;
        let median = median_seconds(&Device::Cpu, 3, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 4, "one warm-up and three timed runs");
        assert!(median >= 0.0);
    }
}
