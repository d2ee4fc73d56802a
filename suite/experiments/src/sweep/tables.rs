//! A sweep's results as polars tables: `runs` (one row per run), `curves` (one row per logging
//! window), `summary` (per model, over seeds, beside the paper) and `fig7` (per layer). Errors are
//! percentages throughout.

use std::path::Path;

use polars::prelude::*;

use super::plan::{PlannedRun, Status};
use super::responses::Responses;
use crate::Error;
use crate::store::Columns;

/// One finished run, as the `runs` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub model: String,
    pub depth: u64,
    pub residual: bool,
    /// `A`, `B` or `C`; empty for plain nets.
    pub shortcut: String,
    /// 3x3 convs a shortcut skips (2 in the paper).
    pub convs_per_unit: u64,
    pub seed: u64,
    pub iterations: u64,
    pub final_train_error: f64,
    /// Images the final training error was counted over (the last logging window).
    pub train_error_images: u64,
    pub final_test_error: f64,
    pub test_images: u64,
    /// The lowest test error of any evaluation: reported, never used for claims.
    pub best_test_error: f64,
    pub parameters: u64,
    pub flops: u64,
    pub wall_s: f64,
    pub images_per_s: f64,
    pub device: String,
    pub kernels: String,
    pub commit: String,
    /// The suite and candle releases that trained the run; empty in tables written before these
    /// columns existed.
    pub suite_version: String,
    pub candle_version: String,
}

/// The records and curve rows of the finished runs of a plan.
pub fn collect(runs: &[PlannedRun]) -> Result<(Vec<RunRecord>, DataFrame), Error> {
    let mut records = Vec::new();
    let mut curves = CurveColumns::default();
    for run in runs.iter().filter(|r| r.status == Status::Done) {
        let summary = trainer::run::read_summary(&run.dir)?.ok_or_else(|| Error::Io {
            path: run.dir.join(trainer::run::SUMMARY_FILE),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the run has no summary"),
        })?;
        let rows = trainer::metrics::read(&run.dir.join(trainer::run::METRICS_FILE))?;
        let spec = run.spec.model_spec()?;
        let best = rows
            .iter()
            .filter_map(|r| r.test_error)
            .fold(f64::INFINITY, f64::min);
        let last_window = rows
            .last()
            .map(|r| {
                let before = rows.len().checked_sub(2).map_or(0, |i| rows[i].iteration);
                r.iteration - before
            })
            .unwrap_or(0);
        records.push(RunRecord {
            run_id: summary.run_id.clone(),
            model: run.model.clone(),
            depth: spec.depth() as u64,
            residual: spec.residual,
            shortcut: if spec.residual {
                spec.shortcut.letter().to_ascii_uppercase().to_string()
            } else {
                String::new()
            },
            convs_per_unit: spec.convs_per_unit().unwrap_or(2) as u64,
            seed: run.seed,
            iterations: summary.iterations,
            final_train_error: 100.0 * summary.final_train_error,
            train_error_images: last_window * run.spec.batch_size as u64,
            final_test_error: 100.0 * summary.final_test_error,
            test_images: summary.eval_images as u64,
            best_test_error: 100.0 * best.min(summary.final_test_error),
            parameters: summary.parameters,
            flops: run.flops,
            wall_s: summary.wall_s,
            images_per_s: summary.images_per_s,
            device: summary.device.clone(),
            kernels: summary.kernels.clone(),
            commit: summary.git_commit.clone().unwrap_or_default(),
            suite_version: summary.suite_version.clone(),
            candle_version: summary.candle_version.clone(),
        });
        for row in rows {
            curves.run_id.push(summary.run_id.clone());
            curves.model.push(run.model.clone());
            curves.seed.push(run.seed);
            curves.iteration.push(row.iteration);
            curves.epoch.push(row.epoch);
            curves.lr.push(row.lr);
            curves.train_loss.push(row.train_loss);
            curves.train_error.push(100.0 * row.train_error);
            curves.test_loss.push(row.test_loss);
            curves.test_error.push(row.test_error.map(|e| 100.0 * e));
        }
    }
    Ok((
        records,
        curves.frame().map_err(polars_at(Path::new("curves")))?,
    ))
}

