//! The training step on a CUDA GPU (`--features cuda`) copies nothing to the host: every op the
//! nets use runs on the device, and the step's loss and error count stay there until read.
//!
//! candle's CUDA backend links the driver (cudarc's `dynamic-linking`), so the driver's two
//! device-to-host copy functions defined in this executable take precedence over libcuda's for
//! every caller in it: each counts the copy, then calls the driver's own (`dlsym(RTLD_NEXT)`).
#![cfg(feature = "cuda")]

use std::ffi::{CStr, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};
use trainer::step::{read_outcomes, train_step};
use trainer::{Sgd, SgdConfig};

/// Device-to-host copies made through the driver since the process started.
static HOST_COPIES: AtomicUsize = AtomicUsize::new(0);

/// `CUresult`, a C enum: 0 is success.
type CuResult = u32;

/// The driver's own definition of `name`, the next one after this executable's.
fn driver_function(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is a NUL-terminated symbol name; RTLD_NEXT searches the objects loaded after
    // this one, where libcuda is.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!f.is_null(), "libcuda has no {name:?}");
    f
}

/// Counts, then copies as the driver does.
///
/// # Safety
/// As the driver's `cuMemcpyDtoH_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: u64, bytes: usize) -> CuResult {
    type F = unsafe extern "C" fn(*mut c_void, u64, usize) -> CuResult;
    static DRIVER: OnceLock<usize> = OnceLock::new();
    HOST_COPIES.fetch_add(1, Ordering::SeqCst);
    let f = *DRIVER.get_or_init(|| driver_function(c"cuMemcpyDtoH_v2") as usize);
    // SAFETY: the driver's function of this name has this signature; the caller upholds its
    // contract.
    unsafe { std::mem::transmute::<usize, F>(f)(dst, src, bytes) }
}

/// Counts, then copies as the driver does.
///
/// # Safety
/// As the driver's `cuMemcpyDtoHAsync_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: u64,
    bytes: usize,
    stream: *mut c_void,
) -> CuResult {
    type F = unsafe extern "C" fn(*mut c_void, u64, usize, *mut c_void) -> CuResult;
    static DRIVER: OnceLock<usize> = OnceLock::new();
    HOST_COPIES.fetch_add(1, Ordering::SeqCst);
    let f = *DRIVER.get_or_init(|| driver_function(c"cuMemcpyDtoHAsync_v2") as usize);
    // SAFETY: as in `cuMemcpyDtoH_v2`.
    unsafe { std::mem::transmute::<usize, F>(f)(dst, src, bytes, stream) }
}

fn copies() -> usize {
    HOST_COPIES.load(Ordering::SeqCst)
}

#[test]
fn a_training_step_copies_nothing_to_the_host() {
    let gpu = Device::new_cuda(0).expect("the `cuda` feature's tests need CUDA GPU 0");
    // CIFAR nets (options A, B and C, plain; fast and stock kernels) on 32x32 images, ImageNet
    // nets (basic and bottleneck blocks) on 64x64.
    for (model, kernels, size) in [
        ("resnet20", nets::Kernels::Fast, 32),
        ("resnet20", nets::Kernels::Stock, 32),
        ("resnet20-b", nets::Kernels::Fast, 32),
        ("resnet20-c", nets::Kernels::Fast, 32),
        ("plain20", nets::Kernels::Fast, 32),
        ("resnet18", nets::Kernels::Fast, 64),
        ("resnet50", nets::Kernels::Fast, 64),
    ] {
        let spec: nets::ModelSpec = model.parse().unwrap();
        let classes = spec.num_classes as u32;
        let mut m = nets::Model::new(spec, 0, &gpu).unwrap();
        m.net.set_kernels(kernels);
        let mut sgd = Sgd::new(nets::weights::trainable(&m.vars), SgdConfig::default()).unwrap();
        let images = Tensor::randn(0f32, 1.0, (8, 3, size, size), &gpu).unwrap();
        let labels =
            Tensor::new((0..8u32).map(|i| i * 7 % classes).collect::<Vec<_>>(), &gpu).unwrap();
        // The first step builds the cuDNN plans (a timed search per shape), outside the count.
        let warm = train_step(&m.net, &mut sgd, &images, &labels, 0.01).unwrap();
        assert!(warm.read().unwrap().0.is_finite());
        gpu.synchronize().unwrap();

        let before = copies();
        let outcomes: Vec<_> = (0..3)
            .map(|_| train_step(&m.net, &mut sgd, &images, &labels, 0.01).unwrap())
            .collect();
        gpu.synchronize().unwrap();
        assert_eq!(
            copies() - before,
            0,
            "{model} ({kernels:?} kernels): a training step copied to the host"
        );
        // The count does see copies: reading the three outcomes is one.
        let values = read_outcomes(&outcomes).unwrap();
        assert!(copies() > before, "the copy counter missed a read");
        assert!(
            values.iter().all(|(loss, _)| loss.is_finite()),
            "{values:?}"
        );
    }
}
