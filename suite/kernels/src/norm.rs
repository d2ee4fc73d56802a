//! Training-mode batch norm (optionally fused with the ReLU after it) and ReLU, as custom ops.
//!
//! Batch norm over an (N, C, ...) input normalises each channel with its batch mean and biased
//! variance, `y = gamma * (x - mean) / sqrt(var + eps) + beta`. The statistics take one pass: each
//! plane's sum and squared deviations from its own mean, combined per channel in f64, so a large
//! mean cannot cancel the variance away (and a conv can summarise the planes it just wrote, see
//! [`crate::basic_blocks_train`]); the normalisation takes a second. The backward pass needs two: the per-channel sums
//! `sum(g)` and `sum(g * xhat)`, then
//! `dx = gamma / sigma * (g - sum(g) / M - xhat * sum(g * xhat) / M)` with `g` the output gradient,
//! masked by `y > 0` when the ReLU is fused. The backward recomputes that mask from `x` with the
//! forward's own per-channel scale and shift (bit-identical, so the same lanes pass) instead of
//! reading `y`: one tensor-sized read fewer in each of its two passes.

use std::sync::{Arc, OnceLock};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

use crate::cpu::{self, with_avx2};

#[cfg(feature = "cuda")]
mod cudnn;

/// The statistics one training-mode batch norm computed over its batch, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased (divided by the count), as used for normalisation.
    pub var: Vec<f32>,
    /// Values per channel: N times the spatial size.
    pub count: usize,
}

impl BatchStats {
    /// The unbiased variance (divided by count - 1), as running statistics track it.
    pub fn unbiased_var(&self) -> Vec<f32> {
        let correction = self.count as f64 / (self.count as f64 - 1.0);
        self.var
            .iter()
            .map(|&v| (v as f64 * correction) as f32)
            .collect()
    }
}

/// (N, C, spatial) of an input with at least two dimensions.
pub(crate) fn channel_layout(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => bail!("batch norm: expected an input of shape (N, C, ...), got {dims:?}"),
    }
}

const LANES: usize = 8;

/// `sum(f(v))` over a slice, in `LANES` independent f32 partial sums (so it vectorises), returned in f64.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    let tail: f32 = tail.iter().map(|&v| f(v)).sum();
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
}

/// The `hw` values of channel `c` in each of the `n` images.
fn channel_rows(
    data: &[f32],
    (n, c, hw): (usize, usize, usize),
    ch: usize,
) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |img| &data[(img * c + ch) * hw..][..hw])
}

/// One plane's sum, and sum of squared deviations from its own mean, in f64. Batch statistics
/// combine these per channel (Chan, Golub and LeVeque's pairwise update), so a plane can be
/// summarised while it is still in cache: right after a conv wrote it, say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlaneMoments {
    sum: f64,
    m2: f64,
}

with_avx2! {
    pub(crate) fn plane_moments(plane: &[f32]) -> PlaneMoments {
        let len = plane.len() as f64;
        let sum = lane_sum(plane, |v| v);
        let mean = (sum / len) as f32;
        let m2 = lane_sum(plane, |v| (v - mean) * (v - mean));
        // Deviations were taken from the f32-rounded mean; shift them to the exact one.
        let off = sum / len - mean as f64;
        PlaneMoments {
            sum,
            m2: (m2 - len * off * off).max(0.0),
        }
    }
}

/// The batch statistics of (N, C, H*W) data from the moments of its N*C planes, in NCHW order.
pub(crate) fn stats_from_moments(
    moments: &[PlaneMoments],
    (n, c, hw): (usize, usize, usize),
) -> BatchStats {
    debug_assert_eq!(moments.len(), n * c);
    let count = n * hw;
    let (mean, var) = (0..c)
        .map(|ch| {
            let planes = || moments.iter().skip(ch).step_by(c);
            let mean = planes().map(|m| m.sum).sum::<f64>() / count as f64;
            let m2: f64 = planes()
                .map(|m| {
                    let d = m.sum / hw as f64 - mean;
                    m.m2 + hw as f64 * d * d
                })
                .sum();
            (mean as f32, (m2 / count as f64) as f32)
        })
        .unzip();
    BatchStats { mean, var, count }
}

