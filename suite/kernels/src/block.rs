//! A run of basic blocks' training-mode forward and backward as one op; each block is conv,
//! batch norm, ReLU, conv, batch norm, the shortcut's sum and the last ReLU.
//!
//! Built from the separate kernels, a basic block is five autograd nodes joined by five
//! activation-sized edges, and candle accumulates the gradient of every edge into a freshly
//! zeroed tensor: one fill and one addition pass per edge. As one op a run of blocks has a single
//! activation-sized input, and the gradients inside it are plain buffers handed from pass to pass
//! and from block to block. The passes themselves are the other kernels' (see [`crate::conv2d`]
//! and [`crate::batch_norm_train`]), so the results are theirs to the bit.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::conv::{self, Conv2dGeometry, ConvAlgorithm};
use crate::cpu;
use crate::norm::{self, BatchStats};
use crate::pool;

/// What a basic block adds to its second batch norm's output before the last ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockShortcut {
    /// A plain block: nothing.
    None,
    /// The input itself (same shape in and out).
    Identity,
    /// Option A where the shape changes: the input subsampled by the block's stride, with zero
    /// channels appended up to the block's width.
    ZeroPad,
}

/// The trainable tensors of a basic block: two OIHW conv weights (odd square kernels, "same"
/// padding) and each batch norm's per-channel scale and shift.
#[derive(Debug, Clone, Copy)]
pub struct BasicBlockParams<'a> {
    pub conv1: &'a Tensor,
    pub bn1: (&'a Tensor, &'a Tensor),
    pub conv2: &'a Tensor,
    pub bn2: (&'a Tensor, &'a Tensor),
}

/// One basic block of a run: its parameters, the first conv's stride and the shortcut.
#[derive(Debug, Clone, Copy)]
pub struct BasicBlock<'a> {
    pub params: BasicBlockParams<'a>,
    pub stride: usize,
    pub shortcut: BlockShortcut,
}

/// The activations one block's backward pass reads: each conv's output and the first ReLU's, and
/// the block's output unless it is the run's last (whose output candle keeps).
struct Saved {
    conv1: Vec<f32>,
    hidden: Vec<f32>,
    conv2: Vec<f32>,
    output: Option<Vec<f32>>,
    stats: [BatchStats; 2],
}

/// One block's shapes; its packed parameters are, in order: weight 1, scale 1, shift 1,
/// weight 2, scale 2, shift 2, each flattened.
#[derive(Debug, Clone, Copy)]
struct BlockShape {
    weight_dims: [[usize; 4]; 2],
    stride: usize,
    shortcut: BlockShortcut,
}

/// One block's parameters, read out of the packed tensor.
struct Params<'a> {
    w1: &'a [f32],
    gamma1: &'a [f32],
    beta1: &'a [f32],
    w2: &'a [f32],
    gamma2: &'a [f32],
    beta2: &'a [f32],
}

impl BlockShape {
    fn packed_len(&self) -> usize {
        self.weight_dims
            .iter()
            .map(|d| d.iter().product::<usize>() + 2 * d[0])
            .sum()
    }

