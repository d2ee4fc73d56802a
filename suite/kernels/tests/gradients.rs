//! The fast kernels against candle's stock ops: outputs and every gradient, over random shapes,
//! strides, paddings and batch sizes (1 and odd ones included), plus finite differences for batch
//! norm's fused backward.

use candle_core::{Device, IndexOp, Result, Tensor, Var};
use kernels::ConvAlgorithm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::rel_diff;

fn random(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Runs `f` on fresh variables, backpropagates `sum(f(...) * probe)`, returns the output and gradients.
fn output_and_grads(
    inputs: &[&Tensor],
    probe: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors).unwrap();
    let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = tensors
        .iter()
        .map(|t| grads.get(t).expect("gradient").clone())
        .collect();
    (y, grads)
}

#[test]
fn conv2d_matches_stock_forward_and_both_gradients() {
    conv2d_matches_stock(ConvAlgorithm::Auto);
}

#[test]
fn conv2d_by_gemm_matches_stock_forward_and_both_gradients() {
    conv2d_matches_stock(ConvAlgorithm::Gemm);
}

/// The direct path's AVX2 kernels, on a CPU that would otherwise pick AVX-512: the test above
/// rerun in a child process with the instruction set capped.
#[test]
fn conv2d_with_avx2_kernels_matches_stock() {
    let test = "conv2d_matches_stock_forward_and_both_gradients";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads", "1"])
        .env(kernels::MAX_ISA_VAR, "avx2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} with {}=avx2:\n{stdout}{}",
        kernels::MAX_ISA_VAR,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the CPU has AVX2 or AVX-512, `Auto` takes the direct path for every stride-1 case with a
/// spatial kernel below and for the strided 3x3 cases whose input is a whole multiple of the
/// output, so the two tests between them check both paths on the same shapes.
fn conv2d_matches_stock(algorithm: ConvAlgorithm) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // (batch, c_in, h, w, c_out, kernel, stride, padding)
    let cases = [
        (1, 3, 8, 8, 4, 3, 1, 1),
        (3, 5, 7, 9, 6, 3, 1, 1),
        (5, 4, 9, 9, 8, 3, 2, 1),
        (2, 6, 6, 6, 3, 1, 1, 0),
        (3, 6, 7, 7, 5, 1, 2, 0),
        (2, 3, 15, 13, 4, 7, 2, 3),
        (1, 2, 5, 5, 3, 3, 1, 0),
        (7, 16, 8, 8, 16, 3, 1, 1),
        (4, 2, 4, 4, 2, 3, 3, 2),
        (16, 16, 16, 16, 32, 3, 2, 1),
        (16, 32, 16, 16, 64, 1, 2, 0),
        (6, 8, 32, 32, 8, 3, 1, 1),
        (2, 3, 11, 10, 4, 5, 1, 2),
        (3, 4, 6, 6, 3, 3, 1, 2),
        (1, 20, 7, 7, 9, 3, 1, 1),
        (3, 64, 8, 8, 64, 3, 1, 1),
        (2, 3, 32, 32, 16, 3, 1, 1),
        (3, 5, 10, 6, 7, 3, 2, 1),
        (2, 4, 12, 12, 6, 3, 3, 1),
        (2, 16, 32, 32, 32, 3, 2, 1),
        (3, 32, 16, 16, 64, 3, 2, 1),
        (1, 3, 8, 8, 2, 3, 2, 2),
        (2, 4, 9, 12, 5, 3, 3, 0),
        // Rows wider than one 32-value split step, whole and with a short remainder.
        (2, 3, 8, 48, 5, 3, 2, 1),
        (1, 2, 6, 70, 3, 3, 2, 1),
        // Runs of more than four images per task, whose weight gradient packs its planes.
        (40, 16, 8, 8, 16, 3, 1, 1),
        (24, 8, 16, 16, 12, 3, 2, 1),
    ];
    for (n, c, h, w, o, k, s, p) in cases {
        let x = random(&[n, c, h, w], &mut rng);
        let weight = random(&[o, c, k, k], &mut rng);
        let stock_y = x.conv2d(&weight, p, s, 1, 1).unwrap();
        let probe = random(stock_y.dims(), &mut rng);
        let (y, g) = output_and_grads(&[&x, &weight], &probe, |t| {
            kernels::conv2d_with(&t[0], &t[1], p, s, algorithm)
        });
        let (sy, sg) = output_and_grads(&[&x, &weight], &probe, |t| t[0].conv2d(&t[1], p, s, 1, 1));
        let case = format!("{algorithm:?}: n{n} c{c} {h}x{w} -> {o} k{k} s{s} p{p}");
        assert!(
            rel_diff(&y, &sy) < 1e-5,
            "{case}: output {}",
            rel_diff(&y, &sy)
        );
        assert!(
            rel_diff(&g[0], &sg[0]) < 1e-5,
            "{case}: dx {}",
            rel_diff(&g[0], &sg[0])
        );
        assert!(
            rel_diff(&g[1], &sg[1]) < 1e-5,
            "{case}: dw {}",
            rel_diff(&g[1], &sg[1])
        );
    }
}

#[test]
fn conv_passes_alone_match_the_op_and_check_their_slices() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for (n, c, size, o, k, s, p) in [
        (3, 8, 16, 8, 3, 1, 1),
        (2, 16, 16, 32, 3, 2, 1),
        (2, 4, 9, 6, 3, 2, 1),
    ] {
        let x = random(&[n, c, size, size], &mut rng);
        let w = random(&[o, c, k, k], &mut rng);
        let probe = random(x.conv2d(&w, p, s, 1, 1).unwrap().dims(), &mut rng);
        let (y, g) = output_and_grads(&[&x, &w], &probe, |t| kernels::conv2d(&t[0], &t[1], p, s));
        let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), s, p).unwrap();
        let passes = kernels::ConvPasses {
            geometry,
            algorithm: ConvAlgorithm::Auto,
        };
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (xs, ws, dys) = (flat(&x), flat(&w), flat(&probe));
        let case = format!("n{n} c{c} {size}x{size} -> {o} k{k} s{s} p{p}");
        assert_eq!(passes.forward(&xs, &ws).unwrap(), flat(&y), "{case}: y");
        assert_eq!(
            passes.input_grad(&ws, &dys).unwrap(),
            flat(&g[0]),
            "{case}: dx"
        );
        assert_eq!(
            passes.weight_grad(&xs, &dys).unwrap(),
            flat(&g[1]),
            "{case}: dw"
        );
        let err = passes.forward(&xs[1..], &ws).unwrap_err().to_string();
        assert!(err.contains("the input holds"), "{err}");
    }
}