pub(crate) fn batch_stats(x: &[f32], dims: (usize, usize, usize)) -> BatchStats {
    let (_, c, hw) = dims;
    let moments: Vec<PlaneMoments> = x
        .par_chunks(c * hw)
        .flat_map_iter(|image| image.chunks_exact(hw).map(plane_moments))
        .collect();
    stats_from_moments(&moments, dims)
}

/// The output gradient that passes a fused ReLU whose output is `y`.
#[inline]
fn masked(g: f32, y: f32) -> f32 {
    if y > 0.0 { g } else { 0.0 }
}

/// A channel's normalisation as the forward computes it, `y = x * scale + shift`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Affine {
    scale: f32,
    shift: f32,
}

impl Affine {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        x * self.scale + self.shift
    }
}

with_avx2! {
    /// `(sum(g), sum(g * (x - m)))` over one row in one pass, `g` masked where the fused ReLU's output
    /// `relu.apply(x)` is not positive when given; f32 lanes, summed in f64.
    fn grad_row_sums(g: &[f32], relu: Option<Affine>, x: &[f32], m: f32) -> (f64, f64) {
        let (mut acc_g, mut acc_gx) = ([0f32; LANES], [0f32; LANES]);
        let add = |g: &[f32], x: &[f32], acc_g: &mut [f32], acc_gx: &mut [f32]| {
            for (((sg, sgx), &g), &x) in acc_g.iter_mut().zip(acc_gx.iter_mut()).zip(g).zip(x) {
                *sg += g;
                *sgx += g * (x - m);
            }
        };
        let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
        let (g_tail, x_tail) = (gc.remainder(), xc.remainder());
        let mut gated = [0f32; LANES];
        match relu {
            Some(f) => {
                for (g, x) in gc.zip(xc) {
                    for ((d, &g), &x) in gated.iter_mut().zip(g).zip(x) {
                        *d = masked(g, f.apply(x));
                    }
                    add(&gated, x, &mut acc_g, &mut acc_gx);
                }
                for ((d, &g), &x) in gated.iter_mut().zip(g_tail).zip(x_tail) {
                    *d = masked(g, f.apply(x));
                }
                add(&gated[..g_tail.len()], x_tail, &mut acc_g, &mut acc_gx);
            }
            None => {
                for (g, x) in gc.zip(xc) {
                    add(g, x, &mut acc_g, &mut acc_gx);
                }
                add(g_tail, x_tail, &mut acc_g, &mut acc_gx);
            }
        }
        let total = |acc: [f32; LANES]| acc.iter().map(|&a| a as f64).sum::<f64>();
        (total(acc_g), total(acc_gx))
    }
}

/// Per channel, `sum(g)` and `sum(g * xhat)` with `g` the (masked) output gradient.
fn grad_sums(
    x: &[f32],
    dy: &[f32],
    relu: Option<&[Affine]>,
    dims: (usize, usize, usize),
    mean: &[f32],
    inv_std: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let c = dims.1;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let m = mean[ch];
            let (mut sg, mut sgx) = (0f64, 0f64);
            let relu = relu.map(|f| f[ch]);
            for (g_row, x_row) in channel_rows(dy, dims, ch).zip(channel_rows(x, dims, ch)) {
                let (g, gx) = grad_row_sums(g_row, relu, x_row, m);
                sg += g;
                sgx += gx;
            }
            (sg, sgx * inv_std[ch] as f64)
        })
        .unzip()
}

