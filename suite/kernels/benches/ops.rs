//! The fast kernels at the nets' real shapes: CIFAR (batch 128; 16, 32, 64 channels at 32, 16, 8 px)
//! and ResNet-50 on ImageNet (batch 16), with the GEMM conv path beside the direct one at the CIFAR
//! shapes and candle's stock ops at one, a run of fused basic blocks beside the same blocks built
//! from the separate kernels, and the stem's max pool and option A's shortcut.
//!
//! `cargo bench -p kernels --bench ops`; `suite bench op` prints the same passes with GFLOP/s.

use candle_core::{Device, Tensor, Var};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

// As in the `suite` binary: activations on a cache line.
#[global_allocator]
static ALLOCATOR: kernels::LineAligned = kernels::LineAligned;

fn random(shape: &[usize], scale: f32) -> Tensor {
    Tensor::randn(0f32, scale, shape, &Device::Cpu).unwrap()
}

/// (name, batch, c_in, c_out, size, kernel, stride)
const CONVS: [(&str, usize, usize, usize, usize, usize, usize); 9] = [
    ("cifar-16x32", 128, 16, 16, 32, 3, 1),
    ("cifar-32x16", 128, 32, 32, 16, 3, 1),
    ("cifar-64x8", 128, 64, 64, 8, 3, 1),
    ("cifar-16to32-s2", 128, 16, 32, 32, 3, 2),
    ("r50-stem-7x7-s2", 16, 3, 64, 224, 7, 2),
    ("r50-64x56", 16, 64, 64, 56, 3, 1),
    ("r50-256to64-1x1", 16, 256, 64, 56, 1, 1),
    ("r50-256x14", 16, 256, 256, 14, 3, 1),
    ("r50-512x7", 16, 512, 512, 7, 3, 1),
];

fn conv(c: &mut Criterion) {
    kernels::keep_freed_memory();
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for (name, n, c_in, c_out, size, k, s) in CONVS {
        let x = Var::from_tensor(&random(&[n, c_in, size, size], 1.0)).unwrap();
        let w = Var::from_tensor(&random(&[c_out, c_in, k, k], 0.1)).unwrap();
        let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), s, k / 2).unwrap();
        group.throughput(Throughput::Elements(geometry.flops()));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| kernels::conv2d(&x, &w, k / 2, s).unwrap())
        });
        // Forward and both gradients: three passes of `flops` each.
        group.throughput(Throughput::Elements(3 * geometry.flops()));
        group.bench_function(BenchmarkId::new("forward+backward", name), |b| {
            b.iter(|| {
                let y = kernels::conv2d(&x, &w, k / 2, s).unwrap();
                y.backward().unwrap()
            })
        });
        if name.starts_with("cifar") {
            // The GEMM path at the shapes the direct path takes by default, for comparison.
            group.bench_function(BenchmarkId::new("gemm forward+backward", name), |b| {
                b.iter(|| {
                    let y = kernels::conv2d_with(&x, &w, k / 2, s, kernels::ConvAlgorithm::Gemm);
                    y.unwrap().backward().unwrap()
                })
            });
        }
        if name == "cifar-16x32" {
            group.bench_function(BenchmarkId::new("stock forward+backward", name), |b| {
                b.iter(|| x.conv2d(&w, k / 2, s, 1, 1).unwrap().backward().unwrap())
            });
        }
    }
    group.finish();
}

fn batch_norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch-norm-relu");
    group.sample_size(10);
    for (name, n, ch, size) in [
        ("cifar-16x32", 128, 16, 32),
        ("cifar-64x8", 128, 64, 8),
        ("r50-256x56", 16, 256, 56),
    ] {
        let x = Var::from_tensor(&random(&[n, ch, size, size], 1.0)).unwrap();
        let gamma = Var::from_tensor(&random(&[ch], 1.0)).unwrap();
        let beta = Var::from_tensor(&random(&[ch], 1.0)).unwrap();
        group.throughput(Throughput::Elements(x.elem_count() as u64));
        group.bench_function(BenchmarkId::new("forward+backward", name), |b| {
            b.iter(|| {
                let (y, _) = kernels::batch_norm_train(&x, &gamma, &beta, 1e-5, true).unwrap();
                y.backward().unwrap()
            })
        });
    }
    group.finish();
}

