//! A sweep's config (`configs/<experiment>.toml`): its runs, its profiles and its claims, checked
//! against the model grammar and the paper's reference file before anything trains.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// `[experiment]`: what the sweep is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// A title line, e.g. "Table 6: CIFAR-10 test error of plain and residual nets".
    pub title: String,
    /// `cifar10` or `imagenet`: the data the runs train on.
    pub dataset: String,
    /// Another sweep whose profiles this one uses, so that a figure's runs are the table's runs
    /// (same specs, same run directories) instead of new ones.
    #[serde(default)]
    pub profiles_from: Option<String>,
    /// Measure each trained net's layer responses (Fig. 7) into `fig7.parquet`.
    #[serde(default)]
    pub responses: bool,
    /// ImageNet: score each trained net with these test views (`10crop`, `multiscale`, `center`)
    /// into `views.parquet`, for the metrics named after them.
    #[serde(default)]
    pub views: Vec<trainer::eval::Views>,
}

/// `[[runs]]`: models trained with each of the seeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    pub models: Vec<String>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// `[profiles.NAME]`: how long and on what each run trains. The optimiser, the learning rates and
/// the drops (as fractions of the run) come from the paper's reference file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Why the profile is what it is, for the plan's header.
    pub about: String,
    /// Training iterations; absent: the paper's (64,000 on CIFAR-10).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Batch size; absent: the paper's (128).
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub train_subset: Option<usize>,
    #[serde(default)]
    pub eval_subset: Option<usize>,
    pub log_every: u64,
    pub eval_every: u64,
    pub checkpoint_every: u64,
    /// Train only the first this-many seeds of each model.
    #[serde(default)]
    pub seeds_per_model: Option<usize>,
    /// The runs a 2-core CPU can afford (`--models core`).
    #[serde(default)]
    pub core: Vec<String>,
    /// ImageNet: train on this many classes, spread over the sorted wnids.
    #[serde(default)]
    pub classes: Option<usize>,
    /// ImageNet: the training crop's side (the paper's 224), the augmentation scaled with it.
    #[serde(default)]
    pub resolution: Option<u32>,
    /// ImageNet: how the learning rate falls; absent: the paper's plateau rule as the suite reads
    /// it (`trainer::PlateauRule::SUITE`).
    #[serde(default)]
    pub schedule: Option<ProfileSchedule>,
}

/// `[profiles.NAME.schedule]` of an ImageNet sweep.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProfileSchedule {
    /// Divide by 10 after `patience` evaluations without a gain of more than `threshold`.
    Plateau { patience: u32, threshold: f64 },
    /// Divide by 10 every `every` iterations.
    Steps { every: u64 },
}

/// The per-model numbers claims compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Training error (%) over the last logging window.
    FinalTrainError,
    /// Test error (%) after the last iteration.
    FinalTestError,
    /// Mean over layers of the standard deviation of the 3x3 layers' responses (Fig. 7).
    ResponseStdMean,
    /// ImageNet validation error (%) of the final weights under the paper's test views.
    #[serde(rename = "top1_error_10crop")]
    Top1Error10Crop,
    #[serde(rename = "top5_error_10crop")]
    Top5Error10Crop,
    Top1ErrorMultiscale,
    Top5ErrorMultiscale,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FinalTrainError => "final_train_error",
            Metric::FinalTestError => "final_test_error",
            Metric::ResponseStdMean => "response_std_mean",
            Metric::Top1Error10Crop => "top1_error_10crop",
            Metric::Top5Error10Crop => "top5_error_10crop",
            Metric::Top1ErrorMultiscale => "top1_error_multiscale",
            Metric::Top5ErrorMultiscale => "top5_error_multiscale",
        }
    }

    /// The test views the metric is measured with, and whether it is the top-5 error.
    pub fn views(self) -> Option<(trainer::eval::Views, bool)> {
        use trainer::eval::Views;
        match self {
            Metric::Top1Error10Crop => Some((Views::TenCrop, false)),
            Metric::Top5Error10Crop => Some((Views::TenCrop, true)),
            Metric::Top1ErrorMultiscale => Some((Views::MultiScale, false)),
            Metric::Top5ErrorMultiscale => Some((Views::MultiScale, true)),
            _ => None,
        }
    }
}

