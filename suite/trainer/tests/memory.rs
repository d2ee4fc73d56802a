//! Memory stays flat over a run: nothing kept across steps (momentum buffers, gradients, running
//! statistics) may hold on to a step's graph. Its own test binary, so no other test shares the
//! process whose memory is measured.

use candle_core::{Device, Tensor};
use trainer::step::train_step;
use trainer::{Sgd, SgdConfig};

/// Resident memory of this process in MiB (Linux), `None` elsewhere.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

#[test]
fn resident_memory_does_not_grow_with_steps() {
    let Some(_) = rss_mib() else {
        eprintln!("skipped: no /proc/self/status");
        return;
    };
    let dev = Device::Cpu;
    let m = nets::Model::new("resnet8".parse().unwrap(), 0, &dev).unwrap();
    let mut sgd = Sgd::new(nets::weights::trainable(&m.vars), SgdConfig::default()).unwrap();
    let images = Tensor::randn(0f32, 1.0, (64, 3, 32, 32), &dev).unwrap();
    let labels = Tensor::new((0..64u32).map(|i| i % 10).collect::<Vec<_>>(), &dev).unwrap();
    let mut step = || train_step(&m.net, &mut sgd, &images, &labels, 0.05).unwrap();
    for _ in 0..10 {
        step();
    }
    let before = rss_mib().unwrap();
    for _ in 0..40 {
        step();
    }
    let after = rss_mib().unwrap();
    // One step's activations and gradients here are about 30 MiB; a leak of one step's graph per
    // step would add over a gigabyte.
    assert!(
        after - before < 64.0,
        "resident memory grew from {before:.0} to {after:.0} MiB over 40 steps"
    );
}
