//! What the cuDNN-backed ops share: device views of candle's storage, shapes as C ints, and
//! buffers for results cuDNN writes whole.

use candle_core::cuda_backend::CudaDevice;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Layout, Result, Shape, Storage, Tensor, bail};

/// A contiguous f32 tensor's values, from its first element.
pub(crate) fn view<'a>(
    op: &str,
    what: &str,
    storage: &'a CudaStorage,
    layout: &Layout,
) -> Result<CudaView<'a, f32>> {
    if !layout.is_contiguous() {
        bail!(
            "{op}: {what} must be contiguous, got strides {:?}",
            layout.stride()
        );
    }
    let slice = storage.as_cuda_slice::<f32>()?;
    let start = layout.start_offset();
    Ok(slice.slice(start..start + layout.shape().elem_count()))
}

/// cuDNN takes dimensions as C ints; a tensor past that range is an error, not a wrapped size.
pub(crate) fn c_ints<const N: usize>(op: &str, values: [usize; N]) -> Result<[i32; N]> {
    let mut out = [0; N];
    for (o, &v) in out.iter_mut().zip(&values) {
        *o = match i32::try_from(v) {
            Ok(v) => v,
            Err(_) => bail!("{op}: dimension {v} of {values:?} does not fit a C int"),
        };
    }
    Ok(out)
}

/// Uninitialised device memory for a result every element of which cuDNN writes (`beta` = 0).
pub(crate) fn output(device: &CudaDevice, len: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: callers hand the buffer to a cuDNN call that writes all `len` values before
    // anything reads it.
    unsafe { device.alloc::<f32>(len) }
}

/// A tensor outside the autograd graph over a device buffer.
pub(crate) fn tensor(
    slice: CudaSlice<f32>,
    device: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, device.clone()));
    Tensor::from_storage(storage, shape, BackpropOp::none(), false)
}
