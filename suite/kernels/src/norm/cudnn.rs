//! Training-mode batch norm on CUDA through cuDNN: one call forward (the normalised output, the
//! batch mean and variance, and the saved statistics the backward reuses) and one call backward
//! (`dx`, `dgamma` and `dbeta` together).
//!
//! Stock candle builds batch norm from a dozen primitive ops, each a kernel launch and a buffer;
//! on a GPU, where a CIFAR net's small maps make every launch count, two calls per layer replace
//! them. cudarc's safe cuDNN wrapper has no batch norm, so this module holds its own handle and
//! descriptors, each freed when dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::result;
use candle_core::cuda_backend::cudarc::cudnn::sys::{
    self, cudnnBatchNormMode_t, cudnnDataType_t, cudnnHandle_t, cudnnTensorDescriptor_t,
    cudnnTensorFormat_t,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::op::BackpropOp;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail,
};

use super::channel_layout;

const MODE: cudnnBatchNormMode_t = cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL;

/// A cuDNN handle bound to one device's stream (the one candle queues its work on).
struct Handle(cudnnHandle_t);

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

fn handle(device: &CudaDevice) -> Result<Rc<Handle>> {
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

/// A 4-D f32 NCHW tensor descriptor.
struct Descriptor(cudnnTensorDescriptor_t);

impl Descriptor {
    fn new(dims: [usize; 4]) -> Result<Self> {
        let mut ints = [0; 4];
        for (i, &d) in ints.iter_mut().zip(&dims) {
            *i = match i32::try_from(d) {
                Ok(d) => d,
                Err(_) => bail!("cudnn batch norm: dimension {d} of {dims:?} does not fit a C int"),
            };
        }
        let descriptor = Self(result::create_tensor_descriptor()?);
        // SAFETY: the descriptor was just created and is freed only on drop.
        unsafe {
            result::set_tensor4d_descriptor(
                descriptor.0,
                cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
                ints,
            )?
        };
        Ok(descriptor)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once, here.
        let _ = unsafe { result::destroy_tensor_descriptor(self.0) };
    }
}

/// The descriptors of one batch norm: the activations as (N, C, H*W, 1), and the per-channel
/// parameters and statistics as (1, C, 1, 1).
fn descriptors(dims: &[usize]) -> Result<(Descriptor, Descriptor)> {
    let (n, c, hw) = channel_layout(dims)?;
    Ok((
        Descriptor::new([n, c, hw, 1])?,
        Descriptor::new([1, c, 1, 1])?,
    ))
}

fn cuda_storage<'a>(what: &str, storage: &'a Storage) -> Result<&'a CudaStorage> {
    match storage {
        Storage::Cuda(s) => Ok(s),
        _ => bail!("cudnn batch norm: {what} must be on a CUDA device"),
    }
}

fn contiguous(what: &str, layout: &Layout) -> Result<usize> {
    if !layout.is_contiguous() {
        bail!(
            "cudnn batch norm: {what} must be contiguous, got strides {:?}",
            layout.stride()
        );
    }
    Ok(layout.start_offset())
}

/// What the forward call leaves for the backward and for the caller.
struct Saved {
    mean: CudaSlice<f32>,
    inv_std: CudaSlice<f32>,
}

/// The batch mean and unbiased variance, for the caller's running averages.
struct Moments {
    mean: CudaSlice<f32>,
    var: CudaSlice<f32>,
}

struct CudnnBatchNormOp {
    eps: f64,
    saved: Arc<OnceLock<Saved>>,
    moments: Arc<Mutex<Option<Moments>>>,
}

