//! The weight-gradient tiles: `MR` output x `NK` input channels, one sum per lane, per tap.

use super::*;

/// Input channels per weight-gradient tile. AVX2 has half the registers: a 4 x 3 tile fills
/// all sixteen (twelve sums, then per vector of positions three input vectors, loaded first
/// under the mask's register, and one gradient vector at a time) and takes 7 loads per 12
/// FMAs where 4 x 2 took 6 per 8, so the load ports stop setting the pace. One width serves
/// every channel count: padding 16 channels to 18 costs about what the wider tile gains.
pub(in crate::conv::direct) fn weight_tile_width(simd: Simd) -> usize {
    match simd {
        Simd::Avx512 => 4,
        Simd::Avx2 => 3,
    }
}

/// One weight-gradient tile at one tap: `MR` gradient planes x `NK` input planes, summed over
/// every position of `images` images and added to `sums` (rows `row_stride` apart). `dy` and
/// `x` point at the tile's first planes (see [`Run`]): per image, its `MR` gradient planes
/// one after the other, the next image `dy_stride` on, and its `NK` input planes, read at the
/// tap's `offset`, the next image `x_stride` on.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weight_tile<S: Vector, const NK: usize>(
    taps: &Taps,
    (dy, dy_stride, plane): (*const f32, usize, usize),
    (x, x_stride, in_plane): (*const f32, usize, usize),
    images: usize,
    masks: &[S::Mask],
    (tap, offset): (usize, isize),
    sums: *mut f32,
    row_stride: usize,
) {
    let t = taps.offsets.len();
    let masks = masks.as_ptr();
    unsafe {
        let mut acc = [[S::zero(); NK]; MR];
        for i in 0..images {
            let (g, xi) = (
                dy.add(i * dy_stride),
                x.add(i * x_stride).wrapping_offset(offset),
            );
            let mut v = 0;
            while v < taps.vectors {
                let mask = *masks.add(v * t + tap);
                let q = v * S::LANES;
                let mut xv = [S::zero(); NK];
                for (j, xv) in xv.iter_mut().enumerate() {
                    // Masked-off lanes may point outside the plane: never dereferenced.
                    *xv = S::load_masked(xi.wrapping_add(j * in_plane + q), mask);
                }
                for (m, acc) in acc.iter_mut().enumerate() {
                    let gv = S::load(g.add(m * plane + q));
                    for (acc, &xv) in acc.iter_mut().zip(&xv) {
                        *acc = S::fma(gv, xv, *acc);
                    }
                }
                v += 1;
            }
        }
        S::add_row_sums::<NK>(&acc, sums, row_stride);
    }
}

/// Copies `images` images of `channels` planes into `packed` as [channel block][image][channel
/// in the block][plane], blocks of `block` channels; channels past the last repeat it (their
/// sums are dropped), each split into phase planes on the way when `split` says so. A
/// block's planes for a run of images are then one contiguous stretch:
/// read in place, a small map's planes sit a multiple of 4 KiB apart from image to image, all
/// in the same few L1 sets, and the tile's nine passes would miss L1 on every image.
///
/// The packed values, returned, start on a 64-byte cache line (a [`LineBuffer`]): at glibc's
/// 16-byte alignment every AVX-512 load of them straddles two lines.
pub(in crate::conv::direct) fn pack_blocks<'a>(
    src: &[f32],
    (images, channels, plane): (usize, usize, usize),
    block: usize,
    split: Option<Split>,
    packed: &'a mut LineBuffer,
) -> &'a [f32] {
    let blocks = channels.div_ceil(block);
    // The slots `(b, i, m)` tile the whole region and each is written whole.
    packed.fill(blocks * images * block * plane, |dst| {
        // Image by image, so the source is read front to back (block by block, each image's
        // block is one page of a CIFAR map, where the hardware's prefetchers start over).
        for i in 0..images {
            for b in 0..blocks {
                for m in 0..block {
                    let c = (b * block + m).min(channels - 1);
                    let src = &src[(i * channels + c) * plane..][..plane];
                    let dst = &mut dst[((b * images + i) * block + m) * plane..][..plane];
                    match split {
                        Some(split) => split.write_plane(src, dst),
                        None => dst.iter_mut().zip(src).for_each(|(d, &v)| {
                            d.write(v);
                        }),
                    }
                }
            }
        }
    })
}

#[inline(always)]
unsafe fn weight_grad_with<S: Vector, const NK: usize>(
    layout: &Layout,
    taps: &Taps,
    (x, dy, chunk): (&[f32], &[f32], usize),
    split: Option<Split>,
    sums: &mut [f32],
) {
    let masks = unsafe { masks::<S>(taps) };
    let (image_len, output_len) = (layout.c_in * layout.in_plane, layout.c_out * layout.plane);
    let (mut x_packed, mut dy_packed) = (LineBuffer::default(), LineBuffer::default());
    let (x_run_len, dy_run_len) = (chunk * image_len, chunk * output_len);
    // One step per tile of `weight_grad_run`.
    let steps = layout.c_out.div_ceil(MR) * layout.c_in.div_ceil(NK) * taps.offsets.len();
    for (run, (xs, dys)) in x.chunks(x_run_len).zip(dy.chunks(dy_run_len)).enumerate() {
        // The next run streams into L2 while this one's tiles are computed.
        let mut ahead = [
            Prefetch::next_chunk(x, x_run_len, run, steps),
            Prefetch::next_chunk(dy, dy_run_len, run, steps),
        ];
        let images = xs.len() / image_len;
        // A few images' planes map to few enough L1 sets to be read in place (one image's
        // block is consecutive channels); a longer run of small maps is packed first, as is
        // a channel count that leaves a partial block, and a strided conv's input, which is
        // split into phase planes as it is packed (its gradient is still read in place).
        let few = images <= 4;
        let x_run = if few && layout.c_in.is_multiple_of(NK) && split.is_none() {
            Run::in_place(xs, layout.in_plane, image_len, NK)
        } else {
            let packed = pack_blocks(
                xs,
                (images, layout.c_in, layout.in_plane),
                NK,
                split,
                &mut x_packed,
            );
            Run::packed(packed, layout.in_plane, images, NK)
        };
        let dy_run = if few && layout.c_out.is_multiple_of(MR) {
            Run::in_place(dys, layout.plane, output_len, MR)
        } else {
            let packed = pack_blocks(
                dys,
                (images, layout.c_out, layout.plane),
                MR,
                None,
                &mut dy_packed,
            );
            Run::packed(packed, layout.plane, images, MR)
        };
        unsafe {
            weight_grad_run::<S, NK>(
                layout,
                taps,
                &masks,
                (x_run, dy_run, images),
                sums,
                &mut ahead,
            )
        };
    }
}

