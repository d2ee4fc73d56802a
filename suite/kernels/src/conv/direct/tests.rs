use super::phases::{merge_plane, split_plane};
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
                vector::pack_blocks(&src, (images, channels, plane), block, None, &mut buffer);
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
            vector::split_plane_2_avx2,
            vector::merge_plane_2_avx2,
        ));
    }
    if is_x86_feature_detected!("avx512f") {
        paths.push((
            "avx512",
            vector::split_plane_2_avx512,
            vector::merge_plane_2_avx512,
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
