//! The paper's numbers, read from `configs/reference/paper.toml` (a copy of the reference file
//! transcribed from arXiv 1512.03385 v1). Only the sections the suite checks are typed here; the
//! file holds more.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

#[derive(Debug, Clone, Deserialize)]
pub struct Paper {
    pub schema_version: u32,
    pub table1: Table1,
    pub table6: Table6,
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
        let paper: Paper = crate::tomlfile::read(path)?;
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

    /// Table 1's row for an ImageNet depth.
    pub fn imagenet(&self, depth: usize) -> Option<&Table1Model> {
        self.table1.model.iter().find(|m| m.depth == depth)
    }

    /// Table 6's ResNet row for a CIFAR depth.
    pub fn cifar_resnet(&self, layers: usize) -> Option<&Table6Row> {
        self.table6
            .row
            .iter()
            .find(|r| !r.baseline && r.method == "ResNet" && r.layers == Some(layers))
    }
}