/// `dx = k * g + a * x + b` with per-channel `(k, a, b)` and `g` the (masked) output gradient.
pub(crate) fn input_grad(
    x: &[f32],
    dy: &[f32],
    relu: Option<&[Affine]>,
    (c, hw): (usize, usize),
    coef: &[(f32, f32, f32)],
) -> Vec<f32> {
    cpu::build(x.len(), |dx| {
        dx.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw).zip(dy.par_chunks(c * hw)))
            .for_each(|(dx, (x, dy))| input_grad_image(dx, x, dy, relu, hw, coef))
    })
}

with_avx2! {
    /// [`input_grad`] of one image.
    fn input_grad_image(
        dx: &mut [std::mem::MaybeUninit<f32>],
        x: &[f32],
        dy: &[f32],
        relu: Option<&[Affine]>,
        hw: usize,
        coef: &[(f32, f32, f32)],
    ) {
        let planes = dx
            .chunks_exact_mut(hw)
            .zip(x.chunks_exact(hw).zip(dy.chunks_exact(hw)));
        for (ch, (&(k, a, b), (dx, (x, dy)))) in coef.iter().zip(planes).enumerate() {
            let rows = dx.iter_mut().zip(x).zip(dy);
            match relu {
                Some(f) => {
                    let f = f[ch];
                    for ((o, &x), &g) in rows {
                        o.write(k * masked(g, f.apply(x)) + a * x + b);
                    }
                }
                None => {
                    for ((o, &x), &g) in rows {
                        o.write(k * g + a * x + b);
                    }
                }
            }
        }
    }
}

/// Per channel, `(k, a, b)` of `dx = k * g + a * x + b`: `k = gamma / sigma`,
/// `a = -k * sum(g xhat) / (M sigma)`, `b = -k * sum(g) / M - a * mean`.
pub(crate) fn input_grad_coefficients(
    stats: &BatchStats,
    inv_std: &[f32],
    gamma: &[f32],
    (sum_g, sum_gx): (&[f64], &[f64]),
) -> Vec<(f32, f32, f32)> {
    let count = stats.count as f64;
    (0..gamma.len())
        .map(|ch| {
            let k = gamma[ch] as f64 * inv_std[ch] as f64;
            let a = -k * sum_gx[ch] * inv_std[ch] as f64 / count;
            let b = -k * sum_g[ch] / count - a * stats.mean[ch] as f64;
            (k as f32, a as f32, b as f32)
        })
        .collect()
}

/// Training-mode batch norm's forward over `x`: the batch statistics, kept in `slot` for the
/// backward pass, and the normalised output (plus `shortcut`, then a ReLU, as [`normalize`]
/// takes them).
fn normalize_batch(
    name: &str,
    x: &[f32],
    dims @ (_, c, hw): (usize, usize, usize),
    (gamma, beta, eps): (&[f32], &[f32], f64),
    shortcut: Option<&[f32]>,
    relu: bool,
    slot: &OnceLock<BatchStats>,
) -> Result<Vec<f32>> {
    let stats = batch_stats(x, dims);
    let affine = affine(&stats, eps, gamma, beta);
    let y = normalize(x, (c, hw), &affine, shortcut, relu);
    if slot.set(stats).is_err() {
        bail!("{name}: an op instance runs forward once");
    }
    Ok(y)
}

struct BatchNormOp {
    eps: f64,
    relu: bool,
    stats: Arc<OnceLock<BatchStats>>,
}

