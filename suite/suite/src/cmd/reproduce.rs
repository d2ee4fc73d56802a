//! `suite reproduce EXPERIMENT...`: compute paper artefacts, store them, check the paper's claims;
//! `suite verify EXPERIMENT...`: the same tables and verdicts from the results on disk.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use experiments::Verdict;
use experiments::registry::{self, Context};
use experiments::sweep::{self, config::SweepConfig, execute::SweepObserver, plan};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use trainer::metrics::Row;
use trainer::{DeviceName, Observer, Protocols, RunSpec, Summary};

use super::Format;
use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite reproduce table1                               Table 1: parameters and FLOPs
  suite reproduce table6 --profile smoke --data cifar10=../shared/data/cifar10
  suite reproduce table6 --profile quick --models core --dry-run
                                                       the plan and its time estimate only
  suite reproduce fig1 fig7 --profile quick --models core
  suite reproduce table6 --profile paper --device cuda --jobs 4
  suite reproduce fig7 --profile quick --models core --report
                                                       also the figures, in reports/fig7/quick/
  suite reproduce table6 --profile quick --models core --seeds 3 --out /tmp/seeds
                                                       three seeds a net, judged by their spread
  suite reproduce table3 table4 --profile quick --data imagenet=/data/imagenet --device cuda
                                                       Table 3's nets, scored with 10 crops and
                                                       at multiple scales (Table 4)
  suite reproduce table6 --profile paper --device cuda --results /shared/r --emit slurm > t6.sh
                                                       a Slurm script: `bash t6.sh --partition gpu`
                                                       submits a task per run, then the tables
                                                       (--emit commands: plain shell commands)

Sweeps (CIFAR-10: table6, fig1, fig6, fig7, ablation-skip; ImageNet: table2, fig4, table3,
table4; `suite list experiments` lists them) keep their runs in <results>/runs/<run-id>: a
run needed by several experiments trains once, an interrupted sweep resumes where it stopped, and
finished runs are skipped. Tables go to <results>/<experiment>/<profile>/. Split over machines
that share the results directory, each trains its runs (`--run ID`) and one tabulates at the end
(`--no-train`); `--emit` writes those commands.

Exit codes: 0 no claim failed, 1 a claim failed, 2 error.";

/// Reproduce artefacts of the paper and check them against the paper's numbers and claims.
///
/// table1: parameters and multiply-adds of every architecture, side by side with the paper.
/// Sweeps: train every run the experiment's profile asks for (smoke: a few iterations on a
/// subset; quick: a shortened schedule; paper: the protocol unchanged), then write the runs,
/// curves, summary and verdicts tables and print the results and the verdicts.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Experiments: config names in the configs directory (see `suite list experiments`)
    #[arg(required = true)]
    experiments: Vec<String>,
    #[command(flatten)]
    sweep: SweepArgs,
    /// Only these runs of a sweep (comma-separated model names, or `core` for the profile's CPU
    /// core); claims whose runs are missing are "not run". Each experiment named must have every
    /// model named, checked before anything trains
    #[arg(long, value_delimiter = ',', value_name = "MODELS")]
    models: Vec<String>,
    /// Seeds per model instead of the profile's (quick and medium train one): the config's seeds,
    /// then the integers after them, so `--seeds 3` trains seeds 0, 1 and 2 and each model is
    /// judged by its mean and seed spread. The tables then hold every seed
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    seeds: Option<u16>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// On CUDA, deterministic cuDNN algorithms instead of the fastest: a killed and resumed run
    /// then equals an uninterrupted one bit for bit (no effect on the CPU, always deterministic)
    #[arg(long)]
    deterministic: bool,
    /// Runs trained at once (CPU jobs split the cores between them)
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Print the plan and its time estimate, train nothing
    #[arg(long)]
    dry_run: bool,
    /// Print no progress bars
    #[arg(long)]
    quiet: bool,
    /// Skip the throughput probe (the plan shows no time estimates)
    #[arg(long)]
    no_probe: bool,
    /// Also draw the sweep's figures and report (as `suite report` does) into --reports
    #[arg(long)]
    report: bool,
    /// Train only these runs of the plan (comma-separated run ids, as the plan's `run` column
    /// names them) and write no tables: one task of a sweep split over machines (see --emit)
    #[arg(long = "run", value_delimiter = ',', value_name = "RUN_ID",
          conflicts_with_all = ["no_train", "emit", "report", "dry_run"])]
    runs: Vec<String>,
    /// Train nothing: tabulate the runs already finished and decide the claims, the last step of
    /// a sweep split over machines (claims whose runs have not finished are "not run")
    #[arg(long, conflicts_with_all = ["emit", "dry_run"])]
    no_train: bool,
    /// Print the sweep as jobs for other machines instead of training it: `commands`, one shell
    /// command per run still to train and then the one that tabulates, or `slurm`, a script that
    /// submits them as a Slurm array job and a tabulating job after it
    #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "dry_run")]
    emit: Option<super::cluster::Emit>,
    /// Directory reports are written to, as <DIR>/<experiment>/<profile>/
    #[arg(long, value_name = "DIR", default_value = "reports")]
    reports: std::path::PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The sweep's profile: smoke, quick, medium (CIFAR) or paper
    #[arg(long, default_value = "smoke")]
    profile: String,
    /// Results directory (the run store and the tables) [default: --results]
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

