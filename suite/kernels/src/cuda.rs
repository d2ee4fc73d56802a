//! What the cuDNN-backed ops share: one raw cuDNN handle per thread and device, device views of
//! candle's storage, shapes as C ints, and buffers for results cuDNN writes whole.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use candle_core::cuda_backend::cudarc::cudnn::{result, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Layout, Result, Shape, Storage, Tensor, bail};

/// A cuDNN handle bound to one device's stream (the one candle queues its work on).
pub(crate) struct Handle(pub(crate) sys::cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `handle` and is destroyed once, here.
        let _ = unsafe { result::destroy_handle(self.0) };
    }
}

thread_local! {
    // cuDNN handles are neither `Send` nor `Sync`: one per thread and device.
    static HANDLES: RefCell<HashMap<DeviceId, Rc<Handle>>> = RefCell::new(HashMap::new());
}

/// This thread's handle for `device`, created on first use.
pub(crate) fn handle(device: &CudaDevice) -> Result<Rc<Handle>> {
    HANDLES.with(|handles| {
        if let Some(handle) = handles.borrow().get(&device.id()) {
            return Ok(handle.clone());
        }
        let stream = device.cuda_stream();
        stream.context().bind_to_thread()?;
        let handle = Handle(result::create_handle()?);
        // SAFETY: both the handle and the stream are live; the stream outlives the handle, as the
        // device holds it for the whole process.
        unsafe { result::set_stream(handle.0, stream.cu_stream() as sys::cudaStream_t)? };
        let handle = Rc::new(handle);
        handles.borrow_mut().insert(device.id(), handle.clone());
        Ok(handle)
    })
}

/// A 4-D f32 NCHW tensor descriptor, freed when dropped.
pub(crate) struct TensorDesc(pub(crate) sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    pub(crate) fn new(op: &str, dims: [usize; 4]) -> Result<Self> {
        let ints = c_ints(op, dims)?;
        let desc = Self(result::create_tensor_descriptor()?);
        // SAFETY: the descriptor was just created and is freed only on drop.
        unsafe {
            result::set_tensor4d_descriptor(
                desc.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ints,
            )?
        };
        Ok(desc)
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once, here.
        let _ = unsafe { result::destroy_tensor_descriptor(self.0) };
    }
}

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
