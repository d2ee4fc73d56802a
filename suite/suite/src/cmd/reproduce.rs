//! `suite reproduce EXPERIMENT`: compute one paper artefact, store it, check the paper's claims.

use std::process::ExitCode;

use experiments::Verdict;
use experiments::registry::{self, Context};

use super::Format;
use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite reproduce table1                  print the table, write results/table1/table1.{csv,parquet}
  suite reproduce table1 --format json    the rows as a JSON array

Exit codes: 0 every claim held, 1 a claim failed, 2 error.";

/// Reproduce one artefact of the paper and check it against the paper's numbers.
///
/// table1: parameters and multiply-adds of every architecture (ImageNet 18-152 with option B;
/// CIFAR 20-1202 with option A), computed from the module graphs that train, side by side with the
/// paper (Table 1 FLOPs, Table 6 parameters) and torchvision's parameter counts.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The experiment: a config name in the configs directory (see `suite list experiments`)
    experiment: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let configs = crate::paths::configs_dir(global.configs.as_deref());
    let context = Context {
        configs: &configs,
        results: &global.results,
    };
    let out = registry::reproduce(&args.experiment, &context)?;
    match args.format {
        Format::Json => println!("{}", out.json),
        Format::Text => print!("{}\n{}", out.title, out.text),
    }
    for path in &out.written {
        eprintln!("wrote {}", path.display());
    }
    Ok(match out.verdict {
        Verdict::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
