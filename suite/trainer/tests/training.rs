//! The trainer's numerics on real CIFAR-10 images (the shared sample): a net overfits one batch, the
//! gradients of residual blocks with option A and B shortcuts agree with finite differences, and the
//! fast kernels train along the stock ops' loss trajectory.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use candle_nn::ModuleT;
use trainer::step::train_step;
use trainer::{Sgd, SgdConfig};

/// The shared CIFAR-10 sample (see `testkit::shared_data`).
fn data_dir() -> Option<PathBuf> {
    testkit::shared_data("cifar10/sample")
}

/// The first `n` sample training images, normalised by the sample's pixel mean, with labels.
fn batch(n: usize) -> Option<(Tensor, Tensor)> {
    let source = datasets::cifar::Source::local(&data_dir()?).unwrap();
    let data = datasets::cifar::load(&source, None).unwrap();
    let normalize = datasets::Normalize::pixel_mean(&data.train);
    let mut images = vec![0f32; n * 3 * 32 * 32];
    for (i, out) in images.chunks_exact_mut(3 * 32 * 32).enumerate() {
        normalize.apply(data.train.image(i), out);
    }
    let labels: Vec<u32> = data.train.labels[..n].iter().map(|&l| l as u32).collect();
    Some((
        Tensor::from_vec(images, (n, 3, 32, 32), &Device::Cpu).unwrap(),
        Tensor::new(labels, &Device::Cpu).unwrap(),
    ))
}

fn model(name: &str, kernels: nets::Kernels) -> nets::Model {
    model_on(name, kernels, &Device::Cpu)
}

fn model_on(name: &str, kernels: nets::Kernels, device: &Device) -> nets::Model {
    let mut m = nets::Model::new(name.parse().unwrap(), 0, device).unwrap();
    m.net.set_kernels(kernels);
    m
}

#[test]
fn a_small_net_overfits_one_batch() {
    let Some((images, labels)) = batch(32) else {
        return;
    };
    let m = model("resnet8", nets::Kernels::Fast);
    let mut sgd = Sgd::new(nets::weights::trainable(&m.vars), SgdConfig::default()).unwrap();
    let mut step = || {
        train_step(&m.net, &mut sgd, &images, &labels, 0.05)
            .unwrap()
            .read()
            .unwrap()
    };
    let (first_loss, _) = step();
    let mut last = step();
    for _ in 0..149 {
        last = step();
    }
    let (last_loss, last_errors) = last;
    assert!(first_loss > 2.0, "starts near ln 10: {first_loss}");
    assert!(last_loss < 0.05, "loss after 150 steps: {last_loss}");
    assert_eq!(last_errors, 0);
}

/// Sum of cross-entropy over the batch, BN in training mode (as the gradient is taken).
fn loss(m: &nets::Model, images: &Tensor, labels: &Tensor) -> f64 {
    let logits = m.net.forward_t(images, true).unwrap();
    let l = candle_nn::loss::cross_entropy(&logits, labels).unwrap();
    l.to_scalar::<f32>().unwrap() as f64 * labels.elem_count() as f64
}