/// The gradient ops a device backend computes `conv2d`'s backward pass with, run on their own.
#[test]
fn conv_gradient_ops_match_autograd_and_name_bad_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (n, c, size, o, k, s, p) in [
        (1, 3, 8, 4, 3, 1, 1),
        (3, 16, 16, 32, 3, 2, 1),
        (2, 6, 7, 5, 1, 2, 0),
        (2, 3, 13, 4, 7, 2, 3),
    ] {
        let x = random(&[n, c, size, size], &mut rng);
        let w = random(&[o, c, k, k], &mut rng);
        let probe = random(x.conv2d(&w, p, s, 1, 1).unwrap().dims(), &mut rng);
        let (_, g) = output_and_grads(&[&x, &w], &probe, |t| kernels::conv2d(&t[0], &t[1], p, s));
        let geometry = kernels::Conv2dGeometry::new(x.dims(), w.dims(), s, p).unwrap();
        let dx = kernels::conv2d_input_grad(&w, &probe, &geometry).unwrap();
        let dw = kernels::conv2d_weight_grad(&x, &probe, &geometry).unwrap();
        let case = format!("n{n} c{c} {size}x{size} -> {o} k{k} s{s} p{p}");
        assert!(rel_diff(&dx, &g[0]) < 1e-6, "{case}: dx");
        assert!(rel_diff(&dw, &g[1]) < 1e-6, "{case}: dw");
    }
    let geometry = kernels::Conv2dGeometry::new(&[2, 3, 8, 8], &[4, 3, 3, 3], 1, 1).unwrap();
    let (w, dy) = (
        random(&[4, 3, 3, 3], &mut rng),
        random(&[2, 4, 7, 8], &mut rng),
    );
    let err = kernels::conv2d_input_grad(&w, &dy, &geometry)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[2, 4, 8, 8]") && err.contains("[2, 4, 7, 8]"),
        "{err}"
    );
    let x = random(&[2, 3, 8, 9], &mut rng);
    let dy = random(&[2, 4, 8, 8], &mut rng);
    let err = kernels::conv2d_weight_grad(&x, &dy, &geometry)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[2, 3, 8, 8]") && err.contains("[2, 3, 8, 9]"),
        "{err}"
    );
}

