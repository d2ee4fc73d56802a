//! The paper's CIFAR-10 training protocol, read from the reference file
//! (`configs/reference/paper.toml`, section `[cifar10.training]`) rather than typed into code.

use std::path::Path;

use paper::Paper;

use crate::Error;
use crate::optim::SgdConfig;
use crate::schedule::Schedule;

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
    /// Reads the protocol from the reference file; errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::from_paper(&Paper::load(path)?, path)
    }

    /// The protocol of `paper`, read from `path`; checks what the trainer relies on.
    pub fn from_paper(paper: &Paper, path: &Path) -> Result<Self, Error> {
        let t = &paper.cifar10.training;
        let invalid = |key: &str, msg: String| Error::Invalid {
            path: Some(path.to_path_buf()),
            key: format!("cifar10.training.{key}"),
            msg,
        };
        let until = parse_percent_below(&t.resnet110_warmup.until).ok_or_else(|| {
            invalid(
                "resnet110_warmup.until",
                format!(
                    "expected \"training error below N%\", got {:?}",
                    t.resnet110_warmup.until
                ),
            )
        })?;
        if t.resnet110_warmup.then_lr != t.lr_initial {
            return Err(invalid(
                "resnet110_warmup.then_lr",
                format!(
                    "the warm-up continues at {}, the schedule starts at {}: expected the same rate",
                    t.resnet110_warmup.then_lr, t.lr_initial
                ),
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
            drops: t.lr_drop_iterations.clone(),
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
        Paper::repository_file()
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
        let err = CifarProtocol::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("paper.toml") && err.contains("resnet110_warmup.until"),
            "{err}"
        );
        std::fs::write(&path, "schema_version = 1").unwrap();
        let err = CifarProtocol::read(&path).unwrap_err().to_string();
        assert!(err.contains("paper.toml"), "{err}");
    }
}
