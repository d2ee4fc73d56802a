//! Phase planes: a strided conv's input split into `stride * stride` planes of the output's size,
//! and merged back (the strided input gradient).

use super::*;

/// How a strided conv's input planes become phase planes: the stride and the input's width.
/// The split is done a few images at a time, into a buffer that stays in cache, rather than for
/// the whole batch up front: that would write and read back an input-sized copy through memory,
/// which on a CIFAR net's strided convs cost as much as the convolution itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    stride: usize,
    width: usize,
}

impl Split {
    pub(super) fn of(g: &Conv2dGeometry) -> Option<Self> {
        (g.stride > 1).then_some(Self {
            stride: g.stride,
            width: g.width,
        })
    }

    /// Writes one input plane's phase planes to `phases`, as long as the plane.
    pub(super) fn write_plane(self, src: &[f32], phases: &mut [std::mem::MaybeUninit<f32>]) {
        match self.stride {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 was detected; `src` is a plane of whole rows whose size is a
            // multiple of the stride both ways (`is_phase_split`), and `phases` as long.
            2 if simd() == Some(Simd::Avx512) => unsafe {
                vector::split_plane_2_avx512(src, self.width, phases)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, with AVX2 detected.
            2 if simd() == Some(Simd::Avx2) => unsafe {
                vector::split_plane_2_avx2(src, self.width, phases)
            },
            // Stride 2, the nets' only one, as a constant: its loops then vectorise.
            2 => split_plane(2, src, self.width, phases),
            s => split_plane(s, src, self.width, phases),
        }
    }

    /// The phase planes of every plane in `src`, written to `dst` and returned.
    pub(super) fn planes<'a>(
        self,
        src: &[f32],
        plane: usize,
        dst: &'a mut LineBuffer,
    ) -> &'a [f32] {
        // `write_plane` writes each of a plane's values once, to its phase position, and `src`
        // is whole planes.
        dst.fill(src.len(), |phases| {
            for (p, out) in src.chunks_exact(plane).zip(phases.chunks_exact_mut(plane)) {
                self.write_plane(p, out);
            }
        })
    }
}

/// Splits one input plane (`w` wide, its size a multiple of `s` both ways) into its `s * s` phase
/// planes, phase `(a, b)` at `(a * s + b) * plane`.
#[inline(always)]
pub(super) fn split_plane(
    s: usize,
    src: &[f32],
    w: usize,
    phases: &mut [std::mem::MaybeUninit<f32>],
) {
    let (ow, plane) = (w / s, src.len() / (s * s));
    for (iy, row) in src.chunks_exact(w).enumerate() {
        let (oy, a) = (iy / s, iy % s);
        for b in 0..s {
            let dst = &mut phases[(a * s + b) * plane + oy * ow..][..ow];
            for (d, group) in dst.iter_mut().zip(row.chunks_exact(s)) {
                d.write(group[b]);
            }
        }
    }
}

/// The inverse of [`split_plane`]: interleaves one channel's phase planes (at `at` in each phase's
/// output; `None` for a phase no tap reads, whose values are zero) back into a plane `w` wide.
#[inline(always)]
pub(super) fn merge_plane(
    s: usize,
    phases: &[Option<impl AsRef<[f32]>>],
    at: usize,
    w: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
) {
    let ow = w / s;
    for (iy, row) in dst.chunks_exact_mut(w).enumerate() {
        let (oy, a) = (iy / s, iy % s);
        for b in 0..s {
            let groups = row.chunks_exact_mut(s);
            match &phases[a * s + b] {
                Some(phase) => {
                    for (group, &v) in groups.zip(&phase.as_ref()[at + oy * ow..][..ow]) {
                        group[b].write(v);
                    }
                }
                None => groups.for_each(|group| {
                    group[b].write(0.0);
                }),
            }
        }
    }
}

/// [`merge_plane`] on the fastest path there is: AVX-512 or AVX2 permutes for stride 2 with every
/// phase read by some tap (every 3x3 conv with padding 1), else the generic loops, stride 2 as a
/// constant so they vectorise.
pub(super) fn merge_phase_planes(
    simd: Simd,
    s: usize,
    phases: &[Option<impl AsRef<[f32]>>],
    at: usize,
    w: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
) {
    let _ = simd; // read only by the x86-64 arm
    match (s, phases) {
        #[cfg(target_arch = "x86_64")]
        (2, [Some(p0), Some(p1), Some(p2), Some(p3)]) if simd == Simd::Avx512 => {
            // SAFETY: AVX-512 was detected; `dst` is a plane of whole rows whose size is a
            // multiple of 2 both ways (`is_phase_split`), each phase a quarter plane from `at`.
            unsafe {
                let phases = [p0.as_ref(), p1.as_ref(), p2.as_ref(), p3.as_ref()];
                vector::merge_plane_2_avx512(phases, at, w, dst)
            }
        }
        #[cfg(target_arch = "x86_64")]
        (2, [Some(p0), Some(p1), Some(p2), Some(p3)]) if simd == Simd::Avx2 => {
            // SAFETY: as above, with AVX2 detected.
            unsafe {
                let phases = [p0.as_ref(), p1.as_ref(), p2.as_ref(), p3.as_ref()];
                vector::merge_plane_2_avx2(phases, at, w, dst)
            }
        }
        (2, _) => merge_plane(2, phases, at, w, dst),
        _ => merge_plane(s, phases, at, w, dst),
    }
}
