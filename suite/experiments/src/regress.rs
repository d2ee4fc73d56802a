//! Regression checks: a results set (and `suite bench train --json` output) against a committed
//! baseline.
//!
//! A baseline is one JSON file a user can read and regenerate: per sweep model, the final test
//! error's mean and seed spread over the baseline's runs; per benchmark, the training images/s
//! on one device class. A check passes, regresses, improves (passes, but the baseline is stale)
//! or is missing; a missing metric never passes.
//!
//! Accuracy band: [`BAND_SIGMAS`] standard deviations, where the deviation is the baseline's
//! seed spread but never less than the binomial standard deviation of an error rate measured on
//! the test set's size (a single-seed baseline has no spread, and a spread below the binomial one
//! is luck). Throughput: at most [`THROUGHPUT_DROP`] below the baseline, compared only on the
//! device class the baseline was measured on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trainer::bench::{BenchMode, TrainReport};

use crate::Error;
use crate::store::{read_parquet, write_text};
use crate::sweep::tables::{by_model, mean_std, records_from};

/// The version of the baseline file's layout; a file of another version is refused.
pub const FORMAT: u32 = 1;
/// Width of the accuracy band in standard deviations: wide enough that a rerun of an unchanged
/// suite passes about 997 times in 1000 under a normal model, narrow enough to catch a lost point
/// of accuracy on a 10,000-image test set.
pub const BAND_SIGMAS: f64 = 3.0;
/// The largest throughput drop that passes, as a fraction of the baseline.
pub const THROUGHPUT_DROP: f64 = 0.07;

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub format: u32,
    /// The command that wrote it (rerun it to refresh the baseline).
    pub command: String,
    pub suite_version: String,
    #[serde(default)]
    pub accuracy: Vec<AccuracyBaseline>,
    #[serde(default)]
    pub throughput: Vec<ThroughputBaseline>,
}

/// One model of one sweep: its final test error over the baseline's seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyBaseline {
    pub experiment: String,
    pub profile: String,
    pub model: String,
    pub iterations: u64,
    pub test_images: u64,
    pub seeds: u64,
    /// Percent.
    pub test_error_mean: f64,
    /// Percent, over seeds; absent with one seed.
    pub test_error_std: Option<f64>,
}

/// One training benchmark on one device class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputBaseline {
    pub model: String,
    pub batch: usize,
    pub device: String,
    /// What the device is (a CPU's model name, a GPU's name): throughput compares only within it.
    pub device_class: String,
    pub kernels: String,
    pub threads: usize,
    /// Training steps unless it says inference.
    #[serde(default, skip_serializing_if = "is_train")]
    pub mode: BenchMode,
    /// The input side where it is not the net's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
    pub images_per_s: f64,
}

fn is_train(mode: &BenchMode) -> bool {
    *mode == BenchMode::Train
}

impl AccuracyBaseline {
    /// The accuracy band's half-width, in percentage points.
    pub fn band(&self) -> f64 {
        let p = (self.test_error_mean / 100.0).clamp(0.0, 1.0);
        let binomial = 100.0 * (p * (1.0 - p) / self.test_images.max(1) as f64).sqrt();
        let spread = self.test_error_std.filter(|s| s.is_finite()).unwrap_or(0.0);
        BAND_SIGMAS * spread.max(binomial)
    }

    fn name(&self) -> String {
        format!(
            "{}/{} {} test error (%)",
            self.experiment, self.profile, self.model
        )
    }
}

impl ThroughputBaseline {
    fn name(&self) -> String {
        format!(
            "{}{} b{} {} {} kernels, {} threads: {} images/s",
            self.model,
            self.resolution
                .map_or(String::new(), |side| format!(" at {side}x{side}")),
            self.batch,
            self.device,
            self.kernels,
            self.threads,
            match self.mode {
                BenchMode::Train => "training",
                BenchMode::Inference => "inference",
            }
        )
    }

    fn matches(&self, r: &TrainReport) -> bool {
        self.model == r.model
            && self.batch == r.batch
            && self.device == r.device
            && self.kernels == r.kernels
            && self.threads == r.threads
            && self.mode == r.mode
            && self.resolution == r.resolution
    }
}