/// `1 / sqrt(var + eps)` per channel.
pub(crate) fn inv_std(stats: &BatchStats, eps: f64) -> Vec<f32> {
    stats
        .var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// Each channel's `y = x * scale + shift`; the backward recomputes it to the bit.
pub(crate) fn affine(stats: &BatchStats, eps: f64, gamma: &[f32], beta: &[f32]) -> Vec<Affine> {
    let inv_std = inv_std(stats, eps);
    (0..gamma.len())
        .map(|ch| {
            let scale = gamma[ch] * inv_std[ch];
            Affine {
                scale,
                shift: beta[ch] - stats.mean[ch] * scale,
            }
        })
        .collect()
}

/// `affine(x)` per channel, plus `shortcut` when given, then a ReLU when `relu` is set: the
/// normalising pass, parallel over images.
pub(crate) fn normalize(
    x: &[f32],
    (c, hw): (usize, usize),
    affine: &[Affine],
    shortcut: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    cpu::build(x.len(), |y| {
        y.par_chunks_mut(c * hw)
            .zip(x.par_chunks(c * hw))
            .enumerate()
            .for_each(|(img, (y, x))| {
                let shortcut = shortcut.map(|s| &s[img * c * hw..][..c * hw]);
                normalize_image(y, x, hw, affine, shortcut, relu)
            })
    })
}

with_avx2! {
    /// [`normalize`] of one image.
    fn normalize_image(
        y: &mut [std::mem::MaybeUninit<f32>],
        x: &[f32],
        hw: usize,
        affine: &[Affine],
        shortcut: Option<&[f32]>,
        relu: bool,
    ) {
        let rows = y.chunks_exact_mut(hw).zip(x.chunks_exact(hw));
        for (ch, (f, (y, x))) in affine.iter().zip(rows).enumerate() {
            let pairs = y.iter_mut().zip(x);
            match (shortcut, relu) {
                (Some(s), true) => {
                    for ((o, &v), &s) in pairs.zip(&s[ch * hw..][..hw]) {
                        o.write((f.apply(v) + s).max(0.0));
                    }
                }
                (Some(s), false) => {
                    for ((o, &v), &s) in pairs.zip(&s[ch * hw..][..hw]) {
                        o.write(f.apply(v) + s);
                    }
                }
                (None, true) => pairs.for_each(|(o, &v)| {
                    o.write(f.apply(v).max(0.0));
                }),
                (None, false) => pairs.for_each(|(o, &v)| {
                    o.write(f.apply(v));
                }),
            }
        }
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "fast-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims @ (_, c, _) = channel_layout(xl.dims())?;
        let (x, gamma, beta) = (
            cpu::slice(name, xs, xl)?,
            cpu::slice(name, gs, gl)?,
            cpu::slice(name, bs, bl)?,
        );
        if gamma.len() != c || beta.len() != c {
            bail!(
                "{name}: {c} channels but {} scales and {} shifts",
                gamma.len(),
                beta.len()
            );
        }
        let norm = (gamma, beta, self.eps);
        let y = normalize_batch(name, x, dims, norm, None, self.relu, &self.stats)?;
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let Some(stats) = self.stats.get() else {
            bail!("{name}: backward before forward");
        };
        let dims @ (_, c, hw) = channel_layout(x.dims())?;
        let inv_std = inv_std(stats, self.eps);
        let want_dx = x.track_op();
        let gamma_values = gamma.to_vec1::<f32>()?;
        // With the ReLU fused, the gradient reaching the norm is dy where y > 0, y recomputed
        // from x by the forward's own affine map.
        let affine = affine(stats, self.eps, &gamma_values, &beta.to_vec1::<f32>()?);
        let relu = self.relu.then_some(&affine[..]);
        let (dx, sum_g, sum_gx) = cpu::with_slice(name, x, |x| {
            cpu::with_slice(name, dy, |dy| {
                let (sum_g, sum_gx) = grad_sums(x, dy, relu, dims, &stats.mean, &inv_std);
                let dx = want_dx.then(|| {
                    let coef =
                        input_grad_coefficients(stats, &inv_std, &gamma_values, (&sum_g, &sum_gx));
                    input_grad(x, dy, relu, (c, hw), &coef)
                });
                (dx, sum_g, sum_gx)
            })
        })??;
        let to_tensor = |v: Vec<f64>| cpu::tensor(v.into_iter().map(|s| s as f32).collect(), &[c]);
        let dx = dx.map(|dx| cpu::tensor(dx, x.dims())).transpose()?;
        let dgamma = gamma.track_op().then(|| to_tensor(sum_gx)).transpose()?;
        let dbeta = beta.track_op().then(|| to_tensor(sum_g)).transpose()?;
        Ok((dx, dgamma, dbeta))
    }
}

/// Training-mode batch norm of an (N, C, ...) f32 input on the CPU with per-channel scale `gamma`
/// and shift `beta`, followed by a ReLU when `relu` is set; differentiable in all three inputs.
/// Returns the output and the batch statistics (for the caller's running averages).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    check_batch(x)?;
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormOp {
        eps,
        relu,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let stats = stats.get().cloned().expect("forward sets the statistics");
    Ok((y, stats))
}

/// Whether [`batch_norm_train_cuda`] runs on `device`: CUDA devices in builds with the `cuda`
/// feature.
pub fn batch_norm_cuda_runs_on(device: &candle_core::Device) -> bool {
    cfg!(feature = "cuda") && device.is_cuda()
}

/// Training-mode batch norm of an (N, C, ...) f32 input on CUDA through cuDNN (one call forward,
/// one backward), with per-channel scale `gamma` and shift `beta`; differentiable in all three.
/// Returns the output, the batch mean and the batch's unbiased variance, all on the device, so
/// running averages are updated without a copy to the host. Needs the `cuda` feature.
pub fn batch_norm_train_cuda(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_batch(x)?;
    if eps.is_nan() || eps <= 0.0 {
        bail!("batch norm: eps must be positive, got {eps}");
    }
    #[cfg(feature = "cuda")]
    {
        cudnn::batch_norm_train(x, gamma, beta, eps)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (gamma, beta);
        bail!("batch norm on CUDA needs a build with the `cuda` feature")
    }
}

/// `x` has more than one value per channel, as batch statistics need.
pub(crate) fn check_batch(x: &Tensor) -> Result<()> {
    let (n, _, hw) = channel_layout(x.dims())?;
    if n * hw < 2 {
        bail!(
            "batch norm in training mode needs more than one value per channel, got input {:?}",
            x.dims()
        );
    }
    Ok(())
}

with_avx2! {
    /// `(sum(g), sum(g * (x - m)))` over one row with `g = dz` where `z > 0` (else 0), in one pass
    /// that also writes `g`; f32 lanes, summed in f64.
    fn gated_row_sums(
        dz: &[f32],
        z: &[f32],
        x: &[f32],
        m: f32,
        g: &mut [std::mem::MaybeUninit<f32>],
    ) -> (f64, f64) {
        let (mut acc_g, mut acc_gx) = ([0f32; LANES], [0f32; LANES]);
        let mut add = |dz: &[f32], z: &[f32], x: &[f32], g: &mut [std::mem::MaybeUninit<f32>]| {
            let lanes = acc_g.iter_mut().zip(acc_gx.iter_mut());
            for ((((sg, sgx), &dz), &z), (&x, g)) in lanes.zip(dz).zip(z).zip(x.iter().zip(g)) {
                let v = masked(dz, z);
                g.write(v);
                *sg += v;
                *sgx += v * (x - m);
            }
        };
        // Whole chunks first, so the loop over lanes has a known length and vectorises.
        let whole = dz.len() / LANES * LANES;
        let rows = dz[..whole]
            .chunks_exact(LANES)
            .zip(z.chunks_exact(LANES))
            .zip(x.chunks_exact(LANES))
            .zip(g.chunks_exact_mut(LANES));
        for (((dz, z), x), g) in rows {
            add(dz, z, x, g);
        }
        add(&dz[whole..], &z[whole..], &x[whole..], &mut g[whole..]);
        let total = |acc: [f32; LANES]| acc.iter().map(|&a| a as f64).sum::<f64>();
        (total(acc_g), total(acc_gx))
    }
}

/// `g = dz` where `z > 0` (else 0), which is both the shortcut's gradient and the norm's output
/// gradient, with the per-channel `sum(g)` and `sum(g * (x - mean))`: written and summed in one
/// pass, parallel over runs of images.
pub(crate) fn gated_grad_sums(
    x: &[f32],
    dz: &[f32],
    z: &[f32],
    (n, c, hw): (usize, usize, usize),
    mean: &[f32],
) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let run = n.div_ceil(rayon::current_num_threads() * 4).max(1) * c * hw;
    let mut partials: Vec<Vec<(f64, f64)>> = Vec::new();
    let g = cpu::build(x.len(), |g| {
        partials = g
            .par_chunks_mut(run)
            .zip(x.par_chunks(run))
            .zip(dz.par_chunks(run).zip(z.par_chunks(run)))
            .map(|((g, x), (dz, z))| {
                let mut sums = vec![(0f64, 0f64); c];
                let rows = g
                    .chunks_mut(hw)
                    .zip(x.chunks(hw))
                    .zip(dz.chunks(hw).zip(z.chunks(hw)));
                for (row, ((g, x), (dz, z))) in rows.enumerate() {
                    let ch = row % c;
                    let (sg, sgx) = gated_row_sums(dz, z, x, mean[ch], g);
                    sums[ch].0 += sg;
                    sums[ch].1 += sgx;
                }
                sums
            })
            .collect();
    });
    let (mut sum_g, mut sum_gx) = (vec![0f64; c], vec![0f64; c]);
    for sums in partials {
        for (ch, (sg, sgx)) in sums.into_iter().enumerate() {
            sum_g[ch] += sg;
            sum_gx[ch] += sgx;
        }
    }
    (g, sum_g, sum_gx)
}

