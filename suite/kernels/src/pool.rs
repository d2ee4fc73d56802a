//! Max pooling and option A's shortcut (strided subsampling plus zero channels) as custom ops.
//!
//! The max pool treats padding as -infinity and sends each window's gradient to the first maximum
//! in scan order, as PyTorch does (candle's composite max splits it between tied maxima).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu::{self, with_avx2};

pub(crate) fn dims4(op: &str, dims: &[usize]) -> Result<[usize; 4]> {
    match dims {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!("{op}: expected an (N, C, H, W) input, got {dims:?}"),
    }
}

/// A max pool's square window: `kernel` wide, `stride` apart, `padding` of -infinity on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Window {
    fn out_size(self, size: usize) -> usize {
        (size + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Input rows (or columns) `[lo, hi)` under output position `o`'s window.
    fn span(self, o: usize, size: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.padding);
        let hi = (start + self.kernel).saturating_sub(self.padding).min(size);
        (lo, hi)
    }

    /// Values per phase of a padded row (see [`RowPhases`]): what the windows of `out_w` outputs
    /// reach.
    fn phase_len(self, out_w: usize) -> usize {
        out_w + (self.kernel - 1) / self.stride
    }
}

with_avx2! {
    /// Pools one `h x w` plane through `window` into `y` and the index in the plane of each
    /// window's first maximum (in scan order) into `arg`, with `phases` as scratch.
    ///
    /// Row by row: an output row takes its window's input rows in order and, within each, the
    /// window's columns in order, each step one branch-free compare-and-select over the whole
    /// output row, which the compiler vectorises. A window column `kx` of output `ox` is padded
    /// column `ox * stride + kx`, so each input row is first split into `stride` phases of its
    /// padded form (phase `r` holds padded columns `r, r + stride, ...`): the column is then
    /// element `ox + kx / stride` of phase `kx % stride`, a contiguous run over the output row.
    fn pool_plane(
        window: Window,
        plane: &[f32],
        hw: (usize, usize),
        y: &mut [f32],
        arg: &mut [u32],
        phases: &mut RowPhases,
    ) {
        let (h, w) = hw;
        let (k, s, p) = (window.kernel, window.stride, window.padding);
        phases.split_rows(window, plane, hw);
        let (ow, len) = (phases.first_cols.len(), phases.phase_len);
        for (oy, (y, arg)) in y.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow)).enumerate() {
            let (y0, y1) = window.span(oy, h);
            y.fill(f32::NEG_INFINITY);
            for (a, &x0) in arg.iter_mut().zip(&phases.first_cols) {
                *a = (y0 * w) as u32 + x0;
            }
            for iy in y0..y1 {
                let row = &phases.values[iy * s * len..][..s * len];
                for kx in 0..k {
                    let src = &row[(kx % s) * len + kx / s..][..ow];
                    // Padded column `ox * s + kx` is input column `ox * s + kx - p`; a padding
                    // column's index wraps, but its -infinity never wins, so it is never kept.
                    let base = ((iy * w + kx) as u32).wrapping_sub(p as u32);
                    let (offsets, arg) = (&phases.offsets[..ow], &mut arg[..ow]);
                    for i in 0..ow {
                        let (v, best) = (src[i], y[i]);
                        // `>` keeps the first maximum; NaN propagates as in PyTorch.
                        let take = (v > best) | (v.is_nan() & !best.is_nan());
                        y[i] = if take { v } else { best };
                        arg[i] = if take { base.wrapping_add(offsets[i]) } else { arg[i] };
                    }
                }
            }
        }
    }
}

/// A pool's scratch for planes of one shape, reused from plane to plane: every row of the plane
/// split into the phases of its padded form, each phase `phase_len` values (padding and whatever
/// lies past the padded row read as -infinity), and per output column the first input column of
/// its window and its padded start.
#[derive(Debug, Default)]
struct RowPhases {
    values: Vec<f32>,
    phase_len: usize,
    first_cols: Vec<u32>,
    offsets: Vec<u32>,
    /// The window and plane size the scratch was laid out for.
    shape: Option<(Window, usize, usize)>,
}

impl RowPhases {
    // Inlined so that it is compiled with the caller's instruction set.
    #[inline(always)]
    fn split_rows(&mut self, window: Window, plane: &[f32], (h, w): (usize, usize)) {
        let s = window.stride;
        // Planes of one shape fill the same slots, so the -infinity around them, written once,
        // stays.
        if self.shape != Some((window, h, w)) {
            let ow = window.out_size(w);
            self.phase_len = window.phase_len(ow);
            self.values.clear();
            self.values
                .resize(h * s * self.phase_len, f32::NEG_INFINITY);
            // Where each output's index starts, so that a window of -infinity alone still names
            // an input position, as the scan does.
            self.first_cols = (0..ow).map(|ox| window.span(ox, w).0 as u32).collect();
            self.offsets = (0..ow).map(|ox| (ox * s) as u32).collect();
            self.shape = Some((window, h, w));
        }
        let (p, len) = (window.padding, self.phase_len);
        for (src, dst) in plane
            .chunks_exact(w)
            .zip(self.values.chunks_exact_mut(s * len))
        {
            match s {
                // The stem pool's stride as a constant, so the split vectorises.
                2 => split_row(src, 2, p, len, dst),
                1 => split_row(src, 1, p, len, dst),
                _ => split_row(src, s, p, len, dst),
            }
        }
    }
}