    fn unpack<'a>(&self, packed: &'a [f32]) -> Params<'a> {
        let [d1, d2] = self.weight_dims;
        let (w1, rest) = packed.split_at(d1.iter().product());
        let (gamma1, rest) = rest.split_at(d1[0]);
        let (beta1, rest) = rest.split_at(d1[0]);
        let (w2, rest) = rest.split_at(d2.iter().product());
        let (gamma2, beta2) = rest.split_at(d2[0]);
        Params {
            w1,
            gamma1,
            beta1,
            w2,
            gamma2,
            beta2,
        }
    }

    /// Both convs' geometries for an input of shape `x`, checked against the shortcut.
    fn geometries(&self, x: &[usize]) -> Result<[Conv2dGeometry; 2]> {
        let [d1, d2] = self.weight_dims;
        let first = Conv2dGeometry::new(x, &d1, self.stride, d1[2] / 2)?;
        let second = Conv2dGeometry::new(&first.output_shape(), &d2, 1, d2[2] / 2)?;
        let (c_in, c_out) = (first.c_in, second.c_out);
        let ok = match self.shortcut {
            BlockShortcut::None => true,
            BlockShortcut::Identity => self.stride == 1 && c_in == c_out,
            BlockShortcut::ZeroPad => {
                c_out >= c_in
                    && first.out_h == first.height.div_ceil(self.stride)
                    && first.out_w == first.width.div_ceil(self.stride)
            }
        };
        if !ok || second.output_shape()[2..] != first.output_shape()[2..] {
            bail!(
                "basic block: a {:?} shortcut cannot join input {x:?} to output {:?} (stride {})",
                self.shortcut,
                second.output_shape(),
                self.stride
            );
        }
        if first.batch * first.positions() < 2 {
            bail!(
                "basic block: batch norm in training mode needs more than one value per channel, \
                 got input {x:?}"
            );
        }
        Ok([first, second])
    }

    /// The block's output for input `x`, and what its backward pass reads.
    fn forward(
        &self,
        [g1, g2]: &[Conv2dGeometry; 2],
        x: &[f32],
        p: &Params,
        eps: f64,
    ) -> (Vec<f32>, Saved) {
        let algorithm = ConvAlgorithm::Auto;
        let (dims1, dims2) = (norm_dims(g1), norm_dims(g2));

        // Each conv hands over its planes' moments, taken while they were in cache: the norm's
        // statistics cost no pass of their own.
        let (conv1, moments1) = conv::forward_with_moments(g1, x, p.w1, algorithm, true);
        let stats1 = norm::stats_from_moments(&moments1, dims1);
        let affine1 = norm::affine(&stats1, eps, p.gamma1, p.beta1);
        let hidden = norm::normalize(&conv1, (dims1.1, dims1.2), &affine1, None, true);

        let (conv2, moments2) = conv::forward_with_moments(g2, &hidden, p.w2, algorithm, true);
        let stats2 = norm::stats_from_moments(&moments2, dims2);
        let affine2 = norm::affine(&stats2, eps, p.gamma2, p.beta2);
        let padded;
        let shortcut = match self.shortcut {
            BlockShortcut::None => None,
            BlockShortcut::Identity => Some(x),
            BlockShortcut::ZeroPad => {
                let dims = [g1.batch, g1.c_in, g1.height, g1.width];
                padded = pool::subsample_pad_values(x, dims, self.stride, g2.c_out);
                Some(&padded[..])
            }
        };
        let y = norm::normalize(&conv2, (dims2.1, dims2.2), &affine2, shortcut, true);
        let saved = Saved {
            conv1,
            hidden,
            conv2,
            output: None,
            stats: [stats1, stats2],
        };
        (y, saved)
    }

    /// The input gradient (when `want_dx`) and the packed parameters' gradient of the block whose
    /// input was `x` and output `y`, for the output gradient `dy`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        [g1, g2]: &[Conv2dGeometry; 2],
        saved: &Saved,
        p: &Params,
        (x, y, dy): (&[f32], &[f32], &[f32]),
        want_dx: bool,
        eps: f64,
    ) -> (Option<Vec<f32>>, Vec<f32>) {
        let algorithm = ConvAlgorithm::Auto;
        let [stats1, stats2] = &saved.stats;

        // The tail: last ReLU, second norm, second conv.
        let (dconv2, dgamma2, dbeta2, dsum) =
            norm_relu_backward(&saved.conv2, dy, y, norm_dims(g2), stats2, (p.gamma2, eps));
        let (dhidden, dw2) =
            conv::backward(g2, (&saved.hidden, p.w2, &dconv2), (true, true), algorithm);
        drop(dconv2);
        let dhidden = dhidden.expect("the input gradient was asked for");

        // The head: first ReLU, first norm, first conv.
        let (dconv1, dgamma1, dbeta1, _) = norm_relu_backward(
            &saved.conv1,
            &dhidden,
            &saved.hidden,
            norm_dims(g1),
            stats1,
            (p.gamma1, eps),
        );
        drop(dhidden);
        let (dx, dw1) = conv::backward(g1, (x, p.w1, &dconv1), (want_dx, true), algorithm);
        let dx = dx.map(|mut dx| {
            match self.shortcut {
                BlockShortcut::None => {}
                BlockShortcut::Identity => {
                    dx.par_chunks_mut(1 << 15)
                        .zip(dsum.par_chunks(1 << 15))
                        .for_each(|(dx, g)| dx.iter_mut().zip(g).for_each(|(d, g)| *d += g));
                }
                BlockShortcut::ZeroPad => {
                    let dims = [g1.batch, g1.c_in, g1.height, g1.width];
                    pool::add_subsample_pad_grad(&mut dx, &dsum, dims, self.stride, g2.c_out);
                }
            }
            dx
        });
        let (dw1, dw2) = (dw1.expect("asked for"), dw2.expect("asked for"));
        let dpacked = [&dw1[..], &dgamma1, &dbeta1, &dw2, &dgamma2, &dbeta2].concat();
        (dx, dpacked)
    }
}

/// (N, C, H*W) of a conv's output.
fn norm_dims(g: &Conv2dGeometry) -> (usize, usize, usize) {
    (g.batch, g.c_out, g.positions())
}

