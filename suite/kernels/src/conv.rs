//! 2-D convolution (NCHW input, OIHW weight, square stride and zero padding, no bias): "same"
//! stride-1 convs and small strided 3x3 convs directly from the planes with vector kernels
//! ([`direct`]), the rest as per-image GEMMs over an im2col buffer.
//!
//! For the GEMM path, image `n`, with `K = c_in * kh * kw` and `P = oh * ow`:
//! - forward: `y[n] (c_out x P) = W (c_out x K) * cols(x[n]) (K x P)`;
//! - weight gradient: `dW += dy[n] (c_out x P) * cols(x[n])^T (P x K)`;
//! - input gradient: `dx[n] = col2im(W^T (K x c_out) * dy[n])`.
//!
//! For stride 1 the input gradient is itself a convolution, of `dy` with the weight flipped in
//! space and transposed in channels, padded by `k - 1 - p`: it runs as a forward pass, which avoids
//! col2im's scattered additions.
//!
//! "Same" stride-1 convs (a CIFAR net's 3x3 convs and ResNet-50's up to 256 channels) and strided
//! 3x3 convs up to 64 channels (the two that halve a CIFAR net's map) take the direct path instead
//! on CPUs with AVX2 or AVX-512, where it measured faster: no column matrix is built.
//! [`ConvAlgorithm`] picks a path explicitly, for checks and benchmarks; `RESNET_REPRO_MAX_ISA`
//! caps the vector width. [`ConvPasses`] runs each pass on plain slices, outside candle's autograd,
//! for benchmarks that time one pass alone.
//!
//! Work is split over the batch (each task owns a run of images and its own im2col buffer, so
//! buffers stay in cache and writes never overlap); a 1x1 stride-1 conv uses the image itself as
//! its column matrix. When the batch is smaller than the thread pool, gemm splits each product.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu;
use crate::matmul::{View, matmul};
use crate::norm::{self, PlaneMoments};

#[cfg(feature = "cuda")]
mod cudnn;
mod direct;

pub use direct::MAX_ISA_VAR;

/// How cuDNN's algorithm for each conv pass is chosen on CUDA. The CPU kernels always sum in a
/// fixed order, so they are deterministic under either choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CudnnAlgorithms {
    /// The fastest algorithm for the shape, timed by cuDNN's search (as PyTorch's
    /// `cudnn.benchmark`) the first time the shape is seen and kept for the process. Some of the
    /// backward algorithms add partial sums with atomics, so two runs may differ in the last bits.
    #[default]
    Fastest,
    /// The first algorithm cuDNN's heuristics rank for the shape among those that return the same
    /// bits on every call. The heuristics depend only on the shape, the GPU and the cuDNN
    /// release, so a resumed process picks the same algorithms as the one it replaces, which a
    /// timed search does not promise.
    Deterministic,
}

