//! `suite data`: fetch datasets into the caches and say what is there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use datasets::cifar;
use serde::Serialize;

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite data fetch cifar10                              from the Hugging Face hub (cached)
  suite data fetch cifar10 --data cifar10=../shared/data/cifar10
  suite data info --data imagenet=/data/imagenet/val

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

#[derive(Serialize)]
struct SourceInfo {
    name: String,
    location: String,
    available: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    train: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    note: String,
}

#[derive(Serialize)]
struct FileInfo {
    path: String,
    bytes: u64,
}

fn file_info(paths: &[PathBuf]) -> Vec<FileInfo> {
    paths
        .iter()
        .map(|p| FileInfo {
            path: p.display().to_string(),
            bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        })
        .collect()
}

fn cifar_info(global: &Global) -> anyhow::Result<SourceInfo> {
    let source = cifar_source(global)?;
    let location = source.location().display().to_string();
    let offline_files = match &source {
        // Ask the hub cache only: `info` never downloads.
        cifar::Source::Hub { .. } => cifar::hub_cached_files(),
        _ => Some(source.files()?),
    };
    let Some(files) = offline_files else {
        return Ok(SourceInfo {
            name: "cifar10".into(),
            location,
            available: false,
            files: Vec::new(),
            train: None,
            test: None,
            classes: None,
            images: None,
            sha256: None,
            note: "not in the hub cache: `suite data fetch cifar10` downloads it".into(),
        });
    };
    let data = cifar::load(&source, Some(&cifar::default_cache_dir()))?;
    Ok(SourceInfo {
        name: "cifar10".into(),
        location,
        available: true,
        files: file_info(
            &files
                .train
                .iter()
                .chain(&files.test)
                .cloned()
                .collect::<Vec<_>>(),
        ),
        train: Some(data.train.len()),
        test: Some(data.test.len()),
        classes: Some(cifar::CLASSES.len()),
        images: None,
        sha256: Some(data.checksum),
        note: String::new(),
    })
}

fn imagenet_info(path: &Path) -> anyhow::Result<SourceInfo> {
    let folder = datasets::ImageFolder::open(path)?;
    let files: Vec<PathBuf> = folder.samples.iter().map(|s| s.0.clone()).collect();
    let bytes: u64 = file_info(&files).iter().map(|f| f.bytes).sum();
    Ok(SourceInfo {
        name: "imagenet".into(),
        location: path.display().to_string(),
        available: true,
        files: Vec::new(),
        train: None,
        test: None,
        classes: Some(folder.classes.len()),
        images: Some(folder.len()),
        sha256: Some(cifar::checksum(&files)?),
        note: format!("{bytes} bytes of images"),
    })
}

fn info(global: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let mut sources = vec![cifar_info(global)?];
    if let Some(path) = global.data_path("imagenet") {
        sources.push(
            imagenet_info(path).with_context(|| format!("--data imagenet={}", path.display()))?,
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