/// Batch norm's backward from its input `x`, the gradient `dz` reaching the ReLU after it and that
/// ReLU's output `z`: the input gradient, and the per-channel `(dgamma, dbeta)`. Also returns the
/// gradient past the ReLU, which a residual block's shortcut receives.
fn norm_relu_backward(
    x: &[f32],
    dz: &[f32],
    z: &[f32],
    dims: (usize, usize, usize),
    stats: &BatchStats,
    (gamma, eps): (&[f32], f64),
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (_, c, hw) = dims;
    let inv_std = norm::inv_std(stats, eps);
    let (g, sum_g, mut sum_gx) = norm::gated_grad_sums(x, dz, z, dims, &stats.mean);
    for (s, &k) in sum_gx.iter_mut().zip(&inv_std) {
        *s *= k as f64;
    }
    let coef = norm::input_grad_coefficients(stats, &inv_std, gamma, (&sum_g, &sum_gx));
    let dx = norm::input_grad(x, &g, None, (c, hw), &coef);
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect();
    (dx, to_f32(sum_gx), to_f32(sum_g), g)
}

/// A run of basic blocks, each one's output the next one's input; the packed parameter tensor
/// holds each block's in turn.
struct BasicBlocksOp {
    blocks: Vec<BlockShape>,
    eps: f64,
    saved: Arc<OnceLock<Vec<Saved>>>,
}

impl BasicBlocksOp {
    fn packed_len(&self) -> usize {
        self.blocks.iter().map(BlockShape::packed_len).sum()
    }

    /// Each block's shapes, geometries and parameters, for an input of shape `x`.
    fn layout<'a>(
        &'a self,
        x: &[usize],
        packed: &'a [f32],
    ) -> Result<Vec<(&'a BlockShape, [Conv2dGeometry; 2], Params<'a>)>> {
        if packed.len() != self.packed_len() {
            bail!(
                "{}: {} packed parameters, expected {}",
                self.name(),
                packed.len(),
                self.packed_len()
            );
        }
        let mut dims = x.to_vec();
        let mut rest = packed;
        let mut out = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let geometries = block.geometries(&dims)?;
            dims = geometries[1].output_shape().to_vec();
            let (mine, next) = rest.split_at(block.packed_len());
            rest = next;
            out.push((block, geometries, block.unpack(mine)));
        }
        Ok(out)
    }
}

impl CustomOp2 for BasicBlocksOp {
    fn name(&self) -> &'static str {
        "fast-basic-blocks"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, packed) = (cpu::slice(name, xs, xl)?, cpu::slice(name, ps, pl)?);
        let layout = self.layout(xl.dims(), packed)?;
        let mut saved: Vec<Saved> = Vec::with_capacity(layout.len());
        // The previous block's output: this block's input, kept for the backward pass.
        let mut previous: Option<Vec<f32>> = None;
        for (block, geometries, params) in &layout {
            let input = previous.as_deref().unwrap_or(x);
            let (output, mine) = block.forward(geometries, input, params, self.eps);
            if let Some(last) = saved.last_mut() {
                last.output = previous.take();
            }
            saved.push(mine);
            previous = Some(output);
        }
        let (Some(y), Some((_, geometries, _))) = (previous, layout.last()) else {
            bail!("{name}: a run of no blocks");
        };
        let shape = Shape::from(geometries[1].output_shape().to_vec());
        if self.saved.set(saved).is_err() {
            bail!("{name}: an op instance runs forward once");
        }
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let Some(saved) = self.saved.get() else {
            bail!("{name}: backward before forward");
        };
        let packed_values = packed.to_vec1::<f32>()?;
        let layout = self.layout(x.dims(), &packed_values)?;
        let want_dx = x.track_op();
        let (dx, dparams) = cpu::with_slice(name, x, |x| {
            cpu::with_slice(name, y, |y| {
                cpu::with_slice(name, dy, |dy| {
                    backward_run(&layout, saved, (x, y, dy), want_dx, self.eps)
                })
            })
        })???;
        let dx = dx.map(|dx| cpu::tensor(dx, x.dims())).transpose()?;
        let dpacked = packed
            .track_op()
            .then(|| cpu::tensor(dparams, packed.dims()))
            .transpose()?;
        Ok((dx, dpacked))
    }
}