/// How one metric compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Better than the band: passes, and says the baseline is due for a refresh.
    Improved,
    Regressed,
    /// Not measured, or measured under other conditions than the baseline's.
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Improved => "improved",
            Status::Regressed => "REGRESSED",
            Status::Missing => "MISSING",
        }
    }

    pub fn fails(self) -> bool {
        matches!(self, Status::Regressed | Status::Missing)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub metric: String,
    pub baseline: f64,
    pub measured: Option<f64>,
    /// What passes, in words (`50.60 ± 1.50`, `>= 82.4`).
    pub tolerance: String,
    pub status: Status,
    /// Why a metric is missing, or empty.
    pub note: String,
}

/// Reads and validates a baseline file.
pub fn read_baseline(path: &Path) -> Result<Baseline, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let baseline: Baseline = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if baseline.format != FORMAT {
        return Err(Error::Baseline {
            path: path.to_path_buf(),
            message: format!(
                "format {} (this suite reads format {FORMAT}; rewrite it with `suite regress \
                 --write-baseline`)",
                baseline.format
            ),
        });
    }
    Ok(baseline)
}

/// Writes `baseline` to `path` atomically, as pretty JSON.
pub fn write_baseline(path: &Path, baseline: &Baseline) -> Result<(), Error> {
    let json = serde_json::to_string_pretty(baseline).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_text(path, &(json + "\n"))
}

/// The reports of a `suite bench train --json` file: one JSON object per line (blank lines
/// skipped), or one JSON array of them.
pub fn read_bench(path: &Path) -> Result<Vec<TrainReport>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json = |source| Error::Json {
        path: path.to_path_buf(),
        source,
    };
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(json);
    }
    let mut reports = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        reports.push(
            serde_json::from_str(line).map_err(|source| Error::Baseline {
                path: path.to_path_buf(),
                message: format!(
                    "line {}: not a `suite bench train --json` report: {source}",
                    i + 1
                ),
            })?,
        );
    }
    Ok(reports)
}

/// Every sweep under `results` (`<experiment>/<profile>/runs.parquet`), or only those of
/// `profile`, as baseline rows: one per model, over its seeds, in the tables' order.
pub fn accuracy_of(results: &Path, profile: Option<&str>) -> Result<Vec<AccuracyBaseline>, Error> {
    let mut rows = Vec::new();
    for (experiment, profile, runs) in sweeps(results, profile)? {
        rows.extend(summarise(&experiment, &profile, &runs)?);
    }
    Ok(rows)
}