static DETERMINISTIC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets how cuDNN's conv algorithms are chosen for the rest of the process (conv plans already
/// built for the other choice are kept apart, not reused).
pub fn set_cudnn_algorithms(choice: CudnnAlgorithms) {
    DETERMINISTIC.store(
        choice == CudnnAlgorithms::Deterministic,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The current choice of cuDNN conv algorithms.
pub fn cudnn_algorithms() -> CudnnAlgorithms {
    if DETERMINISTIC.load(std::sync::atomic::Ordering::Relaxed) {
        CudnnAlgorithms::Deterministic
    } else {
        CudnnAlgorithms::Fastest
    }
}

/// How a convolution's three passes are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgorithm {
    /// Direct where it applies and measured faster (stride 1, a spatial kernel, AVX2 or AVX-512,
    /// moderate channel counts), else GEMM.
    #[default]
    Auto,
    /// Per-image GEMMs over an im2col buffer, for every geometry.
    Gemm,
}

impl ConvAlgorithm {
    /// Whether the forward pass (or an input gradient run as one) of `g` takes the direct path.
    fn direct(self, g: &Conv2dGeometry) -> bool {
        self == ConvAlgorithm::Auto && direct::applies(g)
    }

    /// Whether the weight gradient of `g` takes the direct path.
    fn direct_weight_grad(self, g: &Conv2dGeometry) -> bool {
        self == ConvAlgorithm::Auto && direct::applies_to_weight_grad(g)
    }
}

/// The shapes of one convolution, derived from its input and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub height: usize,
    pub width: usize,
    pub c_out: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Conv2dGeometry {
    /// Checks that an NCHW input of shape `x` and an OIHW weight of shape `w` can be convolved.
    pub fn new(x: &[usize], w: &[usize], stride: usize, padding: usize) -> Result<Self> {
        let (&[batch, c_in, height, width], &[c_out, w_in, kernel_h, kernel_w]) = (x, w) else {
            bail!(
                "conv2d: expected a 4-D input (N, C, H, W) and weight (O, I, kH, kW), got {x:?} and {w:?}"
            );
        };
        if w_in != c_in {
            bail!("conv2d: the input has {c_in} channels but the weight {w:?} expects {w_in}");
        }
        if stride == 0 {
            bail!("conv2d: stride must be at least 1");
        }
        if height + 2 * padding < kernel_h || width + 2 * padding < kernel_w {
            bail!(
                "conv2d: kernel {kernel_h}x{kernel_w} is larger than the padded input {height}x{width} (padding {padding})"
            );
        }
        Ok(Self {
            batch,
            c_in,
            height,
            width,
            c_out,
            kernel_h,
            kernel_w,
            stride,
            padding,
            out_h: (height + 2 * padding - kernel_h) / stride + 1,
            out_w: (width + 2 * padding - kernel_w) / stride + 1,
        })
    }

    /// Multiply-adds of one pass over the batch, times two (floating-point operations); each of the
    /// three passes costs the same.
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.c_out * self.patch_len() * self.positions()) as u64
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.height, self.width]
    }

    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kernel_h, self.kernel_w]
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.out_h, self.out_w]
    }

    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn patch_len(&self) -> usize {
        self.c_in * self.kernel_h * self.kernel_w
    }

    /// Columns of the column matrix: one per output position.
    pub(crate) fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    fn image_len(&self) -> usize {
        self.c_in * self.height * self.width
    }

    fn output_len(&self) -> usize {
        self.c_out * self.positions()
    }

    /// A 1x1 stride-1 unpadded conv, whose column matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride == 1 && self.padding == 0
    }

    fn cols_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.patch_len() * self.positions()
        }
    }

    /// Output columns `[lo, hi)` whose input column for kernel column `kj` lies inside the image.
    fn valid_columns(&self, kj: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        let lo = p.saturating_sub(kj).div_ceil(s).min(self.out_w);
        let hi = (self.width + p)
            .saturating_sub(kj)
            .div_ceil(s)
            .min(self.out_w);
        (lo, hi.max(lo))
    }

    /// Input row of output row `oy` for kernel row `ki`, if it is inside the image.
    fn input_row(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.stride + ki)
            .checked_sub(self.padding)
            .filter(|&iy| iy < self.height)
    }

    fn images_per_task(&self, threads: usize) -> usize {
        images_per_task(self.batch, threads)
    }

    /// Threads for each gemm call when there are fewer tasks than threads.
    fn gemm_threads(&self, threads: usize) -> usize {
        let tasks = self.batch.div_ceil(self.images_per_task(threads));
        (threads / tasks).max(1)
    }
}

/// Images per parallel task: a few tasks per thread so an uneven machine still balances.
fn images_per_task(batch: usize, threads: usize) -> usize {
    batch.div_ceil(threads * 2).max(1)
}

