//! The kernels in AVX-512 and AVX2: the few vector operations they use ([`Vector`]), each
//! compiled for both instruction sets and picked at run time.

mod forward;
mod phases;
mod weight_grad;

pub(in crate::conv::direct) use forward::{forward_images, forward_tiles};
pub(in crate::conv::direct) use phases::{
    merge_plane_2_avx2, merge_plane_2_avx512, split_plane_2_avx2, split_plane_2_avx512,
};
#[cfg(test)]
pub(in crate::conv::direct) use weight_grad::pack_blocks;
pub(in crate::conv::direct) use weight_grad::{weight_grad, weight_tile_width};

use std::arch::x86_64::*;

use super::{Layout, MR, Simd, Split, Taps};
use crate::cpu::{LineBuffer, Prefetch};

/// The few vector operations the kernels use, for one instruction set.
trait Vector {
    type V: Copy;
    type Mask: Copy;
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// Loads the lanes set in `mask` (others read as 0 and are never accessed).
    unsafe fn load_masked(p: *const f32, mask: Self::Mask) -> Self::V;
    unsafe fn splat(value: f32) -> Self::V;
    /// `a * b + c`
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn store_masked(p: *mut f32, v: Self::V, mask: Self::Mask);
    unsafe fn sum(v: Self::V) -> f32;
    unsafe fn mask(bits: u32) -> Self::Mask;
    /// Adds the lane sum of each of a weight-gradient tile's accumulators to its place in
    /// `sums`: row `m`'s `NK` sums at `sums + m * row_stride`.
    #[inline(always)]
    unsafe fn add_row_sums<const NK: usize>(
        acc: &[[Self::V; NK]; MR],
        sums: *mut f32,
        row_stride: usize,
    ) {
        unsafe { add_row_sums_each::<Self, NK>(acc, sums, row_stride) }
    }
}

/// [`Vector::add_row_sums`], one horizontal sum per accumulator.
#[inline(always)]
unsafe fn add_row_sums_each<S: Vector + ?Sized, const NK: usize>(
    acc: &[[S::V; NK]; MR],
    sums: *mut f32,
    row_stride: usize,
) {
    for (m, acc) in acc.iter().enumerate() {
        for (j, &a) in acc.iter().enumerate() {
            unsafe { *sums.add(m * row_stride + j) += S::sum(a) };
        }
    }
}

struct Avx512;
struct Avx2;

impl Vector for Avx512 {
    type V = __m512;
    type Mask = __mmask16;
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
    unsafe fn load_masked(p: *const f32, mask: __mmask16) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask, p) }
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
    unsafe fn store_masked(p: *mut f32, v: __m512, mask: __mmask16) {
        unsafe { _mm512_mask_storeu_ps(p, mask, v) }
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    unsafe fn mask(bits: u32) -> __mmask16 {
        bits as __mmask16
    }
    /// For a 4 x 4 tile, the sixteen sums at once: pairs of accumulators are folded into one
    /// vector three times over (45 shuffles and adds), where sixteen horizontal sums take
    /// about 130, a tenth of a small tile's work, on the ports the FMAs need.
    #[inline(always)]
    unsafe fn add_row_sums<const NK: usize>(
        acc: &[[__m512; NK]; MR],
        sums: *mut f32,
        row_stride: usize,
    ) {
        if NK != 4 || MR != 4 {
            return unsafe { add_row_sums_each::<Self, NK>(acc, sums, row_stride) };
        }
        unsafe {
            // Per 128-bit lane, row m's four accumulators a, b, c, d fold to
            // [a0 + a2, b0 + b2, a1 + a3, b1 + b3] and [c.., d..], then to
            // [sum a, sum b, sum c, sum d]: row m's partial sums, one 128-bit lane each.
            let row = |r: &[__m512; NK]| {
                let pair = |a: __m512, b: __m512| {
                    _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
                };
                let (p, q) = (pair(r[0], r[1]), pair(r[2], r[3]));
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0b01_00_01_00>(p, q),
                    _mm512_shuffle_ps::<0b11_10_11_10>(p, q),
                )
            };
            let u = [row(&acc[0]), row(&acc[1]), row(&acc[2]), row(&acc[3])];
            // Then the four 128-bit lanes of each row summed, row m into lane m.
            let halves = |a: __m512, b: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
                )
            };
            let (w01, w23) = (halves(u[0], u[1]), halves(u[2], u[3]));
            let r = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(w01, w23),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(w01, w23),
            );
            let add = |m: usize, v: __m128| {
                let p = sums.add(m * row_stride);
                _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), v));
            };
            add(0, _mm512_extractf32x4_ps::<0>(r));
            add(1, _mm512_extractf32x4_ps::<1>(r));
            add(2, _mm512_extractf32x4_ps::<2>(r));
            add(3, _mm512_extractf32x4_ps::<3>(r));
        }
    }
}

