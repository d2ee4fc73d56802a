//! Stride-2 phase splits and merges, whole vectors at a time.

use std::arch::x86_64::*;

use super::*;

/// [`super::split_plane`] for stride 2: each row's values 32 at a time, split into even and
/// odd columns by two permutes and stored to the row's two phase planes.
///
/// # Safety
/// The CPU must have AVX-512F; `src` must hold whole rows `w` wide, an even number of them,
/// `w` even, and `phases` as many values as `src`.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::direct) unsafe fn split_plane_2_avx512(
    src: &[f32],
    w: usize,
    phases: &mut [std::mem::MaybeUninit<f32>],
) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let even_odd = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (r, d0, d1) in split_rows_2(src, w, phases) {
        unsafe {
            // Whole steps of 32 without masks: masked stores are slow on some CPUs.
            let whole = w - w % 32;
            for k in (0..whole).step_by(32) {
                let (lo, hi) = (_mm512_loadu_ps(r.add(k)), _mm512_loadu_ps(r.add(k + 16)));
                _mm512_storeu_ps(d0.add(k / 2), _mm512_permutex2var_ps(lo, even, hi));
                _mm512_storeu_ps(d1.add(k / 2), _mm512_permutex2var_ps(lo, odd, hi));
            }
            let mut whole = whole;
            if w - whole >= 16 {
                // Sixteen values: the even ones to the low half, the odd to the high.
                let v = _mm512_permutexvar_ps(even_odd, _mm512_loadu_ps(r.add(whole)));
                _mm256_storeu_ps(d0.add(whole / 2), _mm512_castps512_ps256(v));
                // (The 64-bit-lane extract and insert are AVX-512F; the 32-bit ones need DQ.)
                let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
                _mm256_storeu_ps(d1.add(whole / 2), _mm256_castpd_ps(high));
                whole += 16;
            }
            if whole < w {
                let (k, n) = (whole, w - whole);
                // Masked-off lanes past the row are never accessed.
                let lo = _mm512_maskz_loadu_ps(low_lanes(n), r.add(k));
                let hi =
                    _mm512_maskz_loadu_ps(low_lanes(n.saturating_sub(16)), r.wrapping_add(k + 16));
                let out = low_lanes(n / 2);
                _mm512_mask_storeu_ps(d0.add(k / 2), out, _mm512_permutex2var_ps(lo, even, hi));
                _mm512_mask_storeu_ps(d1.add(k / 2), out, _mm512_permutex2var_ps(lo, odd, hi));
            }
        }
    }
}

/// [`super::merge_plane`] for stride 2 with all four phases present: each row's two phase
/// rows (at `at` in their phase planes) interleaved 16 + 16 values at a time by two permutes.
///
/// # Safety
/// The CPU must have AVX-512F; `dst` must hold whole rows `w` wide, an even number of them,
/// `w` even, and each phase the `dst.len() / 4` values from `at`.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::direct) unsafe fn merge_plane_2_avx512(
    phases: [&[f32]; 4],
    at: usize,
    w: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
) {
    let ow = w / 2;
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let interleave = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (p0, p1, r) in merge_rows_2(phases, at, w, dst) {
        let whole = ow - ow % 16;
        for k in (0..whole).step_by(16) {
            unsafe {
                let (e, o) = (_mm512_loadu_ps(p0.add(k)), _mm512_loadu_ps(p1.add(k)));
                _mm512_storeu_ps(r.add(2 * k), _mm512_permutex2var_ps(e, lo, o));
                _mm512_storeu_ps(r.add(2 * k + 16), _mm512_permutex2var_ps(e, hi, o));
            }
        }
        let mut whole = whole;
        if ow - whole >= 8 {
            // Eight values of each: both in one vector, interleaved by one permute.
            unsafe {
                let both = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(p0.add(whole)))),
                    _mm256_castps_pd(_mm256_loadu_ps(p1.add(whole))),
                ));
                _mm512_storeu_ps(r.add(2 * whole), _mm512_permutexvar_ps(interleave, both));
            }
            whole += 8;
        }
        if whole < ow {
            let (k, n) = (whole, ow - whole);
            unsafe {
                let e = _mm512_maskz_loadu_ps(low_lanes(n), p0.add(k));
                let o = _mm512_maskz_loadu_ps(low_lanes(n), p1.add(k));
                _mm512_mask_storeu_ps(
                    r.add(2 * k),
                    low_lanes(2 * n),
                    _mm512_permutex2var_ps(e, lo, o),
                );
                // Masked-off lanes past the row are never accessed.
                _mm512_mask_storeu_ps(
                    r.wrapping_add(2 * k + 16),
                    low_lanes((2 * n).saturating_sub(16)),
                    _mm512_permutex2var_ps(e, hi, o),
                );
            }
        }
    }
}

