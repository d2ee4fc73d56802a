//! The paper's numbers and protocols, read from `configs/reference/paper.toml` (a copy of the
//! reference file transcribed from arXiv 1512.03385 v1), and the one TOML reader of the suite
//! ([`read_toml`]), whose errors name the file, the key and the line.
//!
//! Every crate that needs a number of the paper reads it through [`Paper::load`]: the trainer its
//! CIFAR protocol, the experiments their reference values. Only the sections the suite uses are
//! typed here; the file holds more.

mod tomlfile;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use tomlfile::{parse_toml, read_toml};

/// A reference or config file that could not be read, parsed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: `{key}`: {message}", .path.display())]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: `{key}`: {msg}", .path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        msg: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Paper {
    pub schema_version: u32,
    pub table1: Table1,
    pub table2: ImageNetTable,
    pub table3: ImageNetTable,
    pub table4: ImageNetTable,
    pub table6: Table6,
    pub cifar10: Cifar10,
    pub imagenet: ImageNet,
}

/// `[imagenet]`: the ImageNet experiments' setup (§3.4).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageNet {
    pub training: ImageNetTraining,
    pub testing: ImageNetTesting,
}

/// `[imagenet.training]`: the ImageNet training protocol as the paper states it.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageNetTraining {
    pub batch_size: usize,
    pub lr_initial: f64,
    /// In the paper's words: "divide by 10 when the error plateaus".
    pub lr_schedule: String,
    pub lr_divisor: f64,
    pub max_iterations: u64,
    pub weight_decay: f64,
    pub momentum: f64,
    /// The range the shorter side is resized to, e.g. [256, 480].
    pub scale_augmentation_shorter_side: [u32; 2],
    pub crop_size: u32,
    pub horizontal_flip: bool,
}

/// `[imagenet.testing]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageNetTesting {
    pub multiscale_shorter_sides: Vec<u32>,
}

/// `[cifar10]`: the CIFAR-10 experiments' setup (§4.2).
#[derive(Debug, Clone, Deserialize)]
pub struct Cifar10 {
    pub training: CifarTraining,
}

/// `[cifar10.training]`: the CIFAR-10 training protocol as the paper states it.
#[derive(Debug, Clone, Deserialize)]
pub struct CifarTraining {
    pub batch_size: usize,
    pub lr_initial: f64,
    pub lr_divisor: f64,
    pub lr_drop_iterations: Vec<u64>,
    pub stop_iteration: u64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub resnet110_warmup: Warmup,
}

/// `[cifar10.training.resnet110_warmup]`: the 110- and 1202-layer nets' first phase.
#[derive(Debug, Clone, Deserialize)]
pub struct Warmup {
    pub warmup_lr: f64,
    /// In the paper's words, e.g. "training error below 80%".
    pub until: String,
    pub then_lr: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table1 {
    pub input_size: usize,
    pub stage_widths: Vec<usize>,
    pub bottleneck_expansion: usize,
    pub model: Vec<Table1Model>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table1Model {
    pub depth: usize,
    pub block: String,
    pub blocks_per_stage: Vec<usize>,
    /// Multiply-adds for one 224x224 image.
    pub flops: f64,
}

/// `[table2]`, `[table3]`, `[table4]`: ImageNet validation errors of single nets, 10-crop
/// (Tables 2 and 3) or multi-scale (Table 4).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageNetTable {
    /// What the numbers are, e.g. `top1_error_10crop_val`.
    pub metric: String,
    /// The shortcut option of every residual row that names none (Table 2: `A`).
    pub shortcut: Option<String>,
    pub row: Vec<ImageNetRow>,
}

/// One net of an ImageNet table: the paper's own nets carry a depth; other methods are
/// `baseline`s.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageNetRow {
    pub model: String,
    #[serde(default)]
    pub baseline: bool,
    pub depth: Option<usize>,
    /// Absent for the ResNet rows of Tables 3 and 4, which name their shortcut instead.
    pub residual: Option<bool>,
    pub shortcut: Option<String>,
    /// Errors in percent; absent where the paper prints "-".
    pub top1: Option<f64>,
    pub top5: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table6 {
    pub row: Vec<Table6Row>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table6Row {
    pub method: String,
    #[serde(default)]
    pub baseline: bool,
    pub layers: Option<usize>,
    pub n: Option<usize>,
    /// Parameters in millions, as printed.
    pub params_m: Option<f64>,
    /// Test error in percent (the best run where several were made).
    pub error: f64,
    pub error_mean: Option<f64>,
    pub error_std: Option<f64>,
}

impl Paper {
    pub const SCHEMA_VERSION: u32 = 1;

    pub fn load(path: &Path) -> Result<Self, Error> {
        let paper: Paper = read_toml(path)?;
        if paper.schema_version != Self::SCHEMA_VERSION {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                key: "schema_version".into(),
                msg: format!(
                    "{} is not the supported version {}",
                    paper.schema_version,
                    Self::SCHEMA_VERSION
                ),
            });
        }
        Ok(paper)
    }

