//! The convolution's three passes on CUDA through cuDNN: forward, backward data (the input
//! gradient) and backward filter (the weight gradient).
//!
//! Stock candle 0.11 sends only the forward to cuDNN; its input gradient is a transposed
//! convolution run as one thread per output value. Here each pass is one cuDNN call on NCHW f32
//! tensors. A [`Plan`] (descriptors, and each pass's algorithm, math type and workspace size) is
//! built once per device, geometry and [`CudnnAlgorithms`] choice and kept per thread, as cuDNN
//! handles are neither `Send` nor `Sync`:
//!
//! - [`CudnnAlgorithms::Fastest`]: the algorithm cuDNN's search (`cudnnFind*`) times fastest for
//!   the shape, as PyTorch's `cudnn.benchmark`; the search runs once per shape and process.
//! - [`CudnnAlgorithms::Deterministic`]: the first algorithm cuDNN's heuristics rank among those
//!   that give the same bits on every call.
//!
//! Each pass launches with the math type its algorithm was ranked with, as PyTorch does; cuDNN's
//! default lets fp32 convolutions run on tensor cores in TF32 on Ampere and later GPUs
//! (`NVIDIA_TF32_OVERRIDE=0` turns that off for the process).
//!
//! cudarc's safe cuDNN wrapper ranks by heuristics only and keeps its descriptors private, so this
//! module holds raw descriptors, each freed when dropped, and the crate's raw handle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::rc::Rc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgo_t, cudnnConvolutionBwdDataAlgoPerf_t,
    cudnnConvolutionBwdFilterAlgo_t, cudnnConvolutionBwdFilterAlgoPerf_t,
    cudnnConvolutionFwdAlgo_t, cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionMode_t,
    cudnnDataType_t, cudnnDeterminism_t, cudnnMathType_t, cudnnStatus_t, cudnnTensorFormat_t,
};
use candle_core::cuda_backend::cudarc::cudnn::{result, sys};
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::{CudaDevice, DeviceId};
use candle_core::{CudaStorage, Layout, Result, Shape, bail};

use super::{Conv2dGeometry, CudnnAlgorithms, cudnn_algorithms};
use crate::cuda::{Handle, TensorDesc, c_ints, handle, output, view};

const OP: &str = "cudnn conv2d";

/// A 4-D f32 OIHW filter descriptor.
struct FilterDesc(sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    fn new(dims: [usize; 4]) -> Result<Self> {
        let ints = c_ints(OP, dims)?;
        let desc = Self(result::create_filter_descriptor()?);
        // SAFETY: the descriptor was just created and is freed only on drop.
        unsafe {
            result::set_filter4d_descriptor(
                desc.0,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
                cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                ints,
            )?
        };
        Ok(desc)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once, here.
        let _ = unsafe { result::destroy_filter_descriptor(self.0) };
    }
}

/// A 2-D cross-correlation with f32 accumulation and the given math type.
struct ConvDesc(sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    fn new(g: &Conv2dGeometry, math: Option<cudnnMathType_t>) -> Result<Self> {
        let [pad, stride] = c_ints(OP, [g.padding, g.stride])?;
        let desc = Self(result::create_convolution_descriptor()?);
        // SAFETY: the descriptor was just created and is freed only on drop.
        unsafe {
            result::set_convolution2d_descriptor(
                desc.0,
                pad,
                pad,
                stride,
                stride,
                1,
                1,
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                cudnnDataType_t::CUDNN_DATA_FLOAT,
            )?;
            if let Some(math) = math {
                result::set_convolution_math_type(desc.0, math)?;
            }
        }
        Ok(desc)
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once, here.
        let _ = unsafe { result::destroy_convolution_descriptor(self.0) };
    }
}

/// What cuDNN's three per-pass ranking records share.
trait Ranked: Copy {
    type Algorithm: Copy;
    fn algorithm(&self) -> Self::Algorithm;
    fn math(&self) -> cudnnMathType_t;
    fn usable(&self) -> bool;
    fn deterministic(&self) -> bool;
}