#[derive(Default)]
struct CurveColumns {
    run_id: Vec<String>,
    model: Vec<String>,
    seed: Vec<u64>,
    iteration: Vec<u64>,
    epoch: Vec<f64>,
    lr: Vec<f64>,
    train_loss: Vec<f64>,
    train_error: Vec<f64>,
    test_loss: Vec<Option<f64>>,
    test_error: Vec<Option<f64>>,
}

impl CurveColumns {
    fn frame(self) -> PolarsResult<DataFrame> {
        df!(
            "run_id" => self.run_id,
            "model" => self.model,
            "seed" => self.seed,
            "iteration" => self.iteration,
            "epoch" => self.epoch,
            "lr" => self.lr,
            "train_loss" => self.train_loss,
            "train_error" => self.train_error,
            "test_loss" => self.test_loss,
            "test_error" => self.test_error,
        )
    }
}

pub(crate) fn polars_at(path: &Path) -> impl Fn(PolarsError) -> Error + '_ {
    move |source| Error::Polars {
        path: path.to_path_buf(),
        source,
    }
}

/// The `runs` table.
pub fn runs_frame(records: &[RunRecord]) -> PolarsResult<DataFrame> {
    let col = |f: fn(&RunRecord) -> String| records.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&RunRecord) -> u64| records.iter().map(f).collect::<Vec<_>>();
    let real = |f: fn(&RunRecord) -> f64| records.iter().map(f).collect::<Vec<_>>();
    df!(
        "run_id" => col(|r| r.run_id.clone()),
        "model" => col(|r| r.model.clone()),
        "depth" => num(|r| r.depth),
        "residual" => records.iter().map(|r| r.residual).collect::<Vec<_>>(),
        "shortcut" => col(|r| r.shortcut.clone()),
        "convs_per_unit" => num(|r| r.convs_per_unit),
        "seed" => num(|r| r.seed),
        "iterations" => num(|r| r.iterations),
        "final_train_error" => real(|r| r.final_train_error),
        "train_error_images" => num(|r| r.train_error_images),
        "final_test_error" => real(|r| r.final_test_error),
        "test_images" => num(|r| r.test_images),
        "best_test_error" => real(|r| r.best_test_error),
        "parameters" => num(|r| r.parameters),
        "flops" => num(|r| r.flops),
        "wall_s" => real(|r| r.wall_s),
        "images_per_s" => real(|r| r.images_per_s),
        "device" => col(|r| r.device.clone()),
        "kernels" => col(|r| r.kernels.clone()),
        "commit" => col(|r| r.commit.clone()),
        "suite_version" => col(|r| r.suite_version.clone()),
        "candle_version" => col(|r| r.candle_version.clone()),
    )
}

/// The records of a `runs` table written by [`runs_frame`]; a missing column or a wrong type is
/// an error naming the file and the column.
pub fn records_from(df: &DataFrame, path: &Path) -> Result<Vec<RunRecord>, Error> {
    let c = Columns::new(df, path);
    let residual = c.bools("residual")?;
    let (run_id, model, shortcut, device, kernels, commit) = (
        c.strings("run_id")?,
        c.strings("model")?,
        c.strings("shortcut")?,
        c.strings("device")?,
        c.strings("kernels")?,
        c.strings("commit")?,
    );
    let (suite_version, candle_version) = (
        c.strings_or_empty("suite_version")?,
        c.strings_or_empty("candle_version")?,
    );
    let (depth, convs, seed, iterations, train_images, test_images, parameters, flops) = (
        c.u64s("depth")?,
        c.u64s("convs_per_unit")?,
        c.u64s("seed")?,
        c.u64s("iterations")?,
        c.u64s("train_error_images")?,
        c.u64s("test_images")?,
        c.u64s("parameters")?,
        c.u64s("flops")?,
    );
    let (train, test, best, wall, ips) = (
        c.f64s("final_train_error")?,
        c.f64s("final_test_error")?,
        c.f64s("best_test_error")?,
        c.f64s("wall_s")?,
        c.f64s("images_per_s")?,
    );
    Ok((0..df.height())
        .map(|i| RunRecord {
            run_id: run_id[i].clone(),
            model: model[i].clone(),
            depth: depth[i],
            residual: residual[i],
            shortcut: shortcut[i].clone(),
            convs_per_unit: convs[i],
            seed: seed[i],
            iterations: iterations[i],
            final_train_error: train[i],
            train_error_images: train_images[i],
            final_test_error: test[i],
            test_images: test_images[i],
            best_test_error: best[i],
            parameters: parameters[i],
            flops: flops[i],
            wall_s: wall[i],
            images_per_s: ips[i],
            device: device[i].clone(),
            kernels: kernels[i].clone(),
            commit: commit[i].clone(),
            suite_version: suite_version[i].clone(),
            candle_version: candle_version[i].clone(),
        })
        .collect())
}

