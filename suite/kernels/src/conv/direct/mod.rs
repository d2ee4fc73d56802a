//! Convolutions computed directly from the NCHW tensors, with no column matrix or padding copy:
//! "same" stride-1 convs (a `k x k` kernel, `k` odd, padding `(k - 1) / 2`, so the output has the
//! input's size) on the planes as they are, and strided convs whose output is the input's size
//! divided by the stride on the input split into phase planes.
//!
//! With an image plane stored row-major, the output at flat position `p = oy * w + ox` of a same
//! conv reads the input at `p + (ky - pad) * w + (kx - pad)` for kernel tap `(ky, kx)`: every tap
//! is a fixed offset, so a vector of consecutive outputs reads a vector of consecutive inputs for
//! each (input channel, tap). Lanes whose input falls outside the image (the zero padding,
//! including where a vector wraps from one row to the next) are masked off the load, from a table
//! of masks per (vector, tap) built once per call.
//!
//! A stride-`s` conv reads input row `s * oy + ky - pad`. Split each input plane into `s * s`
//! phase planes of the output's size, phase `(a, b)` holding rows `a, a + s, ...` and columns
//! `b, b + s, ...`: tap `(ky, kx)` then reads one phase plane at a fixed shift of the output
//! position, which is the same-conv walk with other offsets and masks. The split copies each image
//! into a buffer that stays in cache just before the kernels read it (for stride 2 with AVX-512,
//! 32 values at a time by two permutes; with AVX2, 16 by two shuffles and two permutes); the
//! input gradient is one forward pass over `dy` per phase, with that phase's taps mirrored, each
//! image's phases interleaved back into its planes while they are still in cache.
//!
//! - Forward: a tile of (output channels x vectors of positions) stays in registers while the
//!   kernel streams over taps and input channels; a same conv's input gradient is the same pass
//!   over `dy` with the flipped weights (see `transposed_conv`).
//! - Weight gradient: a tile of (output channels x input channels) for one tap, one partial sum
//!   per vector lane, stays in registers while the kernel streams over the positions of a few
//!   images. For small maps those images' tile planes are first packed into one contiguous run:
//!   in place they lie a multiple of 4 KiB apart and crowd a few L1 sets. A strided conv's taps
//!   are walked phase by phase, so a run needs one phase plane per input channel in L1, not four.
//!
//! The GEMM path spends most of its time building, packing and copying the column matrix at the
//! CIFAR nets' channel counts (16 to 64); this path reads each image straight from cache. It needs
//! AVX2 and FMA (or AVX-512), detected at run time.

use std::sync::OnceLock;

use rayon::prelude::*;

mod forward;
mod input_grad;
mod phases;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod vector;
#[cfg(not(target_arch = "x86_64"))]
#[path = "vector_fallback.rs"]
mod vector;
mod weight_grad;

pub(in crate::conv) use forward::forward;
pub(in crate::conv) use input_grad::strided_input_grad;
use phases::{Split, merge_phase_planes};
pub(in crate::conv) use weight_grad::weight_grad;

use super::{Conv2dGeometry, images_per_task};
use crate::cpu::{self, LineBuffer};
use crate::norm::{self, PlaneMoments};

/// The vector instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Avx512,
    Avx2,
}

impl Simd {
    /// f32 lanes per vector register.
    fn lanes(self) -> usize {
        match self {
            Simd::Avx512 => 16,
            Simd::Avx2 => 8,
        }
    }
}

/// Caps the direct kernels' instruction set, read once per process: `avx2` (no AVX-512) or `none`
/// (the GEMM path everywhere). Unset or anything else: the best the CPU has.
pub const MAX_ISA_VAR: &str = "RESNET_REPRO_MAX_ISA";

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

/// A stride-1 conv whose output has its input's size.
fn is_same(g: &Conv2dGeometry) -> bool {
    g.stride == 1
        && g.kernel_h == g.kernel_w
        && g.kernel_h % 2 == 1
        && g.kernel_h > 1
        && g.padding == g.kernel_h / 2
}

/// A strided 3x3 conv whose output is the input's size divided by the stride, so the input splits
/// into phase planes of the output's size. Other strided kernels (the 7x7 stem, 1x1 projections)
/// stay on the GEMM path, where they were measured.
fn is_phase_split(g: &Conv2dGeometry) -> bool {
    g.stride > 1
        && g.kernel_h == 3
        && g.kernel_w == 3
        && g.out_h * g.stride == g.height
        && g.out_w * g.stride == g.width
}

/// Whether the forward pass of `g` (or an input gradient computed as one) takes this path: a CPU
/// with the vector units, and a same conv with a patch of at most 256 channels of 3x3 or a
/// phase-split one with at most 64. Above that, a tile's inputs outgrow the L1 cache and the GEMM
/// path, whose packing is then amortised, measured faster (`suite bench op` at ResNet-50's
/// 512-channel 7x7 shape, and its strided 128- and 256-channel convs, where the phase split's
/// extra copy also counts).
pub(super) fn applies(g: &Conv2dGeometry) -> bool {
    let limit = if is_phase_split(g) { 64 * 9 } else { 256 * 9 };
    (is_same(g) || is_phase_split(g)) && g.patch_len() <= limit && simd().is_some()
}