/// The backward pass of a run of blocks, last block first, each block's input gradient the
/// previous one's output gradient: the run's input gradient (when `want_dx`) and the packed
/// parameters' gradient.
fn backward_run(
    layout: &[(&BlockShape, [Conv2dGeometry; 2], Params)],
    saved: &[Saved],
    (x, y, dy): (&[f32], &[f32], &[f32]),
    want_dx: bool,
    eps: f64,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let mut grads: Vec<Vec<f32>> = vec![Vec::new(); layout.len()];
    let mut dy_inside: Option<Vec<f32>> = None;
    for (i, (block, geometries, params)) in layout.iter().enumerate().rev() {
        let input = match i {
            0 => x,
            _ => saved[i - 1]
                .output
                .as_deref()
                .expect("kept by the forward pass"),
        };
        let output = saved[i].output.as_deref().unwrap_or(y);
        let grad = dy_inside.as_deref().unwrap_or(dy);
        let (dx, dparams) = block.backward(
            geometries,
            &saved[i],
            params,
            (input, output, grad),
            i > 0 || want_dx,
            eps,
        );
        grads[i] = dparams;
        dy_inside = dx;
    }
    (dy_inside, grads.concat())
}

/// Checks one block's parameter shapes, naming the block and the tensor.
fn check_params(index: usize, params: &BasicBlockParams) -> Result<[[usize; 4]; 2]> {
    let weights = [params.conv1, params.conv2];
    let norms = [params.bn1, params.bn2];
    let mut dims4 = [[0; 4]; 2];
    for (i, (w, (gamma, beta))) in weights.iter().zip(norms).enumerate() {
        let dims = w.dims();
        let &[o, c, kh, kw] = dims else {
            bail!(
                "basic block {index}: conv{} weight {dims:?} is not 4-D (O, I, k, k)",
                i + 1
            );
        };
        if kh != kw || kh % 2 == 0 {
            bail!(
                "basic block {index}: conv{} weight {dims:?} is not (O, I, k, k) with an odd k",
                i + 1
            );
        }
        if gamma.dims() != [o] || beta.dims() != [o] {
            bail!(
                "basic block {index}: bn{} has scale {:?} and shift {:?}, expected {o} channels each",
                i + 1,
                gamma.dims(),
                beta.dims(),
            );
        }
        dims4[i] = [o, c, kh, kw];
    }
    Ok(dims4)
}

/// A run of basic blocks in training mode on the CPU, as one op differentiable in the input and
/// every parameter. Each block computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`,
/// where `conv1` carries the block's stride, both convs pad by half their kernel and both norms
/// use batch statistics; each block's output is the next one's input. Returns the last block's
/// output and each block's two sets of batch statistics (for the caller's running averages).
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use kernels::{BasicBlock, BasicBlockParams, BlockShortcut};
///
/// let dev = Device::Cpu;
/// let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &dev)?)?;
/// let w = Var::from_tensor(&Tensor::randn(0f32, 0.2, (4, 4, 3, 3), &dev)?)?;
/// let (ones, zeros) = (Tensor::ones(4, DType::F32, &dev)?, Tensor::zeros(4, DType::F32, &dev)?);
/// let params = BasicBlockParams { conv1: &w, bn1: (&ones, &zeros), conv2: &w, bn2: (&ones, &zeros) };
/// let block = BasicBlock { params, stride: 1, shortcut: BlockShortcut::Identity };
/// let (y, stats) = kernels::basic_blocks_train(&x, &[block, block], 1e-5)?;
/// assert_eq!(y.dims(), &[2, 4, 8, 8]);
/// assert_eq!((stats.len(), stats[1][0].count), (2, 2 * 8 * 8));
/// let grads = y.sum_all()?.backward()?;
/// assert_eq!(grads.get(&w).unwrap().dims(), &[4, 4, 3, 3]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn basic_blocks_train(
    x: &Tensor,
    blocks: &[BasicBlock],
    eps: f64,
) -> Result<(Tensor, Vec<[BatchStats; 2]>)> {
    if blocks.is_empty() {
        bail!("basic blocks: a run needs at least one block");
    }
    let mut shapes = Vec::with_capacity(blocks.len());
    let mut parts = Vec::with_capacity(6 * blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        let p = &block.params;
        shapes.push(BlockShape {
            weight_dims: check_params(index, p)?,
            stride: block.stride,
            shortcut: block.shortcut,
        });
        parts.extend([
            p.conv1.flatten_all()?,
            p.bn1.0.clone(),
            p.bn1.1.clone(),
            p.conv2.flatten_all()?,
            p.bn2.0.clone(),
            p.bn2.1.clone(),
        ]);
    }
    let saved = Arc::new(OnceLock::new());
    let op = BasicBlocksOp {
        blocks: shapes,
        eps,
        saved: saved.clone(),
    };
    let packed = Tensor::cat(&parts, 0)?;
    let y = x.contiguous()?.apply_op2(&packed, op)?;
    let saved: &Vec<Saved> = saved.get().expect("forward saves its activations");
    Ok((y, saved.iter().map(|s| s.stats.clone()).collect()))
}