/// One layer of one run, as `fig7` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub run_id: String,
    pub model: String,
    pub seed: u64,
    /// 1-based, in network order.
    pub layer: u64,
    pub name: String,
    pub std: f64,
    /// 1 for the largest response of the run (the paper's bottom panel).
    pub rank: u64,
}

/// The `fig7` rows of measured runs.
pub fn layer_rows(measured: &[(&PlannedRun, Responses)]) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    for (run, responses) in measured {
        let mut order: Vec<usize> = (0..responses.layers.len()).collect();
        order.sort_by(|&a, &b| responses.layers[b].std.total_cmp(&responses.layers[a].std));
        let mut rank = vec![0; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r as u64 + 1;
        }
        for (i, layer) in responses.layers.iter().enumerate() {
            rows.push(LayerRow {
                run_id: responses.run_id.clone(),
                model: run.model.clone(),
                seed: run.seed,
                layer: i as u64 + 1,
                name: layer.name.clone(),
                std: layer.std,
                rank: rank[i],
            });
        }
    }
    rows
}

pub fn layers_frame(rows: &[LayerRow]) -> PolarsResult<DataFrame> {
    df!(
        "run_id" => rows.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
        "layer" => rows.iter().map(|r| r.layer).collect::<Vec<_>>(),
        "name" => rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "std" => rows.iter().map(|r| r.std).collect::<Vec<_>>(),
        "rank" => rows.iter().map(|r| r.rank).collect::<Vec<_>>(),
    )
}

pub fn layers_from(df: &DataFrame, path: &Path) -> Result<Vec<LayerRow>, Error> {
    let c = Columns::new(df, path);
    let std = c.f64s("std")?;
    let (run_id, model, name) = (
        c.strings("run_id")?,
        c.strings("model")?,
        c.strings("name")?,
    );
    let (seed, layer, rank) = (c.u64s("seed")?, c.u64s("layer")?, c.u64s("rank")?);
    Ok((0..df.height())
        .map(|i| LayerRow {
            run_id: run_id[i].clone(),
            model: model[i].clone(),
            seed: seed[i],
            layer: layer[i],
            name: name[i].clone(),
            std: std[i],
            rank: rank[i],
        })
        .collect())
}

/// One model over its seeds, beside the paper's Table 6 row.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub model: String,
    pub depth: u64,
    pub residual: bool,
    pub seeds: u64,
    pub test_error_mean: f64,
    /// Sample standard deviation over seeds; NaN with one seed.
    pub test_error_std: f64,
    pub test_error_best: f64,
    pub train_error_mean: f64,
    pub train_error_std: f64,
    pub paper_error: Option<f64>,
    pub paper_error_mean: Option<f64>,
    pub paper_error_std: Option<f64>,
}

/// Mean and sample standard deviation (NaN for fewer than two values).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The runs grouped by model, models in the order first seen.
pub fn by_model(records: &[RunRecord]) -> Vec<(&str, Vec<&RunRecord>)> {
    let mut groups: Vec<(&str, Vec<&RunRecord>)> = Vec::new();
    for r in records {
        match groups.iter_mut().find(|(model, _)| *model == r.model) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((&r.model, vec![r])),
        }
    }
    groups
}

/// Per model in first-seen order, with Table 6's row for residual nets of the paper's units.
pub fn summarise(records: &[RunRecord], paper: &paper::Paper) -> Vec<ModelSummary> {
    by_model(records)
        .into_iter()
        .map(|(model, rs)| {
            let test: Vec<f64> = rs.iter().map(|r| r.final_test_error).collect();
            let train: Vec<f64> = rs.iter().map(|r| r.final_train_error).collect();
            let (test_mean, test_std) = mean_std(&test);
            let (train_mean, train_std) = mean_std(&train);
            let first = rs[0];
            let row = (first.residual && first.convs_per_unit == 2 && first.shortcut == "A")
                .then(|| paper.cifar_resnet(first.depth as usize))
                .flatten();
            ModelSummary {
                model: model.into(),
                depth: first.depth,
                residual: first.residual,
                seeds: rs.len() as u64,
                test_error_mean: test_mean,
                test_error_std: test_std,
                test_error_best: test.iter().copied().fold(f64::INFINITY, f64::min),
                train_error_mean: train_mean,
                train_error_std: train_std,
                paper_error: row.map(|r| r.error),
                paper_error_mean: row.and_then(|r| r.error_mean),
                paper_error_std: row.and_then(|r| r.error_std),
            }
        })
        .collect()
}

