//! The weight gradient, summed over runs of images small enough for L1.

use super::*;

/// The weight gradient `dW[co, ci, tap] = sum over images and positions of dy * x`, parallel over
/// runs of images with one partial sum per run.
pub(in crate::conv) fn weight_grad(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let simd = simd().expect("direct conv called without checking `applies`");
    let taps = Taps::forward(g, simd.lanes());
    // A strided conv splits its input again, run by run as it packs it, rather than keeping the
    // forward's split alive until the backward.
    let layout = layout_of(g);
    let t = taps.offsets.len();
    let nk = vector::weight_tile_width(simd);
    let (co_round, ci_round) = (g.c_out.div_ceil(MR) * MR, g.c_in.div_ceil(nk) * nk);
    let (image_len, output_len) = (g.image_len(), g.output_len());
    // The tile walks a strided conv's taps phase by phase (`Taps::by_plane`), so what must stay in
    // L1 across a phase's taps is one phase plane of each input channel, the output's size.
    let tile_bytes = 4 * (MR + nk) * layout.plane;
    let chunk = (WEIGHT_GRAD_L1_BYTES / tile_bytes).max(1);
    let per_task = g.images_per_task(rayon::current_num_threads());
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per_task * image_len)
        .zip(dy.par_chunks(per_task * output_len))
        .map(|(xs, dys)| {
            // Sums as [co_round][tap][ci_round].
            let mut sums = vec![0.0f32; co_round * t * ci_round];
            // SAFETY: `simd` was detected on this CPU; `xs` and `dys` hold whole images of `c_in`
            // and `c_out` planes of whole vectors (see `applies_to_weight_grad`), `sums` is laid
            // out as above, and only masked-in lanes are loaded.
            unsafe {
                vector::weight_grad(
                    simd,
                    &layout,
                    &taps,
                    (xs, dys, chunk),
                    Split::of(g),
                    &mut sums,
                )
            };
            sums
        })
        .collect();
    let k = g.patch_len();
    let mut dw = vec![0.0f32; g.c_out * k];
    for sums in partials {
        for (co, filter) in dw.chunks_exact_mut(k).enumerate() {
            for (ci, channel) in filter.chunks_exact_mut(t).enumerate() {
                for (tap, d) in channel.iter_mut().enumerate() {
                    *d += sums[(co * t + tap) * ci_round + ci];
                }
            }
        }
    }
    dw
}