/// Writes input row `src` to its `s` phases in `dst`, padded column `i = ix + p` of the row going
/// to element `i / s` of phase `i % s`; columns past the last window's reach have no slot.
#[inline(always)]
fn split_row(src: &[f32], s: usize, p: usize, len: usize, dst: &mut [f32]) {
    for r in 0..s {
        // Padded columns `j * s + r` that hold input values: `p <= j * s + r < p + w`.
        let lo = (p.saturating_sub(r)).div_ceil(s);
        let hi = (p + src.len()).saturating_sub(r).div_ceil(s).min(len);
        let phase = &mut dst[r * len..][..len];
        for (j, d) in phase.iter_mut().enumerate().take(hi).skip(lo) {
            *d = src[j * s + r - p];
        }
    }
}

struct MaxPoolOp {
    window: Window,
    /// For each output element, the index of its maximum within the input plane.
    argmax: Arc<OnceLock<Vec<u32>>>,
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "fast-max-pool2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = dims4(self.name(), xl.dims())?;
        let x = cpu::slice(self.name(), xs, xl)?;
        let window = self.window;
        let (oh, ow) = (window.out_size(h), window.out_size(w));
        let mut y = vec![0f32; n * c * oh * ow];
        let mut argmax = vec![0u32; y.len()];
        y.par_chunks_mut(oh * ow)
            .zip(argmax.par_chunks_mut(oh * ow))
            .zip(x.par_chunks(h * w))
            .for_each_init(RowPhases::default, |phases, ((y, arg), plane)| {
                pool_plane(window, plane, (h, w), y, arg, phases)
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
        window: Window {
            kernel,
            stride,
            padding,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The window scan itself: each output's window in scan order, keeping the first maximum.
    fn scan(window: Window, plane: &[f32], (h, w): (usize, usize)) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = (window.out_size(h), window.out_size(w));
        let (mut y, mut arg) = (Vec::new(), Vec::new());
        for oy in 0..oh {
            let (y0, y1) = window.span(oy, h);
            for ox in 0..ow {
                let (x0, x1) = window.span(ox, w);
                let (mut best, mut at) = (f32::NEG_INFINITY, y0 * w + x0);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let v = plane[iy * w + ix];
                        if v > best || v.is_nan() && !best.is_nan() {
                            (best, at) = (v, iy * w + ix);
                        }
                    }
                }
                y.push(best);
                arg.push(at as u32);
            }
        }
        (y, arg)
    }

    #[test]
    fn row_pass_matches_the_window_scan_with_ties_nan_and_infinities() {
        let mut phases = RowPhases::default();
        let mut seed = 7u32;
        for (h, w) in [(1, 1), (2, 3), (5, 5), (7, 9), (8, 6), (12, 13), (17, 16)] {
            for (kernel, stride, padding) in [
                (1, 1, 0),
                (2, 2, 0),
                (3, 1, 1),
                (3, 2, 1),
                (3, 3, 1),
                (2, 1, 1),
                (5, 2, 2),
                (3, 2, 0),
                (1, 3, 0),
            ] {
                let window = Window {
                    kernel,
                    stride,
                    padding,
                };
                if h + 2 * padding < kernel || w + 2 * padding < kernel {
                    continue;
                }
                // Two planes per geometry, the second split over what the first left.
                for _ in 0..2 {
                    // Few distinct values, so windows tie often; some NaN and infinities.
                    let plane: Vec<f32> = (0..h * w)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            match seed >> 28 {
                                0 => f32::NAN,
                                1 => f32::NEG_INFINITY,
                                2 => f32::INFINITY,
                                v => v as f32 - 8.0,
                            }
                        })
                        .collect();
                    let (oh, ow) = (window.out_size(h), window.out_size(w));
                    let (mut y, mut arg) = (vec![0.0; oh * ow], vec![0; oh * ow]);
                    pool_plane(window, &plane, (h, w), &mut y, &mut arg, &mut phases);
                    let (expect_y, expect_arg) = scan(window, &plane, (h, w));
                    let case = format!("{h}x{w} plane, {window:?}");
                    assert_eq!(arg, expect_arg, "{case}");
                    let same = |a: &f32, b: &f32| a == b || a.is_nan() && b.is_nan();
                    assert!(y.iter().zip(&expect_y).all(|(a, b)| same(a, b)), "{case}");
                }
            }
        }
    }
}