macro_rules! ranked {
    ($perf:ty, $algorithm:ty) => {
        impl Ranked for $perf {
            type Algorithm = $algorithm;
            fn algorithm(&self) -> $algorithm {
                self.algo
            }
            fn math(&self) -> cudnnMathType_t {
                self.mathType
            }
            fn usable(&self) -> bool {
                self.status == cudnnStatus_t::CUDNN_STATUS_SUCCESS
            }
            fn deterministic(&self) -> bool {
                self.determinism == cudnnDeterminism_t::CUDNN_DETERMINISTIC
            }
        }
    };
}

ranked!(cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t);
ranked!(
    cudnnConvolutionBwdDataAlgoPerf_t,
    cudnnConvolutionBwdDataAlgo_t
);
ranked!(
    cudnnConvolutionBwdFilterAlgoPerf_t,
    cudnnConvolutionBwdFilterAlgo_t
);

/// Room for every algorithm of a pass (cuDNN has at most 8 per pass).
const MAX_ALGORITHMS: usize = 16;

/// Runs one of cuDNN's ranking calls and returns its records, best first.
fn ranking<P: Ranked>(
    call: impl FnOnce(c_int, *mut c_int, *mut P) -> cudnnStatus_t,
) -> Result<Vec<P>> {
    // SAFETY: the records are plain C data (integers and C enums whose zero is a valid value);
    // only the first `returned` are read, which cuDNN has written.
    let mut records = [unsafe { std::mem::zeroed::<P>() }; MAX_ALGORITHMS];
    let mut returned: c_int = 0;
    call(MAX_ALGORITHMS as c_int, &mut returned, records.as_mut_ptr()).result()?;
    let returned = usize::try_from(returned).unwrap_or(0).min(MAX_ALGORITHMS);
    Ok(records[..returned].to_vec())
}

/// The record to run for `pass`: the best usable one, and under `Deterministic` the best
/// deterministic one. `search` is cuDNN's timed search, `heuristics` its ranking without running
/// anything; the search can leave nothing usable when it cannot allocate its trial buffers, and
/// then the heuristics decide.
fn choose<P: Ranked>(
    pass: &str,
    choice: CudnnAlgorithms,
    search: impl FnOnce() -> Result<Vec<P>>,
    heuristics: impl FnOnce() -> Result<Vec<P>>,
) -> Result<P> {
    let pick = |records: Vec<P>| {
        records
            .into_iter()
            .find(|r| r.usable() && (choice == CudnnAlgorithms::Fastest || r.deterministic()))
    };
    let found = match choice {
        CudnnAlgorithms::Fastest => match pick(search()?) {
            Some(record) => Some(record),
            None => pick(heuristics()?),
        },
        CudnnAlgorithms::Deterministic => pick(heuristics()?),
    };
    match found {
        Some(record) => Ok(record),
        None => bail!(
            "{OP}: cuDNN offers no {}algorithm for the {pass} pass",
            match choice {
                CudnnAlgorithms::Deterministic => "deterministic ",
                CudnnAlgorithms::Fastest => "",
            }
        ),
    }
}

/// One pass's algorithm, the convolution descriptor set to its math type, and the workspace bytes
/// it asks for.
struct Pass<A> {
    algorithm: A,
    conv: ConvDesc,
    workspace: usize,
}

/// One geometry's descriptors and each pass's algorithm.
struct Plan {
    x: TensorDesc,
    w: FilterDesc,
    y: TensorDesc,
    forward: Pass<cudnnConvolutionFwdAlgo_t>,
    backward_data: Pass<cudnnConvolutionBwdDataAlgo_t>,
    backward_filter: Pass<cudnnConvolutionBwdFilterAlgo_t>,
}

type PlanKey = (DeviceId, Conv2dGeometry, CudnnAlgorithms);

thread_local! {
    static PLANS: RefCell<HashMap<PlanKey, Rc<Plan>>> = RefCell::new(HashMap::new());
}

