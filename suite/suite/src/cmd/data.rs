//! `suite data`: fetch datasets into the caches and say what is there.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use datasets::{cifar, info};

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite data fetch cifar10                              from the Hugging Face hub (cached)
  suite data fetch cifar10 --data cifar10=../shared/data/cifar10
  suite data info --data imagenet=/data/imagenet/val
  suite data synth-imagenet /tmp/imagenet-smoke          a generated ImageNet-style folder

The hub files are cached by hf-hub (HF_HOME, default ~/.cache/huggingface; HF_HUB_OFFLINE=1 reads
the cache only). Decoded CIFAR-10 is cached in $RESNET_REPRO_CACHE (default ~/.cache/resnet-repro),
keyed by the SHA-256 of the source files.";

/// Fetch and inspect datasets.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Download (or read a local copy of) a dataset, decode it once and fill the caches
    Fetch {
        /// The dataset: cifar10
        name: String,
    },
    /// List the data sources the suite can see: counts, sizes and checksums
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Write a small ImageNet-style dataset of generated JPEGs (train/<wnid>/, val/<wnid>/; sizes
    /// vary, each class has its own colour and stripes) for the ImageNet smoke profiles
    SynthImagenet {
        /// The directory to write (created)
        dir: std::path::PathBuf,
        /// Classes, spread over ImageNet's sorted wnids
        #[arg(long, default_value_t = 4)]
        classes: usize,
        /// Training images per class
        #[arg(long, default_value_t = 8)]
        train: usize,
        /// Validation images per class
        #[arg(long, default_value_t = 3)]
        val: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// The CIFAR-10 source the user asked for: `--data cifar10=PATH`, else the hub.
pub fn cifar_source(global: &Global) -> anyhow::Result<cifar::Source> {
    match global.data_path("cifar10") {
        Some(path) => Ok(cifar::Source::local(path)?),
        None => Ok(cifar::Source::default()),
    }
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Fetch { name } => fetch(&name, global),
        Action::Info { json } => info(global, json),
        Action::SynthImagenet {
            dir,
            classes,
            train,
            val,
            seed,
        } => {
            let wnids = datasets::imagenet::write_synthetic(&dir, classes, (train, val), seed)?;
            println!(
                "wrote {} classes ({}) of {train} training and {val} validation images to {}",
                wnids.len(),
                wnids.join(", "),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn fetch(name: &str, global: &Global) -> anyhow::Result<ExitCode> {
    if name != "cifar10" {
        bail!(
            "no dataset `{name}` to fetch (available: cifar10; ImageNet is read from a local folder with --data imagenet=PATH)"
        );
    }
    let source = cifar_source(global)?;
    let cache = cifar::default_cache_dir();
    let start = Instant::now();
    let data = cifar::load(&source, Some(&cache))?;
    println!("CIFAR-10 from {}", source.location().display());
    println!(
        "  train {} images, test {} images",
        data.train.len(),
        data.test.len()
    );
    println!("  sha256 of the source files {}", data.checksum);
    println!(
        "  decoded cache {}",
        cache
            .join(format!("cifar10-{}.u8", data.checksum))
            .display()
    );
    println!("  loaded in {:.2} s", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn info(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let mut sources = vec![info::cifar10(
        &cifar_source(global)?,
        &cifar::default_cache_dir(),
    )?];
    if let Some(path) = global.data_path("imagenet") {
        sources.push(
            info::image_folder("imagenet", path)
                .with_context(|| format!("--data imagenet={}", path.display()))?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&sources)?);
        return Ok(ExitCode::SUCCESS);
    }
    for s in &sources {
        println!(
            "{} ({})",
            s.name,
            if s.available {
                "available"
            } else {
                "not available"
            }
        );
        println!("  location {}", s.location);
        for f in &s.files {
            println!("  file {} ({} bytes)", f.path, f.bytes);
        }
        if let (Some(train), Some(test)) = (s.train, s.test) {
            println!("  {train} training and {test} test images");
        }
        if let (Some(classes), Some(images)) = (s.classes, s.images) {
            println!("  {images} images in {classes} classes");
        }
        if let Some(sha) = &s.sha256 {
            println!("  sha256 {sha}");
        }
        if !s.note.is_empty() {
            println!("  {}", s.note);
        }
    }
    Ok(ExitCode::SUCCESS)
}
