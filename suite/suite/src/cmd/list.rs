//! `suite list`: what the suite can run.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

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

#[derive(Serialize)]
struct ModelRow {
    name: String,
    family: &'static str,
    depth: usize,
    residual: bool,
    shortcut: Option<char>,
    block: &'static str,
    input_size: usize,
    params: u64,
    flops: u64,
}

fn models() -> Vec<ModelRow> {
    nets::all_models()
        .into_iter()
        .map(|spec| {
            let side = spec.default_input_size();
            let cost = nets::cost_of(&spec, side, side);
            ModelRow {
                name: spec.to_string(),
                family: if spec.is_cifar() {
                    "cifar10"
                } else {
                    "imagenet"
                },
                depth: spec.depth(),
                residual: spec.residual,
                shortcut: spec
                    .residual
                    .then(|| spec.shortcut.letter().to_ascii_uppercase()),
                block: match spec.block_kind() {
                    nets::BlockKind::Basic => "basic",
                    nets::BlockKind::Bottleneck => "bottleneck",
                },
                input_size: side,
                params: cost.params,
                flops: cost.flops,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct ExperimentRow {
    name: String,
    config: String,
}

fn experiments(global: &Global) -> anyhow::Result<Vec<ExperimentRow>> {
    let dir = crate::paths::configs_dir(global.configs.as_deref());
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            rows.push(ExperimentRow {
                name,
                config: path.display().to_string(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let show_experiments = matches!(args.what, What::All | What::Experiments);
    let show_models = matches!(args.what, What::All | What::Models);
    let exps = if show_experiments {
        experiments(global)?
    } else {
        Vec::new()
    };
    let mods = if show_models { models() } else { Vec::new() };
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
            println!("  {:<10} {}", e.name, e.config);
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
