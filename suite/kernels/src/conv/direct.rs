//! Stride-1 convolutions computed directly from a zero-padded copy of each image, with no column
//! matrix.
//!
//! With an image padded to `hp x wp` and stored row-major, the output at `(oy, ox)` sits at grid
//! index `q = oy * wp + ox` and reads the padded input at `q + ky * wp + kx` for kernel tap
//! `(ky, kx)`: every tap is a fixed offset, so a run of consecutive outputs reads a run of
//! consecutive inputs for each (input channel, tap). The `wp - out_w` grid columns after each
//! output row are computed and dropped.
//!
//! - Forward: a tile of (output channels x grid vectors) stays in registers while the kernel
//!   streams over (input channel, tap); the input gradient is the same pass over `dy` (see
//!   `transposed_conv`).
//! - Weight gradient: a tile of (output channels x (input channel, tap)) partial sums, one per
//!   vector lane, stays in registers while the kernel streams over the grid of a few images.
//!
//! The GEMM path spends most of its time building, packing and copying the column matrix at the
//! CIFAR nets' channel counts (16 to 64); this path reads each padded image straight from cache.
//! It needs AVX2 and FMA (or AVX-512), detected at run time.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::Conv2dGeometry;
use crate::cpu;

/// The vector instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Avx512,
    Avx2,
}

/// The widest instruction set both the CPU and `RESNET_REPRO_MAX_ISA` allow.
fn simd() -> Option<Simd> {
    static DETECTED: OnceLock<Option<Simd>> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let cap = std::env::var(MAX_ISA_VAR).unwrap_or_default();
        let allowed = |simd: Simd| match cap.as_str() {
            "none" => false,
            "avx2" => simd == Simd::Avx2,
            _ => true,
        };
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected;
            if allowed(Simd::Avx512) && is_x86_feature_detected!("avx512f") {
                return Some(Simd::Avx512);
            }
            if allowed(Simd::Avx2)
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return Some(Simd::Avx2);
            }
        }
        let _ = allowed;
        None
    })
}

/// Caps the direct kernels' instruction set, read once per process: `avx2` (no AVX-512) or `none`
/// (the GEMM path everywhere). Unset or anything else: the best the CPU has.
pub const MAX_ISA_VAR: &str = "RESNET_REPRO_MAX_ISA";

/// Whether the forward pass of `g` (or an input gradient computed as one) takes this path: stride
/// 1, a spatial kernel, a CPU with the vector units, and a patch of at most 256 channels of 3x3.
/// Above that, a tile's inputs outgrow the L1 cache and the GEMM path, whose packing is then
/// amortised, measured faster (`suite bench op` at ResNet-50's 512-channel 7x7 shape).
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    g.stride == 1 && !g.is_pointwise() && g.patch_len() <= 256 * 9 && simd().is_some()
}

/// Whether the weight gradient of `g` takes this path: as [`applies`], with patches of at most 64
/// channels of 3x3 and maps of at most 32x32, the CIFAR nets' shapes. On larger maps and channel
/// counts the GEMM path measured faster (ResNet-50's 64-channel 56x56 and 256-channel 14x14 convs).
pub(super) fn applies_to_weight_grad(g: &Conv2dGeometry) -> bool {
    applies(g) && g.patch_len() <= 64 * 9 && g.positions() <= 32 * 32
}

/// Output channels per register tile; channel counts are padded up to a multiple of it.
const MR: usize = 4;
/// Bytes of padded images (and gradients) the weight gradient keeps in flight per task: about half
/// of a core's L2, so each tile's pass over the grid reads from cache.
const WEIGHT_GRAD_CHUNK_BYTES: usize = 512 << 10;

/// The padded-grid layout of one convolution's input.
struct Grid {
    /// Padded width: the grid's row length.
    wp: usize,
    /// Padded image plane, `hp * wp`.
    plane: usize,
    /// Grid positions that hold outputs, `out_h * wp` (columns `out_w..wp` of each row are dropped).
    q: usize,
    /// Offset into a padded image of each (input channel, tap), in the weight's order.
    offsets: Vec<usize>,
}

