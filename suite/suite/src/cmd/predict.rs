//! `suite predict`: an evaluation-mode forward pass on images or a prepared tensor.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use candle_core::{D, DType, Device, Tensor};
use candle_nn::ModuleT;
use serde::Serialize;

use crate::cli::Global;

const EXAMPLES: &str = "\
Examples:
  suite predict --model resnet50-v1.5 --weights resnet50.safetensors cat.jpg dog.jpg
  suite predict --model resnet20 --weights run/weights.safetensors --tensor batch.safetensors --json

Images go through the standard evaluation transform: shorter side resized to 256 (bilinear,
antialiased), center crop 224x224, scaled to [0, 1], normalised with torchvision's ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), the statistics torchvision's weights were
trained with. `--tensor` skips all of it: the file's float32 tensor `input` of shape (N, 3, H, W)
goes in as it is.";

/// Classify images (or a prepared input tensor) with a model and its weights; prints the top-5
/// classes with their probabilities.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Model name (see `suite list models`)
    #[arg(long)]
    model: String,
    /// Weights as safetensors with torchvision's names (e.g. converted torchvision weights)
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Image files (JPEG or PNG)
    #[arg(
        value_name = "IMAGE",
        required_unless_present = "tensor",
        conflicts_with = "tensor"
    )]
    images: Vec<PathBuf>,
    /// A safetensors file with one float32 tensor `input` of shape (N, 3, H, W), already normalised
    #[arg(long, value_name = "FILE")]
    tensor: Option<PathBuf>,
    /// Class names, one per line, in class-index order
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Print one JSON object with `logits` (N arrays of class scores) and `top5`
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Class {
    class: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    probability: f32,
}

#[derive(Serialize)]
struct Output {
    inputs: Vec<String>,
    logits: Vec<Vec<f32>>,
    top5: Vec<Vec<Class>>,
}

pub fn run(args: Args, _global: &Global) -> anyhow::Result<ExitCode> {
    let device = Device::Cpu;
    let spec: nets::ModelSpec = args.model.parse()?;
    let model = nets::Model::load(spec, &args.weights, &device)?;
    let (inputs, names) = match &args.tensor {
        Some(path) => {
            let t = read_input_tensor(path)?;
            let n = t.dim(0)?;
            (
                t,
                (0..n).map(|i| format!("{}[{i}]", path.display())).collect(),
            )
        }
        None => {
            if spec.is_cifar() {
                bail!(
                    "image preprocessing is defined for the ImageNet family; `{spec}` is a CIFAR model: pass a prepared input with --tensor"
                );
            }
            let images = args
                .images
                .iter()
                .map(|p| preprocess(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let names = args
                .images
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (Tensor::stack(&images, 0)?, names)
        }
    };
    let labels = match &args.labels {
        Some(path) => Some(read_labels(path, spec.num_classes)?),
        None => None,
    };
    let logits = model.net.forward_t(&inputs.to_device(&device)?, false)?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
    let top5: Vec<Vec<Class>> = probs
        .iter()
        .map(|p| {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            order
                .into_iter()
                .take(5)
                .map(|class| Class {
                    class,
                    label: labels.as_ref().map(|l| l[class].clone()),
                    probability: p[class],
                })
                .collect()
        })
        .collect();
    if args.json {
        let out = Output {
            inputs: names,
            logits: logits.to_vec2()?,
            top5,
        };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for (name, classes) in names.iter().zip(&top5) {
            println!("{name}");
            for c in classes {
                let label = c.label.as_deref().unwrap_or("");
                println!("  {:>6.2}%  {:>4}  {label}", 100.0 * c.probability, c.class);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input_tensor(path: &Path) -> anyhow::Result<Tensor> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let Some(t) = tensors.get("input") else {
        let mut found: Vec<&String> = tensors.keys().collect();
        found.sort();
        bail!(
            "{}: no tensor named `input` (found {found:?})",
            path.display()
        );
    };
    if t.dtype() != DType::F32 || t.rank() != 4 || t.dim(1)? != 3 {
        bail!(
            "{}: `input` must be float32 of shape (N, 3, H, W), found {:?} {:?}",
            path.display(),
            t.dtype(),
            t.dims()
        );
    }
    Ok(t.clone())
}

/// The evaluation view of an image file (`datasets::folder::center_view`) as a (3, 224, 224) tensor.
fn preprocess(path: &Path) -> anyhow::Result<Tensor> {
    let view = datasets::folder::center_view(&datasets::folder::decode(path)?);
    let side = datasets::Transform::CENTER.crop_size() as usize;
    Ok(Tensor::from_vec(view, (3, side, side), &Device::Cpu)?)
}

fn read_labels(path: &Path, classes: usize) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if labels.len() != classes {
        bail!(
            "{}: {} labels, the model has {classes} classes",
            path.display(),
            labels.len()
        );
    }
    Ok(labels)
}