    /// The reference file of the repository this crate was built from, for tests and for a binary
    /// run outside a checkout.
    pub fn repository_file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/reference/paper.toml")
    }

    /// Table 1's row for an ImageNet depth.
    pub fn imagenet(&self, depth: usize) -> Option<&Table1Model> {
        self.table1.model.iter().find(|m| m.depth == depth)
    }

    /// An ImageNet table by its name in the file (`table2`, `table3`, `table4`).
    pub fn imagenet_table(&self, name: &str) -> Option<&ImageNetTable> {
        match name {
            "table2" => Some(&self.table2),
            "table3" => Some(&self.table3),
            "table4" => Some(&self.table4),
            _ => None,
        }
    }

    /// Table 6's ResNet row for a CIFAR depth.
    pub fn cifar_resnet(&self, layers: usize) -> Option<&Table6Row> {
        self.table6
            .row
            .iter()
            .find(|r| !r.baseline && r.method == "ResNet" && r.layers == Some(layers))
    }
}

impl ImageNetTable {
    /// The row of the paper's net of `depth`: a plain net when `shortcut` is `None`, else the
    /// residual net with that option (`A`, `B` or `C`).
    pub fn net(&self, depth: usize, shortcut: Option<&str>) -> Option<&ImageNetRow> {
        self.row.iter().find(|row| {
            let residual = row.residual.unwrap_or(row.shortcut.is_some());
            let option = row.shortcut.as_deref().or(self.shortcut.as_deref());
            !row.baseline
                && row.depth == Some(depth)
                && match shortcut {
                    None => !residual,
                    Some(s) => residual && option.is_some_and(|o| o.eq_ignore_ascii_case(s)),
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_file_reads_with_every_typed_section() {
        let paper = Paper::load(&Paper::repository_file()).unwrap();
        assert_eq!(
            paper.imagenet(50).map(|m| m.block.as_str()),
            Some("bottleneck")
        );
        assert!(
            paper
                .cifar_resnet(110)
                .is_some_and(|r| r.error_mean.is_some())
        );
        assert_eq!(paper.cifar10.training.lr_drop_iterations, [32_000, 48_000]);
    }

    #[test]
    fn imagenet_rows_are_found_by_depth_and_shortcut() {
        let paper = Paper::load(&Paper::repository_file()).unwrap();
        let top1 = |table: &str, depth, shortcut| {
            paper
                .imagenet_table(table)
                .and_then(|t| t.net(depth, shortcut))
                .and_then(|r| r.top1)
        };
        // Table 2's residual rows take the table's option A.
        assert_eq!(top1("table2", 34, Some("A")), Some(25.03));
        assert_eq!(top1("table2", 34, Some("B")), None);
        assert_eq!(top1("table2", 18, None), Some(27.94));
        assert_eq!(top1("table3", 34, None), Some(28.54));
        assert_eq!(top1("table3", 34, Some("c")), Some(24.19));
        assert_eq!(top1("table3", 50, Some("B")), Some(22.85));
        assert_eq!(top1("table3", 18, None), None);
        assert_eq!(top1("table4", 152, Some("B")), Some(19.38));
        assert_eq!(top1("table4", 34, Some("A")), None);
        let table3 = paper.imagenet_table("table3").unwrap();
        assert_eq!(table3.net(101, Some("B")).and_then(|r| r.top5), Some(6.05));
        assert!(paper.imagenet_table("table5").is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paper.toml");
        let text = std::fs::read_to_string(Paper::repository_file()).unwrap();
        std::fs::write(
            &path,
            text.replace("stop_iteration = 64000", "stop_iteration = \"long\""),
        )
        .unwrap();
        let err = Paper::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("paper.toml") && err.contains("cifar10.training.stop_iteration"),
            "{err}"
        );
        std::fs::write(
            &path,
            text.replace("schema_version = 1", "schema_version = 9"),
        )
        .unwrap();
        let err = Paper::load(&path).unwrap_err().to_string();
        assert!(err.contains("schema_version"), "{err}");
        let err = Paper::load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
