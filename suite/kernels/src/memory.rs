//! Allocator settings for op-by-op training.

use std::alloc::{GlobalAlloc, Layout, System};

/// Keeps freed activation buffers in the process for reuse instead of returning them to the OS.
///
/// Every op allocates its output afresh. glibc serves blocks above its mmap threshold (128 KiB at
/// first) with new mappings and unmaps them on free, so each step pays a page fault and a zeroed
/// page for every 4 KiB of every activation. Raising the thresholds lets freed blocks be
/// reused; the peak stays that of the live buffers. The threshold can be raised to 32 MiB at most,
/// and the ImageNet nets' activations are larger (51 MiB after ResNet-50's stem at batch 16), so
/// mappings are turned off altogether: each unmapping also flushed the block from every CPU's
/// TLB, and the stem max pool's forward and backward spent most of its time there
/// (`docs/performance.md` has the figures). Call once at start-up; a no-op on other platforms and
/// allocators.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; these values are within glibc's limits
    // (the mmap threshold may be at most 32 MiB on 64-bit targets).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// A global allocator that starts every block of 4 KiB or more on a 64-byte cache line, so that
/// the activations candle allocates, which the kernels read and write in place, are line-aligned.
///
/// glibc's malloc aligns blocks to 16 bytes, and at that alignment nearly every AVX-512 load along
/// a row straddles two cache lines. `posix_memalign` aligns them too, but it splits the slack off
/// each block as a free fragment of its own, and training's peak memory grew by half with it.
/// This allocator instead asks malloc for 72 bytes
/// more and keeps the block's start in the word before the aligned address, so malloc sees
/// ordinary requests. Smaller blocks, and those that need more than a cache line's alignment, go
/// to the system allocator unchanged.
///
/// Install it in a binary:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: kernels::LineAligned = kernels::LineAligned;
/// # fn main() {
/// let activations = vec![0f32; 128 * 16 * 32 * 32];
/// assert_eq!(activations.as_ptr().align_offset(64), 0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LineAligned;

const LINE: usize = 64;
const WORD: usize = std::mem::size_of::<usize>();
/// Blocks from this size up are line-aligned; for smaller ones 72 bytes more would be a large share.
const ALIGN_FROM: usize = 4096;
/// How far past malloc's address (word-aligned at least) a block's aligned start can be: a word
/// for the block's start, then up to a line less one byte to the next line.
const PAD: usize = LINE + WORD;

fn aligned_here(layout: Layout) -> bool {
    layout.size() >= ALIGN_FROM && layout.align() <= LINE
}

/// What the system allocator is asked for to hold a line-aligned block of `size` bytes.
fn padded(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(PAD)?, WORD).ok()
}

/// How far into a system block at `raw` its aligned start lies: the first line start with a word
/// before it, at most `PAD - 1` bytes in.
fn start_offset(raw: *mut u8) -> usize {
    (raw as usize + WORD).next_multiple_of(LINE) - raw as usize
}

/// The aligned start in `raw`, with `raw` recorded in the word before it.
///
/// # Safety
/// `raw` is null, or a word-aligned block of `PAD` bytes more than the block it is to hold.
unsafe fn place(raw: *mut u8) -> *mut u8 {
    if raw.is_null() {
        return raw;
    }
    let offset = start_offset(raw);
    // SAFETY: `offset <= PAD - 1`, inside the block, and the word before the aligned start is
    // word-aligned (a line start less a word) and past `raw`.
    unsafe {
        let start = raw.add(offset);
        start.cast::<usize>().sub(1).write(raw as usize);
        start
    }
}

/// The system allocator's block behind an aligned start that [`place`] returned.
///
/// # Safety
/// `start` came from [`place`] and its block is still allocated.
unsafe fn block_of(start: *mut u8) -> *mut u8 {
    // SAFETY: `place` wrote the block's address in the word before `start`.
    unsafe { start.cast::<usize>().sub(1).read() as *mut u8 }
}

/// A block of `layout` from `system` (the system allocator's `alloc` or `alloc_zeroed`): line-aligned
/// inside a padded block where [`aligned_here`], the system's own otherwise.
///
/// # Safety
/// `layout` has a non-zero size, and `system` returns null or a block of the layout it is given.
unsafe fn allocate(layout: Layout, system: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
    if !aligned_here(layout) {
        return system(layout);
    }
    match padded(layout.size()) {
        // SAFETY: the result is null or a word-aligned block of `size + PAD` bytes.
        Some(padded) => unsafe { place(system(padded)) },
        None => std::ptr::null_mut(),
    }
}

