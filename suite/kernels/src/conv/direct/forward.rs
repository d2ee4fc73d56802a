//! The forward pass, also a same conv's input gradient (the forward over `dy` with flipped
//! weights) and each phase of a strided one.

use super::*;

/// The forward pass over a batch (NCHW input, OIHW weight), parallel over images; with `moments`,
/// also each output plane's moments, taken while the image is in cache.
pub(in crate::conv) fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    moments: bool,
) -> (Vec<f32>, Vec<PlaneMoments>) {
    let simd = simd().expect("direct conv called without checking `applies`");
    let taps = Taps::forward(g, simd.lanes());
    let t = taps.offsets.len();
    let weight = |co, ci, tap| w[(co * g.c_in + ci) * t + tap];
    run_forward(
        simd,
        &layout_of(g),
        &taps,
        (x, Split::of(g)),
        weight,
        moments,
    )
}

/// The weights of `t` taps as [block of `MR` output channels][input channel][tap][MR], the order
/// the forward kernels walk them, from `weight(co, ci, tap)`; rows past `c_out` are zero.
pub(super) fn pack_weights(
    layout: &Layout,
    t: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let (c_in, c_out) = (layout.c_in, layout.c_out);
    let mut packed = vec![0.0f32; c_out.div_ceil(MR) * t * c_in * MR];
    for co in 0..c_out {
        let (block, m) = (co / MR, co % MR);
        for ci in 0..c_in {
            for tap in 0..t {
                packed[((block * c_in + ci) * t + tap) * MR + m] = weight(co, ci, tap);
            }
        }
    }
    packed
}

/// One forward pass of the kernels over every image in `x` (each split into phase planes first
/// when `split` says so), with `weight(co, ci, tap)` the weight of output channel `co`, input
/// channel `ci` and tap `tap`; with `moments`, also the moments of every output plane (in NCHW
/// order).
pub(super) fn run_forward(
    simd: Simd,
    layout: &Layout,
    taps: &Taps,
    (x, split): (&[f32], Option<Split>),
    weight: impl Fn(usize, usize, usize) -> f32,
    moments: bool,
) -> (Vec<f32>, Vec<PlaneMoments>) {
    let packed = pack_weights(layout, taps.offsets.len(), weight);
    let (image_len, output_len) = (layout.c_in * layout.in_plane, layout.c_out * layout.plane);
    let steps = vector::forward_tiles(simd, layout, taps);
    let batch = x.len() / image_len;
    let per_task = images_per_task(batch, rayon::current_num_threads());
    let mut partial: Vec<Vec<PlaneMoments>> = Vec::new();
    let y = cpu::build(batch * output_len, |y| {
        partial = y
            .par_chunks_mut(per_task * output_len)
            .zip(x.par_chunks(per_task * image_len))
            .map(|(ys, xs)| {
                let mut found =
                    Vec::with_capacity(if moments { ys.len() / layout.plane } else { 0 });
                let mut phases = LineBuffer::default();
                let images = ys
                    .chunks_exact_mut(output_len)
                    .zip(xs.chunks_exact(image_len));
                for (i, (y, x)) in images.enumerate() {
                    // The next image streams into L2 while this one is computed, instead of
                    // being read from memory when its own pass (or split) starts.
                    let mut ahead = cpu::Prefetch::next_chunk(xs, image_len, i, steps);
                    let x = match split {
                        Some(split) => split.planes(x, layout.in_plane, &mut phases),
                        None => x,
                    };
                    // SAFETY: `simd` was detected on this CPU; `x` and `y` hold one image of
                    // `c_in` and `c_out` planes, `packed` is laid out as above, and the kernels
                    // only load lanes whose mask bit marks a position inside the image.
                    unsafe {
                        vector::forward_images(simd, layout, taps, x, &packed, y, &mut ahead)
                    };
                    if moments {
                        // SAFETY: the kernels wrote every value of the image.
                        let y = unsafe { cpu::assume_init(y) };
                        found.extend(y.chunks_exact(layout.plane).map(norm::plane_moments));
                    }
                }
                found
            })
            .collect();
    });
    (y, partial.concat())
}
