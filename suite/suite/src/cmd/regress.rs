//! `suite regress`: a results set and bench figures against a committed baseline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use experiments::regress::{self, Baseline, Check};

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite reproduce table6 --profile smoke --out /tmp/r
  suite bench train --model resnet20 --batch 128 --json > /tmp/bench.jsonl
  suite regress --baseline ci/baselines/cpu-smoke.json --results /tmp/r --bench /tmp/bench.jsonl
  suite regress --write-baseline --baseline ci/baselines/cpu-smoke.json --results /tmp/r \\
                --bench /tmp/bench.jsonl          (re)write the baseline from these results
  suite regress --write-baseline --baseline ci/baselines/cpu-medium.json --profile medium
                                                  one profile's committed tables only

Accuracy passes within 3 standard deviations of the baseline's final test error, the deviation
being its seed spread but never less than the binomial deviation on the test set's size.
Throughput passes down to 7% below the baseline, on the baseline's device class only. A metric
the baseline has and the results lack is MISSING and fails.
Exit codes: 0 every metric passed; 1 a regression or a missing metric; 2 an error.";

/// Compare a results set (and `suite bench train --json` output) with a baseline file, or write
/// one
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The baseline file (JSON): read, or written with --write-baseline
    #[arg(long, value_name = "FILE")]
    baseline: PathBuf,
    /// Results directory holding <experiment>/<profile>/runs.parquet [default: --results]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Only the sweeps of this profile: written into the baseline, or compared with it
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// `suite bench train --json` output: one report per line
    #[arg(long, value_name = "FILE")]
    bench: Option<PathBuf>,
    /// What the benchmarked device is [default: the CPU's model name, family, model number and
    /// CPU count from /proc/cpuinfo, or the GPU's name from nvidia-smi]
    #[arg(long, value_name = "NAME")]
    device_class: Option<String>,
    /// Write the baseline from the results (every sweep under the results directory, or those
    /// of --profile) and the bench file instead of comparing
    #[arg(long)]
    write_baseline: bool,
    /// Print the comparison as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let results = global.results_dir(args.out.as_deref());
    let reports = match &args.bench {
        Some(path) => regress::read_bench(path)?,
        None => Vec::new(),
    };
    // Only bench figures need to know what they were measured on.
    let device_class = match (&args.device_class, reports.first()) {
        (Some(class), _) => class.clone(),
        (None, Some(report)) => regress::device_class(&report.device),
        (None, None) => String::new(),
    };
    if args.write_baseline {
        let baseline = Baseline {
            format: regress::FORMAT,
            command: super::reproduce::command_line(std::env::args().skip(1)),
            suite_version: env!("CARGO_PKG_VERSION").to_string(),
            accuracy: regress::accuracy_of(&results, args.profile.as_deref())
                .with_context(|| format!("reading the sweeps under {}", results.display()))?,
            throughput: regress::throughput_of(&reports, &device_class),
        };
        anyhow::ensure!(
            !baseline.accuracy.is_empty() || !baseline.throughput.is_empty(),
            "nothing to write: no sweep{} under {} and no --bench file",
            of_profile(args.profile.as_deref()),
            results.display()
        );
        regress::write_baseline(&args.baseline, &baseline)?;
        println!(
            "wrote {}: {} accuracy and {} throughput metrics",
            args.baseline.display(),
            baseline.accuracy.len(),
            baseline.throughput.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut baseline = regress::read_baseline(&args.baseline)?;
    if let Some(profile) = &args.profile {
        let profiles = profiles_of(&baseline);
        baseline.accuracy.retain(|b| &b.profile == profile);
        anyhow::ensure!(
            !baseline.accuracy.is_empty(),
            "{} has no sweep{}; its sweeps are of profiles: {profiles}",
            args.baseline.display(),
            of_profile(Some(profile)),
        );
    }
    let mut checks = regress::check_accuracy(&baseline.accuracy, &results)?;
    if !baseline.throughput.is_empty() && args.bench.is_none() {
        eprintln!("note: the baseline has throughput metrics; without --bench they are MISSING");
    }
    checks.extend(regress::check_throughput(
        &baseline.throughput,
        &reports,
        &device_class,
    ));
    let failed = checks.iter().filter(|c| c.status.fails()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        println!("{}", table(&checks));
        println!(
            "{} of {} metrics passed against {}",
            checks.len() - failed,
            checks.len(),
            args.baseline.display()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn of_profile(profile: Option<&str>) -> String {
    profile.map_or(String::new(), |p| format!(" of profile `{p}`"))
}

fn profiles_of(baseline: &Baseline) -> String {
    let profiles: std::collections::BTreeSet<&str> = baseline
        .accuracy
        .iter()
        .map(|b| b.profile.as_str())
        .collect();
    if profiles.is_empty() {
        "none".into()
    } else {
        profiles.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn table(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.metric.clone(),
                format!("{:.2}", c.baseline),
                c.measured.map_or("–".into(), |m| format!("{m:.2}")),
                c.tolerance.clone(),
                c.status.to_string(),
                c.note.clone(),
            ]
        })
        .collect();
    experiments::text::markdown_table(
        &["metric", "baseline", "measured", "passes", "status", "note"],
        &rows,
    )
}
