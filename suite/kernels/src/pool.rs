//! Max pooling and option A's shortcut (strided subsampling plus zero channels) as custom ops.
//!
//! The max pool treats padding as -infinity and sends each window's gradient to the first maximum
//! in scan order, as PyTorch does (candle's composite max splits it between tied maxima).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu;

pub(crate) fn dims4(op: &str, dims: &[usize]) -> Result<[usize; 4]> {
    match dims {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!("{op}: expected an (N, C, H, W) input, got {dims:?}"),
    }
}

struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    padding: usize,
    /// For each output element, the index of its maximum within the input plane.
    argmax: Arc<OnceLock<Vec<u32>>>,
}

impl MaxPoolOp {
    fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Input rows (or columns) `[lo, hi)` under output position `o`'s window.
    fn window(&self, o: usize, size: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.padding);
        let hi = (start + self.kernel).saturating_sub(self.padding).min(size);
        (lo, hi)
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "fast-max-pool2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = dims4(self.name(), xl.dims())?;
        let x = cpu::slice(self.name(), xs, xl)?;
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let mut y = vec![0f32; n * c * oh * ow];
        let mut argmax = vec![0u32; y.len()];
        y.par_chunks_mut(oh * ow)
            .zip(argmax.par_chunks_mut(oh * ow))
            .zip(x.par_chunks(h * w))
            .for_each(|((y, arg), plane)| {
                for oy in 0..oh {
                    let (y0, y1) = self.window(oy, h);
                    for ox in 0..ow {
                        let (x0, x1) = self.window(ox, w);
                        let (mut best, mut at) = (f32::NEG_INFINITY, y0 * w + x0);
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = plane[iy * w + ix];
                                // `>` keeps the first maximum; NaN propagates as in PyTorch.
                                if v > best || v.is_nan() && !best.is_nan() {
                                    (best, at) = (v, iy * w + ix);
                                }
                            }
                        }
                        y[oy * ow + ox] = best;
                        arg[oy * ow + ox] = at as u32;
                    }
                }
            });
        if self.argmax.set(argmax).is_err() {
            bail!("{}: an op instance runs forward once", self.name());
        }
        Ok((CpuStorage::F32(y), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let Some(argmax) = self.argmax.get() else {
            bail!("{}: backward before forward", self.name());
        };
        let [_, _, h, w] = dims4(self.name(), x.dims())?;
        let out_plane = dy.dim(2)? * dy.dim(3)?;
        let dx = cpu::with_slice(self.name(), dy, |dy| {
            let mut dx = vec![0f32; x.elem_count()];
            dx.par_chunks_mut(h * w)
                .zip(dy.par_chunks(out_plane).zip(argmax.par_chunks(out_plane)))
                .for_each(|(plane, (g, arg))| {
                    for (&g, &at) in g.iter().zip(arg) {
                        plane[at as usize] += g;
                    }
                });
            dx
        })?;
        Ok(Some(cpu::tensor(dx, x.dims())?))
    }
}

/// Max pooling of an (N, C, H, W) f32 tensor on the CPU with a square `kernel`, `stride` and
/// `padding` (padding never wins), differentiable.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let [_, _, h, w] = dims4("max_pool2d", x.dims())?;
    if stride == 0 || padding * 2 > kernel || h + 2 * padding < kernel || w + 2 * padding < kernel {
        bail!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} do not fit an input of {h}x{w} \
             (padding may be at most half the kernel)"
        );
    }
    x.contiguous()?.apply_op1(MaxPoolOp {
        kernel,
        stride,
        padding,
        argmax: Arc::new(OnceLock::new()),
    })
}

struct SubsamplePadOp {
    stride: usize,
    extra: usize,
}

impl CustomOp1 for SubsamplePadOp {
    fn name(&self) -> &'static str {
        "fast-subsample-pad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims @ [n, c, h, w] = dims4(self.name(), xl.dims())?;
        let x = cpu::slice(self.name(), xs, xl)?;
        let s = self.stride;
        let y = subsample_pad_values(x, dims, s, c + self.extra);
        Ok((
            CpuStorage::F32(y),
            Shape::from((n, c + self.extra, h.div_ceil(s), w.div_ceil(s))),
        ))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let dims = dims4(self.name(), x.dims())?;
        let dx = cpu::with_slice(self.name(), dy, |dy| {
            let mut dx = vec![0f32; x.elem_count()];
            add_subsample_pad_grad(&mut dx, dy, dims, self.stride, dims[1] + self.extra);
            dx
        })?;
        Ok(Some(cpu::tensor(dx, x.dims())?))
    }
}

/// `x[:, :, ::stride, ::stride]` of an (n, c, h, w) input, followed by zero channels up to
/// `out_channels`.
pub(crate) fn subsample_pad_values(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    s: usize,
    out_channels: usize,
) -> Vec<f32> {
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let mut y = vec![0f32; n * out_channels * oh * ow];
    y.par_chunks_mut(out_channels * oh * ow)
        .zip(x.par_chunks(c * h * w))
        .for_each(|(y, x)| {
            for (out, plane) in y.chunks_exact_mut(oh * ow).zip(x.chunks_exact(h * w)) {
                for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
                    let src = &plane[oy * s * w..][..w];
                    for (o, v) in row.iter_mut().zip(src.iter().step_by(s)) {
                        *o = *v;
                    }
                }
            }
        });
    y
}

/// Adds the gradient `dy` of [`subsample_pad_values`]' output onto the kept positions of `dx`.
pub(crate) fn add_subsample_pad_grad(
    dx: &mut [f32],
    dy: &[f32],
    [_, c, h, w]: [usize; 4],
    s: usize,
    out_channels: usize,
) {
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    dx.par_chunks_mut(c * h * w)
        .zip(dy.par_chunks(out_channels * oh * ow))
        .for_each(|(dx, dy)| {
            // The zero channels past `c` have no input to send a gradient to.
            for (plane, g) in dx.chunks_exact_mut(h * w).zip(dy.chunks_exact(oh * ow)) {
                for (oy, g_row) in g.chunks_exact(ow).enumerate() {
                    let dst = &mut plane[oy * s * w..][..w];
                    for (d, v) in dst.iter_mut().step_by(s).zip(g_row) {
                        *d += *v;
                    }
                }
            }
        });
}

/// Option A's shortcut where the shape changes: `x[:, :, ::stride, ::stride]` followed by `extra`
/// zero channels, for an (N, C, H, W) f32 tensor on the CPU; differentiable.
pub fn subsample_pad(x: &Tensor, stride: usize, extra: usize) -> Result<Tensor> {
    dims4("subsample_pad", x.dims())?;
    if stride == 0 {
        bail!("subsample_pad: stride must be at least 1");
    }
    x.contiguous()?.apply_op1(SubsamplePadOp { stride, extra })
}