/// `(experiment, profile, runs.parquet)` for every sweep under `results` (of `only` where given),
/// sorted.
fn sweeps(results: &Path, only: Option<&str>) -> Result<Vec<(String, String, PathBuf)>, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut found = Vec::new();
    for experiment in std::fs::read_dir(results).map_err(io(results))? {
        let experiment = experiment.map_err(io(results))?.path();
        if !experiment.is_dir() {
            continue;
        }
        for profile in std::fs::read_dir(&experiment).map_err(io(&experiment))? {
            let profile = profile.map_err(io(&experiment))?.path();
            let profile_name = name(&profile);
            let runs = profile.join("runs.parquet");
            if only.is_none_or(|only| profile_name == only) && runs.is_file() {
                found.push((name(&experiment), profile_name, runs));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn summarise(experiment: &str, profile: &str, runs: &Path) -> Result<Vec<AccuracyBaseline>, Error> {
    let records = records_from(&read_parquet(runs)?, runs)?;
    by_model(&records)
        .into_iter()
        .map(|(model, of)| {
            let conditions: BTreeSet<(u64, u64)> =
                of.iter().map(|r| (r.iterations, r.test_images)).collect();
            if conditions.len() > 1 {
                return Err(Error::Baseline {
                    path: runs.to_path_buf(),
                    message: format!(
                        "{model}'s runs differ in (iterations, test images): {conditions:?}; a \
                         baseline compares like with like"
                    ),
                });
            }
            let errors: Vec<f64> = of.iter().map(|r| r.final_test_error).collect();
            let (mean, std) = mean_std(&errors);
            Ok(AccuracyBaseline {
                experiment: experiment.to_string(),
                profile: profile.to_string(),
                model: model.to_string(),
                iterations: of[0].iterations,
                test_images: of[0].test_images,
                seeds: of.len() as u64,
                test_error_mean: mean,
                test_error_std: std.is_finite().then_some(std),
            })
        })
        .collect()
}

/// Throughput baseline rows from bench reports measured on `device_class`: one row per benchmark,
/// the median of its repetitions where the file holds several.
pub fn throughput_of(reports: &[TrainReport], device_class: &str) -> Vec<ThroughputBaseline> {
    let mut rows: Vec<ThroughputBaseline> = Vec::new();
    for r in reports {
        if rows.iter().any(|b| b.matches(r)) {
            continue;
        }
        let mut row = ThroughputBaseline {
            model: r.model.clone(),
            batch: r.batch,
            device: r.device.clone(),
            device_class: device_class.to_string(),
            kernels: r.kernels.clone(),
            threads: r.threads,
            mode: r.mode,
            resolution: r.resolution,
            images_per_s: 0.0,
        };
        row.images_per_s = median_images_per_s(&row, reports).expect("r matches its own row");
        rows.push(row);
    }
    rows
}

/// The median images/s of the reports of `benchmark`'s kind: a shared machine's repetitions
/// scatter by more than the 7% a regression is, and the median keeps one slow or fast outlier
/// from deciding.
fn median_images_per_s(benchmark: &ThroughputBaseline, reports: &[TrainReport]) -> Option<f64> {
    let mut values: Vec<f64> = reports
        .iter()
        .filter(|r| benchmark.matches(r))
        .map(|r| r.images_per_s)
        .collect();
    values.sort_by(f64::total_cmp);
    trainer::step::median_of_sorted(&values)
}

/// Compares the sweeps under `results` with the baseline's accuracy rows.
pub fn check_accuracy(baseline: &[AccuracyBaseline], results: &Path) -> Result<Vec<Check>, Error> {
    let mut measured: BTreeMap<(String, String), Vec<AccuracyBaseline>> = BTreeMap::new();
    let mut checks = Vec::new();
    for b in baseline {
        let key = (b.experiment.clone(), b.profile.clone());
        if !measured.contains_key(&key) {
            let runs =
                crate::sweep::tables_dir(results, &b.experiment, &b.profile).join("runs.parquet");
            let rows = if runs.is_file() {
                summarise(&b.experiment, &b.profile, &runs)?
            } else {
                Vec::new()
            };
            measured.insert(key.clone(), rows);
        }
        let found = measured[&key].iter().find(|m| m.model == b.model);
        checks.push(compare_accuracy(b, found, results));
    }
    Ok(checks)
}

fn compare_accuracy(b: &AccuracyBaseline, m: Option<&AccuracyBaseline>, results: &Path) -> Check {
    let band = b.band();
    let mut check = Check {
        metric: b.name(),
        baseline: b.test_error_mean,
        measured: None,
        tolerance: format!("{:.2} ± {band:.2}", b.test_error_mean),
        status: Status::Missing,
        note: String::new(),
    };
    let Some(m) = m else {
        check.note = format!("no run of {} under {}", b.model, results.display());
        return check;
    };
    check.measured = Some(m.test_error_mean);
    if (m.iterations, m.test_images) != (b.iterations, b.test_images) {
        check.note = format!(
            "measured after {} iterations on {} test images, the baseline after {} on {}",
            m.iterations, m.test_images, b.iterations, b.test_images
        );
        return check;
    }
    let gap = m.test_error_mean - b.test_error_mean;
    check.status = if gap > band {
        Status::Regressed
    } else if gap < -band {
        Status::Improved
    } else {
        Status::Pass
    };
    check
}

/// Compares bench reports measured on `device_class` with the baseline's throughput rows.
pub fn check_throughput(
    baseline: &[ThroughputBaseline],
    reports: &[TrainReport],
    device_class: &str,
) -> Vec<Check> {
    baseline
        .iter()
        .map(|b| {
            let floor = b.images_per_s * (1.0 - THROUGHPUT_DROP);
            let mut check = Check {
                metric: b.name(),
                baseline: b.images_per_s,
                measured: None,
                tolerance: format!(">= {floor:.1}"),
                status: Status::Missing,
                note: String::new(),
            };
            let Some(measured) = median_images_per_s(b, reports) else {
                check.note = "not in the bench file".into();
                return check;
            };
            check.measured = Some(measured);
            if b.device_class != device_class {
                check.note = format!(
                    "measured on {device_class}, the baseline on {}: not comparable",
                    b.device_class
                );
                return check;
            }
            check.status = if measured < floor {
                Status::Regressed
            } else if measured > b.images_per_s * (1.0 + THROUGHPUT_DROP) {
                Status::Improved
            } else {
                Status::Pass
            };
            check
        })
        .collect()
}

/// What this machine's `device` is, for throughput baselines: a GPU's name from `nvidia-smi`, the
/// CPU's from `/proc/cpuinfo` ([`cpu_class`]), or `device` itself where neither says.
pub fn device_class(device: &str) -> String {
    let named = if device.starts_with("cuda") {
        std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
    } else {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| cpu_class(&info))
    };
    named
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| device.to_string())
}

/// A CPU's class from the text of `/proc/cpuinfo`: its model name, family and model number, and
/// how many logical CPUs there are, e.g. `Intel(R) Xeon(R) Processor (family 6, model 207, 2
/// CPUs)`. Virtual machines often report a generic model name for different generations, whose
/// throughput differs by far more than a regression band, so the name alone is not a class.
pub fn cpu_class(cpuinfo: &str) -> Option<String> {
    let entries = || {
        cpuinfo
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
    };
    let field = |key: &str| {
        entries()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let name = field("model name").filter(|n| !n.is_empty())?;
    let cpus = entries().filter(|(k, _)| *k == "processor").count();
    let mut details = Vec::new();
    if let Some(family) = field("cpu family") {
        details.push(format!("family {family}"));
    }
    if let Some(model) = field("model") {
        details.push(format!("model {model}"));
    }
    if cpus > 0 {
        details.push(format!("{cpus} CPU{}", if cpus == 1 { "" } else { "s" }));
    }
    Some(if details.is_empty() {
        name
    } else {
        format!("{name} ({})", details.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(mean: f64, std: Option<f64>) -> AccuracyBaseline {
        AccuracyBaseline {
            experiment: "table6".into(),
            profile: "quick".into(),
            model: "resnet20".into(),
            iterations: 400,
            test_images: 10_000,
            seeds: if std.is_some() { 3 } else { 1 },
            test_error_mean: mean,
            test_error_std: std,
        }
    }

    #[test]
    fn the_band_is_never_tighter_than_the_binomial_deviation() {
        // 50% error on 10,000 images: binomial sd 0.5 points.
        assert!((accuracy(50.0, None).band() - 1.5).abs() < 1e-9);
        assert!((accuracy(50.0, Some(0.1)).band() - 1.5).abs() < 1e-9);
        // A seed spread above it widens the band.
        assert!((accuracy(50.0, Some(2.0)).band() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn accuracy_outside_the_band_regresses_or_improves() {
        let b = accuracy(50.0, None);
        let at = |mean| compare_accuracy(&b, Some(&accuracy(mean, None)), Path::new("r")).status;
        assert_eq!(at(51.4), Status::Pass);
        assert_eq!(at(51.6), Status::Regressed);
        assert_eq!(at(48.4), Status::Improved);
        assert_eq!(
            compare_accuracy(&b, None, Path::new("r")).status,
            Status::Missing
        );
        let mut longer = accuracy(50.0, None);
        longer.iterations = 800;
        let check = compare_accuracy(&b, Some(&longer), Path::new("r"));
        assert_eq!(check.status, Status::Missing);
        assert!(check.note.contains("800 iterations"), "{}", check.note);
    }

    fn report(images_per_s: f64) -> TrainReport {
        TrainReport {
            model: "resnet20".into(),
            batch: 128,
            device: "cpu".into(),
            kernels: "fast".into(),
            threads: 2,
            images_per_s,
            images_per_s_min: images_per_s,
            images_per_s_max: images_per_s,
            steps: 10,
            peak_rss_mib: None,
            mode: Default::default(),
            peak_device_mib: None,
            resolution: None,
        }
    }

    #[test]
    fn a_profile_selects_its_sweeps_only() {
        let dir = tempfile::tempdir().unwrap();
        for sweep in ["table6/quick", "table6/medium", "fig1/quick", "fig1/smoke"] {
            let tables = dir.path().join(sweep);
            std::fs::create_dir_all(&tables).unwrap();
            std::fs::write(tables.join("runs.parquet"), b"").unwrap();
        }
        // A profile directory without a runs table is no sweep.
        std::fs::create_dir_all(dir.path().join("table6/paper")).unwrap();
        let found = |only| -> Vec<String> {
            sweeps(dir.path(), only)
                .unwrap()
                .into_iter()
                .map(|(experiment, profile, _)| format!("{experiment}/{profile}"))
                .collect()
        };
        assert_eq!(found(Some("quick")), ["fig1/quick", "table6/quick"]);
        assert_eq!(found(Some("medium")), ["table6/medium"]);
        assert!(found(Some("paper")).is_empty());
        assert_eq!(
            found(None),
            ["fig1/quick", "fig1/smoke", "table6/medium", "table6/quick"]
        );
    }

    #[test]
    fn bench_files_are_json_lines_or_an_array_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&report(88.6)).unwrap();
        let lines = dir.path().join("bench.jsonl");
        std::fs::write(&lines, format!("{line}\n\n{line}\n")).unwrap();
        assert_eq!(
            read_bench(&lines).unwrap(),
            vec![report(88.6), report(88.6)]
        );
        let array = dir.path().join("bench.json");
        std::fs::write(&array, format!("[{line}]")).unwrap();
        assert_eq!(read_bench(&array).unwrap(), vec![report(88.6)]);
        std::fs::write(&lines, format!("{line}\n{{\"model\": 1}}\n")).unwrap();
        let err = read_bench(&lines).unwrap_err().to_string();
        assert!(
            err.contains("bench.jsonl") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn a_cpu_class_tells_generations_behind_one_model_name_apart() {
        let cpuinfo = |model: u32| {
            (0..2)
                .map(|n| {
                    format!(
                        "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
                         model\t\t: {model}\nmodel name\t: Intel(R) Xeon(R) Processor\n\
                         stepping\t: 2\n\n"
                    )
                })
                .collect::<String>()
        };
        let newer = cpu_class(&cpuinfo(207)).unwrap();
        assert_eq!(
            newer,
            "Intel(R) Xeon(R) Processor (family 6, model 207, 2 CPUs)"
        );
        assert_ne!(newer, cpu_class(&cpuinfo(143)).unwrap());
        // Where only the name is known (other kernels, other architectures), the name alone.
        assert_eq!(
            cpu_class("model name : Neoverse-N1\n").as_deref(),
            Some("Neoverse-N1")
        );
        assert_eq!(cpu_class("processor : 0\n"), None);
    }

    #[test]
    fn throughput_may_drop_seven_percent_on_its_own_device_class() {
        let baseline = throughput_of(&[report(100.0)], "EPYC");
        let status =
            |r: f64, class: &str| check_throughput(&baseline, &[report(r)], class)[0].status;
        assert_eq!(status(93.5, "EPYC"), Status::Pass);
        assert_eq!(status(92.5, "EPYC"), Status::Regressed);
        assert_eq!(status(110.0, "EPYC"), Status::Improved);
        assert_eq!(status(100.0, "Xeon"), Status::Missing);
        let mut other = report(100.0);
        other.batch = 64;
        assert_eq!(
            check_throughput(&baseline, &[other], "EPYC")[0].status,
            Status::Missing
        );
        // Images of another size are another benchmark.
        let mut smaller = report(100.0);
        smaller.resolution = Some(16);
        assert_eq!(
            check_throughput(&baseline, &[smaller.clone()], "EPYC")[0].status,
            Status::Missing
        );
        let at_16 = throughput_of(&[smaller.clone()], "EPYC");
        assert_eq!(
            check_throughput(&at_16, &[smaller], "EPYC")[0].status,
            Status::Pass
        );
        assert!(at_16[0].name().contains("at 16x16"), "{}", at_16[0].name());
    }

    #[test]
    fn repetitions_of_a_benchmark_count_by_their_median() {
        let reps = [report(120.0), report(60.0), report(100.0)];
        let baseline = throughput_of(&reps, "EPYC");
        assert_eq!(baseline.len(), 1, "{baseline:?}");
        assert_eq!(baseline[0].images_per_s, 100.0);
        // One slow repetition of three does not make a regression; two do.
        let check = |rs: &[TrainReport]| check_throughput(&baseline, rs, "EPYC")[0].clone();
        let one_slow = check(&[report(50.0), report(99.0), report(101.0)]);
        assert_eq!(
            (one_slow.status, one_slow.measured),
            (Status::Pass, Some(99.0))
        );
        assert_eq!(
            check(&[report(50.0), report(60.0), report(101.0)]).status,
            Status::Regressed
        );
        assert_eq!(check(&[report(90.0), report(98.0)]).measured, Some(94.0));
    }
}