#[test]
fn conv2d_runs_on_the_cpu_and_on_cuda_only_with_the_cuda_feature() {
    assert!(kernels::conv2d_runs_on(&Device::Cpu));
    if let Ok(gpu) = Device::new_cuda(0) {
        assert_eq!(kernels::conv2d_runs_on(&gpu), cfg!(feature = "cuda"));
    }
}

#[test]
fn cudnn_batch_norm_refuses_cpu_tensors_and_a_bad_eps() {
    assert!(!kernels::batch_norm_cuda_runs_on(&Device::Cpu));
    let f32 = candle_core::DType::F32;
    let x = Tensor::zeros((4, 2, 2, 2), f32, &Device::Cpu).unwrap();
    let (gamma, beta) = (
        Tensor::ones(2, f32, &Device::Cpu).unwrap(),
        Tensor::zeros(2, f32, &Device::Cpu).unwrap(),
    );
    let err = kernels::batch_norm_train_cuda(&x, &gamma, &beta, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CUDA") || err.contains("`cuda` feature"),
        "{err}"
    );
    let err = kernels::batch_norm_train_cuda(&x, &gamma, &beta, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("eps must be positive"), "{err}");
}

#[test]
fn conv2d_skips_the_input_gradient_of_a_constant_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = random(&[2, 3, 6, 6], &mut rng);
    let w = Var::from_tensor(&random(&[4, 3, 3, 3], &mut rng)).unwrap();
    let y = kernels::conv2d(&x, &w, 1, 1).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    let stock = x
        .conv2d(&w, 1, 1, 1, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(rel_diff(grads.get(&w).unwrap(), stock.get(&w).unwrap()) < 1e-5);
}

#[test]
fn conv2d_rejects_mismatched_shapes_with_the_shapes_named() {
    let x = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = kernels::conv2d(&x, &w, 1, 1).unwrap_err().to_string();
    assert!(
        err.contains("3 channels") && err.contains("[4, 2, 3, 3]"),
        "{err}"
    );
}

/// Batch norm from stock candle ops: batch statistics, biased variance.
fn stock_batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, relu: bool) -> Result<Tensor> {
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    let y = centered
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(&gamma.reshape((1, (), 1, 1))?)?
        .broadcast_add(&beta.reshape((1, (), 1, 1))?)?;
    if relu { y.relu() } else { Ok(y) }
}

#[test]
fn batch_norm_matches_stock_with_and_without_relu() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (n, c, h, w) in [
        (1, 3, 5, 5),
        (4, 16, 8, 8),
        (3, 5, 7, 3),
        (128, 2, 1, 1),
        (2, 3, 1, 9),
    ] {
        // An offset mean and a wide spread, so the statistics are tested away from (0, 1).
        let x = random(&[n, c, h, w], &mut rng).affine(3.0, 20.0).unwrap();
        let gamma = random(&[c], &mut rng);
        let beta = random(&[c], &mut rng);
        let probe = random(&[n, c, h, w], &mut rng);
        for relu in [false, true] {
            let (y, g) = output_and_grads(&[&x, &gamma, &beta], &probe, |t| {
                Ok(kernels::batch_norm_train(&t[0], &t[1], &t[2], 1e-5, relu)?.0)
            });
            let (sy, sg) = output_and_grads(&[&x, &gamma, &beta], &probe, |t| {
                stock_batch_norm(&t[0], &t[1], &t[2], relu)
            });
            let case = format!("{n}x{c}x{h}x{w} relu={relu}");
            assert!(
                rel_diff(&y, &sy) < 1e-5,
                "{case}: output {}",
                rel_diff(&y, &sy)
            );
            for (i, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
                let d = rel_diff(&g[i], &sg[i]);
                assert!(d < 1e-4, "{case}: {name} {d}");
            }
        }
    }
}

