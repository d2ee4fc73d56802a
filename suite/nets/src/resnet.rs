//! Plain and residual networks of He, Zhang, Ren, Sun, "Deep Residual Learning for Image
//! Recognition" (arXiv 1512.03385), built as torchvision builds them so weight names match.
//!
//! - Stem: CIFAR (§4.2) a 3x3 conv with 16 filters; ImageNet (Table 1) a 7x7/2 conv with 64 filters
//!   and a 3x3/2 max pool. Each conv is followed by BN and ReLU.
//! - Stages: `layer1..layer3` (CIFAR) or `layer1..layer4` (ImageNet) of basic or bottleneck blocks;
//!   the first block of every stage but the first has stride 2.
//! - Head: global average pooling and a fully-connected layer `fc`.
//!
//! A residual block computes `relu(F(x) + shortcut(x))`, a plain block `relu(F(x))`: the same layers,
//! no shortcut. Shortcut options A, B, C are described at [`Shortcut`].

use candle_core::{Module, Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use ::kernels::{BasicBlock, BasicBlockParams, BlockShortcut};

use crate::layers::{self, BatchNorm, Chw, ConvBn, Cost, Head, Kernels, Traced};
use crate::ops;
use crate::spec::{BlockKind, BottleneckStride, Family, ModelSpec, Shortcut};

/// One recorded layer response (Fig. 7): the output of a 3x3 conv after its BN, before the shortcut
/// addition and the ReLU. `name` is the BN's weight prefix, e.g. `layer2.0.bn1`.
#[derive(Debug, Clone)]
pub struct Tap {
    pub name: String,
    pub response: Tensor,
}

/// Collects taps during a forward pass when enabled; costs nothing when not.
#[derive(Debug, Default)]
struct Taps {
    enabled: bool,
    taps: Vec<Tap>,
}

impl Taps {
    fn record(&mut self, unit: &ConvBn, ys: &Tensor) {
        if self.enabled && unit.kernel() == 3 {
            self.taps.push(Tap {
                name: unit.name.clone(),
                response: ys.clone(),
            });
        }
    }
}

/// Conv `conv{index}` + BN `bn{index}` in the scope of `vb`, torchvision's naming inside a block.
fn unit(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    index: usize,
    vb: &VarBuilder,
) -> Result<ConvBn> {
    let names = (format!("conv{index}"), format!("bn{index}"));
    ConvBn::new(c_in, c_out, kernel, stride, (&names.0, &names.1), vb)
}

/// A unit's output, followed by a ReLU when `relu` is set. With taps on, the response before the
/// ReLU is recorded, so the two are not fused.
fn forward_unit(
    unit: &ConvBn,
    xs: &Tensor,
    train: bool,
    relu: bool,
    taps: &mut Taps,
) -> Result<Tensor> {
    if !taps.enabled {
        return unit.forward_act(xs, train, relu);
    }
    let ys = unit.forward_t(xs, train)?;
    taps.record(unit, &ys);
    if relu {
        layers::relu(&ys, unit.bn.kernels)
    } else {
        Ok(ys)
    }
}

/// The shortcut path of a residual block.
#[derive(Debug, Clone)]
enum ShortcutPath {
    Identity,
    /// Option A where the shape changes: `x[:, :, ::stride, ::stride]` with `extra` zero channels
    /// appended. No parameters.
    ZeroPad {
        stride: usize,
        extra: usize,
    },
    /// Options B (where the shape changes) and C (everywhere): 1x1 conv with the stride, then BN,
    /// stored as torchvision's `downsample.0` / `downsample.1`.
    Projection(ConvBn),
}

impl ShortcutPath {
    fn new(
        option: Shortcut,
        c_in: usize,
        c_out: usize,
        stride: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let changes_shape = stride != 1 || c_in != c_out;
        let project = match option {
            Shortcut::A => false,
            Shortcut::B => changes_shape,
            Shortcut::C => true,
        };
        Ok(if project {
            Self::Projection(ConvBn::new(
                c_in,
                c_out,
                1,
                stride,
                ("0", "1"),
                &vb.pp("downsample"),
            )?)
        } else if changes_shape {
            if c_out < c_in {
                candle_core::bail!("option A cannot shrink channels ({c_in} -> {c_out})");
            }
            Self::ZeroPad {
                stride,
                extra: c_out - c_in,
            }
        } else {
            Self::Identity
        })
    }

    fn detached(&self) -> Self {
        match self {
            Self::Projection(unit) => Self::Projection(unit.detached()),
            other => other.clone(),
        }
    }

    fn forward(&self, xs: &Tensor, train: bool, kernels: Kernels) -> Result<Tensor> {
        match self {
            Self::Identity => Ok(xs.clone()),
            Self::ZeroPad { stride, extra } => layers::subsample_pad(xs, *stride, *extra, kernels),
            Self::Projection(unit) => unit.forward_t(xs, train),
        }
    }

    fn trace(&self, (c, h, w): Chw, cost: &mut Cost) -> Chw {
        match self {
            Self::Identity => (c, h, w),
            Self::ZeroPad { stride, extra } => {
                (c + extra, h.div_ceil(*stride), w.div_ceil(*stride))
            }
            Self::Projection(unit) => unit.trace((c, h, w), cost),
        }
    }
}

/// A basic block (two 3x3 convs) or a bottleneck block (1x1, 3x3, 1x1), plain or residual.
#[derive(Debug, Clone)]
pub struct Block {
    units: Vec<ConvBn>,
    /// `None` in plain nets.
    shortcut: Option<ShortcutPath>,
}

impl Block {
    fn new(
        spec: &ModelSpec,
        c_in: usize,
        width: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let kind = spec.block_kind();
        let c_out = width * kind.expansion();
        let units = match kind {
            BlockKind::Basic => {
                // The first conv takes the stride and the new width (§4.2); the paper's unit has
                // two convs, the skip-frequency ablation's one or three.
                let convs = spec.convs_per_unit().unwrap_or(2);
                let mut units = vec![unit(c_in, width, 3, stride, 1, &vb)?];
                for index in 2..=convs {
                    units.push(unit(width, width, 3, 1, index, &vb)?);
                }
                units
            }
            BlockKind::Bottleneck => {
                let (s1, s3) = match spec.bottleneck_stride {
                    BottleneckStride::FirstConv => (stride, 1),
                    // Deviation from the paper (torchvision's "v1.5"): the 3x3 conv carries the stride.
                    BottleneckStride::Conv3x3 => (1, stride),
                };
                vec![
                    unit(c_in, width, 1, s1, 1, &vb)?,
                    unit(width, width, 3, s3, 2, &vb)?,
                    unit(width, c_out, 1, 1, 3, &vb)?,
                ]
            }
        };
        let shortcut = match spec.residual {
            true => Some(ShortcutPath::new(spec.shortcut, c_in, c_out, stride, &vb)?),
            false => None,
        };
        Ok(Self { units, shortcut })
    }

    fn detached(&self) -> Self {
        Self {
            units: self.units.iter().map(ConvBn::detached).collect(),
            shortcut: self.shortcut.as_ref().map(ShortcutPath::detached),
        }
    }

    /// The block as one step of a fused run of blocks ([`::kernels::basic_blocks_train`]): a
    /// basic block whose shortcut has no parameters (or a plain one). `None` for the rest.
    fn as_fused(&self) -> Option<FusedBlock<'_>> {
        let [first, second] = &self.units[..] else {
            return None;
        };
        let shortcut = match &self.shortcut {
            None => BlockShortcut::None,
            Some(ShortcutPath::Identity) => BlockShortcut::Identity,
            Some(ShortcutPath::ZeroPad { .. }) => BlockShortcut::ZeroPad,
            Some(ShortcutPath::Projection(_)) => return None,
        };
        let block = BasicBlock {
            params: BasicBlockParams {
                conv1: first.conv.weight(),
                bn1: first.bn.scale_shift(),
                conv2: second.conv.weight(),
                bn2: second.bn.scale_shift(),
            },
            stride: first.conv.stride(),
            shortcut,
        };
        Some(FusedBlock {
            block,
            norms: [&first.bn, &second.bn],
        })
    }

    fn forward(&self, xs: &Tensor, train: bool, taps: &mut Taps) -> Result<Tensor> {
        let last = self.units.len() - 1;
        if let (Some(path), true, false) = (&self.shortcut, train, taps.enabled) {
            // The last unit's norm, the sum and the ReLU as one op; taps need the norm's own
            // output, so they take the path below.
            let mut ys = xs.clone();
            for unit in &self.units[..last] {
                ys = unit.forward_act(&ys, train, true)?;
            }
            let shortcut = path.forward(xs, train, self.kernels())?;
            return self.units[last].forward_train_add_relu(&ys, &shortcut);
        }
        let mut ys = xs.clone();
        for (i, unit) in self.units.iter().enumerate() {
            // A plain block's last ReLU fuses into its BN; a residual block's comes after the sum.
            let relu = i != last || self.shortcut.is_none();
            ys = forward_unit(unit, &ys, train, relu, taps)?;
        }
        match &self.shortcut {
            Some(path) => {
                let shortcut = path.forward(xs, train, self.kernels())?;
                layers::add_relu(&ys, &shortcut, self.kernels())
            }
            None => Ok(ys),
        }
    }

    fn kernels(&self) -> Kernels {
        self.units[0].bn.kernels
    }

    fn set_kernels(&mut self, kernels: Kernels) {
        for unit in &mut self.units {
            unit.set_kernels(kernels);
        }
        if let Some(ShortcutPath::Projection(unit)) = &mut self.shortcut {
            unit.set_kernels(kernels);
        }
    }

    /// Whether the block has a shortcut at all, and whether it carries parameters.
    pub fn shortcut_kind(&self) -> Option<&'static str> {
        self.shortcut.as_ref().map(|p| match p {
            ShortcutPath::Identity => "identity",
            ShortcutPath::ZeroPad { .. } => "zero-pad",
            ShortcutPath::Projection(_) => "projection",
        })
    }
}

