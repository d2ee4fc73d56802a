//! Access to the f32 data behind candle tensors on the CPU.

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, bail};

/// The contiguous f32 slice an op's input occupies, or an error naming the op and what it expects.
pub(crate) fn slice<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected f32 data, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{op}: expected a contiguous input, got strides {:?}",
            layout.stride()
        ),
    }
}

/// Runs `f` on the contiguous f32 data of `tensor` (copied into a contiguous layout first if needed).
pub(crate) fn with_slice<R>(op: &str, tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(slice(op, cpu, layout)?)),
        _ => bail!("{op}: the fast kernels run on the CPU only"),
    }
}

/// A tensor of `shape` on the CPU holding `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
}

/// A vector of `len` values produced by `fill`, which must write every element.
///
/// The kernels' outputs are overwritten completely, so zero-filling them first (as `vec![0.0; n]`
/// does) would be an extra pass over memory per op.
pub(crate) fn build(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: every caller's `fill` writes each element of the slice it is given (each is a loop
    // over the whole output, or a product whose destination is the whole output).
    unsafe { v.set_len(len) };
    v
}

/// Views initialised values as possibly uninitialised ones, for destinations that are only written.
pub(crate) fn as_uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the callers only ever write initialised
    // values through the result.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Views values as initialised.
///
/// # Safety
/// Every element of `values` must have been written.
pub(crate) unsafe fn assume_init(values: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller vouches that each is initialised.
    unsafe { &*(values as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// Defines a function whose body is compiled twice, for AVX2 and for the baseline, picking one at
/// run time. The bodies are plain loops that the compiler vectorises (batch norm's over
/// `LANES`-wide arrays, the max pool's over output rows), with the same source arithmetic in either
/// build (Rust never fuses a multiply and an add on its own), so both give the same bits; the
/// baseline's 4-lane vectors only run slower.
macro_rules! with_avx2 {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use with_avx2;

/// The f32 values in one 64-byte cache line.
const LINE: usize = 64 / std::mem::size_of::<f32>();

/// A scratch buffer, reused from call to call, whose values start on a 64-byte cache line however
/// the allocator placed it. glibc aligns large blocks to 16 bytes, and at that alignment nearly
/// every AVX-512 load of a vector straddles two cache lines (and every other AVX2 load); the
/// kernels' packed runs and phase planes are read many times over, so the split loads add up.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    values: Vec<f32>,
    start: usize,
}

impl LineBuffer {
    /// Sets the buffer to `len` values produced by `fill`, which must write every element, and
    /// returns them.
    pub(crate) fn fill(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<f32>]),
    ) -> &[f32] {
        self.values.clear();
        self.values.reserve(len + LINE);
        self.start = self.values.as_ptr().align_offset(64).min(LINE);
        let spare = self.values.spare_capacity_mut();
        let (head, rest) = spare.split_at_mut(self.start);
        head.iter_mut().for_each(|v| {
            v.write(0.0);
        });
        fill(&mut rest[..len]);
        // SAFETY: the `start` values before the region were written above, and every caller's
        // `fill` writes each of the `len` after them.
        unsafe { self.values.set_len(self.start + len) };
        &self.values[self.start..]
    }

    /// Sets the buffer to `len` zeros and returns them, for a destination rewritten in place.
    pub(crate) fn zeroed(&mut self, len: usize) -> &mut [f32] {
        self.fill(len, |v| {
            v.iter_mut().for_each(|v| {
                v.write(0.0);
            })
        });
        &mut self.values[self.start..]
    }

    /// The values last set, from the first cache line's start.
    pub(crate) fn values(&self) -> &[f32] {
        &self.values[self.start..]
    }

    /// The values last set, writable.
    pub(crate) fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values[self.start..]
    }
}

impl AsRef<[f32]> for LineBuffer {
    fn as_ref(&self) -> &[f32] {
        self.values()
    }
}

/// Asks the CPU to bring `values` into its L2 cache ahead of use, one request per cache line.
/// A hint: it changes no value, and does nothing on other architectures.
fn prefetch_l2(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        for line in values.chunks(LINE) {
            // SAFETY: a prefetch of an address inside `values` cannot fault or change memory.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// A stretch of values prefetched into L2 a few cache lines per [`step`](Self::step), spread over
/// the work that comes before their use: the data a loop over chunks reads next, streamed in while
/// it computes on the current chunk. Issued all at once instead, the requests outnumber the
/// core's outstanding misses and wait in line in front of the work they should hide behind.
pub(crate) struct Prefetch<'a> {
    rest: &'a [f32],
    per_step: usize,
}

impl<'a> Prefetch<'a> {
    /// The chunk after chunk `index` of `data` cut into chunks of `len` (the last may be short;
    /// past the end, nothing), spread over `steps` steps.
    pub(crate) fn next_chunk(data: &'a [f32], len: usize, index: usize, steps: usize) -> Self {
        let start = ((index + 1) * len).min(data.len());
        let rest = &data[start..(start + len).min(data.len())];
        Self {
            rest,
            per_step: rest.len().div_ceil(LINE).div_ceil(steps.max(1)) * LINE,
        }
    }

    /// Prefetches the next step's share.
    #[inline]
    pub(crate) fn step(&mut self) {
        let (now, rest) = self.rest.split_at(self.per_step.min(self.rest.len()));
        prefetch_l2(now);
        self.rest = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts_on_a_line(values: &[f32]) -> bool {
        values.as_ptr().align_offset(64) == 0
    }

    #[test]
    fn line_buffer_starts_on_a_cache_line_and_holds_what_was_filled() {
        let mut buffer = LineBuffer::default();
        // Growing, shrinking and regrowing: each call may reuse or move the allocation.
        for len in [1, 17, 1000, 3, 4099, 0, 64] {
            let filled = buffer.fill(len, |v| {
                for (i, v) in v.iter_mut().enumerate() {
                    v.write(i as f32 + 0.5);
                }
            });
            assert_eq!(filled.len(), len);
            assert!(len == 0 || starts_on_a_line(filled), "len {len}");
            let expected: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            assert_eq!(buffer.values(), expected.as_slice(), "len {len}");
            assert_eq!(buffer.as_ref(), expected.as_slice(), "len {len}");
        }
    }

    #[test]
    fn line_buffer_zeroed_clears_earlier_values() {
        let mut buffer = LineBuffer::default();
        buffer.fill(300, |v| {
            v.iter_mut().for_each(|v| {
                v.write(7.0);
            })
        });
        let zeros = buffer.zeroed(200);
        assert!(starts_on_a_line(zeros));
        assert!(zeros.iter().all(|&v| v == 0.0));
        zeros[199] = 2.0;
        assert_eq!(buffer.values().len(), 200);
        assert_eq!(buffer.values_mut()[199], 2.0);
    }
}