/// One model under one kind of test views over its seeds, beside the paper's number for the
/// same net and views (Tables 2 and 3 for 10 crops, Table 4 for multi-scale).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSummary {
    pub model: String,
    pub views: String,
    pub seeds: u64,
    /// Validation images each run was scored on.
    pub images: u64,
    pub top1_error_mean: f64,
    /// Sample standard deviation over seeds; NaN with one seed.
    pub top1_error_std: f64,
    pub top5_error_mean: f64,
    pub top5_error_std: f64,
    /// The paper's tables the numbers come from (`Table 2`, `Tables 2, 3`); empty when none has
    /// the net under these views.
    pub paper_source: String,
    pub paper_top1_error: Option<f64>,
    pub paper_top5_error: Option<f64>,
}

/// The paper's tables of single-net ImageNet errors under `views`, the experiment's own first
/// (so `table2` quotes Table 2 where Table 3 repeats it).
fn paper_tables(views: trainer::eval::Views, experiment: &str) -> Vec<&'static str> {
    use trainer::eval::Views;
    let mut tables = match views {
        Views::TenCrop => vec!["table2", "table3"],
        Views::MultiScale => vec!["table4"],
        // The paper reports no single-crop errors for these nets.
        Views::Center => vec![],
    };
    if let Some(own) = tables.iter().position(|t| *t == experiment) {
        let own = tables.remove(own);
        tables.insert(0, own);
    }
    tables
}

/// The paper's top-1 and top-5 errors of the net `record` trained, under `views`, and the tables
/// they come from: each number from the first table (see [`paper_tables`]) that prints it.
fn paper_view_errors(
    record: &RunRecord,
    views: trainer::eval::Views,
    experiment: &str,
    paper: &paper::Paper,
) -> (String, Option<f64>, Option<f64>) {
    let shortcut = record.residual.then_some(record.shortcut.as_str());
    let (mut top1, mut top5, mut sources) = (None, None, Vec::new());
    for name in paper_tables(views, experiment) {
        let Some(row) = paper
            .imagenet_table(name)
            .and_then(|t| t.net(record.depth as usize, shortcut))
        else {
            continue;
        };
        let mut used = false;
        if top1.is_none() && row.top1.is_some() {
            (top1, used) = (row.top1, true);
        }
        if top5.is_none() && row.top5.is_some() {
            (top5, used) = (row.top5, true);
        }
        if used {
            sources.push(name.trim_start_matches("table").to_string());
        }
    }
    let source = match sources.len() {
        0 => String::new(),
        1 => format!("Table {}", sources[0]),
        _ => format!("Tables {}", sources.join(", ")),
    };
    (source, top1, top5)
}

/// Per model (in the runs' order) and kind of views (in the order measured), the errors over
/// seeds beside the paper's; the ImageNet counterpart of [`summarise`].
pub fn summarise_views(
    records: &[RunRecord],
    views: &[super::views::ViewErrors],
    experiment: &str,
    paper: &paper::Paper,
) -> Vec<ViewSummary> {
    let mut kinds = Vec::new();
    for v in views {
        if !kinds.contains(&v.views) {
            kinds.push(v.views);
        }
    }
    let mut rows = Vec::new();
    for (model, runs) in by_model(records) {
        for &kind in &kinds {
            let measured: Vec<&super::views::ViewErrors> = views
                .iter()
                .filter(|v| v.views == kind && runs.iter().any(|r| r.run_id == v.run_id))
                .collect();
            if measured.is_empty() {
                continue;
            }
            let top1: Vec<f64> = measured.iter().map(|v| v.top1_error).collect();
            let top5: Vec<f64> = measured.iter().map(|v| v.top5_error).collect();
            let (top1_mean, top1_std) = mean_std(&top1);
            let (top5_mean, top5_std) = mean_std(&top5);
            let (source, paper_top1, paper_top5) =
                paper_view_errors(runs[0], kind, experiment, paper);
            rows.push(ViewSummary {
                model: model.to_string(),
                views: kind.to_string(),
                seeds: measured.len() as u64,
                images: measured.iter().map(|v| v.images as u64).min().unwrap_or(0),
                top1_error_mean: top1_mean,
                top1_error_std: top1_std,
                top5_error_mean: top5_mean,
                top5_error_std: top5_std,
                paper_source: source,
                paper_top1_error: paper_top1,
                paper_top5_error: paper_top5,
            });
        }
    }
    rows
}

