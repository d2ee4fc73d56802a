//! Claims decided on results tables. Noise decides as much as the numbers: a model's value is the
//! mean over its seeds, its standard deviation the larger of the seed spread and the binomial
//! standard deviation of an error rate on that many images, divided by the square root of the
//! number of seeds. An ordering holds only when each gap exceeds its margin (the combined standard
//! deviation of the two means times the rule's `sigmas`), fails when a gap exceeds it the other
//! way, and is inconclusive in between. A claim whose runs are missing is "not run".

use serde::Serialize;

use super::config::{Check, Claim, Metric, SweepConfig, lookup, number};
use super::tables::{Measurements, RunRecord, mean_std};
use super::views::ViewErrors;
use crate::Verdict;

/// One claim's verdict, as `verdicts.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    pub claim: String,
    pub statement: String,
    /// The profiles whose results can decide the claim.
    pub applies_to: String,
    /// What the paper (or the question) expects, in this suite's terms.
    pub paper: String,
    pub measured: String,
    pub verdict: Verdict,
    pub why: String,
}

/// A model's metric over its seeds.
#[derive(Debug, Clone, Copy)]
struct Value {
    mean: f64,
    /// Standard error: the standard deviation of the mean.
    se: f64,
}

/// Binomial standard deviation, in percent, of an error rate of `percent` counted on `n` images.
pub fn binomial_sd(percent: f64, n: u64) -> f64 {
    let p = (percent / 100.0).clamp(0.0, 1.0);
    100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// Held when `v` is within `sigmas` combined standard deviations (the paper's `paper_sd` and the
/// measurement's own) of the paper's `reference`, else failed; with the band's half-width.
fn within_band(v: &Value, reference: f64, paper_sd: f64, sigmas: f64) -> (Verdict, f64) {
    let band = sigmas * (paper_sd.powi(2) + v.se.powi(2)).sqrt();
    let held = (v.mean - reference).abs() <= band;
    (if held { Verdict::Held } else { Verdict::Failed }, band)
}

fn value(
    records: &[RunRecord],
    measurements: &Measurements,
    model: &str,
    metric: Metric,
) -> Option<Value> {
    let rs: Vec<&RunRecord> = records.iter().filter(|r| r.model == model).collect();
    if rs.is_empty() {
        return None;
    }
    let (values, images): (Vec<f64>, u64) = match metric {
        Metric::FinalTrainError => (
            rs.iter().map(|r| r.final_train_error).collect(),
            rs[0].train_error_images,
        ),
        Metric::FinalTestError => (
            rs.iter().map(|r| r.final_test_error).collect(),
            rs[0].test_images,
        ),
        m @ (Metric::Top1Error10Crop
        | Metric::Top5Error10Crop
        | Metric::Top1ErrorMultiscale
        | Metric::Top5ErrorMultiscale) => {
            let (views, top5) = m.views().expect("a views metric");
            let per_run: Vec<&ViewErrors> = rs
                .iter()
                .filter_map(|r| {
                    measurements
                        .views
                        .iter()
                        .find(|v| v.run_id == r.run_id && v.views == views)
                })
                .collect();
            if per_run.len() != rs.len() {
                return None;
            }
            (
                per_run
                    .iter()
                    .map(|v| if top5 { v.top5_error } else { v.top1_error })
                    .collect(),
                per_run[0].images as u64,
            )
        }
        Metric::ResponseStdMean => {
            let per_run: Vec<f64> = rs
                .iter()
                .filter_map(|r| {
                    let stds: Vec<f64> = measurements
                        .layers
                        .iter()
                        .filter(|l| l.run_id == r.run_id)
                        .map(|l| l.std)
                        .collect();
                    (!stds.is_empty()).then(|| stds.iter().sum::<f64>() / stds.len() as f64)
                })
                .collect();
            if per_run.is_empty() {
                return None;
            }
            (per_run, 0)
        }
    };
    let (mean, seed_sd) = mean_std(&values);
    let seed_sd = if seed_sd.is_nan() { 0.0 } else { seed_sd };
    let floor = match metric {
        Metric::ResponseStdMean => 0.0,
        _ => binomial_sd(mean, images),
    };
    Some(Value {
        mean,
        se: seed_sd.max(floor) / (values.len() as f64).sqrt(),
    })
}

/// A model's curve of `metric` (the training or the test error) averaged over its seeds at the
/// iterations every seed logged: (iteration, mean, standard error).
fn curve(
    records: &[RunRecord],
    measurements: &Measurements,
    model: &str,
    metric: Metric,
) -> Vec<(u64, f64, f64)> {
    let runs: Vec<&RunRecord> = records.iter().filter(|r| r.model == model).collect();
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let images = match metric {
        Metric::FinalTrainError => first.train_error_images,
        _ => first.test_images,
    };
    let mut by_iteration: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for p in measurements
        .curves
        .iter()
        .filter(|p| runs.iter().any(|r| r.run_id == p.run_id))
    {
        let v = match metric {
            Metric::FinalTrainError => Some(p.train_error),
            _ => p.test_error,
        };
        if let Some(v) = v {
            by_iteration.entry(p.iteration).or_default().push(v);
        }
    }
    by_iteration
        .into_iter()
        .filter(|(_, vs)| vs.len() == runs.len())
        .map(|(iteration, vs)| {
            let mean = vs.iter().sum::<f64>() / vs.len() as f64;
            let se = binomial_sd(mean, images) / (vs.len() as f64).sqrt();
            (iteration, mean, se)
        })
        .collect()
}

/// An expected ordering whose gap (positive in the expected direction) is measured against its
/// noise margin: held beyond it, failed beyond it the other way, inconclusive within.
fn ordering(gap: f64, margin: f64) -> Verdict {
    if gap > margin {
        Verdict::Held
    } else if gap < -margin {
        Verdict::Failed
    } else {
        Verdict::Inconclusive
    }
}

fn show(model: &str, v: Value) -> String {
    // "s.e." and not "±": the summary table's ± is the seeds' standard deviation. One run of a
    // metric without a sampling floor (layer responses) has no error to show.
    if v.se > 0.0 {
        format!("{model} {:.2} (s.e. {:.2})", v.mean, v.se)
    } else {
        format!("{model} {:.2}", v.mean)
    }
}

/// Decides every claim of `config` for `profile` on the given results.
pub fn decide(
    config: &SweepConfig,
    profile: &str,
    records: &[RunRecord],
    measurements: &Measurements,
    paper: &paper::Paper,
    paper_toml: &toml::Value,
) -> Vec<VerdictRow> {
    config
        .claims
        .iter()
        .map(|claim| {
            let statement = config
                .statements
                .get(&claim.id)
                .cloned()
                .unwrap_or_default();
            let applies_to = claim.profiles.join(", ");
            let expected = expectation(claim, paper_toml);
            if !claim.profiles.iter().any(|p| p == profile) {
                return VerdictRow {
                    claim: claim.id.clone(),
                    statement,
                    applies_to: applies_to.clone(),
                    paper: expected,
                    measured: String::new(),
                    verdict: Verdict::NotApplicable,
                    why: format!("decided on the {applies_to} profile(s) only"),
                };
            }
            let (verdict, measured, why) =
                check(&claim.check, records, measurements, paper, paper_toml);
            VerdictRow {
                claim: claim.id.clone(),
                statement,
                applies_to,
                paper: expected,
                measured,
                verdict,
                why,
            }
        })
        .collect()
}

/// The number at `key` of paper.toml (checked when the config was read), as the expectation shows it.
fn shown(paper_toml: &toml::Value, key: &str) -> String {
    lookup(paper_toml, key)
        .and_then(number)
        .map_or("?".into(), |v| v.to_string())
}

/// The number at `key` of paper.toml, which the config's check made sure is there.
fn paper_number(paper_toml: &toml::Value, key: &str) -> f64 {
    lookup(paper_toml, key)
        .and_then(number)
        .expect("a paper value checked when the config was read")
}

/// The models of ordering chains, each once per appearance.
fn chain_models(chains: &[Vec<String>]) -> Vec<&str> {
    chains.iter().flatten().map(String::as_str).collect()
}

/// `a < b < c; d < e`.
fn orderings(chains: &[Vec<String>]) -> String {
    chains
        .iter()
        .map(|c| c.join(" < "))
        .collect::<Vec<_>>()
        .join("; ")
}

fn expectation(claim: &Claim, paper_toml: &toml::Value) -> String {
    match &claim.check {
        Check::Ascending { metric, chains, .. } => {
            format!("{} ({})", orderings(chains), metric.as_str())
        }
        Check::AscendingThroughout {
            metric,
            chains,
            from,
            ..
        } => format!(
            "{} ({} curves, from {:.0}% of training on)",
            orderings(chains),
            metric.as_str().trim_start_matches("final_"),
            100.0 * from
        ),
        Check::Below {
            metric,
            model,
            paper_value,
        } => format!(
            "{model} {} < {}",
            metric.as_str(),
            shown(paper_toml, paper_value)
        ),
        Check::Band { models, sigmas, .. } => {
            format!("{} within {sigmas} sd of Table 6", models.join(", "))
        }
        Check::PaperBand {
            metric,
            values,
            sigmas,
            ..
        } => format!(
            "{} within {sigmas} sd of the paper ({})",
            values
                .iter()
                .map(|(m, k)| format!("{m} {}", shown(paper_toml, k)))
                .collect::<Vec<_>>()
                .join(", "),
            metric.as_str()
        ),
        Check::Gap {
            metric,
            better,
            worse,
            paper_value,
            sigmas,
            ..
        } => format!(
            "{worse} - {better} = {} within {sigmas} sd ({})",
            shown(paper_toml, paper_value),
            metric.as_str()
        ),
        Check::Lowest {
            metric,
            among,
            expected,
            ..
        } => format!(
            "lowest {} of {}: {expected}",
            metric.as_str(),
            among.join(", ")
        ),
        Check::SmallerResponses { pairs, .. } => {
            pairs
                .iter()
                .map(|[a, b]| format!("{a} < {b}"))
                .collect::<Vec<_>>()
                .join("; ")
                + " (per-layer response std)"
        }
    }
}

/// Combines parts: any failed, failed; else any inconclusive, inconclusive; else held.
fn combine(parts: &[Verdict]) -> Verdict {
    if parts.contains(&Verdict::Failed) {
        Verdict::Failed
    } else if parts.contains(&Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Held
    }
}

fn missing(
    models: &[&str],
    records: &[RunRecord],
    measurements: &Measurements,
    metric: Metric,
) -> Vec<String> {
    models
        .iter()
        .filter(|m| value(records, measurements, m, metric).is_none())
        .map(|m| m.to_string())
        .collect()
}

fn not_run(missing: Vec<String>) -> (Verdict, String, String) {
    (
        Verdict::NotRun,
        String::new(),
        format!("no results for {}", missing.join(", ")),
    )
}

fn check(
    check: &Check,
    records: &[RunRecord],
    measurements: &Measurements,
    paper: &paper::Paper,
    paper_toml: &toml::Value,
) -> (Verdict, String, String) {
    match check {
        Check::AscendingThroughout {
            metric,
            chains,
            from,
            sigmas,
        } => {
            let all = chain_models(chains);
            let gone = missing(&all, records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let mut parts = Vec::new();
            let (mut measured, mut why) = (Vec::new(), Vec::new());
            for chain in chains {
                for pair in chain.windows(2) {
                    let (a, b) = (&pair[0], &pair[1]);
                    let (ca, cb) = (
                        curve(records, measurements, a, *metric),
                        curve(records, measurements, b, *metric),
                    );
                    let last = ca.iter().chain(&cb).map(|p| p.0).max().unwrap_or(0);
                    let start = (from * last as f64).ceil() as u64;
                    let points: Vec<(u64, f64, f64)> = ca
                        .iter()
                        .filter(|p| p.0 >= start)
                        .filter_map(|&(it, ma, sa)| {
                            let &(_, mb, sb) = cb.iter().find(|q| q.0 == it)?;
                            Some((it, mb - ma, sigmas * (sa.powi(2) + sb.powi(2)).sqrt()))
                        })
                        .collect();
                    let Some(&(end, end_gap, end_margin)) = points.last() else {
                        parts.push(Verdict::NotRun);
                        why.push(format!("{a}→{b}: no common logged points from {start}"));
                        continue;
                    };
                    let reversed = points.iter().find(|&&(_, gap, margin)| gap < -margin);
                    let kept = points.iter().filter(|&&(_, gap, _)| gap > 0.0).count();
                    let v = match reversed {
                        Some(_) => Verdict::Failed,
                        None if end_gap > end_margin => Verdict::Held,
                        None => Verdict::Inconclusive,
                    };
                    parts.push(v);
                    measured.push(format!(
                        "{a} < {b} at {kept} of {} points from iteration {start}",
                        points.len()
                    ));
                    why.push(match reversed {
                        Some(&(it, gap, margin)) => format!(
                            "{a}→{b}: reversed at iteration {it} (gap {gap:+.2}, margin {margin:.2}): {v}"
                        ),
                        None => format!(
                            "{a}→{b}: never reversed beyond the margin; at iteration {end} gap \
                             {end_gap:+.2}, margin {end_margin:.2}: {v}"
                        ),
                    });
                }
            }
            let verdict = if parts.contains(&Verdict::NotRun) {
                Verdict::NotRun
            } else {
                combine(&parts)
            };
            (verdict, measured.join("; "), why.join("; "))
        }
        Check::Ascending {
            metric,
            chains,
            sigmas,
            min_gap,
        } => {
            let all = chain_models(chains);
            let gone = missing(&all, records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let mut parts = Vec::new();
            let mut measured = Vec::new();
            let mut why = Vec::new();
            for chain in chains {
                for pair in chain.windows(2) {
                    let a = value(records, measurements, &pair[0], *metric).expect("checked above");
                    let b = value(records, measurements, &pair[1], *metric).expect("checked above");
                    let gap = b.mean - a.mean;
                    let margin = (sigmas * (a.se.powi(2) + b.se.powi(2)).sqrt()).max(*min_gap);
                    let v = ordering(gap, margin);
                    parts.push(v);
                    measured.push(format!(
                        "{} {} {}",
                        show(&pair[0], a),
                        if gap > 0.0 { "<" } else { ">=" },
                        show(&pair[1], b)
                    ));
                    why.push(format!(
                        "{}→{}: gap {gap:+.2}, margin {margin:.2}: {v}",
                        pair[0], pair[1]
                    ));
                }
            }
            (combine(&parts), measured.join("; "), why.join("; "))
        }
        Check::Below {
            metric,
            model,
            paper_value,
        } => {
            let Some(v) = value(records, measurements, model, *metric) else {
                return not_run(vec![model.clone()]);
            };
            let Some(limit) = lookup(paper_toml, paper_value).and_then(number) else {
                return (
                    Verdict::NotRun,
                    String::new(),
                    format!("`{paper_value}` is not in the paper's reference file"),
                );
            };
            let verdict = if v.mean < limit {
                Verdict::Held
            } else {
                Verdict::Failed
            };
            (
                verdict,
                show(model, v),
                format!("{:.3} against the paper's {limit} ({paper_value})", v.mean),
            )
        }
        Check::Band {
            metric,
            models,
            sigmas,
        } => {
            let names: Vec<&str> = models.iter().map(String::as_str).collect();
            let gone = missing(&names, records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let mut parts = Vec::new();
            let (mut measured, mut why) = (Vec::new(), Vec::new());
            for model in models {
                let v = value(records, measurements, model, *metric).expect("checked above");
                let depth = model
                    .parse::<nets::ModelSpec>()
                    .map(|s| s.depth())
                    .unwrap_or(0);
                let Some(row) = paper.cifar_resnet(depth) else {
                    parts.push(Verdict::NotRun);
                    why.push(format!("{model}: no Table 6 row"));
                    continue;
                };
                // The paper's mean ± std where it gives one (ResNet-110), else its single run with
                // the binomial sd of an error rate on the 10,000 test images.
                let (reference, paper_sd) = match (row.error_mean, row.error_std) {
                    (Some(m), Some(s)) => (m, s),
                    _ => (row.error, binomial_sd(row.error, 10_000)),
                };
                let (verdict, band) = within_band(&v, reference, paper_sd, *sigmas);
                parts.push(verdict);
                measured.push(show(model, v));
                why.push(format!(
                    "{model}: {:.2} vs paper {reference:.2}, band ±{band:.2}",
                    v.mean
                ));
            }
            let verdict = if parts.contains(&Verdict::NotRun) {
                Verdict::NotRun
            } else {
                combine(&parts)
            };
            (verdict, measured.join("; "), why.join("; "))
        }
        Check::PaperBand {
            metric,
            values,
            paper_images,
            sigmas,
        } => {
            let names: Vec<&str> = values.keys().map(String::as_str).collect();
            let gone = missing(&names, records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let mut parts = Vec::new();
            let (mut measured, mut why) = (Vec::new(), Vec::new());
            for (model, paper_key) in values {
                let v = value(records, measurements, model, *metric).expect("checked above");
                let reference = paper_number(paper_toml, paper_key);
                let paper_sd = binomial_sd(reference, *paper_images);
                let (verdict, band) = within_band(&v, reference, paper_sd, *sigmas);
                parts.push(verdict);
                measured.push(show(model, v));
                why.push(format!(
                    "{model}: {:.2} vs paper {reference:.2} ({paper_key}), band ±{band:.2}",
                    v.mean
                ));
            }
            (combine(&parts), measured.join("; "), why.join("; "))
        }
        Check::Gap {
            metric,
            better,
            worse,
            paper_value,
            paper_images,
            sigmas,
        } => {
            let gone = missing(&[better, worse], records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let b = value(records, measurements, better, *metric).expect("checked above");
            let w = value(records, measurements, worse, *metric).expect("checked above");
            let paper_gap = paper_number(paper_toml, paper_value);
            // The paper's two errors each carry a binomial sd near their level; the gap's sd
            // combines two of them.
            let paper_sd = binomial_sd(w.mean.max(b.mean), *paper_images) * 2f64.sqrt();
            let band = sigmas * (paper_sd.powi(2) + b.se.powi(2) + w.se.powi(2)).sqrt();
            let gap = w.mean - b.mean;
            let held = (gap - paper_gap).abs() <= band;
            (
                if held { Verdict::Held } else { Verdict::Failed },
                format!("{}; {}: gap {gap:.2}", show(better, b), show(worse, w)),
                format!("gap {gap:.2} vs paper {paper_gap:.2} ({paper_value}), band ±{band:.2}"),
            )
        }
        Check::Lowest {
            metric,
            among,
            expected,
            sigmas,
        } => {
            let names: Vec<&str> = among.iter().map(String::as_str).collect();
            let gone = missing(&names, records, measurements, *metric);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let e = value(records, measurements, expected, *metric).expect("checked above");
            let mut parts = Vec::new();
            let mut why = Vec::new();
            let mut measured = Vec::new();
            let mut lowest = (expected.as_str(), e.mean);
            for other in among {
                let o = value(records, measurements, other, *metric).expect("checked above");
                measured.push(show(other, o));
                if o.mean < lowest.1 {
                    lowest = (other, o.mean);
                }
                if other == expected {
                    continue;
                }
                let gap = o.mean - e.mean;
                let margin = sigmas * (o.se.powi(2) + e.se.powi(2)).sqrt();
                parts.push(ordering(gap, margin));
                why.push(format!(
                    "{other} − {expected}: {gap:+.2}, margin {margin:.2}"
                ));
            }
            (
                combine(&parts),
                format!("lowest: {}; {}", lowest.0, measured.join("; ")),
                why.join("; "),
            )
        }
        Check::SmallerResponses {
            pairs,
            held_at,
            failed_at,
        } => {
            let names: Vec<&str> = pairs.iter().flatten().map(String::as_str).collect();
            let gone = missing(&names, records, measurements, Metric::ResponseStdMean);
            if !gone.is_empty() {
                return not_run(gone);
            }
            let (mut smaller, mut total) = (0usize, 0usize);
            let mut measured = Vec::new();
            for [a, b] in pairs {
                let (la, lb) = (
                    per_layer(records, measurements, a),
                    per_layer(records, measurements, b),
                );
                if la.len() != lb.len() {
                    return (
                        Verdict::NotRun,
                        String::new(),
                        format!("{a} and {b} have different numbers of layers"),
                    );
                }
                let k = la.iter().zip(&lb).filter(|(x, y)| x < y).count();
                measured.push(format!("{a} < {b} at {k} of {} layers", la.len()));
                smaller += k;
                total += la.len();
            }
            let fraction = smaller as f64 / total.max(1) as f64;
            let verdict = if fraction >= *held_at {
                Verdict::Held
            } else if fraction <= *failed_at {
                Verdict::Failed
            } else {
                Verdict::Inconclusive
            };
            (
                verdict,
                measured.join("; "),
                format!(
                    "smaller at {:.0}% of layers (held at ≥ {:.0}%, failed at ≤ {:.0}%)",
                    100.0 * fraction,
                    100.0 * held_at,
                    100.0 * failed_at
                ),
            )
        }
    }
}

/// A model's response std per layer, averaged over its seeds.
fn per_layer(records: &[RunRecord], measurements: &Measurements, model: &str) -> Vec<f64> {
    let runs: Vec<&str> = records
        .iter()
        .filter(|r| r.model == model)
        .map(|r| r.run_id.as_str())
        .collect();
    let mut sums: Vec<(f64, usize)> = Vec::new();
    for l in measurements
        .layers
        .iter()
        .filter(|l| runs.contains(&l.run_id.as_str()))
    {
        let i = l.layer as usize - 1;
        if sums.len() <= i {
            sums.resize(i + 1, (0.0, 0));
        }
        sums[i].0 += l.std;
        sums[i].1 += 1;
    }
    sums.iter().map(|(s, n)| s / *n as f64).collect()
}