/// Batch norm of `x`, plus `shortcut`, then a ReLU: a residual block's tail as one op. Its third
/// input holds `gamma` then `beta`.
struct BatchNormAddReluOp {
    eps: f64,
    stats: Arc<OnceLock<BatchStats>>,
}

impl CustomOp3 for BatchNormAddReluOp {
    fn name(&self) -> &'static str {
        "fast-batch-norm-add-relu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims @ (_, c, _) = channel_layout(xl.dims())?;
        if sl.dims() != xl.dims() {
            bail!(
                "{name}: the input {:?} and the shortcut {:?} differ in shape",
                xl.dims(),
                sl.dims()
            );
        }
        let (x, shortcut, params) = (
            cpu::slice(name, xs, xl)?,
            cpu::slice(name, ss, sl)?,
            cpu::slice(name, ps, pl)?,
        );
        if params.len() != 2 * c {
            bail!(
                "{name}: {c} channels but {} scales and shifts (expected {})",
                params.len(),
                2 * c
            );
        }
        let norm = (&params[..c], &params[c..], self.eps);
        let z = normalize_batch(name, x, dims, norm, Some(shortcut), true, &self.stats)?;
        Ok((CpuStorage::F32(z), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        shortcut: &Tensor,
        params: &Tensor,
        z: &Tensor,
        dz: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let Some(stats) = self.stats.get() else {
            bail!("{name}: backward before forward");
        };
        let (n, c, hw) = channel_layout(x.dims())?;
        let inv_std = inv_std(stats, self.eps);
        let gamma = params.to_vec1::<f32>()?[..c].to_vec();
        let want_dx = x.track_op();
        let (dx, g, sum_g, sum_gx) = cpu::with_slice(name, x, |x| {
            cpu::with_slice(name, dz, |dz| {
                cpu::with_slice(name, z, |z| {
                    let (g, sum_g, mut sum_gx) = gated_grad_sums(x, dz, z, (n, c, hw), &stats.mean);
                    for (s, &k) in sum_gx.iter_mut().zip(&inv_std) {
                        *s *= k as f64;
                    }
                    let dx = want_dx.then(|| {
                        let coef =
                            input_grad_coefficients(stats, &inv_std, &gamma, (&sum_g, &sum_gx));
                        input_grad(x, &g, None, (c, hw), &coef)
                    });
                    (dx, g, sum_g, sum_gx)
                })
            })
        })???;
        let dx = dx.map(|dx| cpu::tensor(dx, x.dims())).transpose()?;
        let dshortcut = shortcut
            .track_op()
            .then(|| cpu::tensor(g, x.dims()))
            .transpose()?;
        let dparams = params
            .track_op()
            .then(|| {
                let sums = sum_gx.iter().chain(&sum_g).map(|&s| s as f32).collect();
                cpu::tensor(sums, &[2 * c])
            })
            .transpose()?;
        Ok((dx, dshortcut, dparams))
    }
}

/// `max(batch_norm(x) + shortcut, 0)`: a residual block's tail (training-mode batch norm with
/// per-channel `gamma` and `beta`, the shortcut's sum and the ReLU) as one op on the CPU,
/// differentiable in all four inputs. It saves the norm's separate output, the sum's pass and one
/// gradient accumulation against [`batch_norm_train`] followed by [`add_relu`]. Returns the output
/// and the batch statistics (for the caller's running averages).
pub fn batch_norm_add_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    shortcut: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    check_batch(x)?;
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormAddReluOp {
        eps,
        stats: stats.clone(),
    };
    let params = Tensor::cat(&[gamma, beta], 0)?;
    let z = x
        .contiguous()?
        .apply_op3(&shortcut.contiguous()?, &params, op)?;
    let stats = stats.get().cloned().expect("forward sets the statistics");
    Ok((z, stats))
}

