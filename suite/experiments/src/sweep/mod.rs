//! Sweeps: an experiment that trains many runs (models x seeds) under a profile, then tabulates
//! them and decides the paper's claims. [`config`] reads the experiment, [`plan`] turns it into
//! runs in a shared run store, [`execute`] trains what is missing, [`responses`] measures Fig. 7,
//! [`views`] scores ImageNet nets with the paper's test views, [`tables`] writes the polars
//! tables and [`claims`] the verdicts.
//!
//! Layout under the results directory:
//! - `runs/<run-id>/`: one run (the trainer's directory), found by its spec's id, so a figure
//!   that needs a table's run finds it done;
//! - `<experiment>/<profile>/`: `runs`, `curves`, `summary`, `fig7`, `views` (parquet; `runs` and
//!   `verdicts` also as CSV), `verdicts.json` and `sweep.json` (the command that wrote them),
//!   rewritten as a whole after each sweep.

pub mod claims;
pub mod config;
pub mod execute;
pub mod plan;
pub mod responses;
pub mod tables;
pub mod views;

use std::path::{Path, PathBuf};

use crate::store::{read_parquet, write_table, write_text};
use crate::text::{markdown_table, mean_sd};
use crate::{Error, Verdict};
use claims::VerdictRow;
use config::SweepConfig;
use plan::PlannedRun;
use tables::{Measurements, ModelSummary, RunRecord, ViewSummary, polars_at};

/// `<results>/runs`: where every sweep keeps its runs.
pub fn store_dir(results: &Path) -> PathBuf {
    results.join("runs")
}

/// `<results>/<experiment>/<profile>`: a sweep's tables.
pub fn tables_dir(results: &Path, experiment: &str, profile: &str) -> PathBuf {
    results.join(experiment).join(profile)
}

/// `sweep.json` beside a sweep's tables: how they were made. Tables written before it existed
/// have none.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    /// The command line that trained and tabulated, as typed (`suite reproduce ...`).
    pub command: String,
    /// The suite release that wrote the tables.
    pub suite_version: String,
}

impl Invocation {
    pub const FILE: &str = "sweep.json";

    /// The invocation recorded in `dir`, if any; a file that is not one is an error naming it.
    pub fn read(dir: &Path) -> Result<Option<Self>, Error> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::Json { path, source })
    }
}

/// The tables and verdicts of a sweep, as written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub records: Vec<RunRecord>,
    pub summaries: Vec<ModelSummary>,
    /// ImageNet sweeps: each net under the paper's test views, beside the paper's numbers.
    pub view_summaries: Vec<ViewSummary>,
    pub verdicts: Vec<VerdictRow>,
    pub written: Vec<PathBuf>,
}

impl Outcome {
    /// Failed when a claim failed; held when one held and none failed; else not run.
    pub fn verdict(&self) -> Verdict {
        Verdict::all(self.verdicts.iter().map(|v| v.verdict))
    }

    /// The results table and the verdicts, as Markdown.
    pub fn text(&self) -> String {
        let pct = |v: f64| {
            if v.is_nan() {
                "".to_string()
            } else {
                format!("{v:.2}")
            }
        };
        let rows: Vec<Vec<String>> = self
            .summaries
            .iter()
            .map(|s| {
                let paper = match (s.paper_error, s.paper_error_mean, s.paper_error_std) {
                    (Some(e), Some(m), Some(sd)) => format!("{e:.2} ({m:.2} ± {sd:.2})"),
                    (Some(e), _, _) => format!("{e:.2}"),
                    _ => String::new(),
                };
                vec![
                    s.model.clone(),
                    s.seeds.to_string(),
                    mean_sd(s.train_error_mean, s.train_error_std),
                    mean_sd(s.test_error_mean, s.test_error_std),
                    pct(s.test_error_best),
                    paper,
                ]
            })
            .collect();
        let mut out = markdown_table(
            &[
                "model",
                "seeds",
                "final train error %",
                "final test error %",
                "best of seeds %",
                "paper %",
            ],
            &rows,
        );
        out += "\nErrors after the last iteration (mean ± std over seeds); the best test error seen \
                during training is in runs.parquet and is never used for claims.\n\n";
        if !self.view_summaries.is_empty() {
            out += &views_text(&self.view_summaries);
        }
        let verdicts: Vec<Vec<String>> = self
            .verdicts
            .iter()
            .map(|v| {
                vec![
                    v.claim.clone(),
                    v.verdict.to_string(),
                    v.measured.clone(),
                    v.why.clone(),
                ]
            })
            .collect();
        out += &markdown_table(&["claim", "verdict", "measured", "why"], &verdicts);
        out
    }
}

