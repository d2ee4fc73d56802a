//! `suite list`: what the suite can run.

use std::process::ExitCode;

use super::Format;
use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite list                 experiments and models
  suite list models          every model name, with parameters and FLOPs
  suite list models --format json";

/// List experiments and models.
///
/// Model names follow a small grammar: `resnet` or `plain`, a depth (18, 34, 50, 101, 152 for the
/// ImageNet family; 6n+2 such as 20, 56, 110, 1202 for the CIFAR family), an optional shortcut
/// option `-a`, `-b` or `-c` (defaults: A on CIFAR, B on ImageNet), and `-v1.5` for torchvision's
/// bottleneck stride placement. `list models` shows the paper's models; any name of the grammar
/// works wherever a model is asked for.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// What to list
    #[arg(value_enum, default_value = "all")]
    what: What,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    All,
    Experiments,
    Models,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let show_experiments = matches!(args.what, What::All | What::Experiments);
    let show_models = matches!(args.what, What::All | What::Models);
    let exps = if show_experiments {
        let dir = crate::paths::configs_dir(global.configs.as_deref());
        experiments::registry::configs(&dir)?
    } else {
        Vec::new()
    };
    let mods = if show_models {
        nets::summaries()
    } else {
        Vec::new()
    };
    if args.format == Format::Json {
        let value = match args.what {
            What::Experiments => serde_json::to_value(&exps)?,
            What::Models => serde_json::to_value(&mods)?,
            What::All => serde_json::json!({ "experiments": exps, "models": mods }),
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if show_experiments {
        println!("Experiments (`suite reproduce NAME`):");
        for e in &exps {
            let what = match (e.summary, e.implemented) {
                (Some(summary), _) => summary.to_string(),
                (None, true) => experiments::sweep::config::sweep_title(&e.config)
                    .map_or_else(|| "a sweep".to_string(), |t| format!("sweep: {t}")),
                (None, false) => "(config only: not implemented in this build)".to_string(),
            };
            println!("  {:<13} {what}", e.name);
            println!("  {:<13} {}", "", e.config.display());
        }
    }
    if show_models {
        if show_experiments {
            println!();
        }
        let headers = ["model", "family", "block", "shortcut", "params", "FLOPs"];
        let rows: Vec<Vec<String>> = mods
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.family.into(),
                    m.block.into(),
                    m.shortcut.map_or("none (plain)".into(), |c| c.to_string()),
                    experiments::text::thousands(m.params),
                    format!("{:.3}e9", m.flops as f64 / 1e9),
                ]
            })
            .collect();
        print!("{}", experiments::text::markdown_table(&headers, &rows));
    }
    Ok(ExitCode::SUCCESS)
}