/// The `views_summary` table: one row per [`ViewSummary`].
pub fn view_summary_frame(rows: &[ViewSummary]) -> PolarsResult<DataFrame> {
    df!(
        "model" => rows.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        "views" => rows.iter().map(|r| r.views.clone()).collect::<Vec<_>>(),
        "seeds" => rows.iter().map(|r| r.seeds).collect::<Vec<_>>(),
        "images" => rows.iter().map(|r| r.images).collect::<Vec<_>>(),
        "top1_error_mean" => rows.iter().map(|r| r.top1_error_mean).collect::<Vec<_>>(),
        "top1_error_std" => rows.iter().map(|r| r.top1_error_std).collect::<Vec<_>>(),
        "top5_error_mean" => rows.iter().map(|r| r.top5_error_mean).collect::<Vec<_>>(),
        "top5_error_std" => rows.iter().map(|r| r.top5_error_std).collect::<Vec<_>>(),
        "paper_source" => rows.iter().map(|r| r.paper_source.clone()).collect::<Vec<_>>(),
        "paper_top1_error" => rows.iter().map(|r| r.paper_top1_error).collect::<Vec<_>>(),
        "paper_top5_error" => rows.iter().map(|r| r.paper_top5_error).collect::<Vec<_>>(),
    )
}

/// The rows of a `views_summary` table written by [`view_summary_frame`].
pub fn view_summaries_from(df: &DataFrame, path: &Path) -> Result<Vec<ViewSummary>, Error> {
    let c = Columns::new(df, path);
    let (model, views, source) = (
        c.strings("model")?,
        c.strings("views")?,
        c.strings("paper_source")?,
    );
    let (seeds, images) = (c.u64s("seeds")?, c.u64s("images")?);
    let (top1_mean, top1_std) = (c.f64s("top1_error_mean")?, c.f64s("top1_error_std")?);
    let (top5_mean, top5_std) = (c.f64s("top5_error_mean")?, c.f64s("top5_error_std")?);
    let (paper_top1, paper_top5) = (
        c.optional_f64s("paper_top1_error")?,
        c.optional_f64s("paper_top5_error")?,
    );
    Ok((0..df.height())
        .map(|i| ViewSummary {
            model: model[i].clone(),
            views: views[i].clone(),
            seeds: seeds[i],
            images: images[i],
            top1_error_mean: top1_mean[i],
            top1_error_std: top1_std[i],
            top5_error_mean: top5_mean[i],
            top5_error_std: top5_std[i],
            paper_source: source[i].clone(),
            paper_top1_error: paper_top1[i],
            paper_top5_error: paper_top5[i],
        })
        .collect())
}

/// What a sweep measured beyond its run records: layer responses (Fig. 7), errors under the
/// paper's test views, and the training curves.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    pub layers: Vec<LayerRow>,
    pub views: Vec<super::views::ViewErrors>,
    pub curves: Vec<CurvePoint>,
}

/// One metrics row of one run's curve, errors in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub run_id: String,
    pub model: String,
    pub iteration: u64,
    pub train_error: f64,
    pub test_error: Option<f64>,
}

/// The points of a `curves` table (as [`collect`] makes it, or read back from `path`).
pub fn curve_points(df: &DataFrame, path: &Path) -> Result<Vec<CurvePoint>, Error> {
    let c = Columns::new(df, path);
    let (ids, models) = (c.strings("run_id")?, c.strings("model")?);
    let iterations = c.u64s("iteration")?;
    let train = c.f64s("train_error")?;
    let test = c.optional_f64s("test_error")?;
    Ok((0..df.height())
        .map(|i| CurvePoint {
            run_id: ids[i].clone(),
            model: models[i].clone(),
            iteration: iterations[i],
            train_error: train[i],
            test_error: test[i],
        })
        .collect())
}