/// Unfolds one image (c_in x H x W) into its column matrix (K x P), zeros where the kernel overhangs.
fn im2col(g: &Conv2dGeometry, image: &[f32], cols: &mut [f32]) {
    let (plane, positions, ow) = (g.height * g.width, g.positions(), g.out_w);
    let mut rows = cols.chunks_exact_mut(positions);
    for channel in image.chunks_exact(plane) {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = rows.next().expect("K rows");
                let (lo, hi) = g.valid_columns(kj);
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let Some(iy) = g.input_row(oy, ki) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &channel[iy * g.width..][..g.width];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    let first = lo * g.stride + kj - g.padding;
                    if g.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        let src = src[first..].iter().step_by(g.stride);
                        for (d, s) in dst[lo..hi].iter_mut().zip(src) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column-matrix entry back onto the input pixel it came from.
/// `image` must start zeroed.
fn col2im(g: &Conv2dGeometry, cols: &[f32], image: &mut [f32]) {
    let (plane, positions, ow) = (g.height * g.width, g.positions(), g.out_w);
    let mut rows = cols.chunks_exact(positions);
    for channel in image.chunks_exact_mut(plane) {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = rows.next().expect("K rows");
                let (lo, hi) = g.valid_columns(kj);
                for (oy, src) in row.chunks_exact(ow).enumerate() {
                    let Some(iy) = g.input_row(oy, ki) else {
                        continue;
                    };
                    let dst = &mut channel[iy * g.width..][..g.width];
                    let first = lo * g.stride + kj - g.padding;
                    if g.stride == 1 {
                        for (d, s) in dst[first..first + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        let dst = dst[first..].iter_mut().step_by(g.stride);
                        for (d, s) in dst.zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

/// The column matrix of `image`: the image itself for a pointwise conv, else unfolded into `buffer`.
fn columns<'a>(g: &Conv2dGeometry, image: &'a [f32], buffer: &'a mut [f32]) -> &'a [f32] {
    if g.is_pointwise() {
        image
    } else {
        im2col(g, image, buffer);
        buffer
    }
}

pub(crate) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    algorithm: ConvAlgorithm,
) -> Vec<f32> {
    forward_with_moments(g, x, w, algorithm, false).0
}

/// The forward pass and, with `moments`, the moments of every output plane (NCHW order), each
/// taken right after its image was computed, while it is in cache.
pub(crate) fn forward_with_moments(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    algorithm: ConvAlgorithm,
    moments: bool,
) -> (Vec<f32>, Vec<PlaneMoments>) {
    if algorithm.direct(g) {
        return direct::forward(g, x, w, moments);
    }
    let threads = rayon::current_num_threads();
    let (per_task, gemm_threads) = (g.images_per_task(threads), g.gemm_threads(threads));
    let (k, p) = (g.patch_len(), g.positions());
    let mut partial: Vec<Vec<PlaneMoments>> = Vec::new();
    // Each image's output is written whole by its product.
    let y = cpu::build(g.batch * g.output_len(), |y| {
        partial = y
            .par_chunks_mut(per_task * g.output_len())
            .zip(x.par_chunks(per_task * g.image_len()))
            .map(|(ys, xs)| {
                let mut buffer = vec![0.0; g.cols_len()];
                let mut found = Vec::new();
                for (y_img, x_img) in ys
                    .chunks_exact_mut(g.output_len())
                    .zip(xs.chunks_exact(g.image_len()))
                {
                    let cols = columns(g, x_img, &mut buffer);
                    let shape = (g.c_out, p, k);
                    let (a, b) = (View::rows(w, k), View::rows(cols, p));
                    matmul(y_img, shape, a, b, false, gemm_threads);
                    if moments {
                        // SAFETY: the product wrote the whole image.
                        let y_img = unsafe { cpu::assume_init(y_img) };
                        found.extend(y_img.chunks_exact(p).map(norm::plane_moments));
                    }
                }
                found
            })
            .collect();
    });
    (y, partial.concat())
}

/// The geometry and weight that compute a stride-1 conv's input gradient as a forward conv of `dy`:
/// `W'[ci, co, i, j] = W[co, ci, k-1-i, k-1-j]`, padding `k - 1 - p`. `None` for other convs.
fn transposed_conv(g: &Conv2dGeometry, w: &[f32]) -> Option<(Conv2dGeometry, Vec<f32>)> {
    let (kh, kw) = (g.kernel_h, g.kernel_w);
    if g.stride != 1 || kh != kw || g.padding >= kh {
        return None;
    }
    let mut flipped = vec![0.0; w.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for i in 0..kh {
                for j in 0..kw {
                    flipped[((ci * g.c_out + co) * kh + i) * kw + j] =
                        w[((co * g.c_in + ci) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
                }
            }
        }
    }
    let geometry = Conv2dGeometry::new(
        &[g.batch, g.c_out, g.out_h, g.out_w],
        &[g.c_in, g.c_out, kh, kw],
        1,
        kh - 1 - g.padding,
    )
    .ok()?;
    (geometry.out_h == g.height && geometry.out_w == g.width).then_some((geometry, flipped))
}

/// The weight gradient, directly or by im2col.
fn weight_grad(g: &Conv2dGeometry, x: &[f32], dy: &[f32], algorithm: ConvAlgorithm) -> Vec<f32> {
    if algorithm.direct_weight_grad(g) {
        direct::weight_grad(g, x, dy)
    } else {
        backward_by_columns(g, x, &[], dy, None, true).expect("the weight gradient was asked for")
    }
}

/// The input gradient as forward passes, where the geometry allows: a stride-1 conv's is one
/// (see [`transposed_conv`]), a phase-split strided one's one per phase. `None` for the rest,
/// whose input gradient takes col2im.
fn input_grad_by_forward(
    g: &Conv2dGeometry,
    w: &[f32],
    dy: &[f32],
    algorithm: ConvAlgorithm,
) -> Option<Vec<f32>> {
    if let Some((tg, flipped)) = transposed_conv(g, w) {
        return Some(forward(&tg, dy, &flipped, algorithm));
    }
    // A strided conv split into phase planes (stride 1 was handled above).
    algorithm
        .direct(g)
        .then(|| direct::strided_input_grad(g, w, dy))
}

/// Both gradients, each when wanted: the input gradient as forward passes where the geometry
/// allows, else by col2im in the same walk over the batch as the weight gradient's im2col.
pub(crate) fn backward(
    g: &Conv2dGeometry,
    (x, w, dy): (&[f32], &[f32], &[f32]),
    (want_dx, want_dw): (bool, bool),
    algorithm: ConvAlgorithm,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let dw = || want_dw.then(|| weight_grad(g, x, dy, algorithm));
    if !want_dx {
        return (None, dw());
    }
    if let Some(dx) = input_grad_by_forward(g, w, dy, algorithm) {
        return (Some(dx), dw());
    }
    let mut dx = vec![0.0; g.batch * g.image_len()];
    let dw = backward_by_columns(g, x, w, dy, Some(&mut dx), want_dw);
    (Some(dx), dw)
}

/// Both gradients in one walk over the batch; `dx` is `Some` (zeroed, input-sized) when wanted.
/// `x` is read only for the weight gradient and `w` only for the input gradient.
fn backward_by_columns(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    want_dw: bool,
) -> Option<Vec<f32>> {
    let threads = rayon::current_num_threads();
    let (per_task, gemm_threads) = (g.images_per_task(threads), g.gemm_threads(threads));
    let (k, p) = (g.patch_len(), g.positions());
    let task = |first: usize, dx: Option<&mut [f32]>| -> Option<Vec<f32>> {
        let images = per_task.min(g.batch - first);
        let mut dw = want_dw.then(|| vec![0.0; g.c_out * k]);
        let mut cols_buffer = vec![0.0; g.cols_len()];
        let mut dcols = vec![0.0; if dx.is_some() { g.cols_len() } else { 0 }];
        let mut dx = dx;
        for i in 0..images {
            let n = first + i;
            let dy_img = &dy[n * g.output_len()..][..g.output_len()];
            if let Some(dw) = dw.as_mut() {
                let x_img = &x[n * g.image_len()..][..g.image_len()];
                let cols = columns(g, x_img, &mut cols_buffer);
                let shape = (g.c_out, k, p);
                let (a, b) = (View::rows(dy_img, p), View::transposed(cols, p));
                matmul(cpu::as_uninit(dw), shape, a, b, true, gemm_threads);
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dx_img = &mut dx[i * g.image_len()..][..g.image_len()];
                let (shape, wt) = ((k, p, g.c_out), View::transposed(w, k));
                if g.is_pointwise() {
                    matmul(
                        cpu::as_uninit(dx_img),
                        shape,
                        wt,
                        View::rows(dy_img, p),
                        false,
                        gemm_threads,
                    );
                } else {
                    matmul(
                        cpu::as_uninit(&mut dcols),
                        shape,
                        wt,
                        View::rows(dy_img, p),
                        false,
                        gemm_threads,
                    );
                    col2im(g, &dcols, dx_img);
                }
            }
        }
        dw
    };
    let partial: Vec<Option<Vec<f32>>> = match dx.take() {
        Some(dx) => dx
            .par_chunks_mut(per_task * g.image_len())
            .enumerate()
            .map(|(t, dx)| task(t * per_task, Some(dx)))
            .collect(),
        None => (0..g.batch.div_ceil(per_task))
            .into_par_iter()
            .map(|t| task(t * per_task, None))
            .collect(),
    };
    let mut partial = partial.into_iter().flatten();
    let mut dw = partial.next()?;
    for part in partial {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    Some(dw)
}

/// A convolution's three passes on plain slices (NCHW input, OIHW weight, output-shaped gradient),
/// outside candle's autograd: what a benchmark times to see one pass alone.
#[derive(Debug, Clone, Copy)]
pub struct ConvPasses {
    pub geometry: Conv2dGeometry,
    pub algorithm: ConvAlgorithm,
}

impl ConvPasses {
    fn check(&self, what: &str, len: usize, expected: usize) -> Result<()> {
        if len != expected {
            bail!(
                "conv2d passes: {what} holds {len} values, expected {expected} for {:?}",
                self.geometry
            );
        }
        Ok(())
    }

    /// `y = conv(x, w)`.
    pub fn forward(&self, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
        let g = &self.geometry;
        self.check("the input", x.len(), g.batch * g.image_len())?;
        self.check("the weight", w.len(), g.c_out * g.patch_len())?;
        Ok(forward(g, x, w, self.algorithm))
    }

    /// The input gradient `dx` for the output gradient `dy`.
    pub fn input_grad(&self, w: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
        let g = &self.geometry;
        self.check("the weight", w.len(), g.c_out * g.patch_len())?;
        self.check("the output gradient", dy.len(), g.batch * g.output_len())?;
        Ok(
            input_grad_by_forward(g, w, dy, self.algorithm).unwrap_or_else(|| {
                let mut dx = vec![0.0; g.batch * g.image_len()];
                backward_by_columns(g, &[], w, dy, Some(&mut dx), false);
                dx
            }),
        )
    }

    /// The weight gradient `dW` for the input `x` and output gradient `dy`.
    pub fn weight_grad(&self, x: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
        let g = &self.geometry;
        self.check("the input", x.len(), g.batch * g.image_len())?;
        self.check("the output gradient", dy.len(), g.batch * g.output_len())?;
        Ok(weight_grad(g, x, dy, self.algorithm))
    }
}

struct Conv2dOp {
    stride: usize,
    padding: usize,
    algorithm: ConvAlgorithm,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Conv2dGeometry::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        let (x, w) = (
            cpu::slice(self.name(), xs, xl)?,
            cpu::slice(self.name(), ws, wl)?,
        );
        let y = forward(&g, x, w, self.algorithm);
        Ok((CpuStorage::F32(y), Shape::from(g.output_shape().to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = Conv2dGeometry::new(xl.dims(), wl.dims(), self.stride, self.padding)?;
        cudnn::forward(&g, (xs, xl), (ws, wl))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Conv2dGeometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let (want_dx, want_dw) = (x.track_op(), w.track_op());
        if !x.device().is_cpu() {
            let dx = want_dx.then(|| conv2d_input_grad(w, dy, &g)).transpose()?;
            let dw = want_dw.then(|| conv2d_weight_grad(x, dy, &g)).transpose()?;
            return Ok((dx, dw));
        }
        let name = self.name();
        let (dx, dw) = cpu::with_slice(name, x, |x| {
            cpu::with_slice(name, w, |w| {
                cpu::with_slice(name, dy, |dy| {
                    backward(&g, (x, w, dy), (want_dx, want_dw), self.algorithm)
                })
            })
        })???;
        let dx = dx.map(|dx| cpu::tensor(dx, x.dims())).transpose()?;
        let dw = dw.map(|dw| cpu::tensor(dw, w.dims())).transpose()?;
        Ok((dx, dw))
    }
}

/// Which gradient a [`GradOp`] computes, and from what: the input gradient from the weight and
/// `dy`, or the weight gradient from the input and `dy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gradient {
    Input,
    Weight,
}

/// One of a convolution's gradients as an op of its own (not differentiable): the CPU passes, or
/// cuDNN's backward data or backward filter on CUDA.
struct GradOp {
    geometry: Conv2dGeometry,
    gradient: Gradient,
}

impl GradOp {
    /// The shape of the operand besides `dy` (the weight or the input).
    fn operand_shape(&self) -> [usize; 4] {
        match self.gradient {
            Gradient::Input => self.geometry.weight_shape(),
            Gradient::Weight => self.geometry.input_shape(),
        }
    }

    /// The shape of the result (the input or the weight).
    fn result_shape(&self) -> [usize; 4] {
        match self.gradient {
            Gradient::Input => self.geometry.input_shape(),
            Gradient::Weight => self.geometry.weight_shape(),
        }
    }

    /// Runs the op on `operand` and `dy` after checking both shapes, naming them when they are off.
    fn apply(self, operand: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let (expected, g) = (self.operand_shape(), &self.geometry);
        if operand.dims() != expected || dy.dims() != g.output_shape() {
            let what = match self.gradient {
                Gradient::Input => "input gradient: expected a weight",
                Gradient::Weight => "weight gradient: expected an input",
            };
            bail!(
                "conv2d {what} {expected:?} and an output gradient {:?}, got {:?} and {:?}",
                g.output_shape(),
                operand.dims(),
                dy.dims()
            );
        }
        operand
            .contiguous()?
            .apply_op2_no_bwd(&dy.contiguous()?, &self)
    }
}

impl CustomOp2 for GradOp {
    fn name(&self) -> &'static str {
        match self.gradient {
            Gradient::Input => "fast-conv2d-input-grad",
            Gradient::Weight => "fast-conv2d-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        operand_storage: &CpuStorage,
        operand_layout: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let passes = ConvPasses {
            geometry: self.geometry,
            algorithm: ConvAlgorithm::Auto,
        };
        let operand = cpu::slice(self.name(), operand_storage, operand_layout)?;
        let dy = cpu::slice(self.name(), dys, dyl)?;
        let result = match self.gradient {
            Gradient::Input => passes.input_grad(operand, dy)?,
            Gradient::Weight => passes.weight_grad(operand, dy)?,
        };
        Ok((
            CpuStorage::F32(result),
            Shape::from(self.result_shape().to_vec()),
        ))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        operand_storage: &candle_core::CudaStorage,
        operand_layout: &Layout,
        dys: &candle_core::CudaStorage,
        dyl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (operand, dy) = ((operand_storage, operand_layout), (dys, dyl));
        match self.gradient {
            Gradient::Input => cudnn::input_grad(&self.geometry, operand, dy),
            Gradient::Weight => cudnn::weight_grad(&self.geometry, operand, dy),
        }
    }
}

/// The input gradient of the convolution `g` for the weight `w` and output gradient `dy`, on the
/// tensors' device; what [`conv2d`]'s backward pass computes for its input.
pub fn conv2d_input_grad(w: &Tensor, dy: &Tensor, g: &Conv2dGeometry) -> Result<Tensor> {
    let op = GradOp {
        geometry: *g,
        gradient: Gradient::Input,
    };
    op.apply(w, dy)
}

/// The weight gradient of the convolution `g` for the input `x` and output gradient `dy`, on the
/// tensors' device; what [`conv2d`]'s backward pass computes for its weight.
pub fn conv2d_weight_grad(x: &Tensor, dy: &Tensor, g: &Conv2dGeometry) -> Result<Tensor> {
    let op = GradOp {
        geometry: *g,
        gradient: Gradient::Weight,
    };
    op.apply(x, dy)
}

/// Whether [`conv2d`] runs on `device`: always on the CPU, and on CUDA in builds with the `cuda`
/// feature (through cuDNN).
pub fn conv2d_runs_on(device: &candle_core::Device) -> bool {
    device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda())
}

/// `conv2d(x, w)` for an NCHW f32 input and OIHW weight, with square `stride` and zero `padding`
/// (dilation 1, one group), differentiable in both arguments. On the CPU it runs this crate's
/// kernels; on CUDA (with the `cuda` feature) each pass is one cuDNN call.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    conv2d_with(x, w, padding, stride, ConvAlgorithm::Auto)
}

/// [`conv2d`] computed by the given algorithm.
pub fn conv2d_with(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    algorithm: ConvAlgorithm,
) -> Result<Tensor> {
    Conv2dGeometry::new(x.dims(), w.dims(), stride, padding)?;
    let op = Conv2dOp {
        stride,
        padding,
        algorithm,
    };
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col and col2im are adjoint: <im2col(x), c> = <x, col2im(c)> for every geometry.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (h, w, k, s, p) in [
            (5, 7, 3, 1, 1),
            (6, 6, 3, 2, 1),
            (7, 5, 1, 2, 0),
            (4, 4, 7, 2, 3),
        ] {
            let g = Conv2dGeometry::new(&[1, 2, h, w], &[1, 2, k, k], s, p).unwrap();
            let x: Vec<f32> = (0..g.image_len()).map(|i| (i % 11) as f32 - 5.0).collect();
            let c: Vec<f32> = (0..g.patch_len() * g.positions())
                .map(|i| (i % 7) as f32 - 3.0)
                .collect();
            let mut cols = vec![f32::NAN; c.len()];
            im2col(&g, &x, &mut cols);
            let mut back = vec![0.0; x.len()];
            col2im(&g, &c, &mut back);
            let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{h}x{w} k{k} s{s} p{p}");
        }
    }
}