impl Traced for Block {
    fn trace(&self, input: Chw, cost: &mut Cost) -> Chw {
        let out = self
            .units
            .iter()
            .fold(input, |shape, unit| unit.trace(shape, cost));
        if let Some(path) = &self.shortcut {
            let through = path.trace(input, cost);
            debug_assert_eq!(through, out, "shortcut and residual shapes");
        }
        out
    }
}

/// A block as the fused op takes it, with the norms whose running statistics it updates.
struct FusedBlock<'a> {
    block: BasicBlock<'a>,
    norms: [&'a BatchNorm; 2],
}

/// A run of basic blocks as one op, then each norm's running statistics updated from its batch.
fn forward_fused(run: &[FusedBlock], xs: &Tensor) -> Result<Tensor> {
    let eps = run[0].norms[0].eps();
    if run.iter().flat_map(|f| f.norms).any(|bn| bn.eps() != eps) {
        candle_core::bail!("a fused run of blocks needs one batch-norm eps throughout");
    }
    let blocks: Vec<BasicBlock> = run.iter().map(|f| f.block).collect();
    let (ys, stats) = ::kernels::basic_blocks_train(xs, &blocks, eps)?;
    for (fused, stats) in run.iter().zip(&stats) {
        for (bn, stats) in fused.norms.iter().zip(stats) {
            bn.update_running_from(stats, xs.device())?;
        }
    }
    Ok(ys)
}

