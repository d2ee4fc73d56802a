//! The convolution's three passes on CUDA through cuDNN: forward, backward data (the input
//! gradient) and backward filter (the weight gradient).
//!
//! Stock candle 0.11 sends only the forward to cuDNN; its input gradient is a transposed
//! convolution run as one thread per output value. Here each pass is one cuDNN call on NCHW f32
//! tensors, with the algorithm cuDNN's heuristics rank first for the shape and a workspace of the
//! size that algorithm asks for. A [`Plan`] (descriptors and the three algorithms) is built once
//! per device and geometry and kept per thread, as cuDNN handles are neither `Send` nor `Sync`.
//!
//! cuDNN's default math mode is kept, as in PyTorch: on Ampere and later GPUs fp32 convolutions
//! may run on tensor cores in TF32 (`NVIDIA_TF32_OVERRIDE=0` turns that off for the process).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::safe::{
    ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, FilterDescriptor,
    TensorDescriptor,
};
use candle_core::cuda_backend::cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdFilterAlgo_t, cudnnConvolutionFwdAlgo_t,
    cudnnConvolutionMode_t, cudnnTensorFormat_t,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::{CudaStorage, Layout, Result, Shape, bail};

use super::Conv2dGeometry;

/// One geometry's descriptors and the algorithm picked for each pass.
struct Plan {
    conv: ConvDescriptor<f32>,
    x: TensorDescriptor<f32>,
    w: FilterDescriptor<f32>,
    y: TensorDescriptor<f32>,
    forward: cudnnConvolutionFwdAlgo_t,
    backward_data: cudnnConvolutionBwdDataAlgo_t,
    backward_filter: cudnnConvolutionBwdFilterAlgo_t,
}

thread_local! {
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    static PLANS: RefCell<HashMap<(DeviceId, Conv2dGeometry), Rc<Plan>>> =
        RefCell::new(HashMap::new());
}

fn handle(device: &CudaDevice) -> Result<Arc<Cudnn>> {
    HANDLES.with(|handles| {
        if let Some(handle) = handles.borrow().get(&device.id()) {
            return Ok(handle.clone());
        }
        let handle = Cudnn::new(device.cuda_stream())?;
        handles.borrow_mut().insert(device.id(), handle.clone());
        Ok(handle)
    })
}

/// cuDNN takes dimensions as C ints; a tensor past that range is an error, not a wrapped size.
fn dims<const N: usize>(values: [usize; N]) -> Result<[i32; N]> {
    let mut out = [0; N];
    for (o, &v) in out.iter_mut().zip(&values) {
        *o = match i32::try_from(v) {
            Ok(v) => v,
            Err(_) => bail!("cudnn conv2d: dimension {v} of {values:?} does not fit a C int"),
        };
    }
    Ok(out)
}

fn plan(device: &CudaDevice, g: &Conv2dGeometry) -> Result<Rc<Plan>> {
    let key = (device.id(), *g);
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return Ok(plan);
    }
    let cudnn = handle(device)?;
    let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let conv = cudnn.create_conv2d::<f32>(
        dims([g.padding, g.padding])?,
        dims([g.stride, g.stride])?,
        [1, 1],
        cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    let x = cudnn.create_4d_tensor::<f32>(nchw, dims(g.input_shape())?)?;
    let w = cudnn.create_4d_filter::<f32>(nchw, dims(g.weight_shape())?)?;
    let y = cudnn.create_4d_tensor::<f32>(nchw, dims(g.output_shape())?)?;
    let forward = ConvForward {
        conv: &conv,
        x: &x,
        w: &w,
        y: &y,
    }
    .pick_algorithm()?;
    let backward_data = ConvBackwardData {
        conv: &conv,
        dx: &x,
        w: &w,
        dy: &y,
    }
    .pick_algorithm()?;
    let backward_filter = ConvBackwardFilter {
        conv: &conv,
        x: &x,
        dw: &w,
        dy: &y,
    }
    .pick_algorithm()?;
    let plan = Rc::new(Plan {
        conv,
        x,
        w,
        y,
        forward,
        backward_data,
        backward_filter,
    });
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
    Ok(plan)
}

/// A contiguous f32 tensor's values, from its first element.
fn view<'a>(
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