fn set_entry(m: &nets::Model, name: &str, index: usize, value: f32) {
    let data = m.vars.data().lock().unwrap();
    let var = &data[name];
    let mut v = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v[index] = value;
    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

fn entries(m: &nets::Model, name: &str) -> Vec<f32> {
    m.vars.data().lock().unwrap()[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn residual_block_gradients_agree_with_finite_differences_for_options_a_and_b() {
    let Some((images, labels)) = batch(16) else {
        return;
    };
    // layer2.0 of an 8-layer CIFAR net is a block where the shape changes (16 -> 32 channels,
    // stride 2): option A pads with zeros, option B projects.
    for (name, tensors) in [
        (
            "resnet8",
            vec![
                "layer2.0.conv1.weight",
                "layer2.0.conv2.weight",
                "layer2.0.bn2.weight",
                "layer1.0.conv1.weight",
            ],
        ),
        (
            "resnet8-b",
            vec![
                "layer2.0.conv1.weight",
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.bias",
                "layer1.0.conv1.weight",
            ],
        ),
    ] {
        let m = model(name, nets::Kernels::Fast);
        let logits = m.net.forward_t(&images, true).unwrap();
        let total = (candle_nn::loss::cross_entropy(&logits, &labels).unwrap() * 16.0).unwrap();
        let grads = total.backward().unwrap();
        for tensor in tensors {
            let grad = {
                let data = m.vars.data().lock().unwrap();
                grads
                    .get(data[tensor].as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            // The three entries with the largest gradients: far from rounding noise.
            let mut order: Vec<usize> = (0..grad.len()).collect();
            order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
            let original = entries(&m, tensor);
            for &i in &order[..3] {
                let h = 2e-3f32;
                set_entry(&m, tensor, i, original[i] + h);
                let plus = loss(&m, &images, &labels);
                set_entry(&m, tensor, i, original[i] - h);
                let minus = loss(&m, &images, &labels);
                set_entry(&m, tensor, i, original[i]);
                let numeric = (plus - minus) / (2.0 * h as f64);
                let analytic = grad[i] as f64;
                assert!(
                    (numeric - analytic).abs() <= 0.05 * analytic.abs() + 5e-3,
                    "{name} {tensor}[{i}]: analytic {analytic}, numeric {numeric}"
                );
            }
        }
    }
}

/// Losses of `steps` training steps of ResNet-20 on a stream of augmented sample batches (a new
/// batch every step, as in training), starting from the same initial weights.
fn trajectory(kernels: nets::Kernels, nudge: f32, steps: usize) -> Vec<f32> {
    trajectory_of("resnet20", &Device::Cpu, kernels, nudge, steps, |_| {})
}

#[cfg(feature = "cuda")]
fn trajectory_on(device: &Device, kernels: nets::Kernels, nudge: f32, steps: usize) -> Vec<f32> {
    trajectory_of("resnet20", device, kernels, nudge, steps, |_| {})
}

/// The losses of `steps` training steps of `model` on `device`, calling `after_step` with the
/// device after each (once its loss is read, so the device has finished the step).
fn trajectory_of(
    model: &str,
    device: &Device,
    kernels: nets::Kernels,
    nudge: f32,
    steps: usize,
    mut after_step: impl FnMut(&Device),
) -> Vec<f32> {
    let source = datasets::cifar::Source::local(&data_dir().unwrap()).unwrap();
    let data = datasets::cifar::load(&source, None).unwrap();
    let normalize = datasets::Normalize::pixel_mean(&data.train);
    let set = datasets::CifarDataset::new(data.train, normalize, true);
    let config = datasets::LoaderConfig {
        batch_size: 8,
        ..Default::default()
    };
    let loader = datasets::Loader::new(std::sync::Arc::new(set), config, device).unwrap();
    let m = model_on(model, kernels, device);
    // Every parameter moved by `nudge` relative, in a pattern that differs from element to element
    // (a uniform scale would vanish in the BN after each conv): rounding-sized noise in every layer.
    for (_, var) in nets::weights::trainable(&m.vars) {
        let w = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let w: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| v * (1.0 + nudge * ((i % 3) as f32 - 1.0)))
            .collect();
        var.set(&Tensor::from_vec(w, var.shape(), device).unwrap())
            .unwrap();
    }
    let mut sgd = Sgd::new(nets::weights::trainable(&m.vars), SgdConfig::default()).unwrap();
    loader
        .stream(Default::default())
        .take(steps)
        .map(|b| {
            let b = b.unwrap();
            let loss = train_step(&m.net, &mut sgd, &b.images, &b.labels, 0.05)
                .unwrap()
                .read()
                .unwrap()
                .0;
            after_step(device);
            loss
        })
        .collect()
}

#[test]
fn fast_kernels_follow_the_stock_loss_trajectory_for_50_steps() {
    if data_dir().is_none() {
        return;
    }
    // How far fp32 rounding alone moves this trajectory: the stock run again, every weight nudged
    // by 1e-6 relative. The fast kernels sum in a different order and must stay within a small
    // multiple of that; a wrong gradient would leave it at once.
    let stock = trajectory(nets::Kernels::Stock, 0.0, 50);
    let nudged = trajectory(nets::Kernels::Stock, 1e-6, 50);
    let fast = trajectory(nets::Kernels::Fast, 0.0, 50);
    // Step by step: the fast run may differ from the stock run by at most ten times what the
    // nudge has produced up to that step (plus 1e-4 relative): the two differ in every sum's order,
    // not by one uniform nudge, so an order of magnitude is allowed. Differences grow chaotically
    // over the steps (lr 0.05 at batch 8), so the bound is tight early (about 1e-4 at the first
    // steps) and loose late; a wrong gradient breaks it within the first few steps.
    assert_within_envelope("fast against stock", &fast, &stock, &nudged, 1e-4);
}

/// Each step's loss of `run` within ten times the largest gap the `nudged` reference has opened
/// from `reference` up to that step, plus `relative` of the reference's loss.
fn assert_within_envelope(
    what: &str,
    run: &[f32],
    reference: &[f32],
    nudged: &[f32],
    relative: f32,
) {
    assert_eq!(run.len(), reference.len(), "{what}: steps");
    let mut noise = 0f32;
    for (i, ((r, s), n)) in run.iter().zip(reference).zip(nudged).enumerate() {
        noise = noise.max((n - s).abs());
        let bound = 10.0 * noise + relative * s.abs();
        assert!(
            (r - s).abs() <= bound,
            "{what}, step {i}: {r} vs {s} (bound {bound:.2e}); run {run:?}, reference {reference:?}, nudged {nudged:?}"
        );
    }
}

/// On a GPU the conv's three passes run through cuDNN, which may round products to TF32 (as
/// PyTorch lets it by default): the CUDA run must follow the CPU trajectory within what a
/// TF32-sized nudge (1e-3 relative) of every weight does on the CPU.
#[cfg(feature = "cuda")]
#[test]
fn cudnn_convs_follow_the_cpu_loss_trajectory_for_50_steps() {
    if data_dir().is_none() {
        return;
    }
    let gpu = Device::new_cuda(0).expect("the `cuda` feature's tests need CUDA GPU 0");
    let cpu = trajectory(nets::Kernels::Fast, 0.0, 50);
    let nudged = trajectory(nets::Kernels::Fast, 1e-3, 50);
    let cuda = trajectory_on(&gpu, nets::Kernels::Fast, 0.0, 50);
    assert_within_envelope("cuda against cpu", &cuda, &cpu, &nudged, 1e-3);
}

/// A few hundred steps of ResNet-20 and ResNet-56 on the GPU against the CPU from the same weights
/// and batches: every loss finite and within the envelope of the cuDNN test above (a TF32-sized
/// nudge of the CPU run, which widens as the trajectories diverge chaotically), and the device
/// memory the tensors hold flat once the first steps have allocated the optimizer's state.
#[cfg(feature = "cuda")]
#[test]
fn cuda_training_follows_the_cpu_for_hundreds_of_steps_in_flat_memory() {
    const STEPS: usize = 300;
    const SETTLED: usize = 20;
    if data_dir().is_none() {
        return;
    }
    let gpu = Device::new_cuda(0).expect("the `cuda` feature's tests need CUDA GPU 0");
    for model in ["resnet20", "resnet56"] {
        let fast = nets::Kernels::Fast;
        let cpu = trajectory_of(model, &Device::Cpu, fast, 0.0, STEPS, |_| {});
        let nudged = trajectory_of(model, &Device::Cpu, fast, 1e-3, STEPS, |_| {});
        let mut used = Vec::new();
        let cuda = trajectory_of(model, &gpu, fast, 0.0, STEPS, |device| {
            let pool = kernels::memory_pool::pool_memory(device)
                .unwrap()
                .expect("the GPU allocates from a memory pool");
            used.push(pool.used);
        });
        assert!(cuda.iter().all(|l| l.is_finite()), "{model}: {cuda:?}");
        assert_within_envelope(&format!("{model} on cuda"), &cuda, &cpu, &nudged, 1e-3);
        // One activation-sized tensor kept per step would add megabytes every step.
        let settled = used[SETTLED];
        let most = *used[SETTLED..].iter().max().unwrap();
        assert!(
            most <= settled + (1 << 20),
            "{model}: device memory grew from {settled} to {most} bytes after step {SETTLED}: {used:?}"
        );
        eprintln!(
            "{model}: {STEPS} steps, device memory in use {:.1} MiB from step {SETTLED} on (peak {:.1} MiB)",
            settled as f64 / 1048576.0,
            most as f64 / 1048576.0
        );
    }
}
