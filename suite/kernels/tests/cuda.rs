//! The conv on CUDA (cuDNN's forward, backward data and backward filter) and cuDNN's batch norm
//! against the CPU kernels, which the gradient tests check against candle's stock ops. Built only
//! with the `cuda` feature, and run on a machine with a GPU (`ci/cuda-check.sh`); there every test
//! here must find GPU 0.
#![cfg(feature = "cuda")]

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::rel_diff;

fn gpu() -> Device {
    Device::new_cuda(0).expect("the `cuda` feature's tests need CUDA GPU 0")
}

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Output and both gradients of `sum(conv2d(x, w) * probe)`, on the device the inputs are on.
fn conv_and_grads(x: &Tensor, w: &Tensor, probe: &Tensor, s: usize, p: usize) -> [Tensor; 3] {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let y = kernels::conv2d(xv.as_tensor(), wv.as_tensor(), p, s).unwrap();
    let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads.get(xv.as_tensor()).expect("dx").clone();
    let dw = grads.get(wv.as_tensor()).expect("dw").clone();
    [y, dx, dw]
}

// cuDNN may run fp32 convs in TF32 (10-bit mantissa) on Ampere and later, as PyTorch does by
// default: errors of a few 1e-4 of the largest value. A wrong layout or stride is off by O(1).
const TOLERANCE: f32 = 3e-3;

#[test]
fn cudnn_conv_matches_the_cpu_kernels_in_all_three_passes() {
    let gpu = gpu();
    assert!(kernels::conv2d_runs_on(&gpu));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // (batch, c_in, h, w, c_out, kernel, stride, padding): the nets' shapes and odd ones.
    let cases = [
        (1, 3, 8, 8, 4, 3, 1, 1),
        (3, 5, 7, 9, 6, 3, 1, 1),
        (5, 4, 9, 9, 8, 3, 2, 1),
        (2, 6, 6, 6, 3, 1, 1, 0),
        (3, 6, 7, 7, 5, 1, 2, 0),
        (2, 3, 15, 13, 4, 7, 2, 3),
        (1, 2, 5, 5, 3, 3, 1, 0),
        (4, 2, 4, 4, 2, 3, 3, 2),
        (16, 16, 32, 32, 16, 3, 1, 1),
        (16, 16, 32, 32, 32, 3, 2, 1),
        (16, 32, 16, 16, 64, 1, 2, 0),
        (8, 64, 8, 8, 64, 3, 1, 1),
        (2, 3, 64, 64, 64, 7, 2, 3),
        (2, 256, 14, 14, 64, 1, 1, 0),
    ];
    for (n, c, h, w, o, k, s, p) in cases {
        let x = random(&[n, c, h, w], &mut rng);
        let weight = random(&[o, c, k, k], &mut rng);
        let probe = random(x.conv2d(&weight, p, s, 1, 1).unwrap().dims(), &mut rng);
        let cpu = conv_and_grads(&x, &weight, &probe, s, p);
        let on_gpu = |t: &Tensor| t.to_device(&gpu).unwrap();
        let cuda = conv_and_grads(&on_gpu(&x), &on_gpu(&weight), &on_gpu(&probe), s, p);
        let case = format!("n{n} c{c} {h}x{w} -> {o} k{k} s{s} p{p}");
        for ((name, got), want) in ["y", "dx", "dw"].iter().zip(&cuda).zip(&cpu) {
            assert!(got.device().is_cuda(), "{case}: {name} left the GPU");
            let diff = rel_diff(got, want);
            assert!(diff < TOLERANCE, "{case}: {name} differs by {diff:.2e}");
        }
    }
}

#[test]
fn cudnn_gradient_ops_run_alone_and_take_strided_inputs() {
    let gpu = gpu();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = random(&[4, 8, 12, 12], &mut rng);
    let w = random(&[16, 8, 3, 3], &mut rng);
    let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), 2, 1).unwrap();
    let dy = random(&geometry.output_shape(), &mut rng);
    let want_dx = kernels::conv2d_input_grad(&w, &dy, &geometry).unwrap();
    let want_dw = kernels::conv2d_weight_grad(&x, &dy, &geometry).unwrap();
    // The same values behind a transposed view: the ops make their inputs contiguous.
    let strided = |t: &Tensor| {
        t.to_device(&gpu)
            .unwrap()
            .transpose(2, 3)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(2, 3)
            .unwrap()
    };
    let dx = kernels::conv2d_input_grad(&strided(&w), &strided(&dy), &geometry).unwrap();
    let dw = kernels::conv2d_weight_grad(&strided(&x), &strided(&dy), &geometry).unwrap();
    assert!(rel_diff(&dx, &want_dx) < TOLERANCE);
    assert!(rel_diff(&dw, &want_dw) < TOLERANCE);
    let wrong = dy.narrow(3, 0, 5).unwrap().to_device(&gpu).unwrap();
    let err = kernels::conv2d_input_grad(&w.to_device(&gpu).unwrap(), &wrong, &geometry)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[4, 16, 6, 5]"), "{err}");
}

