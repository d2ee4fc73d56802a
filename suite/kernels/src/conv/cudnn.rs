//! The convolution's three passes on CUDA through cuDNN: forward, backward data (the input
//! gradient) and backward filter (the weight gradient).
//!
//! Stock candle 0.11 sends only the forward to cuDNN; its input gradient is a transposed
//! convolution run as one thread per output value. Here each pass is one cuDNN call on NCHW f32
//! tensors, with the algorithm cuDNN's heuristics rank first for the shape and a workspace of the
//! size that algorithm asks for. A [`Plan`] (descriptors, algorithms, workspace sizes) is built once
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
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::{CudaStorage, Layout, Result, Shape};

use super::Conv2dGeometry;
use crate::cuda::{c_ints, output, view};

/// One pass's algorithm and the workspace bytes it asks for.
#[derive(Clone, Copy)]
struct Pass<A> {
    algorithm: A,
    workspace: usize,
}

/// One geometry's cuDNN descriptors.
struct Descriptors {
    conv: ConvDescriptor<f32>,
    x: TensorDescriptor<f32>,
    w: FilterDescriptor<f32>,
    y: TensorDescriptor<f32>,
}

impl Descriptors {
    fn forward(&self) -> ConvForward<'_, f32, f32, f32> {
        ConvForward {
            conv: &self.conv,
            x: &self.x,
            w: &self.w,
            y: &self.y,
        }
    }

    fn backward_data(&self) -> ConvBackwardData<'_, f32, f32, f32> {
        ConvBackwardData {
            conv: &self.conv,
            dx: &self.x,
            w: &self.w,
            dy: &self.y,
        }
    }

    fn backward_filter(&self) -> ConvBackwardFilter<'_, f32, f32, f32> {
        ConvBackwardFilter {
            conv: &self.conv,
            x: &self.x,
            dw: &self.w,
            dy: &self.y,
        }
    }
}

/// One geometry's descriptors and each pass's algorithm.
struct Plan {
    descriptors: Descriptors,
    forward: Pass<cudnnConvolutionFwdAlgo_t>,
    backward_data: Pass<cudnnConvolutionBwdDataAlgo_t>,
    backward_filter: Pass<cudnnConvolutionBwdFilterAlgo_t>,
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

fn plan(device: &CudaDevice, g: &Conv2dGeometry) -> Result<Rc<Plan>> {
    const OP: &str = "cudnn conv2d";
    let key = (device.id(), *g);
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return Ok(plan);
    }
    let cudnn = handle(device)?;
    let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let conv = cudnn.create_conv2d::<f32>(
        c_ints(OP, [g.padding, g.padding])?,
        c_ints(OP, [g.stride, g.stride])?,
        [1, 1],
        cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    let descriptors = Descriptors {
        conv,
        x: cudnn.create_4d_tensor::<f32>(nchw, c_ints(OP, g.input_shape())?)?,
        w: cudnn.create_4d_filter::<f32>(nchw, c_ints(OP, g.weight_shape())?)?,
        y: cudnn.create_4d_tensor::<f32>(nchw, c_ints(OP, g.output_shape())?)?,
    };
    // The three pass types share no trait: each picks its algorithm and sizes its workspace alike.
    let forward = {
        let pass = descriptors.forward();
        let algorithm = pass.pick_algorithm()?;
        let workspace = pass.get_workspace_size(algorithm)?;
        Pass {
            algorithm,
            workspace,
        }
    };
    let backward_data = {
        let pass = descriptors.backward_data();
        let algorithm = pass.pick_algorithm()?;
        let workspace = pass.get_workspace_size(algorithm)?;
        Pass {
            algorithm,
            workspace,
        }
    };
    let backward_filter = {
        let pass = descriptors.backward_filter();
        let algorithm = pass.pick_algorithm()?;
        let workspace = pass.get_workspace_size(algorithm)?;
        Pass {
            algorithm,
            workspace,
        }
    };
    let plan = Plan {
        descriptors,
        forward,
        backward_data,
        backward_filter,
    };
    let plan = Rc::new(plan);
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
    Ok(plan)
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
    let (algorithm, mut scratch) = (
        plan.forward.algorithm,
        workspace(&device, plan.forward.workspace)?,
    );
    // SAFETY: the descriptors were built from `g`, the shapes the inputs were checked against
    // (the forward's geometry comes from their layouts, the gradients' ops check theirs before
    // running) and the outputs are allocated from.
    unsafe {
        plan.descriptors.forward().launch(
            algorithm,
            scratch.as_mut(),
            (1.0, 0.0),
            &x,
            &w,
            &mut y,
        )?
    };
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
    let device = ws.device().clone();
    let plan = plan(&device, g)?;
    let (w, dy) = (view(OP, "w", ws, wl)?, view(OP, "dy", dys, dyl)?);
    let mut dx = output(&device, g.batch * g.image_len())?;
    let (algorithm, mut scratch) = (
        plan.backward_data.algorithm,
        workspace(&device, plan.backward_data.workspace)?,
    );
    // SAFETY: as in `forward`.
    unsafe {
        plan.descriptors.backward_data().launch(
            algorithm,
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
    let device = xs.device().clone();
    let plan = plan(&device, g)?;
    let (x, dy) = (view(OP, "x", xs, xl)?, view(OP, "dy", dys, dyl)?);
    let mut dw = output(&device, g.c_out * g.patch_len())?;
    let (algorithm, mut scratch) = (
        plan.backward_filter.algorithm,
        workspace(&device, plan.backward_filter.workspace)?,
    );
    // SAFETY: as in `forward`.
    unsafe {
        plan.descriptors.backward_filter().launch(
            algorithm,
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