impl Grid {
    fn new(g: &Conv2dGeometry) -> Self {
        let (wp, hp) = (g.width + 2 * g.padding, g.height + 2 * g.padding);
        let plane = hp * wp;
        let mut offsets = Vec::with_capacity(g.patch_len());
        for ci in 0..g.c_in {
            for ky in 0..g.kernel_h {
                for kx in 0..g.kernel_w {
                    offsets.push(ci * plane + ky * wp + kx);
                }
            }
        }
        Self {
            wp,
            plane,
            q: g.out_h * wp,
            offsets,
        }
    }

    /// Length of a padded image whose grid is read up to position `q_end` (exclusive): the planes
    /// plus enough trailing zeros for the last tile's furthest tap.
    fn padded_len(&self, g: &Conv2dGeometry, q_end: usize) -> usize {
        g.c_in * self.plane + (q_end - self.q) + (g.kernel_h - 1) * self.wp + g.kernel_w
    }

    /// Copies `image` into the interior of `padded`, whose border and tail must already be zero.
    fn pad(&self, g: &Conv2dGeometry, image: &[f32], padded: &mut [f32]) {
        let p = g.padding;
        for (src, dst) in image
            .chunks_exact(g.height * g.width)
            .zip(padded.chunks_exact_mut(self.plane))
        {
            for (row, dst_row) in src
                .chunks_exact(g.width)
                .zip(dst[p * self.wp..].chunks_exact_mut(self.wp))
            {
                dst_row[p..p + g.width].copy_from_slice(row);
            }
        }
    }
}

/// f32 lanes per vector register.
fn lanes(simd: Simd) -> usize {
    match simd {
        Simd::Avx512 => 16,
        Simd::Avx2 => 8,
    }
}

/// The forward pass over a batch (NCHW input, OIHW weight), parallel over images.
pub(super) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let simd = simd().expect("direct conv called without checking `applies`");
    let grid = Grid::new(g);
    let lanes = lanes(simd);
    let q_round = grid.q.div_ceil(lanes) * lanes;
    let k = g.patch_len();
    let co_blocks = g.c_out.div_ceil(MR);
    // Weights as [channel block][k][MR], so a tile's MR weights for one (channel, tap) are adjacent.
    let mut packed = vec![0.0f32; co_blocks * k * MR];
    for (co, row) in w.chunks_exact(k).enumerate() {
        let (block, m) = (co / MR, co % MR);
        for (kk, &value) in row.iter().enumerate() {
            packed[(block * k + kk) * MR + m] = value;
        }
    }
    let threads = rayon::current_num_threads();
    let per_task = g.images_per_task(threads);
    let (image_len, output_len) = (g.image_len(), g.output_len());
    cpu::build(g.batch * output_len, |y| {
        y.par_chunks_mut(per_task * output_len)
            .zip(x.par_chunks(per_task * image_len))
            .for_each(|(ys, xs)| {
                let mut padded = vec![0.0f32; grid.padded_len(g, q_round)];
                let mut out = vec![0.0f32; co_blocks * MR * q_round];
                for (y_img, x_img) in ys
                    .chunks_exact_mut(output_len)
                    .zip(xs.chunks_exact(image_len))
                {
                    grid.pad(g, x_img, &mut padded);
                    let image = Image {
                        padded: &padded,
                        offsets: &grid.offsets,
                        q: grid.q,
                        q_round,
                    };
                    // SAFETY: `simd` was detected on this CPU; the buffers have the lengths the
                    // kernels index (`padded_len` for `q_round`, `co_blocks * MR * q_round`).
                    unsafe { kernels::forward_image(simd, &image, &packed, co_blocks, &mut out) };
                    let rows = y_img.chunks_exact_mut(g.out_w);
                    let grid_rows = out
                        .chunks_exact(q_round)
                        .flat_map(|plane| plane.chunks(grid.wp).take(g.out_h));
                    for (dst, src) in rows.zip(grid_rows) {
                        cpu::write(dst, &src[..g.out_w]);
                    }
                }
            })
    })
}

