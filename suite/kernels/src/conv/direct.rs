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

/// How a strided conv's input planes become phase planes: the stride and the input's width.
/// The split is done a few images at a time, into a buffer that stays in cache, rather than for
/// the whole batch up front: that would write and read back an input-sized copy through memory,
/// which on a CIFAR net's strided convs cost as much as the convolution itself.
#[derive(Debug, Clone, Copy)]
struct Split {
    stride: usize,
    width: usize,
}

impl Split {
    fn of(g: &Conv2dGeometry) -> Option<Self> {
        (g.stride > 1).then_some(Self {
            stride: g.stride,
            width: g.width,
        })
    }

    /// Writes one input plane's phase planes to `phases`, as long as the plane.
    fn write_plane(self, src: &[f32], phases: &mut [std::mem::MaybeUninit<f32>]) {
        match self.stride {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512 was detected; `src` is a plane of whole rows whose size is a
            // multiple of the stride both ways (`is_phase_split`), and `phases` as long.
            2 if simd() == Some(Simd::Avx512) => unsafe {
                kernels::split_plane_2_avx512(src, self.width, phases)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, with AVX2 detected.
            2 if simd() == Some(Simd::Avx2) => unsafe {
                kernels::split_plane_2_avx2(src, self.width, phases)
            },
            // Stride 2, the nets' only one, as a constant: its loops then vectorise.
            2 => split_plane(2, src, self.width, phases),
            s => split_plane(s, src, self.width, phases),
        }
    }

    /// The phase planes of every plane in `src`, written to `dst` and returned.
    fn planes<'a>(self, src: &[f32], plane: usize, dst: &'a mut LineBuffer) -> &'a [f32] {
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
fn split_plane(s: usize, src: &[f32], w: usize, phases: &mut [std::mem::MaybeUninit<f32>]) {
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
fn merge_plane(
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
fn merge_phase_planes(
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
                kernels::merge_plane_2_avx512(phases, at, w, dst)
            }
        }
        #[cfg(target_arch = "x86_64")]
        (2, [Some(p0), Some(p1), Some(p2), Some(p3)]) if simd == Simd::Avx2 => {
            // SAFETY: as above, with AVX2 detected.
            unsafe {
                let phases = [p0.as_ref(), p1.as_ref(), p2.as_ref(), p3.as_ref()];
                kernels::merge_plane_2_avx2(phases, at, w, dst)
            }
        }
        (2, _) => merge_plane(2, phases, at, w, dst),
        _ => merge_plane(s, phases, at, w, dst),
    }
}

