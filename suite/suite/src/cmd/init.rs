//! `suite init`: a model's initial weights, as training would start from them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candle_core::Device;

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite init --model resnet20 --seed 0 --out resnet20-seed0.safetensors
  python -c \"import torchvision, safetensors.torch as st; m = torchvision.models.resnet18(); \\
             m.load_state_dict(st.load_file('resnet18.safetensors'))\"";

/// Write a model's seeded initial weights (He init, BN weight 1 and bias 0) as safetensors with
/// torchvision's names. The same seed gives the same weights on every device and machine.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Model name (see `suite list models`)
    #[arg(long)]
    model: String,
    /// Seed of the initial weights
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let spec: nets::ModelSpec = args.model.parse()?;
    let model = nets::Model::new(spec, args.seed, &Device::Cpu)?;
    model
        .save(&args.out)
        .with_context(|| format!("writing the weights of {spec}"))?;
    let cost = model.cost();
    eprintln!(
        "wrote {} ({spec}, seed {}, {} parameters)",
        args.out.display(),
        args.seed,
        cost.params
    );
    Ok(ExitCode::SUCCESS)
}