/// A network of either family, plain or residual.
#[derive(Debug, Clone)]
pub struct ResNet {
    spec: ModelSpec,
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
    head: Head,
}

impl ResNet {
    /// Builds `spec` with parameters from `vb` (created if missing, loaded if present).
    pub fn new(spec: &ModelSpec, vb: VarBuilder) -> Result<Self> {
        let (stem_width, stem_kernel, stem_stride) = match spec.family {
            Family::Cifar { .. } => (16, 3, 1),
            Family::ImageNet { .. } => (64, 7, 2),
        };
        let stem = unit(3, stem_width, stem_kernel, stem_stride, 1, &vb)?;
        let expansion = spec.block_kind().expansion();
        let mut c_in = stem_width;
        let mut stages = Vec::new();
        for (s, (width, blocks)) in spec.stages().into_iter().enumerate() {
            let vb_stage = vb.pp(format!("layer{}", s + 1));
            let mut stage = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                stage.push(Block::new(spec, c_in, width, stride, vb_stage.pp(b))?);
                c_in = width * expansion;
            }
            stages.push(stage);
        }
        let head = Head::new(c_in, spec.num_classes, vb.pp("fc"))?;
        Ok(Self {
            spec: *spec,
            stem,
            stages,
            head,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.stages.iter().flatten()
    }

    /// The kernels every layer runs: fast (the default) or candle's stock ops.
    pub fn kernels(&self) -> Kernels {
        self.stem.bn.kernels
    }

    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.stem.set_kernels(kernels);
        for block in self.stages.iter_mut().flatten() {
            block.set_kernels(kernels);
        }
    }