/// The nets under the paper's test views beside the paper's numbers, as Markdown.
fn views_text(rows: &[ViewSummary]) -> String {
    let paper = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.model.clone(),
                s.views.clone(),
                s.seeds.to_string(),
                mean_sd(s.top1_error_mean, s.top1_error_std),
                mean_sd(s.top5_error_mean, s.top5_error_std),
                paper(s.paper_top1_error),
                paper(s.paper_top5_error),
                s.paper_source.clone(),
            ]
        })
        .collect();
    let mut out = markdown_table(
        &[
            "model",
            "views",
            "seeds",
            "top-1 error %",
            "top-5 error %",
            "paper top-1 %",
            "paper top-5 %",
            "paper source",
        ],
        &rows,
    );
    out += "\nValidation errors of the final weights under the paper's test views (views_summary.parquet); \
            the summary's test error above is the center crop's. The paper's numbers are for its \
            full protocol (all 1,000 classes at full resolution), which a quick profile reduces.\n\n";
    out
}

/// The paper's reference: typed, and as a TOML tree for keyed lookups.
fn reference(configs: &Path) -> Result<(paper::Paper, toml::Value), Error> {
    let path = configs.join("reference/paper.toml");
    Ok((paper::Paper::load(&path)?, paper::read_toml(&path)?))
}

/// Reads every finished run of `runs` (measuring Fig. 7 where the sweep asks), writes the tables
/// under `<results>/<experiment>/<profile>/` with `invocation` beside them, and decides the claims.
pub fn tabulate(
    config: &SweepConfig,
    profile: &str,
    runs: &[PlannedRun],
    configs: &Path,
    results: &Path,
    cache_dir: Option<&Path>,
    invocation: &Invocation,
) -> Result<Outcome, Error> {
    let dir = tables_dir(results, &config.name, profile);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let (records, mut curves) = tables::collect(runs)?;
    let mut written = Vec::new();
    let path = dir.join(Invocation::FILE);
    let json = serde_json::to_string_pretty(invocation).expect("an invocation serialises");
    write_text(&path, &json)?;
    written.push(path);
    let mut frame = tables::runs_frame(&records).map_err(polars_at(&dir))?;
    written.extend(write_table(&mut frame, &dir, "runs")?);
    written.push(write_parquet(&mut curves, &dir, "curves")?);
    let mut measurements = Measurements {
        curves: tables::curve_points(&curves, &dir.join("curves.parquet"))?,
        ..Measurements::default()
    };
    if config.header.responses {
        let mut measured = Vec::new();
        for run in runs.iter().filter(|r| r.status == plan::Status::Done) {
            measured.push((run, responses::measure(&run.spec, &run.dir, cache_dir)?));
        }
        measurements.layers = tables::layer_rows(&measured);
        let mut frame = tables::layers_frame(&measurements.layers).map_err(polars_at(&dir))?;
        written.push(write_parquet(&mut frame, &dir, "fig7")?);
    }
    if !config.header.views.is_empty() {
        for run in runs.iter().filter(|r| r.status == plan::Status::Done) {
            measurements
                .views
                .extend(views::measure(&run.spec, &run.dir, &config.header.views)?);
        }
        let mut frame =
            tables::views_frame(&records, &measurements.views).map_err(polars_at(&dir))?;
        written.push(write_parquet(&mut frame, &dir, "views")?);
    }
    let mut outcome = decide(config, profile, records, &measurements, configs, &dir)?;
    written.append(&mut outcome.written);
    outcome.written = written;
    Ok(outcome)
}

