//! Every experiment the suite reproduces, by name. An experiment is a config in `configs/` plus a
//! module of this crate registered in [`EXPERIMENTS`]; the command line only looks names up here.

use std::path::{Path, PathBuf};

use crate::{Error, Verdict};

/// Where an experiment reads its config and writes its results.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The configs directory (holding `<name>.toml` and `reference/paper.toml`).
    pub configs: &'a Path,
    /// The results directory; an experiment writes under `<results>/<name>/`.
    pub results: &'a Path,
}

/// What reproducing an experiment produced.
#[derive(Debug, Clone)]
pub struct Reproduction {
    /// A title line for people.
    pub title: String,
    /// The result for people: where the inputs came from, a Markdown table, a summary line.
    pub text: String,
    /// The same rows as data: the JSON that `--format json` prints (fields in their declared order).
    pub json: String,
    /// All claims together: held, failed, or not run.
    pub verdict: Verdict,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// One reproducible experiment.
pub struct Experiment {
    pub name: &'static str,
    /// One line on what it reproduces.
    pub summary: &'static str,
    pub run: fn(&Context) -> Result<Reproduction, Error>,
}

/// The experiments this build can reproduce.
pub const EXPERIMENTS: &[Experiment] = &[Experiment {
    name: "table1",
    summary: "parameters and multiply-adds of every architecture against Tables 1 and 6",
    run: crate::table1::reproduce,
}];

/// The registered experiment `name`.
pub fn find(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// Reproduces the experiment `name`; an unknown name is an error listing the known ones.
pub fn reproduce(name: &str, context: &Context) -> Result<Reproduction, Error> {
    let experiment = find(name).ok_or_else(|| Error::UnknownExperiment {
        name: name.into(),
        available: EXPERIMENTS
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", "),
        configs: context.configs.to_path_buf(),
    })?;
    (experiment.run)(context)
}

/// A config found in the configs directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub config: PathBuf,
    /// Whether this build has the experiment's module.
    pub implemented: bool,
    pub summary: Option<&'static str>,
}

/// The experiment configs (`*.toml`) in `dir`, by name.
pub fn configs(dir: &Path) -> Result<Vec<ConfigEntry>, Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let experiment = find(&name);
        entries.push(ConfigEntry {
            implemented: experiment.is_some() || crate::sweep::config::is_sweep(&path),
            summary: experiment.map(|e| e.summary),
            name,
            config: path,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}
