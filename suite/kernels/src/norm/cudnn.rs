//! Training-mode batch norm on CUDA through cuDNN: one call forward (the normalised output, the
//! batch mean and variance, and the saved statistics the backward reuses) and one call backward
//! (`dx`, `dgamma` and `dbeta` together).
//!
//! Stock candle builds batch norm from a dozen primitive ops, each a kernel launch and a buffer;
//! on a GPU, where a CIFAR net's small maps make every launch count, two calls per layer replace
//! them. cudarc's safe cuDNN wrapper has no batch norm, so this module holds its own descriptors,
//! each freed when dropped, and uses the crate's raw handle ([`crate::cuda::handle`]).

use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::sys::{self, cudnnBatchNormMode_t};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail,
};

use super::channel_layout;
use crate::cuda::{TensorDesc, handle, output, tensor, view};

const OP: &str = "cudnn batch norm";

const MODE: cudnnBatchNormMode_t = cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL;

/// The descriptors of one batch norm: the activations as (N, C, H*W, 1), and the per-channel
/// parameters and statistics as (1, C, 1, 1).
fn descriptors(dims: &[usize]) -> Result<(TensorDesc, TensorDesc)> {
    let (n, c, hw) = channel_layout(dims)?;
    Ok((
        TensorDesc::new(OP, [n, c, hw, 1])?,
        TensorDesc::new(OP, [1, c, 1, 1])?,
    ))
}

fn cuda_storage<'a>(what: &str, storage: &'a Storage) -> Result<&'a CudaStorage> {
    match storage {
        Storage::Cuda(s) => Ok(s),
        _ => bail!("{OP}: {what} must be on a CUDA device"),
    }
}

/// cuDNN's scaling factors are passed by pointer.
fn scalar(value: &f32) -> *const c_void {
    value as *const f32 as *const c_void
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
    saved: OnceLock<Saved>,
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
                "{OP}: {c} channels but {} scales and {} shifts",
                gl.shape().elem_count(),
                bl.shape().elem_count()
            );
        }
        let (x, gamma, beta) = (
            view(OP, "x", xs, xl)?,
            view(OP, "gamma", gs, gl)?,
            view(OP, "beta", bs, bl)?,
        );
        let device = xs.device().clone();
        let stream = device.cuda_stream();
        let handle = handle(&device)?;
        let (x_desc, c_desc) = descriptors(xl.dims())?;
        let len = xl.shape().elem_count();
        let mut y = output(&device, len)?;
        let (mut save_mean, mut save_inv_std) = (output(&device, c)?, output(&device, c)?);
        // With an averaging factor of 1 the "running" outputs are this batch's mean and unbiased
        // variance; they are read as well as written, so they start at zero.
        let mut mean = device.alloc_zeros::<f32>(c)?;
        let mut var = device.alloc_zeros::<f32>(c)?;
        {
            let (x, _x) = x.device_ptr(&stream);
            let (g, _g) = gamma.device_ptr(&stream);
            let (b, _b) = beta.device_ptr(&stream);
            let (y, _y) = y.device_ptr_mut(&stream);
            let (m, _m) = mean.device_ptr_mut(&stream);
            let (v, _v) = var.device_ptr_mut(&stream);
            let (sm, _sm) = save_mean.device_ptr_mut(&stream);
            let (si, _si) = save_inv_std.device_ptr_mut(&stream);
            // SAFETY: every pointer addresses a live f32 buffer of the size its descriptor gives,
            // all on the handle's stream.
            unsafe {
                sys::cudnnBatchNormalizationForwardTraining(
                    handle.0,
                    MODE,
                    scalar(&1.0),
                    scalar(&0.0),
                    x_desc.0,
                    x as *const c_void,
                    x_desc.0,
                    y as *mut c_void,
                    c_desc.0,
                    g as *const c_void,
                    b as *const c_void,
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
            bail!("{OP}: an op instance runs forward once");
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
            bail!("{OP}: backward before forward");
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
        let (xv, gv, dyv) = (
            view(OP, "x", xs, xl)?,
            view(OP, "gamma", gs, gl)?,
            view(OP, "dy", dys, dyl)?,
        );
        let device = xs.device().clone();
        let stream = device.cuda_stream();
        let handle = handle(&device)?;
        let (x_desc, c_desc) = descriptors(x.dims())?;
        let (mut dx, mut dgamma, mut dbeta) = (
            output(&device, x.elem_count())?,
            output(&device, c)?,
            output(&device, c)?,
        );
        {
            let (xp, _x) = xv.device_ptr(&stream);
            let (gp, _g) = gv.device_ptr(&stream);
            let (dyp, _dy) = dyv.device_ptr(&stream);
            let (dxp, _dx) = dx.device_ptr_mut(&stream);
            let (dgp, _dg) = dgamma.device_ptr_mut(&stream);
            let (dbp, _db) = dbeta.device_ptr_mut(&stream);
            let (mp, _m) = saved.mean.device_ptr(&stream);
            let (ip, _i) = saved.inv_std.device_ptr(&stream);
            let (one, zero) = (scalar(&1.0), scalar(&0.0));
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
                    xp as *const c_void,
                    x_desc.0,
                    dyp as *const c_void,
                    x_desc.0,
                    dxp as *mut c_void,
                    c_desc.0,
                    gp as *const c_void,
                    dgp as *mut c_void,
                    dbp as *mut c_void,
                    self.eps,
                    mp as *const c_void,
                    ip as *const c_void,
                )
                .result()?
            };
        }
        let dx = x.track_op().then(|| tensor(dx, &device, x.dims()));
        let dgamma = gamma
            .track_op()
            .then(|| tensor(dgamma, &device, gamma.dims()));
        let dbeta = beta.track_op().then(|| tensor(dbeta, &device, beta.dims()));
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
            "{OP}: x must be on a CUDA device, got {:?}",
            x.device().location()
        );
    };
    let device = device.clone();
    let moments = Arc::new(Mutex::new(None));
    let op = CudnnBatchNormOp {
        eps,
        saved: OnceLock::new(),
        moments: moments.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(Moments { mean, var }) = moments.lock().expect("unpoisoned").take() else {
        bail!("{OP}: the forward left no statistics");
    };
    let c = mean.len();
    Ok((y, tensor(mean, &device, c), tensor(var, &device, c)))
}
