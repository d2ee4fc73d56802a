//! `suite eval`: top-1 and top-5 error of a net (or an ensemble) on ImageNet's validation images
//! with the paper's testing protocols.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;
use trainer::DeviceName;
use trainer::eval::{Evaluation, Views};

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite eval --model resnet50-v1.5 --weights resnet50.safetensors --data imagenet=/data/imagenet
  suite eval --model resnet34 --weights run/weights.safetensors --views center,10crop,multiscale \\
             --data imagenet=../shared/data/imagenet-sample --json
  suite eval --model resnet152 --weights r152.safetensors --ensemble resnet101=r101.safetensors \\
             --views 10crop --data imagenet=/data/imagenet --device cuda

Views (§3.4 of the paper): `center` resizes the shorter side to 256 and takes the center 224x224
crop; `10crop` takes the four corners and the center of that image and of its mirror (Tables 2
and 3); `multiscale` scores the whole image with its shorter side at 224, 256, 384, 480 and 640
(Table 4; the nets' global average pooling makes their logits the fully-convolutional scores
averaged over positions). An image's prediction is the softmax averaged over its views, then over
the nets of an ensemble (Table 5's method).

The validation set may be image folders (DIR/val/<wnid>/*, or DIR/<wnid>/*), the Kaggle copy
(flat images with LOC_val_solution.csv), or the official flat ILSVRC2012_img_val/ with the devkit
(ILSVRC2012_devkit_t12/data/: the ground-truth ids and meta.mat). Classes are indexed as torchvision's weights index them
(the 1,000 sorted wnids); a net trained on N classes (`suite train --classes N`) is scored on the
N classes spread over the validation folders, as training chose them from the training folders.
Weights use torchvision's names: converted torchvision checkpoints and a run's weights.safetensors.

Written to <results>/eval/<nets>/: summary.csv and summary.json (one row per views), and
predictions-<views>.csv (each image's label and top-5 classes with their probabilities).";

/// Score nets on ImageNet's validation images with the paper's testing protocols (center crop,
/// 10 crops, multi-scale); prints top-1 and top-5 error and writes them with every image's top-5
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Model name (see `suite list models`)
    #[arg(long)]
    model: String,
    /// Its weights (safetensors, torchvision's names)
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Another net of the ensemble, as MODEL=WEIGHTS (repeatable); the nets' probabilities are
    /// averaged
    #[arg(long, value_name = "MODEL=WEIGHTS")]
    ensemble: Vec<String>,
    /// Test views: center, 10crop, multiscale (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "center")]
    views: Vec<Views>,
    /// Images per forward pass (10crop runs ten views of each; multiscale one view at a time)
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Only the first N images (in file-name order), for a quick look
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Print no progress bar
    #[arg(long)]
    quiet: bool,
}

/// One row of summary.csv.
#[derive(Debug, Serialize)]
struct Row {
    nets: String,
    weights: String,
    views: Views,
    images: usize,
    top1_error: f64,
    top5_error: f64,
    images_per_s: f64,
    device: String,
    data: String,
}

fn member(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((model, weights)) if !model.is_empty() && !weights.is_empty() => {
            Ok((model.to_string(), PathBuf::from(weights)))
        }
        _ => bail!("--ensemble `{spec}`: expected MODEL=WEIGHTS, e.g. resnet101=r101.safetensors"),
    }
}

/// The wnids a net with `classes` outputs indexes: ImageNet-1k's for 1,000; for fewer (a net
/// trained with `--classes N`), the validation folders' own when there are as many, else that
/// many spread over them, as training chose them from the training folders.
fn class_list(classes: usize, data: &Path) -> anyhow::Result<Vec<String>> {
    if classes == 1000 {
        return Ok(datasets::imagenet::imagenet1k_wnids());
    }
    let layout = datasets::imagenet::Layout::detect(data)?;
    let datasets::imagenet::Layout::Folder { root } = layout else {
        bail!(
            "a net with {classes} classes is evaluated on validation folders (val/<wnid>/), not on \
             the Kaggle layout"
        );
    };
    let available = datasets::folder::class_names(&root)?;
    datasets::imagenet::Classes::Count(classes)
        .choose(&available)
        .map_err(|msg| anyhow::anyhow!("{}: {msg}", root.display()))
}

/// How many classes weights were trained for: the rows of their classifier, `fc.weight`.
fn trained_classes(weights: &Path) -> anyhow::Result<Option<usize>> {
    // SAFETY: the file is only read, and not expected to change while it is mapped.
    let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::new(weights) }
        .with_context(|| format!("reading {}", weights.display()))?;
    Ok(tensors
        .get("fc.weight")
        .ok()
        .and_then(|fc| fc.shape().first().copied()))
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let data = global.data_path("imagenet").with_context(|| {
        "no ImageNet validation set: pass --data imagenet=DIR (DIR/val/<wnid>/<image>, \
         DIR/<wnid>/<image>, the Kaggle copy with LOC_val_solution.csv, or the official \
         ILSVRC2012_img_val/ with ILSVRC2012_devkit_t12/)"
    })?;
    let device = args.device.open()?;
    let mut members = vec![(args.model.clone(), args.weights.clone())];
    for spec in &args.ensemble {
        members.push(member(spec)?);
    }
    let mut models = Vec::with_capacity(members.len());
    for (name, weights) in &members {
        let mut spec: nets::ModelSpec = name.parse()?;
        if spec.is_cifar() {
            bail!("`{spec}` is a CIFAR net: `suite eval` scores ImageNet nets");
        }
        if let Some(classes) = trained_classes(weights)? {
            spec.num_classes = classes;
        }
        let model = nets::Model::load(spec, weights, &device)
            .with_context(|| format!("loading {name} from {}", weights.display()))?;
        models.push((spec, model));
    }
    let (first, _) = &models[0];
    let classes = first.num_classes;
    if let Some((spec, _)) = models.iter().find(|(s, _)| s.num_classes != classes) {
        bail!(
            "the ensemble's nets disagree on the classes: {spec} has {}, {first} has {classes}",
            spec.num_classes
        );
    }
    let class_list = class_list(classes, data)?;
    let mut val = if classes == 1000 {
        datasets::imagenet::Validation::open(data, &class_list)?
    } else {
        datasets::imagenet::Validation::open_only(data, &class_list)?
    };
    if let Some(n) = args.limit {
        val.samples.truncate(n);
    }
    let nets: Vec<&nets::ResNet> = models.iter().map(|(_, m)| &m.net).collect();
    let label = members
        .iter()
        .map(|(m, _)| m.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let out = global.results.join("eval").join(&label);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut rows = Vec::new();
    for &views in &args.views {
        let bar = if args.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(val.len() as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{label} {views}"));
        let evaluation = trainer::eval::evaluate(
            &nets,
            &val.samples,
            (views, trainer::eval::Geometry::PAPER),
            &device,
            args.batch,
            |n| bar.inc(n as u64),
        )?;
        bar.finish_and_clear();
        write_predictions(&out.join(format!("predictions-{views}.csv")), &evaluation)?;
        rows.push(Row {
            nets: label.clone(),
            weights: members
                .iter()
                .map(|(_, w)| w.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            views,
            images: evaluation.images,
            top1_error: evaluation.top1_error,
            top5_error: evaluation.top5_error,
            images_per_s: evaluation.images_per_s,
            device: args.device.to_string(),
            data: data.display().to_string(),
        });
    }
    files::write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    files::write_atomic(&out.join("summary.csv"), summary_csv(&rows).as_bytes())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("| nets | views | images | top-1 error | top-5 error | images/s |");
        println!("|------|-------|--------|-------------|-------------|----------|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.2}% | {:.2}% | {:.1} |",
                r.nets,
                r.views,
                r.images,
                100.0 * r.top1_error,
                100.0 * r.top5_error,
                r.images_per_s
            );
        }
        println!("written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn summary_csv(rows: &[Row]) -> String {
    let mut csv =
        String::from("nets,weights,views,images,top1_error,top5_error,images_per_s,device,data\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            field(&r.nets),
            field(&r.weights),
            r.views,
            r.images,
            r.top1_error,
            r.top5_error,
            r.images_per_s,
            field(&r.device),
            field(&r.data)
        );
    }
    csv
}

fn write_predictions(path: &Path, evaluation: &Evaluation) -> anyhow::Result<()> {
    let mut csv = String::from("image,label");
    for k in 1..=5 {
        let _ = write!(csv, ",top{k},p{k}");
    }
    csv.push('\n');
    for r in &evaluation.per_image {
        let _ = write!(csv, "{},{}", field(&r.path.display().to_string()), r.label);
        for k in 0..5 {
            match (r.top5.get(k), r.top5_probability.get(k)) {
                (Some(c), Some(p)) => {
                    let _ = write!(csv, ",{c},{p}");
                }
                _ => csv.push_str(",,"),
            }
        }
        csv.push('\n');
    }
    Ok(files::write_atomic(path, csv.as_bytes())?)
}