impl Vector for Avx2 {
    type V = __m256;
    type Mask = __m256i;
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
    unsafe fn load_masked(p: *const f32, mask: __m256i) -> __m256 {
        unsafe { _mm256_maskload_ps(p, mask) }
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
    unsafe fn store_masked(p: *mut f32, v: __m256, mask: __m256i) {
        unsafe { _mm256_maskstore_ps(p, mask, v) }
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        unsafe {
            let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
            _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
        }
    }
    #[inline(always)]
    unsafe fn mask(bits: u32) -> __m256i {
        let lane = |l: u32| -(((bits >> l) & 1) as i32);
        unsafe {
            _mm256_setr_epi32(
                lane(0),
                lane(1),
                lane(2),
                lane(3),
                lane(4),
                lane(5),
                lane(6),
                lane(7),
            )
        }
    }
}

/// The `n` lowest lanes of a 16-lane mask (all of them for `n >= 16`).
#[inline(always)]
fn low_lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// A stride-2 split's rows: each row of `src` (`w` wide) with the starts of the two phase rows
/// its even and odd columns go to. Checks the shapes the vector splits' callers promise.
fn split_rows_2<'a>(
    src: &'a [f32],
    w: usize,
    phases: &'a mut [std::mem::MaybeUninit<f32>],
) -> impl Iterator<Item = (*const f32, *mut f32, *mut f32)> + 'a {
    assert!(w.is_multiple_of(2) && src.len().is_multiple_of(2 * w) && phases.len() == src.len());
    let (ow, plane) = (w / 2, src.len() / 4);
    let dst = phases.as_mut_ptr().cast::<f32>();
    src.chunks_exact(w).enumerate().map(move |(iy, row)| {
        let (oy, a) = (iy / 2, iy % 2);
        let at = |phase: usize| dst.wrapping_add(phase * plane + oy * ow);
        (row.as_ptr(), at(2 * a), at(2 * a + 1))
    })
}

/// A stride-2 merge's rows: the starts of the two phase rows (at `at` in their phase planes)
/// that interleave into each row of `dst` (`w` wide), and that row's start. Checks the shapes
/// the vector merges' callers promise.
fn merge_rows_2<'a>(
    phases: [&'a [f32]; 4],
    at: usize,
    w: usize,
    dst: &'a mut [std::mem::MaybeUninit<f32>],
) -> impl Iterator<Item = (*const f32, *const f32, *mut f32)> + 'a {
    assert!(w.is_multiple_of(2) && dst.len().is_multiple_of(2 * w));
    let ow = w / 2;
    dst.chunks_exact_mut(w).enumerate().map(move |(iy, row)| {
        let (oy, a) = (iy / 2, iy % 2);
        let phase_row = |phase: usize| phases[phase][at + oy * ow..][..ow].as_ptr();
        (
            phase_row(2 * a),
            phase_row(2 * a + 1),
            row.as_mut_ptr().cast(),
        )
    })
}

/// The mask table in the instruction set's own form.
#[inline(always)]
unsafe fn masks<S: Vector>(taps: &Taps) -> Vec<S::Mask> {
    taps.masks
        .iter()
        .map(|&bits| unsafe { S::mask(bits) })
        .collect()
}