/// The `views` table: one row per run and kind of views.
pub fn views_frame(
    records: &[RunRecord],
    views: &[super::views::ViewErrors],
) -> PolarsResult<DataFrame> {
    let record = |id: &str| records.iter().find(|r| r.run_id == id);
    df!(
        "run_id" => views.iter().map(|v| v.run_id.clone()).collect::<Vec<_>>(),
        "model" => views.iter().map(|v| record(&v.run_id).map(|r| r.model.clone())).collect::<Vec<_>>(),
        "seed" => views.iter().map(|v| record(&v.run_id).map(|r| r.seed)).collect::<Vec<_>>(),
        "views" => views.iter().map(|v| v.views.to_string()).collect::<Vec<_>>(),
        "images" => views.iter().map(|v| v.images as u64).collect::<Vec<_>>(),
        "top1_error" => views.iter().map(|v| v.top1_error).collect::<Vec<_>>(),
        "top5_error" => views.iter().map(|v| v.top5_error).collect::<Vec<_>>(),
    )
}

/// The rows of a `views` table written by [`views_frame`].
pub fn views_from(df: &DataFrame, path: &Path) -> Result<Vec<super::views::ViewErrors>, Error> {
    let c = Columns::new(df, path);
    let ids = c.strings("run_id")?;
    let views = c.strings("views")?;
    let images = c.u64s("images")?;
    let top1 = c.f64s("top1_error")?;
    let top5 = c.f64s("top5_error")?;
    (0..df.height())
        .map(|i| {
            Ok(super::views::ViewErrors {
                run_id: ids[i].clone(),
                views: views[i].parse().map_err(|msg: String| Error::Column {
                    path: path.to_path_buf(),
                    column: "views".into(),
                    source: PolarsError::ComputeError(msg.into()),
                })?,
                images: images[i] as usize,
                top1_error: top1[i],
                top5_error: top5[i],
            })
        })
        .collect()
}

/// The rows of a `summary` table written by [`summary_frame`].
pub fn summaries_from(df: &DataFrame, path: &Path) -> Result<Vec<ModelSummary>, Error> {
    let c = Columns::new(df, path);
    let (model, residual) = (c.strings("model")?, c.bools("residual")?);
    let (depth, seeds) = (c.u64s("depth")?, c.u64s("seeds")?);
    let (test_mean, test_std, test_best) = (
        c.f64s("test_error_mean")?,
        c.f64s("test_error_std")?,
        c.f64s("test_error_best")?,
    );
    let (train_mean, train_std) = (c.f64s("train_error_mean")?, c.f64s("train_error_std")?);
    let (paper, paper_mean, paper_std) = (
        c.optional_f64s("paper_error")?,
        c.optional_f64s("paper_error_mean")?,
        c.optional_f64s("paper_error_std")?,
    );
    Ok((0..df.height())
        .map(|i| ModelSummary {
            model: model[i].clone(),
            depth: depth[i],
            residual: residual[i],
            seeds: seeds[i],
            test_error_mean: test_mean[i],
            test_error_std: test_std[i],
            test_error_best: test_best[i],
            train_error_mean: train_mean[i],
            train_error_std: train_std[i],
            paper_error: paper[i],
            paper_error_mean: paper_mean[i],
            paper_error_std: paper_std[i],
        })
        .collect())
}

pub fn summary_frame(rows: &[ModelSummary]) -> PolarsResult<DataFrame> {
    df!(
        "model" => rows.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        "depth" => rows.iter().map(|r| r.depth).collect::<Vec<_>>(),
        "residual" => rows.iter().map(|r| r.residual).collect::<Vec<_>>(),
        "seeds" => rows.iter().map(|r| r.seeds).collect::<Vec<_>>(),
        "test_error_mean" => rows.iter().map(|r| r.test_error_mean).collect::<Vec<_>>(),
        "test_error_std" => rows.iter().map(|r| r.test_error_std).collect::<Vec<_>>(),
        "test_error_best" => rows.iter().map(|r| r.test_error_best).collect::<Vec<_>>(),
        "train_error_mean" => rows.iter().map(|r| r.train_error_mean).collect::<Vec<_>>(),
        "train_error_std" => rows.iter().map(|r| r.train_error_std).collect::<Vec<_>>(),
        "paper_error" => rows.iter().map(|r| r.paper_error).collect::<Vec<_>>(),
        "paper_error_mean" => rows.iter().map(|r| r.paper_error_mean).collect::<Vec<_>>(),
        "paper_error_std" => rows.iter().map(|r| r.paper_error_std).collect::<Vec<_>>(),
    )
}