/// [`super::split_plane`] for stride 2 with AVX2: each row's values 16 at a time, split into
/// even and odd columns by a shuffle within 128-bit halves and a permute across them; the
/// last `w % 16` one by one.
///
/// # Safety
/// The CPU must have AVX2; `src` must hold whole rows `w` wide, an even number of them,
/// `w` even, and `phases` as many values as `src`.
#[target_feature(enable = "avx2")]
pub(in crate::conv::direct) unsafe fn split_plane_2_avx2(
    src: &[f32],
    w: usize,
    phases: &mut [std::mem::MaybeUninit<f32>],
) {
    let whole = w - w % 16;
    for (r, d0, d1) in split_rows_2(src, w, phases) {
        unsafe {
            for k in (0..whole).step_by(16) {
                let (lo, hi) = (_mm256_loadu_ps(r.add(k)), _mm256_loadu_ps(r.add(k + 8)));
                // Per half: lo's two evens (odds), then hi's; the permute puts halves in order.
                let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                let odd = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
                let order = |v| {
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
                };
                _mm256_storeu_ps(d0.add(k / 2), order(even));
                _mm256_storeu_ps(d1.add(k / 2), order(odd));
            }
            for k in (whole..w).step_by(2) {
                *d0.add(k / 2) = *r.add(k);
                *d1.add(k / 2) = *r.add(k + 1);
            }
        }
    }
}

/// [`super::merge_plane`] for stride 2 with all four phases present, with AVX2: each row's
/// two phase rows (at `at` in their phase planes) interleaved 8 + 8 values at a time by an
/// unpack within 128-bit halves and a permute across them; the last `w / 2 % 8` one by one.
///
/// # Safety
/// The CPU must have AVX2; `dst` must hold whole rows `w` wide, an even number of them,
/// `w` even, and each phase the `dst.len() / 4` values from `at`.
#[target_feature(enable = "avx2")]
pub(in crate::conv::direct) unsafe fn merge_plane_2_avx2(
    phases: [&[f32]; 4],
    at: usize,
    w: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
) {
    let ow = w / 2;
    let whole = ow - ow % 8;
    for (p0, p1, r) in merge_rows_2(phases, at, w, dst) {
        unsafe {
            for k in (0..whole).step_by(8) {
                let (e, o) = (_mm256_loadu_ps(p0.add(k)), _mm256_loadu_ps(p1.add(k)));
                // Values 0, 1, 4, 5 and 2, 3, 6, 7 of each, paired; the permutes reorder them.
                let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
                _mm256_storeu_ps(r.add(2 * k), _mm256_permute2f128_ps::<0x20>(lo, hi));
                _mm256_storeu_ps(r.add(2 * k + 8), _mm256_permute2f128_ps::<0x31>(lo, hi));
            }
            for k in whole..ow {
                *r.add(2 * k) = *p0.add(k);
                *r.add(2 * k + 1) = *p1.add(k);
            }
        }
    }
}