fn check_dims(op: &str, what: &str, layout: &Layout, expected: &[usize]) -> Result<()> {
    if layout.dims() != expected {
        bail!(
            "{op}: {what} has shape {:?}, expected {expected:?}",
            layout.dims()
        );
    }
    Ok(())
}

/// Uninitialised device memory for a result every element of which cuDNN writes (`beta` = 0).
fn output(device: &CudaDevice, len: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: the buffer is only read after cuDNN has written all `len` values into it.
    unsafe { device.alloc::<f32>(len) }
}

fn workspace(device: &CudaDevice, bytes: usize) -> Result<Option<CudaSlice<u8>>> {
    // SAFETY: cuDNN's workspace is scratch memory it writes before reading.
    (bytes > 0)
        .then(|| unsafe { device.alloc::<u8>(bytes) })
        .transpose()
}

/// `y = conv(x, w)`.
pub(super) fn forward(
    g: &Conv2dGeometry,
    (xs, xl): (&CudaStorage, &Layout),
    (ws, wl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const OP: &str = "cudnn conv2d forward";
    let device = xs.device().clone();
    let plan = plan(&device, g)?;
    let (x, w) = (view(OP, "x", xs, xl)?, view(OP, "w", ws, wl)?);
    let mut y = output(&device, g.batch * g.output_len())?;
    let pass = ConvForward {
        conv: &plan.conv,
        x: &plan.x,
        w: &plan.w,
        y: &plan.y,
    };
    let mut scratch = workspace(&device, pass.get_workspace_size(plan.forward)?)?;
    // SAFETY: the descriptors were built from `g`, whose shapes the views and `y` were checked
    // against or allocated from.
    unsafe { pass.launch(plan.forward, scratch.as_mut(), (1.0, 0.0), &x, &w, &mut y)? };
    let shape = Shape::from(g.output_shape().to_vec());
    Ok((CudaStorage::wrap_cuda_slice(y, device), shape))
}

/// The input gradient `dx` from the weight `w` and the output gradient `dy`.
pub(super) fn input_grad(
    g: &Conv2dGeometry,
    (ws, wl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const OP: &str = "cudnn conv2d backward data";
    check_dims(OP, "w", wl, &g.weight_shape())?;
    check_dims(OP, "dy", dyl, &g.output_shape())?;
    let device = ws.device().clone();
    let plan = plan(&device, g)?;
    let (w, dy) = (view(OP, "w", ws, wl)?, view(OP, "dy", dys, dyl)?);
    let mut dx = output(&device, g.batch * g.image_len())?;
    let pass = ConvBackwardData {
        conv: &plan.conv,
        dx: &plan.x,
        w: &plan.w,
        dy: &plan.y,
    };
    let mut scratch = workspace(&device, pass.get_workspace_size(plan.backward_data)?)?;
    // SAFETY: as in `forward`.
    unsafe {
        pass.launch(
            plan.backward_data,
            scratch.as_mut(),
            (1.0, 0.0),
            &mut dx,
            &w,
            &dy,
        )?
    };
    let shape = Shape::from(g.input_shape().to_vec());
    Ok((CudaStorage::wrap_cuda_slice(dx, device), shape))
}

/// The weight gradient `dW` from the input `x` and the output gradient `dy`.
pub(super) fn weight_grad(
    g: &Conv2dGeometry,
    (xs, xl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const OP: &str = "cudnn conv2d backward filter";
    check_dims(OP, "x", xl, &g.input_shape())?;
    check_dims(OP, "dy", dyl, &g.output_shape())?;
    let device = xs.device().clone();
    let plan = plan(&device, g)?;
    let (x, dy) = (view(OP, "x", xs, xl)?, view(OP, "dy", dys, dyl)?);
    let mut dw = output(&device, g.c_out * g.patch_len())?;
    let pass = ConvBackwardFilter {
        conv: &plan.conv,
        x: &plan.x,
        dw: &plan.w,
        dy: &plan.y,
    };
    let mut scratch = workspace(&device, pass.get_workspace_size(plan.backward_filter)?)?;
    // SAFETY: as in `forward`.
    unsafe {
        pass.launch(
            plan.backward_filter,
            scratch.as_mut(),
            (1.0, 0.0),
            &x,
            &mut dw,
            &dy,
        )?
    };
    let shape = Shape::from(g.weight_shape().to_vec());
    Ok((CudaStorage::wrap_cuda_slice(dw, device), shape))
}