/// Where a run of images' planes lie for the weight-gradient tiles: block `b` of channels
/// starts at `b * block_step`, its planes `plane` apart and each image `image_step` after the
/// one before.
#[derive(Clone, Copy)]
struct Run<'a> {
    data: &'a [f32],
    plane: usize,
    block_step: usize,
    image_step: usize,
}

impl<'a> Run<'a> {
    fn in_place(data: &'a [f32], plane: usize, image_len: usize, block: usize) -> Self {
        Self {
            data,
            plane,
            block_step: block * plane,
            image_step: image_len,
        }
    }

    fn packed(data: &'a [f32], plane: usize, images: usize, block: usize) -> Self {
        Self {
            data,
            plane,
            block_step: images * block * plane,
            image_step: block * plane,
        }
    }

    fn block(&self, b: usize) -> *const f32 {
        self.data[b * self.block_step..].as_ptr()
    }
}

/// Adds the weight gradient of one run of images (small enough for L1, see
/// `WEIGHT_GRAD_L1_BYTES`) to `sums`, stepping `ahead` once per tile.
#[inline(always)]
unsafe fn weight_grad_run<S: Vector, const NK: usize>(
    layout: &Layout,
    taps: &Taps,
    masks: &[S::Mask],
    (x, dy, images): (Run, Run, usize),
    sums: &mut [f32],
    ahead: &mut [Prefetch],
) {
    let t = taps.offsets.len();
    let ci_round = layout.c_in.div_ceil(NK) * NK;
    let s = sums.as_mut_ptr();
    // Taps innermost, grouped by the plane they read: the tile's gradient planes and the
    // input planes of one phase stay in L1 across that phase's passes (see
    // `WEIGHT_GRAD_L1_BYTES`).
    for co0 in (0..layout.c_out).step_by(MR) {
        let g = dy.block(co0 / MR);
        for ci0 in (0..layout.c_in).step_by(NK) {
            let xb = x.block(ci0 / NK);
            for &tap in &taps.by_plane {
                let offset = taps.offsets[tap];
                let at = (co0 * t + tap) * ci_round + ci0;
                unsafe {
                    weight_tile::<S, NK>(
                        taps,
                        (g, dy.image_step, dy.plane),
                        (xb, x.image_step, x.plane),
                        images,
                        masks,
                        (tap, offset),
                        s.add(at),
                        t * ci_round,
                    )
                };
                ahead.iter_mut().for_each(Prefetch::step);
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_avx512(
    layout: &Layout,
    taps: &Taps,
    data: (&[f32], &[f32], usize),
    split: Option<Split>,
    sums: &mut [f32],
) {
    unsafe { weight_grad_with::<Avx512, 4>(layout, taps, data, split, sums) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_avx2(
    layout: &Layout,
    taps: &Taps,
    data: (&[f32], &[f32], usize),
    split: Option<Split>,
    sums: &mut [f32],
) {
    unsafe { weight_grad_with::<Avx2, 3>(layout, taps, data, split, sums) }
}

/// Adds the weight gradient of the images in `x` and `dy` to `sums`
/// ([co rounded up to `MR`][tap][ci rounded up to `weight_tile_width`]), `chunk` images at a
/// time.
///
/// # Safety
/// `simd` must be supported by this CPU; `x` and `dy` must hold the same number of whole
/// images, with planes of whole vectors.
pub(in crate::conv::direct) unsafe fn weight_grad(
    simd: Simd,
    layout: &Layout,
    taps: &Taps,
    (x, dy, chunk): (&[f32], &[f32], usize),
    split: Option<Split>,
    sums: &mut [f32],
) {
    let (image_len, output_len) = (layout.c_in * layout.in_plane, layout.c_out * layout.plane);
    let nk = weight_tile_width(simd);
    assert!(layout.plane.is_multiple_of(simd.lanes()) && x.len().is_multiple_of(image_len));
    assert_eq!(x.len() / image_len * output_len, dy.len());
    assert_eq!(
        sums.len(),
        layout.c_out.div_ceil(MR) * MR * taps.offsets.len() * layout.c_in.div_ceil(nk) * nk
    );
    unsafe {
        match simd {
            Simd::Avx512 => weight_grad_avx512(layout, taps, (x, dy, chunk), split, sums),
            Simd::Avx2 => weight_grad_avx2(layout, taps, (x, dy, chunk), split, sums),
        }
    }
}
