//! The paper's CIFAR-10 training protocol, read from the reference file
//! (`configs/reference/paper.toml`, section `[cifar10.training]`) rather than typed into code.

use std::path::Path;

use serde::Deserialize;

use crate::optim::SgdConfig;
use crate::schedule::Schedule;

#[derive(Debug, Deserialize)]
struct PaperFile {
    cifar10: Cifar10Section,
}

#[derive(Debug, Deserialize)]
struct Cifar10Section {
    training: Training,
}

#[derive(Debug, Deserialize)]
struct Training {
    batch_size: usize,
    lr_initial: f64,
    lr_divisor: f64,
    lr_drop_iterations: Vec<u64>,
    stop_iteration: u64,
    weight_decay: f64,
    momentum: f64,
    resnet110_warmup: Warmup,
}

#[derive(Debug, Deserialize)]
struct Warmup {
    warmup_lr: f64,
    /// e.g. "training error below 80%".
    until: String,
    then_lr: f64,
}

/// §4.2's protocol: batch, optimiser, the multi-step schedule and ResNet-110's warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct CifarProtocol {
    pub batch_size: usize,
    pub optimizer: SgdConfig,
    pub lr: f64,
    /// Multiplier at each drop (1 / the paper's divisor).
    pub factor: f64,
    pub drops: Vec<u64>,
    pub iterations: u64,
    pub warmup_lr: f64,
    /// Warm-up ends when the training error falls below this fraction.
    pub warmup_until_error: f64,
}

impl CifarProtocol {
    /// Reads the protocol from the reference file; errors name the file and what is missing.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the paper's reference: {e}", path.display()))?;
        let file: PaperFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = file.cifar10.training;
        let until = parse_percent_below(&t.resnet110_warmup.until).ok_or_else(|| {
            format!(
                "{}: cifar10.training.resnet110_warmup.until: expected \"training error below N%\", got {:?}",
                path.display(),
                t.resnet110_warmup.until
            )
        })?;
        if t.resnet110_warmup.then_lr != t.lr_initial {
            return Err(format!(
                "{}: the warm-up continues at {}, the schedule starts at {}: expected the same rate",
                path.display(),
                t.resnet110_warmup.then_lr,
                t.lr_initial
            ));
        }
        Ok(Self {
            batch_size: t.batch_size,
            optimizer: SgdConfig {
                momentum: t.momentum,
                weight_decay: t.weight_decay,
            },
            lr: t.lr_initial,
            factor: 1.0 / t.lr_divisor,
            drops: t.lr_drop_iterations,
            iterations: t.stop_iteration,
            warmup_lr: t.resnet110_warmup.warmup_lr,
            warmup_until_error: until,
        })
    }

    /// The multi-step schedule over `iterations`: the paper's drops, scaled by
    /// `iterations / stop_iteration` for a shorter (or longer) run.
    pub fn schedule(&self, iterations: u64) -> Schedule {
        let milestones = self
            .drops
            .iter()
            .map(|&d| (d as u128 * iterations as u128 / self.iterations as u128) as u64)
            .collect();
        Schedule::MultiStep {
            lr: self.lr,
            milestones,
            factor: self.factor,
        }
    }

    /// `main` preceded by ResNet-110's warm-up (§4.2).
    pub fn with_warmup(&self, main: Schedule) -> Schedule {
        Schedule::Warmup {
            lr: self.warmup_lr,
            until_train_error: self.warmup_until_error,
            then: Box::new(main),
        }
    }
}

/// "training error below 80%" -> 0.8.
fn parse_percent_below(text: &str) -> Option<f64> {
    let rest = text.split("below").nth(1)?.trim();
    let number = rest.strip_suffix('%')?.trim();
    number.parse::<f64>().ok().map(|p| p / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/reference/paper.toml")
    }

    #[test]
    fn the_reference_files_protocol() {
        let p = CifarProtocol::read(&reference()).unwrap();
        assert_eq!((p.batch_size, p.iterations), (128, 64_000));
        assert_eq!(p.drops, [32_000, 48_000]);
        assert_eq!(
            (p.lr, p.factor, p.warmup_lr, p.warmup_until_error),
            (0.1, 0.1, 0.01, 0.8)
        );
        assert_eq!(
            p.optimizer,
            SgdConfig {
                momentum: 0.9,
                weight_decay: 1e-4
            }
        );
        let Schedule::MultiStep { milestones, .. } = p.schedule(2000) else {
            panic!("multi-step")
        };
        assert_eq!(milestones, [1000, 1500]);
        // A run of a few iterations keeps both drops, on one iteration, and is a valid schedule.
        let short = p.schedule(2);
        assert_eq!(
            short,
            Schedule::MultiStep {
                lr: 0.1,
                milestones: vec![1, 1],
                factor: 0.1
            }
        );
        short.validate().unwrap();
        assert_eq!(
            p.schedule(64_000),
            Schedule::MultiStep {
                lr: 0.1,
                milestones: vec![32_000, 48_000],
                factor: 0.1
            }
        );
    }

    #[test]
    fn a_broken_reference_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paper.toml");
        let text = std::fs::read_to_string(reference()).unwrap();
        std::fs::write(
            &path,
            text.replace("until = \"training error below 80%\"", "until = \"soon\""),
        )
        .unwrap();
        let err = CifarProtocol::read(&path).unwrap_err();
        assert!(
            err.contains("paper.toml") && err.contains("resnet110_warmup.until"),
            "{err}"
        );
        std::fs::write(&path, "x = 1").unwrap();
        assert!(CifarProtocol::read(&path).unwrap_err().contains("cifar10"));
    }
}
