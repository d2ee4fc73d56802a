//! The input gradient of a strided (phase-split) conv.

use super::forward::pack_weights;
use super::*;

/// The input gradient of a phase-split conv: for each phase, a forward pass over `dy` with the
/// taps that read that phase, mirrored (input position `q` of a phase collects the outputs at `q`
/// minus each tap's shift), then the phases interleaved back into the input's planes. Each task
/// computes one image's phases into buffers of its own and interleaves them while they are in
/// cache: batch-sized phase outputs would go out to memory and back before the interleave.
pub(in crate::conv) fn strided_input_grad(g: &Conv2dGeometry, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let simd = simd().expect("direct conv called without checking `applies`");
    let (s, t, plane) = (g.stride, g.kernel_h * g.kernel_w, g.positions());
    let layout = Layout {
        c_in: g.c_out,
        c_out: g.c_in,
        plane,
        in_plane: plane,
    };
    // Per phase, the mirrored taps that read it and their weights; `None` where no tap reads it.
    let passes: Vec<Option<(Taps, Vec<f32>)>> = (0..s * s)
        .map(|phase| {
            let taps: Vec<(usize, Shift)> = (0..t)
                .map(|tap| (tap, phase_shift(g, tap / g.kernel_w, tap % g.kernel_w)))
                .filter(|(_, shift)| shift.plane == phase)
                .collect();
            if taps.is_empty() {
                return None;
            }
            let mirrored: Vec<Shift> = taps
                .iter()
                .map(|&(_, shift)| Shift {
                    plane: 0,
                    dy: -shift.dy,
                    dx: -shift.dx,
                })
                .collect();
            let phase_taps = Taps::new(g.out_h, g.out_w, &mirrored, simd.lanes());
            let weight = |ci, co, j: usize| w[(co * g.c_in + ci) * t + taps[j].0];
            Some((phase_taps, pack_weights(&layout, taps.len(), weight)))
        })
        .collect();
    let (width, hw) = (g.width, g.height * g.width);
    let (dy_len, dx_len) = (g.output_len(), g.image_len());
    let per_task = g.images_per_task(rayon::current_num_threads());
    let steps: usize = passes
        .iter()
        .flatten()
        .map(|(taps, _)| vector::forward_tiles(simd, &layout, taps))
        .sum();
    cpu::build(g.batch * dx_len, |dx| {
        dx.par_chunks_mut(per_task * dx_len)
            .zip(dy.par_chunks(per_task * dy_len))
            .for_each(|(dxs, dys)| {
                let mut phases: Vec<Option<LineBuffer>> = passes
                    .iter()
                    .map(|pass| {
                        pass.as_ref().map(|_| {
                            let mut phase = LineBuffer::default();
                            phase.zeroed(g.c_in * plane);
                            phase
                        })
                    })
                    .collect();
                let images = dxs.chunks_exact_mut(dx_len).zip(dys.chunks_exact(dy_len));
                for (i, (dx, dy)) in images.enumerate() {
                    // The next image streams into L2 while this one's phases are computed.
                    let mut ahead = cpu::Prefetch::next_chunk(dys, dy_len, i, steps);
                    for (pass, out) in passes.iter().zip(&mut phases) {
                        if let (Some((taps, packed)), Some(out)) = (pass, out) {
                            // SAFETY: `simd` was detected on this CPU; `dy` holds one image of
                            // `c_out` planes and `out` one of `c_in`, `packed` is laid out by
                            // `pack_weights`, and only masked-in lanes are loaded.
                            unsafe {
                                vector::forward_images(
                                    simd,
                                    &layout,
                                    taps,
                                    dy,
                                    packed,
                                    cpu::as_uninit(out.values_mut()),
                                    &mut ahead,
                                )
                            };
                        }
                    }
                    for (c, dst) in dx.chunks_exact_mut(hw).enumerate() {
                        merge_phase_planes(simd, s, &phases, c * plane, width, dst);
                    }
                }
            })
    })
}