/// How a claim is decided. Margins are part of the rule, fixed before any run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// Along each chain the metric rises; every step must exceed its margin (the combined
    /// standard deviation of the two means, times `sigmas`, and at least `min_gap`).
    Ascending {
        metric: Metric,
        chains: Vec<Vec<String>>,
        #[serde(default = "one")]
        sigmas: f64,
        #[serde(default)]
        min_gap: f64,
    },
    /// As `ascending`, at every logged point of the training curves from `from` (a fraction of the
    /// run) on, for the training or the test error: held when no point reverses the order beyond
    /// its margin and the last one keeps it beyond its margin, failed when a point reverses it
    /// beyond its margin, inconclusive otherwise. A point's margin is `sigmas` times the combined
    /// binomial standard deviation of the two errors on the images behind them.
    AscendingThroughout {
        metric: Metric,
        chains: Vec<Vec<String>>,
        from: f64,
        #[serde(default = "one")]
        sigmas: f64,
    },
    /// The model's metric is below the paper's number at `paper_value` (a key of paper.toml).
    Below {
        metric: Metric,
        model: String,
        paper_value: String,
    },
    /// Each model's mean lies within `sigmas` combined standard deviations of Table 6's value.
    Band {
        metric: Metric,
        models: Vec<String>,
        sigmas: f64,
    },
    /// `expected` has the lowest metric among `among`, by more than the margin to each other.
    Lowest {
        metric: Metric,
        among: Vec<String>,
        expected: String,
        #[serde(default = "one")]
        sigmas: f64,
    },
    /// Each model's mean lies within `sigmas` combined standard deviations of the paper's value at
    /// its key of paper.toml (`values`: model -> key), the paper's deviation being the binomial
    /// one of an error rate on `paper_images`.
    PaperBand {
        metric: Metric,
        values: BTreeMap<String, String>,
        paper_images: u64,
        sigmas: f64,
    },
    /// The gap `worse - better` is the paper's (at `paper_value`) within `sigmas` combined standard
    /// deviations of the two means and of the paper's gap (binomial on `paper_images`).
    Gap {
        metric: Metric,
        better: String,
        worse: String,
        paper_value: String,
        paper_images: u64,
        sigmas: f64,
    },
    /// Per layer, the first net's response std is below the second's; held when the fraction of
    /// layers where it is reaches `held_at`, failed at or below `failed_at`.
    SmallerResponses {
        pairs: Vec<[String; 2]>,
        held_at: f64,
        failed_at: f64,
    },
}

fn one() -> f64 {
    1.0
}

/// `[[claims]]`: a statement of the paper (or a question of ours) and the rule that decides it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub id: String,
    /// A key of paper.toml holding the paper's statement, e.g. `figures.fig1.claim`.
    #[serde(default)]
    pub paper: Option<String>,
    /// The statement in this config's words, for claims the paper does not make.
    #[serde(default)]
    pub statement: Option<String>,
    /// The profiles whose results can decide the claim.
    pub profiles: Vec<String>,
    pub check: Check,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    experiment: Header,
    #[serde(default)]
    runs: Vec<RunGroup>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
    #[serde(default)]
    claims: Vec<Claim>,
}

/// A checked sweep config.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub name: String,
    pub path: PathBuf,
    pub header: Header,
    pub runs: Vec<RunGroup>,
    /// The profiles, read from `profiles_from`'s file where the header names one.
    pub profiles: BTreeMap<String, Profile>,
    pub claims: Vec<Claim>,
    /// Claim statements, looked up in the paper's reference file.
    pub statements: BTreeMap<String, String>,
}

/// Whether `path` is a sweep config (it has an `[experiment]` table with a dataset).
pub fn is_sweep(path: &Path) -> bool {
    experiment_entry(path, "dataset").is_some()
}