    /// The same net on views of its parameters outside the autograd graph: the same storage (so
    /// it sees every update), but a forward pass through it records no ops. In candle a pass
    /// through tracked parameters keeps every intermediate activation alive until its output is
    /// dropped, which in evaluation, at large batches and depths, is most of the memory there is.
    pub fn detached(&self) -> Self {
        Self {
            spec: self.spec,
            stem: self.stem.detached(),
            stages: self
                .stages
                .iter()
                .map(|stage| stage.iter().map(Block::detached).collect())
                .collect(),
            head: self.head.detached(),
        }
    }

    fn run(&self, xs: &Tensor, train: bool, taps: &mut Taps) -> Result<Tensor> {
        // Evaluation never backpropagates: its activations are freed as the pass moves on.
        if !train {
            return self.detached().run_layers(xs, train, taps);
        }
        self.run_layers(xs, train, taps)
    }

    fn run_layers(&self, xs: &Tensor, train: bool, taps: &mut Taps) -> Result<Tensor> {
        let mut ys = forward_unit(&self.stem, xs, train, true, taps)?;
        if matches!(self.spec.family, Family::ImageNet { .. }) {
            ys = layers::max_pool2d(&ys, (3, 2, 1), self.kernels())?;
        }
        let blocks: Vec<&Block> = self.blocks().collect();
        // Training on the fast kernels, runs of basic blocks go through one fused op each; taps
        // need each norm's own output, so they take the op-by-op path.
        let fuse = train && !taps.enabled && self.kernels().fast_for(&ys);
        let mut rest = &blocks[..];
        while let [block, after @ ..] = rest {
            let run: Vec<FusedBlock> = match fuse {
                true => rest.iter().map_while(|b| b.as_fused()).collect(),
                false => Vec::new(),
            };
            if run.is_empty() {
                ys = block.forward(&ys, train, taps)?;
                rest = after;
            } else {
                ys = forward_fused(&run, &ys)?;
                rest = &rest[run.len()..];
            }
        }
        self.head.forward(&ys)
    }

    /// The logits, and the response of every 3x3 layer in network order (Fig. 7).
    pub fn forward_with_taps(&self, xs: &Tensor, train: bool) -> Result<(Tensor, Vec<Tap>)> {
        let mut taps = Taps {
            enabled: true,
            taps: Vec::new(),
        };
        let logits = self.run(xs, train, &mut taps)?;
        Ok((logits, taps.taps))
    }

    /// Parameters and multiply-adds for one `height` x `width` RGB image.
    pub fn cost(&self, height: usize, width: usize) -> Cost {
        let mut cost = Cost::default();
        self.trace((3, height, width), &mut cost);
        cost
    }
}

impl Traced for ResNet {
    fn trace(&self, input: Chw, cost: &mut Cost) -> Chw {
        let (c, mut h, mut w) = self.stem.trace(input, cost);
        if matches!(self.spec.family, Family::ImageNet { .. }) {
            h = ops::out_size(h, 3, 2, 1);
            w = ops::out_size(w, 3, 2, 1);
        }
        let shape = self
            .blocks()
            .fold((c, h, w), |shape, block| block.trace(shape, cost));
        self.head.trace(shape, cost)
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.run(xs, train, &mut Taps::default())
    }
}