/// Whether the weight gradient of `g` takes this path: as [`applies`], with patches of at most 64
/// channels of 3x3, maps of at most 32x32 and whole vectors of positions, the CIFAR nets' shapes.
/// On larger maps and channel counts the GEMM path measured faster (ResNet-50's 64-channel 56x56
/// and 256-channel 14x14 convs).
pub(super) fn applies_to_weight_grad(g: &Conv2dGeometry) -> bool {
    applies(g)
        && g.patch_len() <= 64 * 9
        && g.positions() <= 32 * 32
        && simd().is_some_and(|s| g.positions().is_multiple_of(s.lanes()))
}

/// Output channels per register tile; other channel counts are tiled with unused rows.
const MR: usize = 4;
/// Bytes of one weight-gradient tile's planes (`MR` gradient and a few input planes per image) per
/// run of images: within a core's L1 (32 KiB on the smaller CPUs), so the tile's passes, one per
/// tap, read the same planes from L1 instead of streaming them from L2 once per tap.
const WEIGHT_GRAD_L1_BYTES: usize = 32 << 10;

/// Where each tap reads and which lanes of each vector it may load, for one output size.
struct Taps {
    /// Input offset of each tap relative to the output position (within a channel's planes), in
    /// the weight's order.
    offsets: Vec<isize>,
    /// Lane masks per (vector of positions, tap), bit `l` set where lane `l` reads inside its
    /// plane (and, in the last vector, where the position exists).
    masks: Vec<u32>,
    /// Vectors of positions per plane.
    vectors: usize,
    /// Lanes of the last vector that hold positions (all when the plane is whole vectors).
    tail_bits: u32,
    /// The taps grouped by the plane they read (a strided conv's phase planes; one group for a
    /// same conv), for passes that keep one plane of each channel in cache at a time.
    by_plane: Vec<usize>,
}

/// Where one tap reads: the plane `plane` planes past a channel's first, at the output position
/// shifted by `(dy, dx)`.
#[derive(Debug, Clone, Copy)]
struct Shift {
    plane: usize,
    dy: isize,
    dx: isize,
}

impl Taps {
    /// The taps of outputs on a `rows x cols` grid that read planes of the same grid.
    fn new(rows: usize, cols: usize, shifts: &[Shift], lanes: usize) -> Self {
        let plane = rows * cols;
        let offsets = shifts
            .iter()
            .map(|s| (s.plane * plane) as isize + s.dy * cols as isize + s.dx)
            .collect();
        let vectors = plane.div_ceil(lanes);
        let mut masks = Vec::with_capacity(vectors * shifts.len());
        for v in 0..vectors {
            for s in shifts {
                let mut bits = 0u32;
                for l in 0..lanes {
                    let p = v * lanes + l;
                    let (iy, ix) = ((p / cols) as isize + s.dy, (p % cols) as isize + s.dx);
                    if p < plane
                        && (0..rows as isize).contains(&iy)
                        && (0..cols as isize).contains(&ix)
                    {
                        bits |= 1 << l;
                    }
                }
                masks.push(bits);
            }
        }
        let tail = plane - (vectors - 1) * lanes;
        let mut by_plane: Vec<usize> = (0..shifts.len()).collect();
        by_plane.sort_by_key(|&tap| shifts[tap].plane);
        Self {
            offsets,
            masks,
            vectors,
            tail_bits: u32::MAX >> (32 - tail),
            by_plane,
        }
    }

    /// The forward taps of `g` (same or phase-split), in the weight's order.
    fn forward(g: &Conv2dGeometry, lanes: usize) -> Self {
        let shifts: Vec<Shift> = (0..g.kernel_h)
            .flat_map(|ky| (0..g.kernel_w).map(move |kx| phase_shift(g, ky, kx)))
            .collect();
        Self::new(g.out_h, g.out_w, &shifts, lanes)
    }
}

/// Where tap `(ky, kx)` of `g` reads: for a same conv (stride 1, one phase) the plane itself; for
/// a strided one the phase plane of row `s * oy + ky - pad` and column `s * ox + kx - pad`.
fn phase_shift(g: &Conv2dGeometry, ky: usize, kx: usize) -> Shift {
    let s = g.stride as isize;
    let (u, v) = (
        ky as isize - g.padding as isize,
        kx as isize - g.padding as isize,
    );
    Shift {
        plane: (u.rem_euclid(s) * s + v.rem_euclid(s)) as usize,
        dy: u.div_euclid(s),
        dx: v.div_euclid(s),
    }
}

/// The planes the kernels read for `g`: a same conv's input planes as they are, a strided conv's
/// each split into its `stride * stride` phase planes (see the module docs) of the output's size.
fn layout_of(g: &Conv2dGeometry) -> Layout {
    Layout {
        c_in: g.c_in,
        c_out: g.c_out,
        plane: g.positions(),
        in_plane: g.height * g.width,
    }
}

/// Channel counts and plane sizes of one pass's images.
struct Layout {
    c_in: usize,
    c_out: usize,
    /// Positions per output plane.
    plane: usize,
    /// Values per input channel: the output plane's size, or `stride * stride` of them for the
    /// phase planes of a strided conv.
    in_plane: usize,
}
