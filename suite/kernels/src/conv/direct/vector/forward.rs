//! The forward tiles: `MR` output channels x `NV` vectors of positions in registers.

use super::*;

/// Vectors of positions per forward tile: `MR` rows of them stay in registers, with one vector
/// of inputs per tile column and a broadcast weight (AVX2 has half the registers).
const NV_AVX512: usize = 6;
const NV_AVX2: usize = 2;

/// Register tiles in one image's forward pass of `layout` and `taps`, the steps
/// [`forward_images`] takes its prefetch through per image.
pub(in crate::conv::direct) fn forward_tiles(simd: Simd, layout: &Layout, taps: &Taps) -> usize {
    let nv = match simd {
        Simd::Avx512 => NV_AVX512,
        Simd::Avx2 => NV_AVX2,
    };
    layout.c_out.div_ceil(MR) * taps.vectors.div_ceil(nv)
}

/// One forward tile: output channels `co0..co0 + rows` (of a block of `MR`) at the `NV` vectors
/// of positions from vector `v0`. `w` holds the block's weights as [c_in][tap][MR].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_tile<S: Vector, const NV: usize>(
    layout: &Layout,
    taps: &Taps,
    masks: &[S::Mask],
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    v0: usize,
    rows: usize,
) {
    let t = taps.offsets.len();
    let p0 = v0 * S::LANES;
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        // Channel-outer, tap-inner: a CIFAR plane is 4 KiB, so walking the channels at one
        // offset would map every load to the same L1 sets.
        let masks = masks.as_ptr().add(v0 * t);
        for ci in 0..layout.c_in {
            let plane = x.wrapping_add(ci * layout.in_plane + p0);
            for (tap, &offset) in taps.offsets.iter().enumerate() {
                // Masked-off lanes may point outside the image: the address is formed with
                // wrapping arithmetic and never dereferenced for them.
                let src = plane.wrapping_offset(offset);
                let mut xv = [S::zero(); NV];
                for (v, xv) in xv.iter_mut().enumerate() {
                    let mask = *masks.add(v * t + tap);
                    *xv = S::load_masked(src.wrapping_add(v * S::LANES), mask);
                }
                let w = w.add((ci * t + tap) * MR);
                for (m, acc) in acc.iter_mut().enumerate() {
                    let wv = S::splat(*w.add(m));
                    for (a, &xv) in acc.iter_mut().zip(&xv) {
                        *a = S::fma(wv, xv, *a);
                    }
                }
            }
        }
        let last = v0 + NV == taps.vectors;
        let tail = S::mask(taps.tail_bits);
        for (m, acc) in acc.iter().enumerate().take(rows) {
            let dst = y.add(m * layout.plane + p0);
            for (v, &a) in acc.iter().enumerate() {
                if last && v == NV - 1 {
                    S::store_masked(dst.add(v * S::LANES), a, tail);
                } else {
                    S::store(dst.add(v * S::LANES), a);
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn forward_images_with<S: Vector, const NV: usize>(
    layout: &Layout,
    taps: &Taps,
    x: &[f32],
    packed: &[f32],
    y: &mut [std::mem::MaybeUninit<f32>],
    ahead: &mut Prefetch,
) {
    let masks = unsafe { masks::<S>(taps) };
    let (image_len, output_len) = (layout.c_in * layout.in_plane, layout.c_out * layout.plane);
    for (x, y) in x
        .chunks_exact(image_len)
        .zip(y.chunks_exact_mut(output_len))
    {
        unsafe { forward_image::<S, NV>(layout, taps, &masks, x, packed, y, ahead) };
    }
}

/// One image's forward pass, `ahead` stepped once per tile.
#[inline(always)]
unsafe fn forward_image<S: Vector, const NV: usize>(
    layout: &Layout,
    taps: &Taps,
    masks: &[S::Mask],
    x: &[f32],
    packed: &[f32],
    y: &mut [std::mem::MaybeUninit<f32>],
    ahead: &mut Prefetch,
) {
    let block = taps.offsets.len() * layout.c_in * MR;
    let (x, y) = (x.as_ptr(), y.as_mut_ptr().cast::<f32>());
    let full = taps.vectors / NV;
    let tail = taps.vectors - full * NV;
    for (cb, w) in packed.chunks_exact(block).enumerate() {
        let co0 = cb * MR;
        let rows = MR.min(layout.c_out - co0);
        let (w, y) = (w.as_ptr(), unsafe { y.add(co0 * layout.plane) });
        unsafe {
            for vb in 0..full {
                forward_tile::<S, NV>(layout, taps, masks, x, w, y, vb * NV, rows);
                ahead.step();
            }
            let v0 = full * NV;
            match tail {
                0 => {}
                1 => forward_tile::<S, 1>(layout, taps, masks, x, w, y, v0, rows),
                2 => forward_tile::<S, 2>(layout, taps, masks, x, w, y, v0, rows),
                3 => forward_tile::<S, 3>(layout, taps, masks, x, w, y, v0, rows),
                4 => forward_tile::<S, 4>(layout, taps, masks, x, w, y, v0, rows),
                5 => forward_tile::<S, 5>(layout, taps, masks, x, w, y, v0, rows),
                _ => unreachable!("tail of {tail} vectors in a tile of {NV}"),
            }
        }
        if tail > 0 {
            ahead.step();
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn forward_images_avx512(
    layout: &Layout,
    taps: &Taps,
    x: &[f32],
    packed: &[f32],
    y: &mut [std::mem::MaybeUninit<f32>],
    ahead: &mut Prefetch,
) {
    unsafe { forward_images_with::<Avx512, NV_AVX512>(layout, taps, x, packed, y, ahead) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn forward_images_avx2(
    layout: &Layout,
    taps: &Taps,
    x: &[f32],
    packed: &[f32],
    y: &mut [std::mem::MaybeUninit<f32>],
    ahead: &mut Prefetch,
) {
    unsafe { forward_images_with::<Avx2, NV_AVX2>(layout, taps, x, packed, y, ahead) }
}

/// Writes the forward pass of the images in `x` (`c_in` planes each) into `y` (`c_out` planes
/// each), stepping `ahead` once per tile (see [`forward_tiles`]).
///
/// # Safety
/// `simd` must be supported by this CPU; `x` and `y` must hold whole images,
/// `packed` the weights of every block of `MR` output channels as [c_in][tap][MR].
pub(in crate::conv::direct) unsafe fn forward_images(
    simd: Simd,
    layout: &Layout,
    taps: &Taps,
    x: &[f32],
    packed: &[f32],
    y: &mut [std::mem::MaybeUninit<f32>],
    ahead: &mut Prefetch,
) {
    let images = x.len() / (layout.c_in * layout.in_plane);
    assert_eq!(x.len(), images * layout.c_in * layout.in_plane);
    assert_eq!(y.len(), images * layout.c_out * layout.plane);
    assert_eq!(
        packed.len(),
        layout.c_out.div_ceil(MR) * MR * layout.c_in * taps.offsets.len()
    );
    unsafe {
        match simd {
            Simd::Avx512 => forward_images_avx512(layout, taps, x, packed, y, ahead),
            Simd::Avx2 => forward_images_avx2(layout, taps, x, packed, y, ahead),
        }
    }
}