/// Recomputes the summary and the verdicts from the tables on disk, without training.
pub fn verify(
    config: &SweepConfig,
    profile: &str,
    configs: &Path,
    results: &Path,
) -> Result<Outcome, Error> {
    config.profile(profile)?;
    let dir = tables_dir(results, &config.name, profile);
    let runs_path = dir.join("runs.parquet");
    if !runs_path.is_file() {
        return Err(Error::NoResults {
            dir,
            command: format!("suite reproduce {} --profile {profile}", config.name),
        });
    }
    let records = tables::records_from(&read_parquet(&runs_path)?, &runs_path)?;
    let mut measurements = Measurements::default();
    let curves_path = dir.join("curves.parquet");
    if curves_path.is_file() {
        measurements.curves = tables::curve_points(&read_parquet(&curves_path)?, &curves_path)?;
    }
    let layers_path = dir.join("fig7.parquet");
    if config.header.responses && layers_path.is_file() {
        measurements.layers = tables::layers_from(&read_parquet(&layers_path)?, &layers_path)?;
    }
    let views_path = dir.join("views.parquet");
    if !config.header.views.is_empty() && views_path.is_file() {
        measurements.views = tables::views_from(&read_parquet(&views_path)?, &views_path)?;
    }
    decide(config, profile, records, &measurements, configs, &dir)
}

fn decide(
    config: &SweepConfig,
    profile: &str,
    records: Vec<RunRecord>,
    measurements: &Measurements,
    configs: &Path,
    dir: &Path,
) -> Result<Outcome, Error> {
    let (paper, paper_toml) = reference(configs)?;
    let summaries = tables::summarise(&records, &paper);
    let view_summaries =
        tables::summarise_views(&records, &measurements.views, &config.name, &paper);
    let verdicts = claims::decide(config, profile, &records, measurements, &paper, &paper_toml);
    let mut written = Vec::new();
    let mut frame = tables::summary_frame(&summaries).map_err(polars_at(dir))?;
    written.push(write_parquet(&mut frame, dir, "summary")?);
    if !config.header.views.is_empty() {
        let mut frame = tables::view_summary_frame(&view_summaries).map_err(polars_at(dir))?;
        written.push(write_parquet(&mut frame, dir, "views_summary")?);
    }
    let mut frame = verdicts_frame(&verdicts).map_err(polars_at(dir))?;
    written.extend(write_table(&mut frame, dir, "verdicts")?);
    let json_path = dir.join("verdicts.json");
    let json = serde_json::to_string_pretty(&verdicts).expect("verdicts serialise");
    write_text(&json_path, &json)?;
    written.push(json_path);
    Ok(Outcome {
        records,
        summaries,
        view_summaries,
        verdicts,
        written,
    })
}

fn write_parquet(
    df: &mut polars::prelude::DataFrame,
    dir: &Path,
    stem: &str,
) -> Result<PathBuf, Error> {
    let paths = write_table(df, dir, stem)?;
    // Only `runs` and `verdicts` are wanted as CSV; the long tables stay parquet.
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
    {
        let _ = std::fs::remove_file(p);
    }
    Ok(dir.join(format!("{stem}.parquet")))
}

fn verdicts_frame(
    rows: &[VerdictRow],
) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
    use polars::prelude::*;
    df!(
        "claim" => rows.iter().map(|r| r.claim.clone()).collect::<Vec<_>>(),
        "statement" => rows.iter().map(|r| r.statement.clone()).collect::<Vec<_>>(),
        "applies_to" => rows.iter().map(|r| r.applies_to.clone()).collect::<Vec<_>>(),
        "paper" => rows.iter().map(|r| r.paper.clone()).collect::<Vec<_>>(),
        "measured" => rows.iter().map(|r| r.measured.clone()).collect::<Vec<_>>(),
        "verdict" => rows.iter().map(|r| r.verdict.to_string()).collect::<Vec<_>>(),
        "why" => rows.iter().map(|r| r.why.clone()).collect::<Vec<_>>(),
    )
}