// SAFETY: every block handed out lies inside a block of the system allocator at least `PAD` bytes
// larger, which is freed (by address, the word before the block) exactly when the block is; blocks
// not aligned here are the system allocator's own. Which kind a block is follows from its layout,
// which the caller passes unchanged to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { allocate(layout, |layout| System.alloc(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // calloc keeps its fresh, already-zero pages untouched; the start word is written in the
        // padding, outside the zeroed block handed out.
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { allocate(layout, |layout| System.alloc_zeroed(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !aligned_here(layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.dealloc(ptr, layout) };
        }
        if let Some(padded) = padded(layout.size()) {
            // SAFETY: a block of this layout came from `place` over a block of `padded`.
            unsafe { System.dealloc(block_of(ptr), padded) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits in isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (aligned_here(layout), aligned_here(new_layout)) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                let (Some(old_padded), Some(new_padded)) =
                    (padded(layout.size()), padded(new_size))
                else {
                    return std::ptr::null_mut();
                };
                // SAFETY: `ptr` came from `place` over a block of `old_padded`. The system realloc
                // keeps the first `min(old, new) + PAD` bytes, which hold the values at their old
                // offset (below PAD) up to the smaller size; they are then moved (the ranges may
                // overlap) to the new block's aligned start, before `place` writes the word in
                // front of it.
                unsafe {
                    let old_block = block_of(ptr);
                    let old_offset = ptr as usize - old_block as usize;
                    let new_block = System.realloc(old_block, old_padded, new_padded.size());
                    if new_block.is_null() {
                        return new_block;
                    }
                    let kept = layout.size().min(new_size);
                    let new_offset = start_offset(new_block);
                    if new_offset != old_offset {
                        std::ptr::copy(new_block.add(old_offset), new_block.add(new_offset), kept);
                    }
                    place(new_block)
                }
            }
            _ => {
                // Crossing the size threshold: a fresh block of the other kind, as the default
                // `realloc` does.
                // SAFETY: `new_layout` is non-zero in size (the caller's guarantee), and both
                // blocks are valid for the smaller size.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(allocator: &LineAligned, size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size, 4).unwrap();
        // SAFETY: a non-zero layout; the block is written within its size.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert!(!ptr.is_null());
            for i in 0..size {
                ptr.add(i).write(i as u8);
            }
            ptr
        }
    }

    fn holds_pattern(ptr: *const u8, len: usize) -> bool {
        // SAFETY: the callers pass a live block of at least `len` bytes.
        (0..len).all(|i| unsafe { ptr.add(i).read() } == i as u8)
    }

    #[test]
    fn large_blocks_start_on_a_line_and_small_ones_are_the_system_allocators() {
        let allocator = LineAligned;
        // Many live blocks at once, so malloc's addresses vary in their offset from a line.
        let sizes: Vec<usize> = (0..64).map(|i| ALIGN_FROM - 8 + 40 * i).collect();
        let blocks: Vec<_> = sizes.iter().map(|&s| (filled(&allocator, s), s)).collect();
        for &(ptr, size) in &blocks {
            if size >= ALIGN_FROM {
                assert_eq!(ptr.align_offset(LINE), 0, "{size} bytes");
            }
            assert!(holds_pattern(ptr, size), "{size} bytes");
        }
        for (ptr, size) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { allocator.dealloc(ptr, Layout::from_size_align(size, 4).unwrap()) };
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_aligned() {
        let allocator = LineAligned;
        for size in [100, ALIGN_FROM, 1 << 20] {
            let layout = Layout::from_size_align(size, 4).unwrap();
            // SAFETY: a non-zero layout, read within its size, freed with it.
            unsafe {
                let ptr = allocator.alloc_zeroed(layout);
                assert!(!ptr.is_null());
                assert!(size < ALIGN_FROM || ptr.align_offset(LINE) == 0);
                assert!((0..size).all(|i| ptr.add(i).read() == 0), "{size} bytes");
                allocator.dealloc(ptr, layout);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_values_across_and_within_both_kinds() {
        let allocator = LineAligned;
        // Small to small, small to large, large to larger (in place or moved by malloc), large to
        // smaller, large to small, and back up again.
        let steps = [100, 300, 5000, 70_000, 1 << 21, 6000, 4096, 1000, 9000];
        let mut size = 40;
        let mut ptr = filled(&allocator, size);
        for new_size in steps {
            let layout = Layout::from_size_align(size, 4).unwrap();
            // SAFETY: `ptr` is live with `layout`; the new block is written within its size.
            unsafe {
                ptr = allocator.realloc(ptr, layout, new_size);
                assert!(!ptr.is_null());
                assert!(
                    holds_pattern(ptr, size.min(new_size)),
                    "{size} to {new_size} bytes"
                );
                if new_size >= ALIGN_FROM {
                    assert_eq!(ptr.align_offset(LINE), 0, "{size} to {new_size} bytes");
                }
                for i in 0..new_size {
                    ptr.add(i).write(i as u8);
                }
            }
            size = new_size;
        }
        // SAFETY: live with this layout.
        unsafe { allocator.dealloc(ptr, Layout::from_size_align(size, 4).unwrap()) };
    }

    #[test]
    fn blocks_that_need_more_than_a_line_keep_their_alignment() {
        let allocator = LineAligned;
        let layout = Layout::from_size_align(8192, 4096).unwrap();
        // SAFETY: a non-zero layout, freed with it.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert_eq!(ptr.align_offset(4096), 0);
            allocator.dealloc(ptr, layout);
        }
    }
}