impl CustomOp3 for CudnnBatchNormOp {
    fn name(&self) -> &'static str {
        "cudnn-batch-norm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("cudnn batch norm runs on CUDA tensors; on the CPU use kernels::batch_norm_train")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, _) = channel_layout(xl.dims())?;
        if gl.shape().elem_count() != c || bl.shape().elem_count() != c {
            bail!(
                "cudnn batch norm: {c} channels but {} scales and {} shifts",
                gl.shape().elem_count(),
                bl.shape().elem_count()
            );
        }
        let (x_at, g_at, b_at) = (
            contiguous("x", xl)?,
            contiguous("gamma", gl)?,
            contiguous("beta", bl)?,
        );
        let device = xs.device().clone();
        let stream = device.cuda_stream();
        let handle = handle(&device)?;
        let (x_desc, c_desc) = descriptors(xl.dims())?;
        let len = xl.shape().elem_count();
        // SAFETY: cuDNN writes every value of `y` and of the saved statistics.
        let mut y = unsafe { device.alloc::<f32>(len)? };
        let (mut save_mean, mut save_inv_std) =
            unsafe { (device.alloc::<f32>(c)?, device.alloc::<f32>(c)?) };
        // With an averaging factor of 1 the "running" outputs are this batch's mean and unbiased
        // variance; they are read as well as written, so they start at zero.
        let mut mean = device.alloc_zeros::<f32>(c)?;
        let mut var = device.alloc_zeros::<f32>(c)?;
        {
            let (x, _x) = xs.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (g, _g) = gs.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (b, _b) = bs.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (y, _y) = y.device_ptr_mut(&stream);
            let (m, _m) = mean.device_ptr_mut(&stream);
            let (v, _v) = var.device_ptr_mut(&stream);
            let (sm, _sm) = save_mean.device_ptr_mut(&stream);
            let (si, _si) = save_inv_std.device_ptr_mut(&stream);
            let (one, zero) = (1f32, 0f32);
            let at = |ptr: u64, offset: usize| (ptr + 4 * offset as u64) as *const c_void;
            // SAFETY: every pointer addresses a live f32 buffer of the size its descriptor gives
            // (the inputs from their layouts' offsets), all on the handle's stream.
            unsafe {
                sys::cudnnBatchNormalizationForwardTraining(
                    handle.0,
                    MODE,
                    &one as *const f32 as *const c_void,
                    &zero as *const f32 as *const c_void,
                    x_desc.0,
                    at(x, x_at),
                    x_desc.0,
                    y as *mut c_void,
                    c_desc.0,
                    at(g, g_at),
                    at(b, b_at),
                    1.0,
                    m as *mut c_void,
                    v as *mut c_void,
                    self.eps,
                    sm as *mut c_void,
                    si as *mut c_void,
                )
                .result()?
            };
        }
        let saved = Saved {
            mean: save_mean,
            inv_std: save_inv_std,
        };
        if self.saved.set(saved).is_err() {
            bail!("cudnn batch norm: an op instance runs forward once");
        }
        *self.moments.lock().expect("unpoisoned") = Some(Moments { mean, var });
        Ok((CudaStorage::wrap_cuda_slice(y, device), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(saved) = self.saved.get() else {
            bail!("cudnn batch norm: backward before forward");
        };
        let (_, c, _) = channel_layout(x.dims())?;
        let dy = dy.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = gamma.storage_and_layout();
        let (dys, dyl) = dy.storage_and_layout();
        let (xs, gs, dys) = (
            cuda_storage("x", &xs)?,
            cuda_storage("gamma", &gs)?,
            cuda_storage("dy", &dys)?,
        );
        let (x_at, g_at, dy_at) = (
            contiguous("x", xl)?,
            contiguous("gamma", gl)?,
            contiguous("dy", dyl)?,
        );
        let device = xs.device().clone();
        let stream = device.cuda_stream();
        let handle = handle(&device)?;
        let (x_desc, c_desc) = descriptors(x.dims())?;
        // SAFETY: cuDNN writes every value of the three results.
        let (mut dx, mut dgamma, mut dbeta) = unsafe {
            (
                device.alloc::<f32>(x.elem_count())?,
                device.alloc::<f32>(c)?,
                device.alloc::<f32>(c)?,
            )
        };
        {
            let (xp, _x) = xs.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (gp, _g) = gs.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (dyp, _dy) = dys.as_cuda_slice::<f32>()?.device_ptr(&stream);
            let (dxp, _dx) = dx.device_ptr_mut(&stream);
            let (dgp, _dg) = dgamma.device_ptr_mut(&stream);
            let (dbp, _db) = dbeta.device_ptr_mut(&stream);
            let (mp, _m) = saved.mean.device_ptr(&stream);
            let (ip, _i) = saved.inv_std.device_ptr(&stream);
            let (one, zero) = (1f32, 0f32);
            let (one, zero) = (
                &one as *const f32 as *const c_void,
                &zero as *const f32 as *const c_void,
            );
            let at = |ptr: u64, offset: usize| (ptr + 4 * offset as u64) as *const c_void;
            // SAFETY: as in the forward; the saved statistics come from this op's forward call.
            unsafe {
                sys::cudnnBatchNormalizationBackward(
                    handle.0,
                    MODE,
                    one,
                    zero,
                    one,
                    zero,
                    x_desc.0,
                    at(xp, x_at),
                    x_desc.0,
                    at(dyp, dy_at),
                    x_desc.0,
                    dxp as *mut c_void,
                    c_desc.0,
                    at(gp, g_at),
                    dgp as *mut c_void,
                    dbp as *mut c_void,
                    self.eps,
                    mp as *const c_void,
                    ip as *const c_void,
                )
                .result()?
            };
        }
        let tensor = |slice: CudaSlice<f32>, shape: &[usize]| {
            let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, device.clone()));
            Tensor::from_storage(storage, shape, BackpropOp::none(), false)
        };
        let dx = x.track_op().then(|| tensor(dx, x.dims()));
        let dgamma = gamma.track_op().then(|| tensor(dgamma, gamma.dims()));
        let dbeta = beta.track_op().then(|| tensor(dbeta, beta.dims()));
        Ok((dx, dgamma, dbeta))
    }
}

/// See [`crate::batch_norm_train_cuda`].
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let candle_core::Device::Cuda(device) = x.device() else {
        bail!(
            "cudnn batch norm: x must be on a CUDA device, got {:?}",
            x.device().location()
        );
    };
    let device = device.clone();
    let moments = Arc::new(Mutex::new(None));
    let op = CudnnBatchNormOp {
        eps,
        saved: Arc::new(OnceLock::new()),
        moments: moments.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(Moments { mean, var }) = moments.lock().expect("unpoisoned").take() else {
        bail!("cudnn batch norm: the forward left no statistics");
    };
    let c = mean.len();
    let tensor = |slice: CudaSlice<f32>| {
        let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, device.clone()));
        Tensor::from_storage(storage, c, BackpropOp::none(), false)
    };
    Ok((y, tensor(mean), tensor(var)))
}