/// A sweep config's `[experiment].title`, without checking the rest of it.
pub fn sweep_title(path: &Path) -> Option<String> {
    experiment_entry(path, "title")?
        .as_str()
        .map(str::to_string)
}

fn experiment_entry(path: &Path, key: &str) -> Option<toml::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("experiment")?.get(key).cloned())
}

impl SweepConfig {
    /// Reads `<configs>/<name>.toml` and checks it; errors name the file, the key and what is
    /// allowed.
    pub fn load(configs: &Path, name: &str) -> Result<Self, Error> {
        let path = configs.join(format!("{name}.toml"));
        let file: File = paper::read_toml(&path)?;
        let invalid = |key: String, msg: String| {
            Error::Config(paper::Error::Invalid {
                path: path.clone(),
                key,
                msg,
            })
        };
        let reference = configs.join("reference/paper.toml");
        let paper_toml: toml::Value = paper::read_toml(&reference)?;
        let imagenet = match file.experiment.dataset.as_str() {
            trainer::spec::CIFAR10 => false,
            trainer::spec::IMAGENET => true,
            other => {
                return Err(invalid(
                    "experiment.dataset".into(),
                    format!(
                        "`{other}` is not a dataset sweeps train on (expected `cifar10` or \
                         `imagenet`)"
                    ),
                ));
            }
        };
        if !imagenet && !file.experiment.views.is_empty() {
            return Err(invalid(
                "experiment.views".into(),
                "test views are measured on ImageNet sweeps only".into(),
            ));
        }
        if imagenet && file.experiment.responses {
            return Err(invalid(
                "experiment.responses".into(),
                "layer responses (Fig. 7) are measured on CIFAR-10 sweeps only".into(),
            ));
        }
        let profiles = match &file.experiment.profiles_from {
            Some(other) => {
                if !file.profiles.is_empty() {
                    return Err(invalid(
                        "profiles".into(),
                        format!(
                            "the profiles come from `{other}` (experiment.profiles_from); remove them here"
                        ),
                    ));
                }
                let other_path = configs.join(format!("{other}.toml"));
                if !other_path.is_file() {
                    return Err(invalid(
                        "experiment.profiles_from".into(),
                        format!("no config {}", other_path.display()),
                    ));
                }
                let other: File = paper::read_toml(&other_path)?;
                other.profiles
            }
            None => file.profiles,
        };
        if profiles.is_empty() {
            return Err(invalid(
                "profiles".into(),
                "a sweep needs at least one profile (e.g. [profiles.smoke])".into(),
            ));
        }
        let mut models = Vec::new();
        for (g, group) in file.runs.iter().enumerate() {
            if group.seeds.is_empty() {
                return Err(invalid(
                    format!("runs[{g}].seeds"),
                    "needs at least one seed".into(),
                ));
            }
            for (m, model) in group.models.iter().enumerate() {
                let spec: nets::ModelSpec = model.parse().map_err(|e: nets::Error| {
                    invalid(format!("runs[{g}].models[{m}]"), e.to_string())
                })?;
                if spec.is_cifar() == imagenet {
                    let msg = if imagenet {
                        format!("`{model}` is a CIFAR net; ImageNet sweeps train ImageNet nets")
                    } else {
                        format!(
                            "`{model}` is an ImageNet net; CIFAR-10 sweeps train CIFAR nets (6n+2 layers)"
                        )
                    };
                    return Err(invalid(format!("runs[{g}].models[{m}]"), msg));
                }
                if spec.to_string() != *model {
                    return Err(invalid(
                        format!("runs[{g}].models[{m}]"),
                        format!("write the canonical name `{spec}`, so runs match across configs"),
                    ));
                }
                if models.contains(model) {
                    return Err(invalid(
                        format!("runs[{g}].models[{m}]"),
                        format!("`{model}` is listed twice"),
                    ));
                }
                models.push(model.clone());
            }
        }
        if models.is_empty() {
            return Err(invalid(
                "runs".into(),
                "a sweep needs at least one [[runs]] group".into(),
            ));
        }
        let allowed = || models.join(", ");
        for (name, profile) in &profiles {
            let key = |k: &str| format!("profiles.{name}.{k}");
            for (k, v) in [
                ("log_every", profile.log_every),
                ("checkpoint_every", profile.checkpoint_every),
            ] {
                if v == 0 {
                    return Err(invalid(key(k), "must be at least 1".into()));
                }
            }
            for (k, v) in [
                ("eval_every", profile.eval_every),
                ("checkpoint_every", profile.checkpoint_every),
            ] {
                if v % profile.log_every != 0 {
                    return Err(invalid(
                        key(k),
                        format!(
                            "{v} must be a multiple of log_every ({})",
                            profile.log_every
                        ),
                    ));
                }
            }
            if !imagenet {
                for (k, set) in [
                    ("classes", profile.classes.is_some()),
                    ("resolution", profile.resolution.is_some()),
                    ("schedule", profile.schedule.is_some()),
                ] {
                    if set {
                        return Err(invalid(key(k), "applies to ImageNet sweeps only".into()));
                    }
                }
            }
            if file.experiment.profiles_from.is_none() {
                for (i, model) in profile.core.iter().enumerate() {
                    if !models.contains(model) {
                        return Err(invalid(
                            key(&format!("core[{i}]")),
                            format!("`{model}` is not a run of this sweep (runs: {})", allowed()),
                        ));
                    }
                }
            }
        }
        let mut statements = BTreeMap::new();
        let mut ids = Vec::new();
        for (c, claim) in file.claims.iter().enumerate() {
            let key = |k: &str| format!("claims[{c}].{k}");
            if ids.contains(&claim.id) {
                return Err(invalid(key("id"), format!("`{}` is used twice", claim.id)));
            }
            ids.push(claim.id.clone());
            let statement = match (&claim.paper, &claim.statement) {
                (Some(k), None) => lookup(&paper_toml, k)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .ok_or_else(|| {
                        invalid(
                            key("paper"),
                            format!("`{k}` is not a text entry of {}", reference.display()),
                        )
                    })?,
                (None, Some(s)) => s.clone(),
                _ => {
                    return Err(invalid(
                        key("paper"),
                        "give exactly one of `paper` (a key of paper.toml) and `statement`".into(),
                    ));
                }
            };
            statements.insert(claim.id.clone(), statement);
            for (p, profile) in claim.profiles.iter().enumerate() {
                if !profiles.contains_key(profile) {
                    return Err(invalid(
                        key(&format!("profiles[{p}]")),
                        format!(
                            "`{profile}` is not a profile (profiles: {})",
                            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            let known = |k: String, model: &str| {
                if models.iter().any(|m| m == model) {
                    Ok(())
                } else {
                    Err(invalid(
                        k,
                        format!("`{model}` is not a run of this sweep (runs: {})", allowed()),
                    ))
                }
            };
            let metric = match &claim.check {
                Check::AscendingThroughout { metric, .. } => {
                    if !matches!(metric, Metric::FinalTrainError | Metric::FinalTestError) {
                        return Err(invalid(
                            key("check.metric"),
                            "the curves hold final_train_error and final_test_error only".into(),
                        ));
                    }
                    Some(*metric)
                }
                Check::Ascending { metric, .. }
                | Check::Below { metric, .. }
                | Check::Band { metric, .. }
                | Check::PaperBand { metric, .. }
                | Check::Gap { metric, .. }
                | Check::Lowest { metric, .. } => Some(*metric),
                Check::SmallerResponses { .. } => None,
            };
            if let Some((views, _)) = metric.and_then(Metric::views)
                && !file.experiment.views.contains(&views)
            {
                return Err(invalid(
                    key("check.metric"),
                    format!("needs `views = [\"{views}\"]` in [experiment]"),
                ));
            }
            match &claim.check {
                Check::Ascending { chains, .. } | Check::AscendingThroughout { chains, .. } => {
                    for (i, chain) in chains.iter().enumerate() {
                        if chain.len() < 2 {
                            return Err(invalid(
                                key(&format!("check.chains[{i}]")),
                                "a chain orders at least two models".into(),
                            ));
                        }
                        for (j, m) in chain.iter().enumerate() {
                            known(key(&format!("check.chains[{i}][{j}]")), m)?;
                        }
                    }
                }
                Check::Below {
                    model, paper_value, ..
                } => {
                    known(key("check.model"), model)?;
                    if lookup(&paper_toml, paper_value).and_then(number).is_none() {
                        return Err(invalid(
                            key("check.paper_value"),
                            format!("`{paper_value}` is not a number in {}", reference.display()),
                        ));
                    }
                }
                Check::Band { models: ms, .. } => {
                    for (i, m) in ms.iter().enumerate() {
                        known(key(&format!("check.models[{i}]")), m)?;
                    }
                }
                Check::Lowest {
                    among, expected, ..
                } => {
                    for (i, m) in among.iter().enumerate() {
                        known(key(&format!("check.among[{i}]")), m)?;
                    }
                    if !among.contains(expected) {
                        return Err(invalid(
                            key("check.expected"),
                            format!("`{expected}` is not among {}", among.join(", ")),
                        ));
                    }
                }
                Check::PaperBand { values, .. } => {
                    for (model, paper_key) in values {
                        known(key(&format!("check.values.{model}")), model)?;
                        if lookup(&paper_toml, paper_key).and_then(number).is_none() {
                            return Err(invalid(
                                key(&format!("check.values.{model}")),
                                format!("`{paper_key}` is not a number in {}", reference.display()),
                            ));
                        }
                    }
                }
                Check::Gap {
                    better,
                    worse,
                    paper_value,
                    ..
                } => {
                    known(key("check.better"), better)?;
                    known(key("check.worse"), worse)?;
                    if lookup(&paper_toml, paper_value).and_then(number).is_none() {
                        return Err(invalid(
                            key("check.paper_value"),
                            format!("`{paper_value}` is not a number in {}", reference.display()),
                        ));
                    }
                }
                Check::SmallerResponses { pairs, .. } => {
                    if !file.experiment.responses {
                        return Err(invalid(
                            key("check"),
                            "smaller-responses needs `responses = true` in [experiment]".into(),
                        ));
                    }
                    for (i, [a, b]) in pairs.iter().enumerate() {
                        known(key(&format!("check.pairs[{i}][0]")), a)?;
                        known(key(&format!("check.pairs[{i}][1]")), b)?;
                    }
                }
            }
        }
        Ok(Self {
            name: name.into(),
            path,
            header: file.experiment,
            runs: file.runs,
            profiles,
            claims: file.claims,
            statements,
        })
    }

    /// The profile `name`, or an error listing the sweep's profiles.
    pub fn profile(&self, name: &str) -> Result<&Profile, Error> {
        self.profiles.get(name).ok_or_else(|| {
            Error::Config(paper::Error::Invalid {
                path: self.path.clone(),
                key: "profiles".into(),
                msg: format!(
                    "no profile `{name}` (profiles: {})",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        })
    }

    /// Every model of the sweep, in config order.
    pub fn models(&self) -> Vec<&str> {
        self.runs
            .iter()
            .flat_map(|g| g.models.iter().map(String::as_str))
            .collect()
    }
}

/// The value at a dotted key of paper.toml, with `[i]` indexing lists: `figures.fig6.claims[2]`.
pub fn lookup<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    let mut value = root;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (part, None),
        };
        value = value.get(name)?;
        if let Some(i) = index {
            value = value.get(i)?;
        }
    }
    Some(value)
}

/// A TOML number as f64 (integers included).
pub fn number(value: &toml::Value) -> Option<f64> {
    value
        .as_float()
        .or_else(|| value.as_integer().map(|i| i as f64))
}