/// The weight gradient `dW[co, (ci, tap)] = sum over images and positions of dy * x`, parallel
/// over runs of images with one partial sum per run.
pub(super) fn weight_grad(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let simd = simd().expect("direct conv called without checking `applies`");
    let grid = Grid::new(g);
    let lanes = lanes(simd);
    let nk = kernels::weight_tile_width(simd);
    let q_round = grid.q.div_ceil(lanes) * lanes;
    let k = g.patch_len();
    let (co_round, k_round) = (g.c_out.div_ceil(MR) * MR, k.div_ceil(nk) * nk);
    // Offsets padded with a harmless in-bounds 0 for the columns past `k`, whose sums are dropped.
    let mut offsets = grid.offsets.clone();
    offsets.resize(k_round, 0);
    let padded_len = grid.padded_len(g, q_round);
    let grad_len = co_round * q_round;
    let chunk = (WEIGHT_GRAD_CHUNK_BYTES / (4 * (padded_len + grad_len))).max(1);
    let threads = rayon::current_num_threads();
    let per_task = g.images_per_task(threads);
    let (image_len, output_len, out_plane) = (g.image_len(), g.output_len(), g.out_h * g.out_w);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_task * image_len)
        .zip(dy.par_chunks(per_task * output_len))
        .map(|(xs, dys)| {
            let images = xs.len() / image_len;
            let span = chunk.min(images);
            let mut padded = vec![0.0f32; span * padded_len];
            // Gradient grids: zero in the dropped columns, the tail and the padding channels, so
            // those positions add nothing.
            let mut grads = vec![0.0f32; span * grad_len];
            let mut sums = vec![0.0f32; co_round * k_round];
            let mut first = 0;
            while first < images {
                let n = span.min(images - first);
                for i in 0..n {
                    let image = &xs[(first + i) * image_len..][..image_len];
                    grid.pad(g, image, &mut padded[i * padded_len..][..padded_len]);
                    let dy_img = &dys[(first + i) * output_len..][..output_len];
                    let dst = &mut grads[i * grad_len..][..grad_len];
                    for (src, dst) in dy_img
                        .chunks_exact(out_plane)
                        .zip(dst.chunks_exact_mut(q_round))
                    {
                        for (row, dst_row) in src.chunks_exact(g.out_w).zip(dst.chunks_mut(grid.wp))
                        {
                            dst_row[..g.out_w].copy_from_slice(row);
                        }
                    }
                }
                let batch = GradBatch {
                    padded: &padded,
                    padded_len,
                    grads: &grads,
                    grad_len,
                    images: n,
                    q_round,
                    offsets: &offsets,
                };
                // SAFETY: `simd` was detected on this CPU; every buffer holds `images` entries of
                // the lengths given, padded to the tile sizes the kernels step by.
                unsafe { kernels::weight_grad(simd, &batch, co_round, &mut sums) };
                first += n;
            }
            sums
        })
        .collect();
    let mut dw = vec![0.0f32; g.c_out * k];
    for sums in partials {
        for (co, dst) in dw.chunks_exact_mut(k).enumerate() {
            for (d, s) in dst.iter_mut().zip(&sums[co * k_round..]) {
                *d += s;
            }
        }
    }
    dw
}

/// One padded image for the forward kernel.
struct Image<'a> {
    padded: &'a [f32],
    offsets: &'a [usize],
    /// Grid positions holding outputs.
    q: usize,
    /// `q` rounded up to whole vectors: the row length of the output tile buffer.
    q_round: usize,
}

/// A run of padded images and their gradient grids for the weight-gradient kernel.
struct GradBatch<'a> {
    padded: &'a [f32],
    padded_len: usize,
    grads: &'a [f32],
    grad_len: usize,
    images: usize,
    q_round: usize,
    offsets: &'a [usize],
}

#[cfg(target_arch = "x86_64")]
mod kernels {
    use std::arch::x86_64::*;

    use super::{GradBatch, Image, MR, Simd};

    /// The few vector operations the kernels use, for one instruction set.
    trait Vector {
        type V: Copy;
        const LANES: usize;
        unsafe fn zero() -> Self::V;
        unsafe fn load(p: *const f32) -> Self::V;
        unsafe fn splat(value: f32) -> Self::V;
        /// `a * b + c`
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn store(p: *mut f32, v: Self::V);
        unsafe fn sum(v: Self::V) -> f32;
    }

    struct Avx512;
    struct Avx2;

    impl Vector for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> __m512 {
            unsafe { _mm512_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn sum(v: __m512) -> f32 {
            unsafe { _mm512_reduce_add_ps(v) }
        }
    }

    impl Vector for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> __m256 {
            unsafe { _mm256_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn sum(v: __m256) -> f32 {
            unsafe {
                let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
                _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
            }
        }
    }

