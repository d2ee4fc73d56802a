//! Table 1 (and the parameter column of Table 6): the size of every architecture, computed from the
//! module graphs that train, side by side with the paper.
//!
//! The paper gives multiply-adds ("FLOPs") for the ImageNet nets (Table 1) and parameter counts for
//! the CIFAR nets (Table 6); it gives no ImageNet parameter counts, so those are compared with
//! torchvision's models, which the config names as a second reference.

use std::path::{Path, PathBuf};

use nets::{Family, ModelSpec};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::precision::within_printed_precision;
use crate::{Error, Verdict};
use paper::Paper;

/// `configs/table1.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The paper's reference file, relative to the config's directory.
    pub paper: PathBuf,
    pub tolerance: Tolerance,
    pub model: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// How many units of the paper's last printed digit a FLOP count may differ by.
    pub flops_units_in_last_place: f64,
    /// The same for parameter counts.
    pub params_units_in_last_place: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    /// Exact parameter count of the torchvision model of the same architecture.
    pub torchvision_params: Option<u64>,
}

/// One row of the table; also the JSON object `suite reproduce table1 --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub model: String,
    pub family: &'static str,
    pub depth: usize,
    pub input_size: usize,
    pub params: u64,
    /// Multiply-adds for one image of `input_size`.
    pub flops: u64,
    /// The paper's figure, as a count (Table 6 prints millions).
    pub paper_params: Option<f64>,
    pub paper_flops: Option<f64>,
    pub torchvision_params: Option<u64>,
    /// (measured - paper) / paper; against torchvision where the paper gives no count.
    pub params_rel_diff: Option<f64>,
    pub flops_rel_diff: Option<f64>,
    /// What was compared, and how closely.
    pub checks: String,
    pub verdict: Verdict,
}

/// The result of the experiment: rows plus where the inputs came from.
pub struct Table1 {
    pub rows: Vec<Row>,
    pub config_path: PathBuf,
    pub paper_path: PathBuf,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let config: Config = paper::read_toml(path)?;
        for (i, entry) in config.model.iter().enumerate() {
            entry
                .name
                .parse::<ModelSpec>()
                .map_err(|e| paper::Error::Invalid {
                    path: path.to_path_buf(),
                    key: format!("model[{i}].name"),
                    msg: e.to_string(),
                })?;
        }
        if config.model.is_empty() {
            return Err(paper::Error::Invalid {
                path: path.to_path_buf(),
                key: "model".into(),
                msg: "lists no models".into(),
            }
            .into());
        }
        Ok(config)
    }
}

/// Computes the table from `configs/table1.toml` in `configs`.
pub fn run(configs: &Path) -> Result<Table1, Error> {
    let config_path = configs.join("table1.toml");
    let config = Config::load(&config_path)?;
    let paper_path = configs.join(&config.paper);
    let paper = Paper::load(&paper_path)?;
    let mut rows = Vec::with_capacity(config.model.len());
    for (i, entry) in config.model.iter().enumerate() {
        let spec: ModelSpec = entry.name.parse()?;
        check_architecture(&spec, &paper).map_err(|msg| paper::Error::Invalid {
            path: paper_path.clone(),
            key: format!("table1.model (for {})", entry.name),
            msg,
        })?;
        let row = row(&spec, entry, &paper, config.tolerance);
        if row.verdict == Verdict::NotRun {
            return Err(paper::Error::Invalid {
                path: config_path.clone(),
                key: format!("model[{i}]"),
                msg: format!("{} has no reference number to compare with", entry.name),
            }
            .into());
        }
        rows.push(row);
    }
    Ok(Table1 {
        rows,
        config_path,
        paper_path,
    })
}

/// The ImageNet nets' block kinds and blocks per stage must be the ones the paper's Table 1 lists.
fn check_architecture(spec: &ModelSpec, paper: &Paper) -> Result<(), String> {
    let Family::ImageNet { depth } = spec.family else {
        return Ok(());
    };
    let Some(reference) = paper.imagenet(depth) else {
        return Err(format!("no row for depth {depth}"));
    };
    let blocks: Vec<usize> = spec.stages().iter().map(|s| s.1).collect();
    let widths: Vec<usize> = spec.stages().iter().map(|s| s.0).collect();
    let kind = format!("{:?}", spec.block_kind()).to_lowercase();
    if blocks != reference.blocks_per_stage
        || widths != paper.table1.stage_widths
        || kind != reference.block
    {
        return Err(format!(
            "the paper has {} blocks {:?} of widths {:?}; nets builds {kind} blocks {blocks:?} of widths {widths:?}",
            reference.block, reference.blocks_per_stage, paper.table1.stage_widths
        ));
    }
    Ok(())
}

fn rel_diff(measured: f64, reference: f64) -> f64 {
    (measured - reference) / reference
}

