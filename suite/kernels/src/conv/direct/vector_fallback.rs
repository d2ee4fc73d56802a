//! Where the CPU has no vector kernels: never called, since `simd()` finds no instruction set.

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