    /// `(input channel, tap)` columns per weight-gradient tile.
    pub(super) fn weight_tile_width(simd: Simd) -> usize {
        match simd {
            Simd::Avx512 => 4,
            Simd::Avx2 => 3,
        }
    }

    /// Forward tile: `MR` output channels x `NV` grid vectors starting at `x`, summed over every
    /// (channel, tap); `w` holds the tile's weights as [k][MR]. Rows of `out` are `stride` apart.
    #[inline(always)]
    unsafe fn forward_tile<S: Vector, const NV: usize>(
        x: *const f32,
        offsets: &[usize],
        w: *const f32,
        out: *mut f32,
        stride: usize,
    ) {
        unsafe {
            let mut acc = [[S::zero(); NV]; MR];
            for (kk, &offset) in offsets.iter().enumerate() {
                let src = x.add(offset);
                let mut xv = [S::zero(); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = S::load(src.add(v * S::LANES));
                }
                for (m, acc) in acc.iter_mut().enumerate() {
                    let wv = S::splat(*w.add(kk * MR + m));
                    for (a, &xv) in acc.iter_mut().zip(&xv) {
                        *a = S::fma(wv, xv, *a);
                    }
                }
            }
            for (m, acc) in acc.iter().enumerate() {
                for (v, &a) in acc.iter().enumerate() {
                    S::store(out.add(m * stride + v * S::LANES), a);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn forward_image_with<S: Vector, const NV: usize>(
        image: &Image,
        packed: &[f32],
        co_blocks: usize,
        out: &mut [f32],
    ) {
        let k = image.offsets.len();
        let tile = NV * S::LANES;
        let full = image.q / tile;
        let tail = (image.q - full * tile).div_ceil(S::LANES);
        let (x, w, o) = (image.padded.as_ptr(), packed.as_ptr(), out.as_mut_ptr());
        let stride = image.q_round;
        unsafe {
            for qb in 0..full {
                for cb in 0..co_blocks {
                    forward_tile::<S, NV>(
                        x.add(qb * tile),
                        image.offsets,
                        w.add(cb * k * MR),
                        o.add(cb * MR * stride + qb * tile),
                        stride,
                    );
                }
            }
            let q0 = full * tile;
            for cb in 0..co_blocks {
                let (x, w, o) = (x.add(q0), w.add(cb * k * MR), o.add(cb * MR * stride + q0));
                match tail {
                    0 => {}
                    1 => forward_tile::<S, 1>(x, image.offsets, w, o, stride),
                    2 => forward_tile::<S, 2>(x, image.offsets, w, o, stride),
                    3 => forward_tile::<S, 3>(x, image.offsets, w, o, stride),
                    4 => forward_tile::<S, 4>(x, image.offsets, w, o, stride),
                    5 => forward_tile::<S, 5>(x, image.offsets, w, o, stride),
                    _ => unreachable!("tail of {tail} vectors in a tile of {NV}"),
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn forward_image_avx512(
        image: &Image,
        packed: &[f32],
        co_blocks: usize,
        out: &mut [f32],
    ) {
        unsafe { forward_image_with::<Avx512, 6>(image, packed, co_blocks, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_image_avx2(image: &Image, packed: &[f32], co_blocks: usize, out: &mut [f32]) {
        unsafe { forward_image_with::<Avx2, 3>(image, packed, co_blocks, out) }
    }

    /// Writes the forward tiles of one padded image into `out` (`co_blocks * MR` rows of
    /// `image.q_round`).
    ///
    /// # Safety
    /// `simd` must be supported by this CPU; `image.padded` must hold `Grid::padded_len` for
    /// `image.q_round`, `packed` `co_blocks * k * MR` values and `out` `co_blocks * MR * q_round`.
    pub(super) unsafe fn forward_image(
        simd: Simd,
        image: &Image,
        packed: &[f32],
        co_blocks: usize,
        out: &mut [f32],
    ) {
        let k = image.offsets.len();
        debug_assert!(packed.len() >= co_blocks * k * MR);
        debug_assert!(out.len() >= co_blocks * MR * image.q_round);
        unsafe {
            match simd {
                Simd::Avx512 => forward_image_avx512(image, packed, co_blocks, out),
                Simd::Avx2 => forward_image_avx2(image, packed, co_blocks, out),
            }
        }
    }

    /// Weight-gradient tile over one image: `MR` output channels (gradient rows `q_round` apart
    /// from `g`) x `NK` columns (rows of the padded image at `xs`), summed over the grid into the
    /// lane-wise partial sums `acc`.
    #[inline(always)]
    unsafe fn weight_tile<S: Vector, const NK: usize>(
        g: *const f32,
        xs: [*const f32; NK],
        q_round: usize,
        acc: &mut [[S::V; NK]; MR],
    ) {
        unsafe {
            let mut sums = *acc;
            let gs: [*const f32; MR] = std::array::from_fn(|m| g.add(m * q_round));
            let mut q = 0;
            while q < q_round {
                let mut gv = [S::zero(); MR];
                for (gv, g) in gv.iter_mut().zip(&gs) {
                    *gv = S::load(g.add(q));
                }
                for (j, x) in xs.iter().enumerate() {
                    let xv = S::load(x.add(q));
                    for (sums, &gv) in sums.iter_mut().zip(&gv) {
                        sums[j] = S::fma(gv, xv, sums[j]);
                    }
                }
                q += S::LANES;
            }
            *acc = sums;
        }
    }

    #[inline(always)]
    unsafe fn weight_grad_with<S: Vector, const NK: usize>(
        batch: &GradBatch,
        co_round: usize,
        sums: &mut [f32],
    ) {
        let k_round = batch.offsets.len();
        for co0 in (0..co_round).step_by(MR) {
            for (kb, offsets) in batch.offsets.chunks_exact(NK).enumerate() {
                let mut acc = [[unsafe { S::zero() }; NK]; MR];
                for i in 0..batch.images {
                    // SAFETY (all three): in bounds by `weight_grad`'s contract.
                    let (x, g) = unsafe {
                        (
                            batch.padded.as_ptr().add(i * batch.padded_len),
                            batch
                                .grads
                                .as_ptr()
                                .add(i * batch.grad_len + co0 * batch.q_round),
                        )
                    };
                    let xs = std::array::from_fn(|j| unsafe { x.add(offsets[j]) });
                    unsafe { weight_tile::<S, NK>(g, xs, batch.q_round, &mut acc) };
                }
                for (m, acc) in acc.iter().enumerate() {
                    let row = &mut sums[(co0 + m) * k_round + kb * NK..][..NK];
                    for (s, &a) in row.iter_mut().zip(acc) {
                        *s += unsafe { S::sum(a) };
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn weight_grad_avx512(batch: &GradBatch, co_round: usize, sums: &mut [f32]) {
        unsafe { weight_grad_with::<Avx512, 4>(batch, co_round, sums) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn weight_grad_avx2(batch: &GradBatch, co_round: usize, sums: &mut [f32]) {
        unsafe { weight_grad_with::<Avx2, 3>(batch, co_round, sums) }
    }

    /// Adds the weight gradient of `batch` to `sums` (`co_round` rows of `batch.offsets.len()`).
    ///
    /// # Safety
    /// `simd` must be supported by this CPU; `batch.offsets.len()` must be a multiple of
    /// [`weight_tile_width`] and `co_round` of `MR`; each image's padded input must hold
    /// `Grid::padded_len` for `q_round` values and its gradient grid `co_round * q_round`.
    pub(super) unsafe fn weight_grad(
        simd: Simd,
        batch: &GradBatch,
        co_round: usize,
        sums: &mut [f32],
    ) {
        debug_assert_eq!(batch.offsets.len() % weight_tile_width(simd), 0);
        debug_assert!(sums.len() >= co_round * batch.offsets.len());
        debug_assert!(batch.grad_len >= co_round * batch.q_round);
        unsafe {
            match simd {
                Simd::Avx512 => weight_grad_avx512(batch, co_round, sums),
                Simd::Avx2 => weight_grad_avx2(batch, co_round, sums),
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernels {
    use super::{GradBatch, Image, Simd};

    pub(super) fn weight_tile_width(_: Simd) -> usize {
        unreachable!("no vector kernels on this architecture")
    }

    pub(super) unsafe fn forward_image(_: Simd, _: &Image, _: &[f32], _: usize, _: &mut [f32]) {
        unreachable!("no vector kernels on this architecture")
    }

    pub(super) unsafe fn weight_grad(_: Simd, _: &GradBatch, _: usize, _: &mut [f32]) {
        unreachable!("no vector kernels on this architecture")
    }
}