fn row(spec: &ModelSpec, entry: &ModelEntry, paper: &Paper, tol: Tolerance) -> Row {
    let side = spec.default_input_size();
    let cost = nets::cost_of(spec, side, side);
    let (paper_params, paper_flops) = match spec.family {
        Family::ImageNet { depth } => (None, paper.imagenet(depth).map(|m| m.flops)),
        // Table 6 lists ResNets; the plain nets have the same layers and parameters (§4.2).
        Family::Cifar { .. } => (
            paper
                .cifar_resnet(spec.depth())
                .and_then(|r| r.params_m)
                .map(|m| m * 1e6),
            None,
        ),
    };
    let mut checks = Vec::new();
    let mut verdicts = Vec::new();
    let params = cost.params as f64;
    let flops = cost.flops as f64;
    if let Some(p) = paper_params {
        let held = within_printed_precision(params, p, tol.params_units_in_last_place);
        verdicts.push(if held { Verdict::Held } else { Verdict::Failed });
        checks.push(format!(
            "params within {} unit(s) of the paper's last digit",
            tol.params_units_in_last_place
        ));
    }
    if let Some(f) = paper_flops {
        let held = within_printed_precision(flops, f, tol.flops_units_in_last_place);
        verdicts.push(if held { Verdict::Held } else { Verdict::Failed });
        checks.push(format!(
            "FLOPs within {} unit(s) of the paper's last digit",
            tol.flops_units_in_last_place
        ));
    }
    if let Some(tv) = entry.torchvision_params {
        verdicts.push(if cost.params == tv {
            Verdict::Held
        } else {
            Verdict::Failed
        });
        checks.push("params equal torchvision's".into());
    }
    let params_rel_diff = paper_params
        .or(entry.torchvision_params.map(|p| p as f64))
        .map(|p| rel_diff(params, p));
    Row {
        model: spec.to_string(),
        family: if spec.is_cifar() {
            "cifar10"
        } else {
            "imagenet"
        },
        depth: spec.depth(),
        input_size: side,
        params: cost.params,
        flops: cost.flops,
        paper_params,
        paper_flops,
        torchvision_params: entry.torchvision_params,
        params_rel_diff,
        flops_rel_diff: paper_flops.map(|f| rel_diff(flops, f)),
        checks: checks.join("; "),
        verdict: Verdict::all(verdicts),
    }
}

/// `suite reproduce table1`: the table, written as `<results>/table1/table1.{csv,parquet}`.
pub fn reproduce(
    context: &crate::registry::Context,
) -> Result<crate::registry::Reproduction, Error> {
    let table = run(context.configs)?;
    let dir = context.results.join("table1");
    let mut df = table.to_frame().map_err(|source| Error::Polars {
        path: dir.clone(),
        source,
    })?;
    let written = crate::store::write_table(&mut df, &dir, "table1")?;
    let held = table
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Held)
        .count();
    let text = format!(
        "(config {}, paper numbers from {})\n\n{}\n{held} of {} rows held.\n",
        table.config_path.display(),
        table.paper_path.display(),
        table.to_markdown(),
        table.rows.len()
    );
    Ok(crate::registry::Reproduction {
        title: "Table 1: parameters and multiply-adds, measured vs paper".into(),
        text,
        json: serde_json::to_string_pretty(&table.rows).expect("rows serialise"),
        verdict: table.verdict(),
        written,
    })
}

impl Table1 {
    pub fn verdict(&self) -> Verdict {
        Verdict::all(self.rows.iter().map(|r| r.verdict))
    }

    /// The rows as a DataFrame, one column per `Row` field.
    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.rows;
        let col_u64 = |f: fn(&Row) -> u64| r.iter().map(f).collect::<Vec<u64>>();
        let col_f64 = |f: fn(&Row) -> Option<f64>| r.iter().map(f).collect::<Vec<Option<f64>>>();
        df!(
            "model" => r.iter().map(|x| x.model.as_str()).collect::<Vec<_>>(),
            "family" => r.iter().map(|x| x.family).collect::<Vec<_>>(),
            "depth" => r.iter().map(|x| x.depth as u64).collect::<Vec<_>>(),
            "input_size" => r.iter().map(|x| x.input_size as u64).collect::<Vec<_>>(),
            "params" => col_u64(|x| x.params),
            "flops" => col_u64(|x| x.flops),
            "paper_params" => col_f64(|x| x.paper_params),
            "paper_flops" => col_f64(|x| x.paper_flops),
            "torchvision_params" => r.iter().map(|x| x.torchvision_params).collect::<Vec<_>>(),
            "params_rel_diff" => col_f64(|x| x.params_rel_diff),
            "flops_rel_diff" => col_f64(|x| x.flops_rel_diff),
            "checks" => r.iter().map(|x| x.checks.as_str()).collect::<Vec<_>>(),
            "verdict" => r.iter().map(|x| x.verdict.as_str()).collect::<Vec<_>>(),
        )
    }

    /// A Markdown table for people: paper and measured side by side.
    pub fn to_markdown(&self) -> String {
        let headers = [
            "model",
            "params",
            "paper params",
            "torchvision params",
            "FLOPs",
            "paper FLOPs",
            "Δ params",
            "Δ FLOPs",
            "verdict",
        ];
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    crate::text::thousands(r.params),
                    opt(r.paper_params.map(|p| format!("{}M", p / 1e6))),
                    opt(r.torchvision_params.map(crate::text::thousands)),
                    format!("{:.3}e9", r.flops as f64 / 1e9),
                    opt(r.paper_flops.map(|f| format!("{}e9", f / 1e9))),
                    opt(r.params_rel_diff.map(crate::text::percent)),
                    opt(r.flops_rel_diff.map(crate::text::percent)),
                    r.verdict.to_string(),
                ]
            })
            .collect();
        crate::text::markdown_table(&headers, &rows)
    }
}