#[test]
fn batch_norm_add_relu_matches_stock_in_all_four_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (n, c, h, w) in [(1, 3, 5, 5), (4, 16, 8, 8), (3, 5, 7, 3), (2, 3, 1, 9)] {
        let x = random(&[n, c, h, w], &mut rng).affine(3.0, 20.0).unwrap();
        let gamma = random(&[c], &mut rng);
        let beta = random(&[c], &mut rng);
        let shortcut = random(&[n, c, h, w], &mut rng);
        let probe = random(&[n, c, h, w], &mut rng);
        let inputs = [&x, &gamma, &beta, &shortcut];
        let (z, g) = output_and_grads(&inputs, &probe, |t| {
            Ok(kernels::batch_norm_add_relu(&t[0], &t[1], &t[2], &t[3], 1e-5)?.0)
        });
        let (sz, sg) = output_and_grads(&inputs, &probe, |t| {
            (stock_batch_norm(&t[0], &t[1], &t[2], false)? + &t[3])?.relu()
        });
        let case = format!("{n}x{c}x{h}x{w}");
        assert!(
            rel_diff(&z, &sz) < 1e-5,
            "{case}: output {}",
            rel_diff(&z, &sz)
        );
        for (i, name) in ["dx", "dgamma", "dbeta", "dshortcut"].iter().enumerate() {
            let d = rel_diff(&g[i], &sg[i]);
            assert!(d < 1e-4, "{case}: {name} {d}");
        }
    }
    let x = random(&[2, 3, 4, 4], &mut rng);
    let err = kernels::batch_norm_add_relu(
        &x,
        &x.i((0, .., 0, 0)).unwrap(),
        &x.i((0, .., 0, 0)).unwrap(),
        &x.i(0).unwrap(),
        1e-5,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("shortcut") && err.contains("[3, 4, 4]"),
        "{err}"
    );
}

#[test]
fn batch_norm_statistics_are_the_batch_mean_and_variance() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = random(&[6, 3, 4, 5], &mut rng).affine(2.0, 1000.0).unwrap();
    let ones = Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = ones.zeros_like().unwrap();
    let (_, stats) = kernels::batch_norm_train(&x, &ones, &zeros, 1e-5, false).unwrap();
    assert_eq!(stats.count, 6 * 4 * 5);
    let per_channel = x
        .transpose(0, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (ch, values) in per_channel.iter().enumerate() {
        let m = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
        let v = values.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / values.len() as f64;
        assert!((stats.mean[ch] as f64 - m).abs() < 1e-3, "mean {ch}");
        assert!(
            (stats.var[ch] as f64 - v).abs() / v < 1e-4,
            "var {ch}: {} vs {v}",
            stats.var[ch]
        );
        let unbiased = v * values.len() as f64 / (values.len() as f64 - 1.0);
        assert!((stats.unbiased_var()[ch] as f64 - unbiased).abs() / unbiased < 1e-4);
    }
}