/// Elements per parallel task in elementwise kernels.
const GRAIN: usize = 1 << 15;

/// `f(a[i], b[i])` for every element of two equal-length slices, in parallel.
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    cpu::build(a.len(), |out| {
        out.par_chunks_mut(GRAIN)
            .zip(a.par_chunks(GRAIN).zip(b.par_chunks(GRAIN)))
            .for_each(|(out, (a, b))| {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    o.write(f(a, b));
                }
            })
    })
}

/// The gradient through a ReLU, from its output: `dy` where `y > 0`, else 0 (PyTorch's
/// convention at 0).
fn relu_grad(op: &str, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let dx = cpu::with_slice(op, y, |y| {
        cpu::with_slice(op, dy, |dy| {
            zip_map(y, dy, |y, g| if y > 0.0 { g } else { 0.0 })
        })
    })??;
    cpu::tensor(dx, y.dims())
}

struct ReluOp;

impl CustomOp1 for ReluOp {
    fn name(&self) -> &'static str {
        "fast-relu"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu::slice(self.name(), xs, xl)?;
        let y = zip_map(x, x, |v, _| v.max(0.0));
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        relu_grad(self.name(), y, dy).map(Some)
    }
}

/// `max(x, 0)` of an f32 tensor on the CPU, differentiable.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ReluOp)
}

struct AddReluOp;

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "fast-add-relu"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if al.dims() != bl.dims() {
            bail!(
                "{}: shapes {:?} and {:?} differ",
                self.name(),
                al.dims(),
                bl.dims()
            );
        }
        let (a, b) = (
            cpu::slice(self.name(), a, al)?,
            cpu::slice(self.name(), b, bl)?,
        );
        let y = zip_map(a, b, |a, b| (a + b).max(0.0));
        Ok((CpuStorage::F32(y), al.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = relu_grad(self.name(), y, dy)?;
        Ok((
            a.track_op().then(|| grad.clone()),
            b.track_op().then_some(grad),
        ))
    }
}

/// `max(a + b, 0)` of two same-shaped f32 tensors on the CPU, differentiable in both: a residual
/// block's output in one op.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
}
