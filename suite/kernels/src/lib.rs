//! Fast training kernels for candle (CPU, and the conv on CUDA), each a custom op with its own
//! backward pass:
//!
//! - [`conv2d`]: all three passes (forward, input gradient, weight gradient) parallel over the
//!   batch; "same" stride-1 convs and small strided 3x3 convs (on phase planes) computed directly
//!   from the NCHW planes with AVX2/AVX-512 register tiles and masked loads (no im2col, no padding
//!   copy), others as per-image GEMMs over an im2col buffer; the input gradient is skipped where
//!   nothing upstream needs it. [`ConvPasses`] runs each pass alone on plain slices, for benchmarks.
//! - [`batch_norm_train`]: training-mode batch norm, optionally fused with the ReLU that follows
//!   it, with the batch statistics computed in one pass and a fused backward;
//!   [`batch_norm_add_relu`]: a residual block's last batch norm, shortcut sum and ReLU as one op.
//! - [`basic_blocks_train`]: a run of basic blocks (each conv, BN, ReLU, conv, BN, shortcut, ReLU)
//!   as one op, so candle's autograd sees one activation-sized edge where the separate ops make
//!   five per block.
//! - [`max_pool2d`] (ImageNet's 3x3/2 stem pool) and [`subsample_pad`] (option A's shortcut):
//!   one pass each way, the pool's gradient going to the first maximum as in PyTorch.
//! - [`relu`] and [`add_relu`] (a residual block's `relu(F(x) + x)`): one pass forward, one pass
//!   backward over the output.
//!
//! Stock candle computes a conv's input gradient with a direct transposed convolution and builds
//! batch norm from a dozen primitive ops, each allocating its result; these kernels do the same work
//! in one or two passes over memory. They run on the CPU; with the `cuda` feature [`conv2d`] also
//! runs on CUDA, each of its three passes one cuDNN call (forward, backward data, backward filter),
//! [`conv2d_input_grad`] and [`conv2d_weight_grad`] run a backward pass alone on either device,
//! and [`batch_norm_train_cuda`] is cuDNN's batch norm, one call each way. [`set_cudnn_algorithms`]
//! chooses between cuDNN's fastest conv algorithms (the default) and deterministic ones.
//! Elsewhere the callers keep candle's own ops (see `nets::layers::Kernels`).
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//!
//! let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu)?)?;
//! let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (4, 3, 3, 3), &Device::Cpu)?)?;
//! let y = kernels::conv2d(&x, &w, 1, 1)?;
//! let stock = x.conv2d(&w, 1, 1, 1, 1)?;
//! assert!((&y - &stock)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
//! let grads = y.sqr()?.sum_all()?.backward()?;
//! assert_eq!(grads.get(&w).unwrap().dims(), &[4, 3, 3, 3]);
//! # Ok::<(), candle_core::Error>(())
//! ```

mod block;
mod conv;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod matmul;
mod memory;
pub mod memory_pool;
mod norm;
mod pool;

pub use block::{BasicBlock, BasicBlockParams, BlockShortcut, basic_blocks_train};
pub use conv::{
    Conv2dGeometry, ConvAlgorithm, ConvPasses, CudnnAlgorithms, MAX_ISA_VAR, conv2d,
    conv2d_input_grad, conv2d_runs_on, conv2d_weight_grad, conv2d_with, cudnn_algorithms,
    set_cudnn_algorithms,
};
pub use memory::{LineAligned, keep_freed_memory};
pub use norm::{
    BatchStats, add_relu, batch_norm_add_relu, batch_norm_cuda_runs_on, batch_norm_train,
    batch_norm_train_cuda, relu,
};
pub use pool::{max_pool2d, subsample_pad};
