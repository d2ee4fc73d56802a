//! `suite report EXPERIMENT...`: a sweep's figures and report from its tables on disk.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite report table6 --profile quick        reports/table6/quick/{report.md,curves.png,...}
  suite report fig1 fig7 --profile quick --reports /tmp/reports
  suite report ablation-skip --profile smoke --out /tmp/sweep
  suite report all --profile quick           every sweep with quick results, and
                                             reports/index-quick.{md,pdf} with their verdict counts

Each figure is written as PNG and SVG. report.md, report.html and report.pdf hold the provenance,
the verdicts, the measured numbers beside the paper's and the figures (the PDF's as vectors). An
experiment without results says which `suite reproduce` command makes them (exit 2).";

/// Draw a sweep's figures in the paper's style and write its report, from the result tables on
/// disk (nothing is trained or recomputed).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Sweeps (table6, fig1, fig6, fig7, ablation-skip, table2, fig4, table3, table4; see `suite
    /// list experiments`), or `all`: every sweep with results in the profile, and an index
    #[arg(required = true)]
    experiments: Vec<String>,
    /// The sweep's profile: smoke, quick, medium (CIFAR) or paper
    #[arg(long, default_value = "smoke")]
    profile: String,
    /// Results directory the tables are read from [default: --results]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Directory the reports are written to, as <DIR>/<experiment>/<profile>/
    #[arg(long, value_name = "DIR", default_value = "reports")]
    reports: PathBuf,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let configs = crate::paths::configs_dir(global.configs.as_deref());
    let results = global.results_dir(args.out.as_deref());
    let all = args.experiments.iter().any(|e| e == "all");
    let names: Vec<String> = if all {
        // Every sweep whose tables exist for this profile; the others have nothing to draw.
        experiments::registry::configs(&configs)?
            .into_iter()
            .filter(|c| experiments::sweep::config::is_sweep(&c.config))
            .map(|c| c.name)
            .filter(|name| {
                experiments::sweep::tables_dir(&results, name, &args.profile)
                    .join("runs.parquet")
                    .is_file()
            })
            .collect()
    } else {
        args.experiments.clone()
    };
    if all && names.is_empty() {
        anyhow::bail!(
            "no sweep has {} results in {} (run `suite reproduce <experiment> --profile {}` first)",
            args.profile,
            results.display(),
            args.profile
        );
    }
    let mut written = Vec::new();
    for name in &names {
        let config = super::reproduce::load(&configs, name)?;
        let subject = subject(&config, &args.profile)?;
        let out = args.reports.join(name).join(&args.profile);
        let report = report::write_report(&subject, &results, &out)?;
        for path in report.files() {
            println!("wrote {}", path.display());
        }
        written.push((subject, report));
    }
    if all {
        for path in report::write_index(&args.profile, &written, &args.reports)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report of `config`'s `profile` is about.
pub(crate) fn subject(
    config: &experiments::sweep::config::SweepConfig,
    profile: &str,
) -> anyhow::Result<report::Subject> {
    Ok(report::Subject {
        experiment: config.name.clone(),
        title: config.header.title.clone(),
        profile: profile.into(),
        about: config.profile(profile)?.about.clone(),
        dataset: config.header.dataset.clone(),
    })
}
