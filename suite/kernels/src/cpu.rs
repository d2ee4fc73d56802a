//! Access to the f32 data behind candle tensors on the CPU.

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