/// A CIFAR stage's run of three identity blocks (16 channels, 32x32, batch 128), forward and
/// backward: one fused op, and the same blocks from the separate kernels.
fn basic_blocks(c: &mut Criterion) {
    kernels::keep_freed_memory();
    let mut group = c.benchmark_group("basic-blocks");
    group.sample_size(10);
    let (n, ch, size) = (128, 16, 32);
    let x = Var::from_tensor(&random(&[n, ch, size, size], 1.0)).unwrap();
    let params: Vec<Var> = (0..3)
        .flat_map(|_| {
            [
                random(&[ch, ch, 3, 3], 0.1),
                random(&[ch], 1.0),
                random(&[ch], 1.0),
                random(&[ch, ch, 3, 3], 0.1),
                random(&[ch], 1.0),
                random(&[ch], 1.0),
            ]
        })
        .map(|t| Var::from_tensor(&t).unwrap())
        .collect();
    let blocks: Vec<kernels::BasicBlock> = params
        .chunks(6)
        .map(|p| kernels::BasicBlock {
            params: kernels::BasicBlockParams {
                conv1: &p[0],
                bn1: (&p[1], &p[2]),
                conv2: &p[3],
                bn2: (&p[4], &p[5]),
            },
            stride: 1,
            shortcut: kernels::BlockShortcut::Identity,
        })
        .collect();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(
        BenchmarkId::new("fused forward+backward", "cifar-16x32-x3"),
        |b| {
            b.iter(|| {
                let (y, _) = kernels::basic_blocks_train(&x, &blocks, 1e-5).unwrap();
                y.backward().unwrap()
            })
        },
    );
    group.bench_function(
        BenchmarkId::new("separate forward+backward", "cifar-16x32-x3"),
        |b| {
            b.iter(|| {
                let mut y = x.as_tensor().clone();
                for p in params.chunks(6) {
                    let c1 = kernels::conv2d(&y, &p[0], 1, 1).unwrap();
                    let (h, _) = kernels::batch_norm_train(&c1, &p[1], &p[2], 1e-5, true).unwrap();
                    let c2 = kernels::conv2d(&h, &p[3], 1, 1).unwrap();
                    y = kernels::batch_norm_add_relu(&c2, &p[4], &p[5], &y, 1e-5)
                        .unwrap()
                        .0;
                }
                y.backward().unwrap()
            })
        },
    );
    group.finish();
}

/// ResNet-50's stem max pool (3x3/2 over 64 channels at 112x112, batch 16) and a CIFAR net's
/// option-A shortcut (16 to 32 channels, 32x32 to 16x16, batch 128).
fn pooling(c: &mut Criterion) {
    kernels::keep_freed_memory();
    let mut group = c.benchmark_group("pooling");
    group.sample_size(10);
    let x = Var::from_tensor(&random(&[16, 64, 112, 112], 1.0)).unwrap();
    group.throughput(Throughput::Elements(x.elem_count() as u64));
    // On a tracked input, so the forward records the maxima's indices as in training.
    group.bench_function(BenchmarkId::new("max-pool forward", "r50-stem"), |b| {
        b.iter(|| kernels::max_pool2d(&x, 3, 2, 1).unwrap())
    });
    group.bench_function(
        BenchmarkId::new("max-pool forward+backward", "r50-stem"),
        |b| {
            b.iter(|| {
                kernels::max_pool2d(&x, 3, 2, 1)
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        },
    );
    let x = Var::from_tensor(&random(&[128, 16, 32, 32], 1.0)).unwrap();
    group.throughput(Throughput::Elements(x.elem_count() as u64));
    group.bench_function(
        BenchmarkId::new("option-A forward+backward", "cifar-16to32"),
        |b| {
            b.iter(|| {
                kernels::subsample_pad(&x, 2, 16)
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, conv, batch_norm, basic_blocks, pooling);
criterion_main!(benches);
