//! The paper's CIFAR-10 and ImageNet training protocols, read from the reference file
//! (`configs/reference/paper.toml`, sections `[cifar10.training]` and `[imagenet.training]`)
//! rather than typed into code.

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

/// §3.4's ImageNet protocol: batch, optimiser, learning rate, the longest run and the
/// augmentation's geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageNetProtocol {
    pub batch_size: usize,
    pub optimizer: SgdConfig,
    pub lr: f64,
    /// Multiplier at each drop (1 / the paper's divisor).
    pub factor: f64,
    /// "up to 60x10^4 iterations".
    pub max_iterations: u64,
    /// The range the shorter side is resized to before the random crop.
    pub scale: (u32, u32),
    pub crop: u32,
}

/// The paper's plateau rule made precise, as the paper does not say what "plateaus" means: the
/// evaluation error (center crop) is measured every `eval_every` iterations, and the rate is
/// divided by 10 when it has not improved by more than `threshold` (absolute) for `patience`
/// evaluations in a row. The suite's choice, for the full protocol: an evaluation per epoch
/// (about 5,000 iterations at batch 256), a patience of 3 and a threshold of 0.1 points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlateauRule {
    pub patience: u32,
    pub threshold: f64,
}

impl PlateauRule {
    pub const SUITE: PlateauRule = PlateauRule {
        patience: 3,
        threshold: 0.001,
    };
}

impl ImageNetProtocol {
    /// Reads the protocol from the reference file; errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::from_paper(&Paper::load(path)?, path)
    }

    /// The protocol of `paper`, read from `path`; checks what the trainer relies on.
    pub fn from_paper(paper: &Paper, path: &Path) -> Result<Self, Error> {
        let t = &paper.imagenet.training;
        let invalid = |key: &str, msg: String| Error::Invalid {
            path: Some(path.to_path_buf()),
            key: format!("imagenet.training.{key}"),
            msg,
        };
        if !t.lr_schedule.contains("plateau") {
            return Err(invalid(
                "lr_schedule",
                format!(
                    "the trainer implements the plateau rule, the file says {:?}",
                    t.lr_schedule
                ),
            ));
        }
        let [low, high] = t.scale_augmentation_shorter_side;
        if low > high || low < t.crop_size {
            return Err(invalid(
                "scale_augmentation_shorter_side",
                format!(
                    "expected [low, high] with crop_size ({}) <= low <= high, got [{low}, {high}]",
                    t.crop_size
                ),
            ));
        }
        if !t.horizontal_flip {
            return Err(invalid(
                "horizontal_flip",
                "the training transform always flips at random".into(),
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
            max_iterations: t.max_iterations,
            scale: (low, high),
            crop: t.crop_size,
        })
    }

    /// The paper's schedule: the initial rate, divided by 10 at each plateau under `rule`.
    pub fn plateau(&self, rule: PlateauRule) -> Schedule {
        Schedule::Plateau {
            lr: self.lr,
            factor: self.factor,
            patience: rule.patience,
            threshold: rule.threshold,
            min_lr: 0.0,
        }
    }

    /// The fixed-step alternative most reproductions use (fb.resnet.torch, torchvision's
    /// reference): divided by 10 every `every` iterations up to `iterations` (30 epochs of the
    /// full training set at batch 256 are about 150,000 iterations).
    pub fn steps(&self, every: u64, iterations: u64) -> Schedule {
        let every = every.max(1);
        Schedule::MultiStep {
            lr: self.lr,
            milestones: (1..)
                .map(|k| k * every)
                .take_while(|&m| m < iterations)
                .collect(),
            factor: self.factor,
        }
    }
}

/// Both protocols, read from one reference file.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocols {
    pub cifar: CifarProtocol,
    pub imagenet: ImageNetProtocol,
}

impl Protocols {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let paper = Paper::load(path)?;
        Ok(Self {
            cifar: CifarProtocol::from_paper(&paper, path)?,
            imagenet: ImageNetProtocol::from_paper(&paper, path)?,
        })
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
    fn the_reference_files_imagenet_protocol() {
        let p = ImageNetProtocol::read(&reference()).unwrap();
        assert_eq!((p.batch_size, p.max_iterations), (256, 600_000));
        assert_eq!((p.lr, p.factor), (0.1, 0.1));
        assert_eq!((p.scale, p.crop), ((256, 480), 224));
        assert_eq!(
            p.optimizer,
            SgdConfig {
                momentum: 0.9,
                weight_decay: 1e-4
            }
        );
        let Schedule::MultiStep { milestones, .. } = p.steps(150_000, 600_000) else {
            panic!("multi-step")
        };
        assert_eq!(milestones, [150_000, 300_000, 450_000]);
        let plateau = p.plateau(PlateauRule::SUITE);
        plateau.validate().unwrap();
        assert!(matches!(plateau, Schedule::Plateau { patience: 3, .. }));
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
