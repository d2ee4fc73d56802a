//! A sweep's tables read back: runs, summary and Fig. 7 layers through `experiments`' own
//! readers, the curves and verdicts here.

use std::path::{Path, PathBuf};

use experiments::store::{Columns, read_parquet};
use experiments::sweep::Invocation;
use experiments::sweep::tables::{
    LayerRow, ModelSummary, RunRecord, ViewSummary, layers_from, records_from, summaries_from,
    view_summaries_from,
};
use polars::prelude::DataFrame;

use crate::{Error, Subject};

/// One logging window of one run (errors in percent).
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub model: String,
    pub seed: u64,
    pub iteration: u64,
    pub train_error: f64,
    pub test_error: Option<f64>,
}

/// One claim's verdict as `verdicts.parquet` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictLine {
    pub claim: String,
    pub statement: String,
    pub paper: String,
    pub measured: String,
    pub verdict: String,
    pub why: String,
}

/// Everything a report draws on.
#[derive(Debug, Clone)]
pub struct Results {
    pub dir: PathBuf,
    pub runs: Vec<RunRecord>,
    pub curves: Vec<CurvePoint>,
    pub summary: Vec<ModelSummary>,
    pub layers: Vec<LayerRow>,
    /// ImageNet sweeps: each net under the paper's test views, beside the paper's numbers.
    pub views: Vec<ViewSummary>,
    pub verdicts: Vec<VerdictLine>,
    /// How the tables were made, where `sweep.json` records it.
    pub invocation: Option<Invocation>,
    /// The data the runs trained on (`cifar10`, `imagenet`).
    pub dataset: String,
}

impl Results {
    /// Reads the tables in `dir`; `runs.parquet` must exist, the others are read where present.
    pub fn read(dir: &Path, subject: &Subject) -> Result<Self, Error> {
        let runs_path = dir.join("runs.parquet");
        if !runs_path.is_file() {
            return Err(experiments::Error::NoResults {
                dir: dir.to_path_buf(),
                command: format!(
                    "suite reproduce {} --profile {}",
                    subject.experiment, subject.profile
                ),
            }
            .into());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            runs: records_from(&read_parquet(&runs_path)?, &runs_path)?,
            curves: optional(dir, "curves.parquet", curves_from)?,
            summary: optional(dir, "summary.parquet", summaries_from)?,
            layers: optional(dir, "fig7.parquet", layers_from)?,
            views: optional(dir, "views_summary.parquet", view_summaries_from)?,
            verdicts: optional(dir, "verdicts.parquet", verdicts_from)?,
            invocation: Invocation::read(dir)?,
            dataset: subject.dataset.clone(),
        })
    }

    /// The models that have a curve, in the order the runs table lists them.
    pub fn curve_models(&self) -> Vec<String> {
        distinct_in_order(self.runs.iter().map(|r| r.model.clone()))
            .into_iter()
            .filter(|m| self.curves.iter().any(|c| &c.model == m))
            .collect()
    }
}

/// The rows of `<dir>/<name>` read by `read`, or none where the sweep did not write that table.
fn optional<T, E: Into<Error>>(
    dir: &Path,
    name: &str,
    read: impl Fn(&DataFrame, &Path) -> Result<Vec<T>, E>,
) -> Result<Vec<T>, Error> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    read(&read_parquet(&path)?, &path).map_err(Into::into)
}

/// Values in the order first seen, without repeats.
pub fn distinct_in_order(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn curves_from(df: &DataFrame, path: &Path) -> Result<Vec<CurvePoint>, Error> {
    let c = Columns::new(df, path);
    let (model, seed, iteration) = (c.strings("model")?, c.u64s("seed")?, c.u64s("iteration")?);
    let (train, test) = (c.f64s("train_error")?, c.optional_f64s("test_error")?);
    Ok((0..df.height())
        .map(|i| CurvePoint {
            model: model[i].clone(),
            seed: seed[i],
            iteration: iteration[i],
            train_error: train[i],
            test_error: test[i],
        })
        .collect())
}

fn verdicts_from(df: &DataFrame, path: &Path) -> Result<Vec<VerdictLine>, Error> {
    let c = Columns::new(df, path);
    let (claim, statement, paper) = (
        c.strings("claim")?,
        c.strings("statement")?,
        c.strings("paper")?,
    );
    let (measured, verdict, why) = (
        c.strings("measured")?,
        c.strings("verdict")?,
        c.strings("why")?,
    );
    Ok((0..df.height())
        .map(|i| VerdictLine {
            claim: claim[i].clone(),
            statement: statement[i].clone(),
            paper: paper[i].clone(),
            measured: measured[i].clone(),
            verdict: verdict[i].clone(),
            why: why[i].clone(),
        })
        .collect())
}