fn plan(device: &CudaDevice, h: &Handle, g: &Conv2dGeometry) -> Result<Rc<Plan>> {
    let choice = cudnn_algorithms();
    let key = (device.id(), *g, choice);
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).cloned()) {
        return Ok(plan);
    }
    let (x, w, y) = (
        TensorDesc::new(OP, g.input_shape())?,
        FilterDesc::new(g.weight_shape())?,
        TensorDesc::new(OP, g.output_shape())?,
    );
    let ranking_conv = ConvDesc::new(g, None)?;
    let h = h.0;
    let c = ranking_conv.0;
    // SAFETY (each ranking call below): the handle and descriptors are live, and `ranking` hands
    // each call a record buffer of the length it passes.
    let forward = choose(
        "forward",
        choice,
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnFindConvolutionForwardAlgorithm(h, x.0, w.0, c, y.0, n, got, records)
            })
        },
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnGetConvolutionForwardAlgorithm_v7(h, x.0, w.0, c, y.0, n, got, records)
            })
        },
    )?;
    let backward_data = choose(
        "backward data",
        choice,
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnFindConvolutionBackwardDataAlgorithm(h, w.0, y.0, c, x.0, n, got, records)
            })
        },
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    h, w.0, y.0, c, x.0, n, got, records,
                )
            })
        },
    )?;
    let backward_filter = choose(
        "backward filter",
        choice,
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnFindConvolutionBackwardFilterAlgorithm(
                    h, x.0, y.0, c, w.0, n, got, records,
                )
            })
        },
        || {
            ranking(|n, got, records| unsafe {
                sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                    h, x.0, y.0, c, w.0, n, got, records,
                )
            })
        },
    )?;

    let forward = {
        let conv = ConvDesc::new(g, Some(forward.math()))?;
        // SAFETY: live handle and descriptors.
        let workspace = unsafe {
            result::get_convolution_forward_workspace_size(
                h,
                x.0,
                w.0,
                conv.0,
                y.0,
                forward.algorithm(),
            )?
        };
        Pass {
            algorithm: forward.algorithm(),
            conv,
            workspace,
        }
    };
    let backward_data = {
        let conv = ConvDesc::new(g, Some(backward_data.math()))?;
        // SAFETY: live handle and descriptors.
        let workspace = unsafe {
            result::get_convolution_backward_data_workspace_size(
                h,
                w.0,
                y.0,
                conv.0,
                x.0,
                backward_data.algorithm(),
            )?
        };
        Pass {
            algorithm: backward_data.algorithm(),
            conv,
            workspace,
        }
    };
    let backward_filter = {
        let conv = ConvDesc::new(g, Some(backward_filter.math()))?;
        // SAFETY: live handle and descriptors.
        let workspace = unsafe {
            result::get_convolution_backward_filter_workspace_size(
                h,
                x.0,
                y.0,
                conv.0,
                w.0,
                backward_filter.algorithm(),
            )?
        };
        Pass {
            algorithm: backward_filter.algorithm(),
            conv,
            workspace,
        }
    };
    let plan = Rc::new(Plan {
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

/// cuDNN's scaling factors are passed by pointer.
fn scalar(value: &f32) -> *const c_void {
    value as *const f32 as *const c_void
}

/// Device pointers of one pass's call: its two operands, its result and its workspace (null when
/// the algorithm needs none).
struct Pointers {
    a: *const c_void,
    b: *const c_void,
    out: *mut c_void,
    workspace: *mut c_void,
}

/// Runs one pass of the conv of geometry `g` on the operands `a` and `b` into a new buffer of
/// `len` values: `workspace` says how many scratch bytes the pass's algorithm asked for, and
/// `launch` makes the cuDNN call with the handle, the plan and the pointers.
fn run_pass(
    g: &Conv2dGeometry,
    (a_name, a, a_layout): (&str, &CudaStorage, &Layout),
    (b_name, b, b_layout): (&str, &CudaStorage, &Layout),
    len: usize,
    workspace: impl FnOnce(&Plan) -> usize,
    launch: impl FnOnce(&Handle, &Plan, Pointers) -> Result<()>,
) -> Result<CudaStorage> {
    let device = a.device().clone();
    let stream = device.cuda_stream();
    let handle = handle(&device)?;
    let plan = plan(&device, &handle, g)?;
    let (a, b) = (
        view(OP, a_name, a, a_layout)?,
        view(OP, b_name, b, b_layout)?,
    );
    let mut out = output(&device, len)?;
    let mut scratch = {
        let bytes = workspace(&plan);
        // SAFETY: cuDNN's workspace is scratch memory it writes before reading.
        (bytes > 0)
            .then(|| unsafe { device.alloc::<u8>(bytes) })
            .transpose()?
    };
    {
        let (a, _a) = a.device_ptr(&stream);
        let (b, _b) = b.device_ptr(&stream);
        let (out, _out) = out.device_ptr_mut(&stream);
        let (s, _s) = scratch.as_mut().map(|s| s.device_ptr_mut(&stream)).unzip();
        let pointers = Pointers {
            a: a as *const c_void,
            b: b as *const c_void,
            out: out as *mut c_void,
            workspace: s.map_or(std::ptr::null_mut(), |s| s as *mut c_void),
        };
        launch(&handle, &plan, pointers)?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, device))
}

// SAFETY (each pass below): the plan's descriptors were built from `g`, the shapes the operands
// were checked against (the forward's geometry comes from their layouts, the gradients' ops check
// theirs before running) and the result is allocated from; every pointer addresses a live buffer
// of that size on the handle's stream, the workspace one of the size the pass's algorithm asked
// for.

/// `y = conv(x, w)`.
pub(super) fn forward(
    g: &Conv2dGeometry,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let y = run_pass(
        g,
        ("x", x.0, x.1),
        ("w", w.0, w.1),
        g.batch * g.output_len(),
        |plan| plan.forward.workspace,
        |handle, plan, p| {
            let pass = &plan.forward;
            unsafe {
                result::convolution_forward(
                    handle.0,
                    scalar(&1.0),
                    plan.x.0,
                    p.a,
                    plan.w.0,
                    p.b,
                    pass.conv.0,
                    pass.algorithm,
                    p.workspace,
                    pass.workspace,
                    scalar(&0.0),
                    plan.y.0,
                    p.out,
                )?
            };
            Ok(())
        },
    )?;
    Ok((y, Shape::from(g.output_shape().to_vec())))
}

/// The input gradient `dx` from the weight `w` and the output gradient `dy`.
pub(super) fn input_grad(
    g: &Conv2dGeometry,
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dx = run_pass(
        g,
        ("w", w.0, w.1),
        ("dy", dy.0, dy.1),
        g.batch * g.image_len(),
        |plan| plan.backward_data.workspace,
        |handle, plan, p| {
            let pass = &plan.backward_data;
            unsafe {
                result::convolution_backward_data(
                    handle.0,
                    scalar(&1.0),
                    plan.w.0,
                    p.a,
                    plan.y.0,
                    p.b,
                    pass.conv.0,
                    pass.algorithm,
                    p.workspace,
                    pass.workspace,
                    scalar(&0.0),
                    plan.x.0,
                    p.out,
                )?
            };
            Ok(())
        },
    )?;
    Ok((dx, Shape::from(g.input_shape().to_vec())))
}

/// The weight gradient `dW` from the input `x` and the output gradient `dy`.
pub(super) fn weight_grad(
    g: &Conv2dGeometry,
    x: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dw = run_pass(
        g,
        ("x", x.0, x.1),
        ("dy", dy.0, dy.1),
        g.c_out * g.patch_len(),
        |plan| plan.backward_filter.workspace,
        |handle, plan, p| {
            let pass = &plan.backward_filter;
            unsafe {
                result::convolution_backward_filter(
                    handle.0,
                    scalar(&1.0),
                    plan.x.0,
                    p.a,
                    plan.y.0,
                    p.b,
                    pass.conv.0,
                    pass.algorithm,
                    p.workspace,
                    pass.workspace,
                    scalar(&0.0),
                    plan.w.0,
                    p.out,
                )?
            };
            Ok(())
        },
    )?;
    Ok((dw, Shape::from(g.weight_shape().to_vec())))
}