const VERIFY_EXAMPLES: &str = "\
Examples:
  suite verify table6 --profile quick       verdicts from results/table6/quick/*.parquet
  suite verify fig7 --profile smoke --out /tmp/sweep

Exit codes: 0 no claim failed, 1 a claim failed, 2 error (e.g. no results yet).";

/// Recompute a sweep's summary and verdicts from the tables on disk, without training.
#[derive(Debug, clap::Args)]
#[command(after_help = VERIFY_EXAMPLES)]
pub struct VerifyArgs {
    #[arg(required = true)]
    experiments: Vec<String>,
    #[command(flatten)]
    sweep: SweepArgs,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let configs = crate::paths::configs_dir(global.configs.as_deref());
    let results = global.results_dir(args.sweep.out.as_deref());
    check_data(global)?;
    if let Some(format) = args.emit {
        let plans = sweep_plans(&args, global, &configs, &results)?;
        let setup = super::cluster::Setup {
            experiments: &args.experiments,
            profile: &args.sweep.profile,
            models: &args.models,
            device: args.device,
            deterministic: args.deterministic,
            seeds: args.seeds,
            configs: &configs,
            results: &results,
            data: &global.data,
        };
        print!("{}", super::cluster::emit(format, &setup, &plans)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.runs.is_empty() {
        train_named_runs(&args, global, &configs, &results)?;
        return Ok(ExitCode::SUCCESS);
    }
    let sweeps = load_checked(&args, &configs)?;
    let mut verdicts = Vec::new();
    for (name, sweep) in args.experiments.iter().zip(sweeps) {
        let Some(config) = sweep else {
            let context = Context {
                configs: &configs,
                results: &results,
            };
            let out = registry::reproduce(name, &context)?;
            match args.format {
                Format::Json => println!("{}", out.json),
                Format::Text => print!("{}\n{}", out.title, out.text),
            }
            for path in &out.written {
                eprintln!("wrote {}", path.display());
            }
            verdicts.push(out.verdict);
            continue;
        };
        let plan = plan_sweep(config, &args, &configs, &results, global)?;
        verdicts.push(sweep_one(plan, &args, &configs, &results)?);
    }
    Ok(exit(&verdicts))
}

pub fn verify(args: VerifyArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let configs = crate::paths::configs_dir(global.configs.as_deref());
    let results = global.results_dir(args.sweep.out.as_deref());
    let mut verdicts = Vec::new();
    for name in &args.experiments {
        let config = load(&configs, name)?;
        let outcome = sweep::verify(&config, &args.sweep.profile, &configs, &results)?;
        println!(
            "{} ({} profile)\n\n{}",
            config.header.title,
            args.sweep.profile,
            outcome.text()
        );
        verdicts.push(outcome.verdict());
    }
    Ok(exit(&verdicts))
}

fn exit(verdicts: &[Verdict]) -> ExitCode {
    if verdicts.contains(&Verdict::Failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

pub(crate) fn load(configs: &Path, name: &str) -> anyhow::Result<SweepConfig> {
    let path = configs.join(format!("{name}.toml"));
    // A file that exists is read as a sweep config even if it does not parse, so that a typo in
    // it is reported against the file rather than as an unknown experiment.
    if !path.is_file() {
        let known = registry::configs(configs)?
            .into_iter()
            .filter(|c| c.implemented)
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ");
        anyhow::bail!(
            "no experiment `{name}` in {} (available: {known})",
            configs.display()
        );
    }
    Ok(SweepConfig::load(configs, name)?)
}

/// A sweep's runs under the user's options, their status read from the store.
pub(crate) struct SweepPlan {
    pub config: SweepConfig,
    pub protocols: Protocols,
    pub options: plan::Options,
    pub runs: Vec<plan::PlannedRun>,
    /// An ImageNet sweep without a local copy: its plan can be shown, never trained.
    pub no_imagenet: bool,
}

fn plan_sweep(
    config: SweepConfig,
    args: &Args,
    configs: &Path,
    results: &Path,
    global: &Global,
) -> anyhow::Result<SweepPlan> {
    let profile = args.sweep.profile.as_str();
    let protocols = Protocols::read(&configs.join("reference/paper.toml"))?;
    let dataset = config.header.dataset.as_str();
    let data = global.data_path(dataset).map(Path::to_path_buf);
    // ImageNet is never downloaded: without a copy the plan is shown and nothing trains.
    let no_imagenet = dataset == trainer::spec::IMAGENET && data.is_none();
    let options = plan::Options {
        device: args.device,
        models: args.models.clone(),
        data,
        kernels: nets::Kernels::Fast,
        deterministic: args.deterministic,
        seeds: args.seeds.map(usize::from),
    };
    let runs = plan::plan(
        &config,
        profile,
        &protocols,
        &options,
        &sweep::store_dir(results),
    )?;
    Ok(SweepPlan {
        config,
        protocols,
        options,
        runs,
        no_imagenet,
    })
}

/// The local copies `--data` names, recognised before anything is planned, probed or trained: a
/// wrong path fails at once, naming the flag, rather than at the first run after the speed probe.
fn check_data(global: &Global) -> anyhow::Result<()> {
    let flag = |name: &str, path: &Path| format!("--data {name}={}", path.display());
    if let Some(path) = global.data_path("cifar10") {
        super::data::cifar_source(global)
            .and_then(|source| Ok(source.files()?))
            .with_context(|| flag("cifar10", path))?;
    }
    if let Some(path) = global.data_path("imagenet") {
        datasets::imagenet::training_root(path).with_context(|| flag("imagenet", path))?;
        datasets::imagenet::Layout::detect(path).with_context(|| flag("imagenet", path))?;
    }
    Ok(())
}

/// The sweep config of each experiment named (`None` for a built-in one such as Table 1), its
/// profile and the `--models` choice checked before the first one trains: the sweeps run one after
/// the other, and a typo in the last must not surface hours later.
fn load_checked(args: &Args, configs: &Path) -> anyhow::Result<Vec<Option<SweepConfig>>> {
    let mut sweeps = Vec::new();
    for name in &args.experiments {
        if registry::find(name).is_some() {
            sweeps.push(None);
            continue;
        }
        let config = load(configs, name)?;
        config.profile(&args.sweep.profile)?;
        plan::selection(&config, &args.sweep.profile, &args.models)?;
        sweeps.push(Some(config));
    }
    Ok(sweeps)
}

/// The plans of the sweeps among `args.experiments` (Table 1 trains nothing and has none).
fn sweep_plans(
    args: &Args,
    global: &Global,
    configs: &Path,
    results: &Path,
) -> anyhow::Result<Vec<SweepPlan>> {
    let mut plans = Vec::new();
    for name in &args.experiments {
        if registry::find(name).is_some() {
            continue;
        }
        plans.push(plan_sweep(
            load(configs, name)?,
            args,
            configs,
            results,
            global,
        )?);
    }
    Ok(plans)
}

pub(crate) fn missing_imagenet(experiment: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{experiment} trains on ImageNet, which the suite never downloads: pass a local copy with \
         --data imagenet=DIR, where DIR holds train/<wnid>/<image> (the training images, one \
         folder per class) and the validation images as val/<wnid>/<image> (or the Kaggle \
         copy's flat images with LOC_val_solution.csv); `suite data synth-imagenet DIR` \
         writes a small generated one for the smoke profile"
    )
}

/// `--run ID,...`: trains those runs of the experiments' plans (a run two experiments share
/// trains once) and writes no tables, since other machines may still be training the rest.
fn train_named_runs(
    args: &Args,
    global: &Global,
    configs: &Path,
    results: &Path,
) -> anyhow::Result<()> {
    let plans = sweep_plans(args, global, configs, results)?;
    let mut chosen: Vec<plan::PlannedRun> = Vec::new();
    for id in &args.runs {
        let found = plans.iter().find_map(|p| {
            p.runs
                .iter()
                .find(|r| super::cluster::run_id(r) == *id)
                .map(|r| (p, r))
        });
        let Some((sweep, run)) = found else {
            let known: Vec<String> = super::cluster::distinct_runs(&plans)
                .iter()
                .map(|r| super::cluster::run_id(r))
                .collect();
            anyhow::bail!(
                "--run {id}: no such run in the {} profile of {} with these options (its runs: {})",
                args.sweep.profile,
                args.experiments.join(", "),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        if sweep.no_imagenet {
            return Err(missing_imagenet(&sweep.config.name));
        }
        if !chosen.iter().any(|c| c.dir == run.dir) {
            chosen.push(run.clone());
        }
    }
    print!("{}", plan_table(&chosen, args.jobs, &args.device));
    train(&chosen, args)?;
    eprintln!(
        "tables: `suite reproduce {} --profile {} --no-train` (with the same options) once every \
         run has finished",
        args.experiments.join(" "),
        args.sweep.profile
    );
    Ok(())
}

/// Trains what `runs` still need, `args.jobs` at a time, with the sweep's progress bars.
fn train(runs: &[plan::PlannedRun], args: &Args) -> anyhow::Result<()> {
    let provenance = trainer::Provenance::detect(env!("CARGO_PKG_VERSION"));
    let cache = datasets::cifar::default_cache_dir();
    let progress = SweepProgress::new(runs, args.quiet);
    let trained = sweep::execute::execute(runs, args.jobs, Some(&cache), &provenance, &progress);
    progress.overall.finish_and_clear();
    Ok(trained?)
}

fn sweep_one(
    sweep_plan: SweepPlan,
    args: &Args,
    configs: &Path,
    results: &Path,
) -> anyhow::Result<Verdict> {
    let profile = args.sweep.profile.as_str();
    let SweepPlan {
        config,
        protocols,
        options,
        mut runs,
        no_imagenet,
    } = sweep_plan;
    let config = &config;
    let about = config.profile(profile)?.about.clone();
    if !args.no_probe && !args.no_train && !no_imagenet {
        if !args.quiet {
            eprintln!("probing training speed of the models still to train (cached per build)...");
        }
        plan::estimate(
            &mut runs,
            plan::default_probe_cache().as_deref(),
            trainer::bench::threads(),
        );
    }
    println!("{} ({profile} profile)\n{about}", config.header.title);
    if let Some(n) = args.seeds {
        // The profile's text counts its own seeds; say that this sweep trains others.
        println!("--seeds {n}: {n} seeds a net in place of the profile's, judged by their spread.");
    }
    println!();
    print!("{}", plan_table(&runs, args.jobs, &args.device));
    if args.dry_run {
        return Ok(Verdict::NotRun);
    }
    if no_imagenet {
        return Err(missing_imagenet(&config.name));
    }
    let store = sweep::store_dir(results);
    let cache = datasets::cifar::default_cache_dir();
    if args.no_train {
        let unfinished = runs
            .iter()
            .filter(|r| r.status != plan::Status::Done)
            .count();
        if unfinished > 0 {
            eprintln!(
                "--no-train: {unfinished} of {} runs have not finished; the claims that need them \
                 are not run",
                runs.len()
            );
        }
    } else {
        train(&runs, args)?;
    }
    // The tables hold every finished run of the sweep, also those of earlier `--models` choices.
    let all = plan::Options {
        models: Vec::new(),
        ..options
    };
    let runs = plan::plan(config, profile, &protocols, &all, &store)?;
    let invocation = sweep::Invocation {
        command: command_line(std::env::args().skip(1)),
        suite_version: env!("CARGO_PKG_VERSION").into(),
    };
    let outcome = sweep::tabulate(
        config,
        profile,
        &runs,
        configs,
        results,
        Some(&cache),
        &invocation,
    )
    .with_context(|| format!("tabulating {}", config.name))?;
    match args.format {
        Format::Text => println!("\n{}", outcome.text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&outcome.verdicts).expect("verdicts serialise")
        ),
    }
    for path in &outcome.written {
        eprintln!("wrote {}", path.display());
    }
    let reports = args.reports.join(&config.name).join(profile);
    if args.report {
        let subject = super::report::subject(config, profile)?;
        let written = report::write_report(&subject, results, &reports)?;
        for path in written.files() {
            eprintln!("wrote {}", path.display());
        }
    } else {
        eprintln!(
            "figures and report: `suite report {} --profile {profile} --reports {}`",
            config.name,
            args.reports.display()
        );
    }
    Ok(outcome.verdict())
}

/// `suite` and its arguments as a shell would take them back: arguments with spaces or shell
/// characters in single quotes.
pub(crate) fn command_line(args: impl Iterator<Item = String>) -> String {
    std::iter::once("suite".to_string())
        .chain(args.map(|a| super::cluster::shell_word(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan as a table: each run, its status and its estimated time on this device.
fn plan_table(runs: &[plan::PlannedRun], jobs: usize, device: &DeviceName) -> String {
    let hms = |s: f64| {
        let s = s.round() as u64;
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.model.clone(),
                r.seed.to_string(),
                r.spec.iterations.to_string(),
                format!("{:.1}M", r.flops as f64 / 1e6),
                r.status.label(),
                match (r.status, r.estimate_s) {
                    (plan::Status::Done, _) => "-".into(),
                    (_, Some(s)) => hms(s),
                    (_, None) => "?".into(),
                },
                r.dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            ]
        })
        .collect();
    let mut out = experiments::text::markdown_table(
        &[
            "model",
            "seed",
            "iterations",
            "FLOPs",
            "status",
            "estimate",
            "run",
        ],
        &rows,
    );
    let left: f64 = runs.iter().filter_map(|r| r.estimate_s).sum();
    let todo = runs
        .iter()
        .filter(|r| r.status != plan::Status::Done)
        .count();
    // CPU jobs split the same cores, so they only overlap the work; GPU jobs add throughput.
    let wall = if *device == DeviceName::Cpu {
        left
    } else {
        left / jobs.max(1) as f64
    };
    let unestimated = runs
        .iter()
        .any(|r| r.status != plan::Status::Done && r.estimate_s.is_none());
    let estimate = if unestimated {
        "no complete time estimate (probe skipped or failed)".to_string()
    } else {
        format!(
            "estimated {} on {device} (probe-based: training speed measured for a few steps; \
             evaluation counted at three times that speed)",
            hms(wall)
        )
    };
    out += &format!("\n{todo} of {} runs to train; {estimate}\n", runs.len());
    out
}

/// One bar over the sweep's runs, one bar per run in flight.
struct SweepProgress {
    multi: MultiProgress,
    overall: ProgressBar,
    quiet: bool,
    finished: Mutex<u64>,
}

impl SweepProgress {
    fn new(runs: &[plan::PlannedRun], quiet: bool) -> Self {
        let multi = MultiProgress::new();
        let todo = runs.iter().filter(|r| r.status != plan::Status::Done);
        let overall = if quiet {
            ProgressBar::hidden()
        } else {
            multi.add(ProgressBar::new(todo.count() as u64))
        };
        overall.set_style(
            ProgressStyle::with_template(
                "sweep [{bar:30}] {pos}/{len} runs, elapsed {elapsed}, ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        overall.enable_steady_tick(Duration::from_secs(1));
        Self {
            multi,
            overall,
            quiet,
            finished: Mutex::new(0),
        }
    }
}

impl SweepObserver for SweepProgress {
    fn run_started(&self, run: &plan::PlannedRun) -> Box<dyn Observer + Send> {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            self.multi.add(ProgressBar::new(run.spec.iterations))
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>22} [{bar:30}] {pos}/{len} it, {per_sec}, ETA {eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} seed {}", run.model, run.seed));
        if self.quiet {
            eprintln!("{} seed {}: {}", run.model, run.seed, run.status.label());
        }
        Box::new(RunProgress { bar })
    }

    fn run_finished(&self, run: &plan::PlannedRun, summary: &Summary) {
        *self.finished.lock().unwrap() += 1;
        self.overall.inc(1);
        let line = format!(
            "{} seed {}: train error {:.2}%, test error {:.2}%, {:.1} images/s, {:.0} s",
            run.model,
            run.seed,
            100.0 * summary.final_train_error,
            100.0 * summary.final_test_error,
            summary.images_per_s,
            summary.wall_s
        );
        if self.overall.is_hidden() {
            eprintln!("{line}");
        } else {
            self.overall.println(line);
        }
    }
}

struct RunProgress {
    bar: ProgressBar,
}

impl Observer for RunProgress {
    fn started(&mut self, spec: &RunSpec, from: u64) {
        self.bar.set_length(spec.iterations);
        self.bar.set_position(from);
        self.bar.reset_eta();
    }
    fn step(&mut self, iteration: u64) {
        self.bar.set_position(iteration);
    }
    fn evaluating(&mut self, _iteration: u64) {
        self.bar.set_message("evaluating");
    }
    fn row(&mut self, row: &Row) {
        self.bar.set_message(format!("loss {:.3}", row.train_loss));
    }
}

impl Drop for RunProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn the_command_line_quotes_what_a_shell_would_split() {
        let args = [
            "reproduce",
            "table6",
            "--out",
            "/tmp/my results",
            "--models",
            "it's",
        ];
        assert_eq!(
            command_line(args.iter().map(|a| a.to_string())),
            r"suite reproduce table6 --out '/tmp/my results' --models 'it'\''s'"
        );
        assert_eq!(
            command_line(["--data", "cifar10=../d"].iter().map(|a| a.to_string())),
            "suite --data cifar10=../d"
        );
    }
}