#[test]
fn cudnn_conv_skips_the_input_gradient_of_a_constant_input() {
    let gpu = gpu();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let x = random(&[2, 3, 6, 6], &mut rng).to_device(&gpu).unwrap();
    let w = Var::from_tensor(&random(&[4, 3, 3, 3], &mut rng).to_device(&gpu).unwrap()).unwrap();
    let grads = kernels::conv2d(&x, &w, 1, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&x).is_none());
    assert_eq!(grads.get(&w).expect("dw").dims(), &[4, 3, 3, 3]);
}

#[test]
fn cudnn_batch_norm_matches_the_cpu_kernel_with_its_statistics_and_gradients() {
    let gpu = gpu();
    assert!(kernels::batch_norm_cuda_runs_on(&gpu));
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for (n, c, h, w) in [
        (2, 3, 4, 5),
        (1, 16, 8, 8),
        (128, 16, 32, 32),
        (7, 64, 8, 8),
    ] {
        // An offset mean, as after a conv: the variance must not cancel away.
        let x = random(&[n, c, h, w], &mut rng).affine(3.0, 0.5).unwrap();
        let gamma = random(&[c], &mut rng);
        let beta = random(&[c], &mut rng);
        let probe = random(&[n, c, h, w], &mut rng);
        let run = |x: &Tensor, gamma: &Tensor, beta: &Tensor, probe: &Tensor, cuda: bool| {
            let vars = [x, gamma, beta].map(|t| Var::from_tensor(t).unwrap());
            let [xv, gv, bv] = vars.each_ref().map(|v| v.as_tensor());
            let (y, mean, var) = if cuda {
                kernels::batch_norm_train_cuda(xv, gv, bv, 1e-5).unwrap()
            } else {
                let (y, stats) = kernels::batch_norm_train(xv, gv, bv, 1e-5, false).unwrap();
                let tensor = |v: Vec<f32>| Tensor::new(v, &Device::Cpu).unwrap();
                (y, tensor(stats.mean.clone()), tensor(stats.unbiased_var()))
            };
            let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
            let grad = |v: &Tensor| grads.get(v).expect("gradient").clone();
            [y, mean, var, grad(xv), grad(gv), grad(bv)]
        };
        let cpu = run(&x, &gamma, &beta, &probe, false);
        let on_gpu = |t: &Tensor| t.to_device(&gpu).unwrap();
        let cuda = run(
            &on_gpu(&x),
            &on_gpu(&gamma),
            &on_gpu(&beta),
            &on_gpu(&probe),
            true,
        );
        let case = format!("{n}x{c}x{h}x{w}");
        let names = ["y", "mean", "unbiased var", "dx", "dgamma", "dbeta"];
        for ((name, got), want) in names.iter().zip(&cuda).zip(&cpu) {
            assert!(got.device().is_cuda(), "{case}: {name} left the GPU");
            let diff = rel_diff(got, want);
            assert!(diff < 1e-4, "{case}: {name} differs by {diff:.2e}");
        }
    }
}

#[test]
fn cudnn_batch_norm_names_bad_inputs() {
    let gpu = gpu();
    let x = Tensor::zeros((4, 3, 2, 2), candle_core::DType::F32, &gpu).unwrap();
    let (gamma, beta) = (
        Tensor::ones(2, candle_core::DType::F32, &gpu).unwrap(),
        Tensor::zeros(2, candle_core::DType::F32, &gpu).unwrap(),
    );
    let err = kernels::batch_norm_train_cuda(&x, &gamma, &beta, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 channels but 2 scales"), "{err}");
    let cpu = Tensor::zeros((4, 2, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = kernels::batch_norm_train_cuda(&cpu, &gamma, &beta, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CUDA device"), "{err}");
}
