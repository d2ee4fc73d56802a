//! `suite reproduce ... --emit commands|slurm`: a sweep split into jobs for machines that share
//! the results directory. Each job trains runs named by id (`--run ID`), so a job trains the same
//! run whatever the others have done meanwhile; the last one tabulates (`--no-train`).

use std::path::Path;

use anyhow::Context as _;
use experiments::sweep::plan::{PlannedRun, Status};
use trainer::DeviceName;

use super::reproduce::{SweepPlan, missing_imagenet};
use crate::cli::DataArg;

/// What `--emit` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Shell commands, one per run still to train, then the one that tabulates
    Commands,
    /// A bash script that submits the runs as a Slurm array job and the tables after them
    Slurm,
}

/// The options every job repeats, as the user gave them.
pub struct Setup<'a> {
    pub experiments: &'a [String],
    pub profile: &'a str,
    pub models: &'a [String],
    pub device: DeviceName,
    pub deterministic: bool,
    pub seeds: Option<u16>,
    pub configs: &'a Path,
    pub results: &'a Path,
    pub data: &'a [DataArg],
}

/// A run's id: its directory's name in the store.
pub fn run_id(run: &PlannedRun) -> String {
    run.dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The runs of all the plans, each once (figures share their table's runs), in plan order.
pub fn distinct_runs(plans: &[SweepPlan]) -> Vec<&PlannedRun> {
    let mut runs: Vec<&PlannedRun> = Vec::new();
    for run in plans.iter().flat_map(|p| &p.runs) {
        if !runs.iter().any(|r| r.dir == run.dir) {
            runs.push(run);
        }
    }
    runs
}

/// The jobs of `plans` in `format`.
pub fn emit(format: Emit, setup: &Setup, plans: &[SweepPlan]) -> anyhow::Result<String> {
    if let Some(p) = plans.iter().find(|p| p.no_imagenet) {
        return Err(missing_imagenet(&p.config.name));
    }
    let results = std::path::absolute(setup.results)
        .with_context(|| format!("making {} absolute", setup.results.display()))?;
    let base = base_command(setup, &results)?;
    let runs = distinct_runs(plans);
    let todo: Vec<String> = runs
        .iter()
        .filter(|r| r.status != Status::Done)
        .map(|r| run_id(r))
        .collect();
    Ok(match format {
        Emit::Commands => commands(&base, &todo, runs.len(), setup),
        Emit::Slurm => slurm(&base, &todo, runs.len(), setup, &results.join("slurm")),
    })
}

/// `suite reproduce EXPERIMENTS` with the user's options and every path absolute (`results`
/// already is), so that a job runs the same from any directory of any machine that sees these
/// paths.
fn base_command(setup: &Setup, results: &Path) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the suite binary's path")?;
    let configs = std::fs::canonicalize(setup.configs)
        .with_context(|| format!("configs directory {}", setup.configs.display()))?;
    let mut args = vec![path_text(&exe), "reproduce".into()];
    args.extend(setup.experiments.iter().cloned());
    args.extend(["--profile".into(), setup.profile.into()]);
    if !setup.models.is_empty() {
        args.extend(["--models".into(), setup.models.join(",")]);
    }
    args.extend(["--device".into(), setup.device.to_string()]);
    if setup.deterministic {
        args.push("--deterministic".into());
    }
    if let Some(seeds) = setup.seeds {
        args.extend(["--seeds".into(), seeds.to_string()]);
    }
    args.extend(["--configs".into(), path_text(&configs)]);
    args.extend(["--results".into(), path_text(results)]);
    for data in setup.data {
        let path = std::fs::canonicalize(&data.path)
            .with_context(|| format!("--data {}={}", data.name, data.path.display()))?;
        args.extend([
            "--data".into(),
            format!("{}={}", data.name, path_text(&path)),
        ]);
    }
    Ok(args)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `word` as one shell word: as it is when it has no character a shell treats specially, else in
/// single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn commands(base: &[String], todo: &[String], total: usize, setup: &Setup) -> String {
    let mut out = format!(
        "# {} ({} profile) on {}: {} of {total} runs to train, one command each, in any order on \
         any machines that see these paths;\n# when all have finished, the last command writes \
         the tables and decides the claims.\n",
        setup.experiments.join(" "),
        setup.profile,
        setup.device,
        todo.len()
    );
    for id in todo {
        let mut words = base.to_vec();
        words.extend(["--quiet".into(), "--run".into(), id.clone()]);
        out += &shell_line(&words);
        out.push('\n');
    }
    let mut words = base.to_vec();
    words.push("--no-train".into());
    out += &shell_line(&words);
    out.push('\n');
    out
}

fn slurm(base: &[String], todo: &[String], total: usize, setup: &Setup, logs: &Path) -> String {
    let name = format!(
        "resnet-repro-{}-{}",
        setup.experiments.join("-"),
        setup.profile
    );
    let gpu = match setup.device {
        DeviceName::Cuda(_) => " --gres=gpu:1",
        DeviceName::Cpu => "",
    };
    let runs = todo
        .iter()
        .map(|id| format!("  {}\n", shell_word(id)))
        .collect::<String>();
    let mut suite = base.to_vec();
    suite.push("--quiet".into());
    format!(
        r#"#!/bin/bash
# {experiments} ({profile} profile) on {device} as Slurm jobs: one array task per run still to
# train ({todo} of {total}), then one job that writes the tables and decides the claims.
#
#   bash THIS_FILE [SBATCH_OPTION...]     e.g. bash THIS_FILE --partition gpu --time 2-00:00:00
#
# The options go to both sbatch calls. Every path below must be visible to the compute nodes.
# A task that fails or is killed resumes from its last checkpoint when this file is submitted
# again; finished runs are skipped and the tables count what has finished. Logs go to {logs}.
set -euo pipefail

runs=(
{runs})
suite=({suite})

case "${{1:-}}" in
  task)
    exec "${{suite[@]}}" --run "${{runs[$SLURM_ARRAY_TASK_ID]}}" ;;
  tabulate)
    exec "${{suite[@]}}" --no-train ;;
esac

logs={logs_word}
mkdir -p "$logs"
self=$(realpath "$0")
after=()
if (( ${{#runs[@]}} )); then
  array=$(sbatch --parsable --job-name={name}{gpu} --array=0-$(( ${{#runs[@]}} - 1 )) \
    --output="$logs/%x-%A_%a.out" "$@" "$self" task)
  after=(--dependency="afterany:${{array%%;*}}")
  echo "submitted ${{#runs[@]}} runs as array job ${{array%%;*}}"
fi
tables=$(sbatch --parsable --job-name={name}-tables{gpu} "${{after[@]}}" \
  --output="$logs/%x-%j.out" "$@" "$self" tabulate)
echo "submitted the tables as job ${{tables%%;*}}"
"#,
        experiments = setup.experiments.join(" "),
        profile = setup.profile,
        device = setup.device,
        todo = todo.len(),
        logs = logs.display(),
        logs_word = shell_word(&path_text(logs)),
        suite = shell_line(&suite),
    )
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_quote_only_what_a_shell_would_split() {
        assert_eq!(shell_word("cifar10=/data/c10"), "cifar10=/data/c10");
        assert_eq!(shell_word("/tmp/my results"), "'/tmp/my results'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
    }
}