/// The forward pass over a batch (NCHW input, OIHW weight), parallel over images; with `moments`,
/// also each output plane's moments, taken while the image is in cache.
pub(super) fn forward(
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
fn pack_weights(
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
fn run_forward(
    simd: Simd,
    layout: &Layout,
    taps: &Taps,
    (x, split): (&[f32], Option<Split>),
    weight: impl Fn(usize, usize, usize) -> f32,
    moments: bool,
) -> (Vec<f32>, Vec<PlaneMoments>) {
    let packed = pack_weights(layout, taps.offsets.len(), weight);
    let (image_len, output_len) = (layout.c_in * layout.in_plane, layout.c_out * layout.plane);
    let steps = kernels::forward_tiles(simd, layout, taps);
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
                        kernels::forward_images(simd, layout, taps, x, &packed, y, &mut ahead)
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

/// The input gradient of a phase-split conv: for each phase, a forward pass over `dy` with the
/// taps that read that phase, mirrored (input position `q` of a phase collects the outputs at `q`
/// minus each tap's shift), then the phases interleaved back into the input's planes. Each task
/// computes one image's phases into buffers of its own and interleaves them while they are in
/// cache: batch-sized phase outputs would go out to memory and back before the interleave.
pub(super) fn strided_input_grad(g: &Conv2dGeometry, w: &[f32], dy: &[f32]) -> Vec<f32> {
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
        .map(|(taps, _)| kernels::forward_tiles(simd, &layout, taps))
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
                                kernels::forward_images(
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

/// The weight gradient `dW[co, ci, tap] = sum over images and positions of dy * x`, parallel over
/// runs of images with one partial sum per run.
pub(super) fn weight_grad(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let simd = simd().expect("direct conv called without checking `applies`");
    let taps = Taps::forward(g, simd.lanes());
    // A strided conv splits its input again, run by run as it packs it, rather than keeping the
    // forward's split alive until the backward.
    let layout = layout_of(g);
    let t = taps.offsets.len();
    let nk = kernels::weight_tile_width(simd);
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
                kernels::weight_grad(
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

#[cfg(target_arch = "x86_64")]
mod kernels {
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
        assert!(
            w.is_multiple_of(2) && src.len().is_multiple_of(2 * w) && phases.len() == src.len()
        );
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

    /// [`super::split_plane`] for stride 2: each row's values 32 at a time, split into even and
    /// odd columns by two permutes and stored to the row's two phase planes.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `src` must hold whole rows `w` wide, an even number of them,
    /// `w` even, and `phases` as many values as `src`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_plane_2_avx512(
        src: &[f32],
        w: usize,
        phases: &mut [std::mem::MaybeUninit<f32>],
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let even_odd = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (r, d0, d1) in split_rows_2(src, w, phases) {
            unsafe {
                // Whole steps of 32 without masks: masked stores are slow on some CPUs (Zen 4).
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
                    let hi = _mm512_maskz_loadu_ps(
                        low_lanes(n.saturating_sub(16)),
                        r.wrapping_add(k + 16),
                    );
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
    pub(super) unsafe fn merge_plane_2_avx512(
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
    pub(super) unsafe fn split_plane_2_avx2(
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
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                            v,
                        )))
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
    pub(super) unsafe fn merge_plane_2_avx2(
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

    /// Vectors of positions per forward tile: `MR` rows of them stay in registers, with one vector
    /// of inputs per tile column and a broadcast weight (AVX2 has half the registers).
    const NV_AVX512: usize = 6;
    const NV_AVX2: usize = 2;

    /// Register tiles in one image's forward pass of `layout` and `taps`, the steps
    /// [`forward_images`] takes its prefetch through per image.
    pub(super) fn forward_tiles(simd: Simd, layout: &Layout, taps: &Taps) -> usize {
        let nv = match simd {
            Simd::Avx512 => NV_AVX512,
            Simd::Avx2 => NV_AVX2,
        };
        layout.c_out.div_ceil(MR) * taps.vectors.div_ceil(nv)
    }

    /// Input channels per weight-gradient tile. AVX2 has half the registers: a 4 x 3 tile fills
    /// all sixteen (twelve sums, then per vector of positions three input vectors, loaded first
    /// under the mask's register, and one gradient vector at a time) and takes 7 loads per 12
    /// FMAs where 4 x 2 took 6 per 8. It pads 16 channels to 18, where it measured level with
    /// 4 x 2; at 32 and 64 channels it measured 7-14% faster (an Intel Xeon capped at AVX2).
    pub(super) fn weight_tile_width(simd: Simd) -> usize {
        match simd {
            Simd::Avx512 => 4,
            Simd::Avx2 => 3,
        }
    }

    /// The mask table in the instruction set's own form.
    #[inline(always)]
    unsafe fn masks<S: Vector>(taps: &Taps) -> Vec<S::Mask> {
        taps.masks
            .iter()
            .map(|&bits| unsafe { S::mask(bits) })
            .collect()
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
    pub(super) unsafe fn forward_images(
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
    /// 16-byte alignment every AVX-512 load of them straddles two lines (measured on an Intel
    /// Xeon: the strided weight gradients from 42-45% to 53-58% of sgemm).
    pub(super) fn pack_blocks<'a>(
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
    pub(super) unsafe fn weight_grad(
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
}

#[cfg(not(target_arch = "x86_64"))]
mod kernels {
    use super::{Layout, Simd, Taps};

    pub(super) fn weight_tile_width(_: Simd) -> usize {
        unreachable!("no vector kernels on this architecture")
    }

    pub(super) fn forward_tiles(_: Simd, _: &Layout, _: &Taps) -> usize {
        unreachable!("no vector kernels on this architecture")
    }

    pub(super) unsafe fn forward_images(
        _: Simd,
        _: &Layout,
        _: &Taps,
        _: &[f32],
        _: &[f32],
        _: &mut [std::mem::MaybeUninit<f32>],
        _: &mut crate::cpu::Prefetch,
    ) {
        unreachable!("no vector kernels on this architecture")
    }

    pub(super) unsafe fn weight_grad(
        _: Simd,
        _: &Layout,
        _: &Taps,
        _: (&[f32], &[f32], usize),
        _: Option<super::Split>,
        _: &mut [f32],
    ) {
        unreachable!("no vector kernels on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(size: usize, kernel: usize, stride: usize, padding: usize) -> Conv2dGeometry {
        Conv2dGeometry::new(
            &[2, 16, size, size],
            &[32, 16, kernel, kernel],
            stride,
            padding,
        )
        .unwrap()
    }

    /// A run packed for the weight gradient: [channel block][image][channel in the block][plane],
    /// the last channel repeated into a partial block, starting on a cache line however the
    /// buffer was allocated (run sizes vary the allocation; each buffer is packed twice).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn packed_runs_start_on_a_cache_line_in_block_order() {
        let (channels, plane, block) = (5, 4, 2);
        for images in 1..=6 {
            let src: Vec<f32> = (0..images * channels * plane).map(|v| v as f32).collect();
            let mut buffer = crate::cpu::LineBuffer::default();
            for _ in 0..2 {
                let run =
                    kernels::pack_blocks(&src, (images, channels, plane), block, None, &mut buffer);
                assert_eq!(run.as_ptr() as usize % 64, 0, "{images} images");
                assert_eq!(run.len(), 3 * images * block * plane);
                let planes = run.chunks_exact(plane);
                let expected = (0..3).flat_map(|b| {
                    (0..images).flat_map(move |i| {
                        (0..block).map(move |m| (i, (b * block + m).min(channels - 1)))
                    })
                });
                for (packed, (i, c)) in planes.zip(expected) {
                    assert_eq!(packed, &src[(i * channels + c) * plane..][..plane]);
                }
            }
        }
    }

    /// Stride-2 splits and merges of planes `w` wide and `h` high, each vector path the CPU has
    /// against the generic loops: widths below one vector step, whole steps and remainders.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_splits_and_merges_match_the_generic_loops() {
        use std::arch::is_x86_feature_detected;
        use std::mem::MaybeUninit;
        let init = |v: Vec<MaybeUninit<f32>>| -> Vec<f32> {
            // SAFETY: every caller below has written each value.
            v.into_iter().map(|v| unsafe { v.assume_init() }).collect()
        };
        type SplitFn = unsafe fn(&[f32], usize, &mut [MaybeUninit<f32>]);
        type MergeFn = unsafe fn([&[f32]; 4], usize, usize, &mut [MaybeUninit<f32>]);
        let mut paths: Vec<(&str, SplitFn, MergeFn)> = Vec::new();
        if is_x86_feature_detected!("avx2") {
            paths.push((
                "avx2",
                kernels::split_plane_2_avx2,
                kernels::merge_plane_2_avx2,
            ));
        }
        if is_x86_feature_detected!("avx512f") {
            paths.push((
                "avx512",
                kernels::split_plane_2_avx512,
                kernels::merge_plane_2_avx512,
            ));
        }
        for (h, w) in [(2, 2), (4, 6), (2, 16), (6, 32), (2, 34), (4, 48), (2, 70)] {
            let src: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
            let mut expected = vec![MaybeUninit::uninit(); src.len()];
            split_plane(2, &src, w, &mut expected);
            let expected = init(expected);

            // Each phase sits at `at` inside a longer buffer, as one channel of a phase's output.
            let (quarter, at) = (h * w / 4, 5);
            let phases: Vec<Vec<f32>> = (0..4)
                .map(|p| {
                    let mut v = vec![-1.0; at + quarter + 3];
                    v[at..at + quarter].copy_from_slice(&expected[p * quarter..][..quarter]);
                    v
                })
                .collect();
            let present: Vec<Option<Vec<f32>>> = phases.iter().cloned().map(Some).collect();
            let mut generic = vec![MaybeUninit::uninit(); src.len()];
            merge_plane(2, &present, at, w, &mut generic);
            assert_eq!(init(generic), src, "generic merge of {h}x{w}");

            let refs = [&phases[0][..], &phases[1], &phases[2], &phases[3]];
            for &(isa, split, merge) in &paths {
                let mut out = vec![MaybeUninit::uninit(); src.len()];
                // SAFETY: the CPU has `isa`; the shapes are those the functions ask for.
                unsafe { split(&src, w, &mut out) };
                assert_eq!(init(out), expected, "{isa} split of {h}x{w}");
                let mut out = vec![MaybeUninit::uninit(); src.len()];
                unsafe { merge(refs, at, w, &mut out) };
                assert_eq!(init(out), src, "{isa} merge of {h}x{w}");
            }
        }
    }

    #[test]
    fn phase_split_takes_the_strided_3x3_convs_only() {
        assert!(is_phase_split(&geometry(32, 3, 2, 1)));
        assert!(is_phase_split(&geometry(9, 3, 3, 0)));
        // An odd input leaves a phase plane short of the output's size.
        assert!(!is_phase_split(&geometry(9, 3, 2, 1)));
        // The 7x7 stem and 1x1 projections were not measured on this path.
        assert!(!is_phase_split(&geometry(224, 7, 2, 3)));
        assert!(!is_phase_split(&geometry(32, 1, 2, 0)));
        assert!(!is_phase_split(&geometry(32, 3, 1, 1)));
    }

    #[test]
    fn strided_taps_read_the_phase_plane_of_their_row_and_column() {
        // Stride 2, padding 1: kernel row 0 reads input row 2 * oy - 1, the odd phase one row up.
        let g = geometry(8, 3, 2, 1);
        let shifts: Vec<(usize, isize, isize)> = (0..9)
            .map(|t| phase_shift(&g, t / 3, t % 3))
            .map(|s| (s.plane, s.dy, s.dx))
            .collect();
        assert_eq!(
            shifts,
            [
                (3, -1, -1),
                (2, -1, 0),
                (3, -1, 0),
                (1, 0, -1),
                (0, 0, 0),
                (1, 0, 0),
                (3, 0, -1),
                (2, 0, 0),
                (3, 0, 0),
            ]
        );
        // On the 4x4 output grid, 16 lanes: the top-left tap loses row 0 and column 0.
        let taps = Taps::new(
            4,
            4,
            &[Shift {
                plane: 3,
                dy: -1,
                dx: -1,
            }],
            16,
        );
        assert_eq!(taps.offsets, [3 * 16 - 4 - 1]);
        assert_eq!(taps.masks, [0b1110_1110_1110_0000]);
    }
}
