//! The architectures of He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition"
//! (arXiv 1512.03385) in candle: the CIFAR family (depth 6n+2) and the ImageNet family (18 to 152
//! layers), plain or residual, with shortcut options A, B and C.
//!
//! What this crate adds to candle for them: seeded initialisation that is the same on every device
//! ([`init`]), a trainable padded max pool and a strided slice ([`ops`]), parameter and multiply-add
//! counts from the module graph itself ([`layers::Cost`]), the per-layer responses of Fig. 7
//! ([`Tap`]), and safetensors weights under torchvision's names ([`weights`]). On the CPU the
//! layers run the `kernels` crate's fast ops by default, and in training each run of basic blocks
//! with parameter-free shortcuts is one fused op; [`Kernels::Stock`] selects candle's own
//! (`ResNet::set_kernels`).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use candle_nn::ModuleT;
//!
//! let model = nets::Model::new("resnet20".parse()?, 0, &Device::Cpu)?;
//! assert_eq!(model.cost().params, 269_722);
//! let images = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
//! let logits = model.net.forward_t(&images, false)?;
//! assert_eq!(logits.dims(), &[2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod init;
pub mod layers;
pub mod ops;
mod resnet;
pub mod spec;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;

pub use layers::{Cost, Kernels};
pub use resnet::{Block, ResNet, Tap};
pub use spec::{BlockKind, BottleneckStride, Family, ModelSpec, Shortcut, all_models};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown model `{name}`: {reason}")]
    UnknownModel { name: String, reason: String },
    #[error("{}: tensor `{name}` is missing (the model expects shape {expected:?})", .path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    #[error("{}: tensor `{name}` has shape {found:?}, the model expects {expected:?}", .path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: tensor `{name}` (shape {shape:?}) is not part of the model ({count} such tensors; wrong model?)", .path.display())]
    UnexpectedTensor {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
        count: usize,
    },
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: candle_core::Error,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<files::Error> for Error {
    fn from(e: files::Error) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Parameters and multiply-adds of `spec` for one `height` x `width` image, from the same module
/// graph that trains (built with zero-filled parameters: no random draws, no device).
pub fn cost_of(spec: &ModelSpec, height: usize, width: usize) -> Cost {
    let vb = candle_nn::VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu);
    ResNet::new(spec, vb)
        .expect("building a valid spec on the CPU cannot fail")
        .cost(height, width)
}

/// A network together with the variables that hold its parameters and BN statistics.
pub struct Model {
    pub net: ResNet,
    pub vars: VarMap,
}

impl Model {
    /// Builds `spec` on `device` with initial weights drawn from `seed` (the same on every device).
    pub fn new(spec: ModelSpec, seed: u64, device: &Device) -> Result<Self, Error> {
        let vars = VarMap::new();
        let net = ResNet::new(&spec, init::seeded_var_builder(&vars, seed, device))?;
        Ok(Self { net, vars })
    }

    /// Builds `spec` and loads its weights from a safetensors file.
    pub fn load(spec: ModelSpec, path: &Path, device: &Device) -> Result<Self, Error> {
        let model = Self::new(spec, 0, device)?;
        weights::load(&model.vars, path)?;
        Ok(model)
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        weights::save(&self.vars, path)
    }

    /// Parameters and multiply-adds at the family's input size (32x32 or 224x224).
    pub fn cost(&self) -> Cost {
        let side = self.net.spec().default_input_size();
        self.net.cost(side, side)
    }
}

/// One model of [`all_models`] as `suite list models` shows it: its shape and its cost at its
/// default input size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub family: &'static str,
    pub depth: usize,
    pub residual: bool,
    pub shortcut: Option<char>,
    pub block: &'static str,
    pub input_size: usize,
    pub params: u64,
    pub flops: u64,
}

/// Every model of [`all_models`], summarised.
pub fn summaries() -> Vec<ModelSummary> {
    all_models()
        .into_iter()
        .map(|spec| {
            let side = spec.default_input_size();
            let cost = cost_of(&spec, side, side);
            ModelSummary {
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
                    BlockKind::Basic => "basic",
                    BlockKind::Bottleneck => "bottleneck",
                },
                input_size: side,
                params: cost.params,
                flops: cost.flops,
            }
        })
        .collect()
}