#[test]
fn batch_norm_gradient_agrees_with_finite_differences() {
    // f64 central differences of L = sum(relu(bn(x)) * probe) at a few coordinates of x.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let dims = [3, 2, 3, 3];
    let x = random(&dims, &mut rng);
    let gamma = random(&[2], &mut rng);
    let beta = random(&[2], &mut rng);
    let probe = random(&dims, &mut rng);
    let (_, g) = output_and_grads(&[&x, &gamma, &beta], &probe, |t| {
        Ok(kernels::batch_norm_train(&t[0], &t[1], &t[2], 1e-5, true)?.0)
    });
    let loss = |x: &Tensor| -> f64 {
        let y = stock_batch_norm(
            &x.to_dtype(candle_core::DType::F64).unwrap(),
            &gamma.to_dtype(candle_core::DType::F64).unwrap(),
            &beta.to_dtype(candle_core::DType::F64).unwrap(),
            true,
        )
        .unwrap();
        (y * probe.to_dtype(candle_core::DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let flat = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dx = g[0].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let h = 1e-3;
    for i in [0, 7, 20, 33, 53] {
        let mut plus = flat.clone();
        plus[i] += h;
        let mut minus = flat.clone();
        minus[i] -= h;
        let at = |v: Vec<f32>| Tensor::from_vec(v, &dims, &Device::Cpu).unwrap();
        let numeric = (loss(&at(plus)) - loss(&at(minus))) / (2.0 * h as f64);
        assert!(
            (numeric - dx[i] as f64).abs() < 2e-2 * (1.0 + numeric.abs()),
            "x[{i}]: analytic {} vs numeric {numeric}",
            dx[i]
        );
    }
}

#[test]
fn relu_matches_stock_away_from_zero() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = random(&[3, 5, 7, 2], &mut rng);
    let probe = random(x.dims(), &mut rng);
    let (y, g) = output_and_grads(&[&x], &probe, |t| kernels::relu(&t[0]));
    let (sy, sg) = output_and_grads(&[&x], &probe, |t| t[0].relu());
    assert_eq!(rel_diff(&y, &sy), 0.0);
    assert_eq!(rel_diff(&g[0], &sg[0]), 0.0);
}

#[test]
fn add_relu_matches_stock() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let a = random(&[3, 4, 5, 6], &mut rng);
    let b = random(&[3, 4, 5, 6], &mut rng);
    let probe = random(a.dims(), &mut rng);
    let (y, g) = output_and_grads(&[&a, &b], &probe, |t| kernels::add_relu(&t[0], &t[1]));
    let (sy, sg) = output_and_grads(&[&a, &b], &probe, |t| (&t[0] + &t[1])?.relu());
    assert_eq!(rel_diff(&y, &sy), 0.0);
    assert_eq!(rel_diff(&g[0], &sg[0]), 0.0);
    assert_eq!(rel_diff(&g[1], &sg[1]), 0.0);
    let c = random(&[3, 4, 5, 5], &mut rng);
    let err = kernels::add_relu(&a, &c).unwrap_err().to_string();
    assert!(
        err.contains("[3, 4, 5, 6]") && err.contains("[3, 4, 5, 5]"),
        "{err}"
    );
}

/// Max pooling from stock ops: -inf padding, then the window maximum (a reference for values
/// without ties, where the two gradient conventions agree).
fn stock_max_pool(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let padded = x
        .pad_with_same(2, p, p)?
        .pad_with_same(3, p, p)?
        .affine(1.0, 0.0)?;
    // Replace the copied edge values with -inf so padding never wins.
    let mask: Vec<f32> = (0..(h + 2 * p) * (w + 2 * p))
        .map(|i| {
            let (y, x) = (i / (w + 2 * p), i % (w + 2 * p));
            if y < p || y >= h + p || x < p || x >= w + p {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, h + 2 * p, w + 2 * p), &Device::Cpu)?;
    let padded = padded.broadcast_add(&mask)?;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut rows = Vec::new();
    for oy in 0..oh {
        let mut cols = Vec::new();
        for ox in 0..ow {
            let window = padded.narrow(2, oy * s, k)?.narrow(3, ox * s, k)?;
            cols.push(window.flatten_from(2)?.max_keepdim(2)?);
        }
        rows.push(Tensor::cat(&cols, 2)?);
    }
    Tensor::stack(&rows, 2)
}

#[test]
fn max_pool_matches_stock_and_sends_ties_to_the_first_maximum() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (n, c, h, w, k, s, p) in [
        (2, 3, 9, 9, 3, 2, 1),
        (1, 2, 8, 6, 3, 2, 1),
        (3, 1, 7, 7, 2, 2, 0),
        (1, 1, 5, 5, 3, 1, 1),
    ] {
        let x = random(&[n, c, h, w], &mut rng);
        let stock_y = stock_max_pool(&x, k, s, p).unwrap();
        let probe = random(stock_y.dims(), &mut rng);
        let (y, g) = output_and_grads(&[&x], &probe, |t| kernels::max_pool2d(&t[0], k, s, p));
        let (sy, sg) = output_and_grads(&[&x], &probe, |t| stock_max_pool(&t[0], k, s, p));
        let case = format!("{n}x{c}x{h}x{w} k{k} s{s} p{p}");
        assert_eq!(rel_diff(&y, &sy), 0.0, "{case}");
        assert!(rel_diff(&g[0], &sg[0]) < 1e-6, "{case}");
    }
    // A plane of equal values: every window's gradient goes to its first (top-left) element.
    let x = Var::from_tensor(
        &Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let y = kernels::max_pool2d(&x, 2, 2, 0).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let expect: Vec<f32> = (0..16)
        .map(|i| {
            if (i / 4) % 2 == 0 && (i % 4) % 2 == 0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    assert_eq!(g, expect);
}

#[test]
fn subsample_pad_matches_stock() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (n, c, h, w, s, extra) in [
        (2, 3, 8, 8, 2, 3),
        (1, 2, 7, 5, 2, 0),
        (3, 4, 9, 9, 3, 4),
        (2, 2, 4, 4, 1, 2),
    ] {
        let x = random(&[n, c, h, w], &mut rng);
        let stock = |t: &Tensor| -> Result<Tensor> {
            let rows: Vec<Tensor> = (0..h.div_ceil(s))
                .map(|i| t.narrow(2, i * s, 1))
                .collect::<Result<_>>()?;
            let t = Tensor::cat(&rows, 2)?;
            let cols: Vec<Tensor> = (0..w.div_ceil(s))
                .map(|j| t.narrow(3, j * s, 1))
                .collect::<Result<_>>()?;
            Tensor::cat(&cols, 3)?.pad_with_zeros(1, 0, extra)
        };
        let probe = random(stock(&x).unwrap().dims(), &mut rng);
        let (y, g) = output_and_grads(&[&x], &probe, |t| kernels::subsample_pad(&t[0], s, extra));
        let (sy, sg) = output_and_grads(&[&x], &probe, |t| stock(&t[0]));
        assert_eq!(rel_diff(&y, &sy), 0.0);
        assert_eq!(rel_diff(&g[0], &sg[0]), 0.0);
    }
}

/// A basic block from the separate kernels, each checked against stock candle above; `t` holds
/// the input, then conv1, bn1's scale and shift, conv2, bn2's scale and shift.
fn separate_basic_block(
    x: &Tensor,
    t: &[Tensor],
    stride: usize,
    shortcut: kernels::BlockShortcut,
) -> Result<Tensor> {
    let [w1, g1, b1, w2, g2, b2] = t else {
        unreachable!("six parameters")
    };
    let (h, _) =
        kernels::batch_norm_train(&kernels::conv2d(x, w1, 1, stride)?, g1, b1, 1e-5, true)?;
    let c2 = kernels::conv2d(&h, w2, 1, 1)?;
    let extra = w2.dims()[0] - x.dims()[1];
    match shortcut {
        kernels::BlockShortcut::None => Ok(kernels::batch_norm_train(&c2, g2, b2, 1e-5, true)?.0),
        kernels::BlockShortcut::Identity => {
            Ok(kernels::batch_norm_add_relu(&c2, g2, b2, x, 1e-5)?.0)
        }
        kernels::BlockShortcut::ZeroPad => {
            let s = kernels::subsample_pad(x, stride, extra)?;
            Ok(kernels::batch_norm_add_relu(&c2, g2, b2, &s, 1e-5)?.0)
        }
    }
}

/// Random parameters of a `c_in -> c` basic block: conv1, bn1, conv2, bn2.
fn random_block(c_in: usize, c: usize, rng: &mut ChaCha8Rng) -> Vec<Tensor> {
    let w1 = random(&[c, c_in, 3, 3], rng).affine(0.3, 0.0).unwrap();
    let (g1, b1) = (random(&[c], rng), random(&[c], rng));
    let w2 = random(&[c, c, 3, 3], rng).affine(0.3, 0.0).unwrap();
    let (g2, b2) = (random(&[c], rng), random(&[c], rng));
    vec![w1, g1, b1, w2, g2, b2]
}

/// Checks a run of blocks, given as (c_in, c, stride, shortcut), against the separate kernels
/// on an `n x c_in x h x w` input: the output and the gradient of the input and every parameter.
fn check_basic_blocks(
    (n, h, w): (usize, usize, usize),
    run: &[(usize, usize, usize, kernels::BlockShortcut)],
    rng: &mut ChaCha8Rng,
) {
    let x = random(&[n, run[0].0, h, w], rng);
    let mut inputs = vec![x];
    for &(c_in, c, _, _) in run {
        inputs.extend(random_block(c_in, c, rng));
    }
    let strides: usize = run.iter().map(|r| r.2).product();
    let out = [
        n,
        run.last().unwrap().1,
        h.div_ceil(strides),
        w.div_ceil(strides),
    ];
    let probe = random(&out, rng);
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let (y, g) = output_and_grads(&refs, &probe, |t| {
        let blocks: Vec<kernels::BasicBlock> = run
            .iter()
            .zip(t[1..].chunks(6))
            .map(|(&(_, _, stride, shortcut), p)| kernels::BasicBlock {
                params: kernels::BasicBlockParams {
                    conv1: &p[0],
                    bn1: (&p[1], &p[2]),
                    conv2: &p[3],
                    bn2: (&p[4], &p[5]),
                },
                stride,
                shortcut,
            })
            .collect();
        Ok(kernels::basic_blocks_train(&t[0], &blocks, 1e-5)?.0)
    });
    let (sy, sg) = output_and_grads(&refs, &probe, |t| {
        let mut y = t[0].clone();
        for (&(_, _, stride, shortcut), p) in run.iter().zip(t[1..].chunks(6)) {
            y = separate_basic_block(&y, p, stride, shortcut)?;
        }
        Ok(y)
    });
    let case = format!("{n}x{h}x{w} through {run:?}");
    assert!(
        rel_diff(&y, &sy) < 1e-6,
        "{case}: output {}",
        rel_diff(&y, &sy)
    );
    let names = ["dw1", "dgamma1", "dbeta1", "dw2", "dgamma2", "dbeta2"];
    for (i, (a, b)) in g.iter().zip(&sg).enumerate() {
        let name = match i {
            0 => "dx".to_string(),
            i => format!("block {} {}", (i - 1) / 6, names[(i - 1) % 6]),
        };
        let d = rel_diff(a, b);
        assert!(d < 1e-5, "{case}: {name} {d}");
    }
}

#[test]
fn basic_blocks_match_the_separate_kernels_in_every_input() {
    use kernels::BlockShortcut::{Identity, None as Plain, ZeroPad};
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (n, c_in, c, h, w, stride, shortcut) in [
        (2, 4, 4, 8, 8, 1, Identity),
        (3, 3, 5, 7, 5, 2, ZeroPad),
        (1, 4, 6, 5, 5, 1, Plain),
        (2, 3, 6, 6, 6, 1, ZeroPad),
        (4, 16, 16, 8, 8, 1, Identity),
        (2, 16, 32, 8, 8, 2, ZeroPad),
    ] {
        check_basic_blocks((n, h, w), &[(c_in, c, stride, shortcut)], &mut rng);
    }
    // Runs: a stage boundary inside, and a plain net's blocks.
    let run = [(4, 4, 1, Identity), (4, 8, 2, ZeroPad), (8, 8, 1, Identity)];
    check_basic_blocks((3, 9, 8), &run, &mut rng);
    let run = [(3, 6, 1, Plain), (6, 6, 2, Plain)];
    check_basic_blocks((2, 8, 8), &run, &mut rng);
}

#[test]
fn basic_blocks_reject_shapes_that_do_not_fit_and_name_the_block() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let x = random(&[2, 4, 8, 8], &mut rng);
    let w1 = random(&[8, 4, 3, 3], &mut rng);
    let w2 = random(&[8, 8, 3, 3], &mut rng);
    let ones = Tensor::ones(8, candle_core::DType::F32, &Device::Cpu).unwrap();
    let params = kernels::BasicBlockParams {
        conv1: &w1,
        bn1: (&ones, &ones),
        conv2: &w2,
        bn2: (&ones, &ones),
    };
    let block = |params, stride, shortcut| kernels::BasicBlock {
        params,
        stride,
        shortcut,
    };
    let identity = block(params, 2, kernels::BlockShortcut::Identity);
    let err = kernels::basic_blocks_train(&x, &[identity], 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Identity") && err.contains("[2, 4, 8, 8]"),
        "{err}"
    );
    let short = Tensor::ones(7, candle_core::DType::F32, &Device::Cpu).unwrap();
    let bad = kernels::BasicBlockParams {
        bn2: (&short, &ones),
        ..params
    };
    let first = block(params, 2, kernels::BlockShortcut::ZeroPad);
    let second = block(bad, 1, kernels::BlockShortcut::Identity);
    let err = kernels::basic_blocks_train(&x, &[first, second], 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("block 1") && err.contains("bn2") && err.contains("[7]"),
        "{err}"
    );
    let err = kernels::basic_blocks_train(&x, &[], 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one block"), "{err}");
}
