//! The GPU memory candle's tensors take. With stream-ordered allocation (every GPU since Pascal
//! and every driver this suite supports), candle allocates each tensor from the device's memory
//! pool (`cuMemAllocAsync`), so the pool's counters are what the process's tensors hold: `used`
//! matches PyTorch's `torch.cuda.memory_allocated`, `reserved` its `memory_reserved` (cuDNN's and
//! cuBLAS's own workspaces are outside both, as they are outside PyTorch's).
//!
//! By default the driver hands a pool's free memory back to the system at every synchronisation,
//! so a training loop that waits for the device once per step maps and unmaps its activations'
//! memory every step. [`keep_freed_memory`] keeps it in the pool instead, as PyTorch's caching
//! allocator does.
//!
//! On the CPU, or where the device does not allocate from a pool, the functions report nothing
//! and change nothing.

use candle_core::{Device, Result};

/// A device pool's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolMemory {
    /// Held by live allocations now.
    pub used: u64,
    /// The most held at once since the pool was created or [`reset_peaks`] last ran.
    pub used_peak: u64,
    /// Taken from the device by the pool now (used, and free but kept).
    pub reserved: u64,
    pub reserved_peak: u64,
}

impl PoolMemory {
    pub const MIB: f64 = 1024.0 * 1024.0;
}

/// The memory of the pool that `device`'s tensors come from; `None` on the CPU.
pub fn pool_memory(device: &Device) -> Result<Option<PoolMemory>> {
    imp::pool_memory(device)
}

/// Starts the peaks ([`PoolMemory::used_peak`], [`PoolMemory::reserved_peak`]) afresh from the
/// current values.
pub fn reset_peaks(device: &Device) -> Result<()> {
    imp::reset_peaks(device)
}

/// Keeps the memory that tensors free in `device`'s pool for the next allocations, instead of
/// returning it to the system at each synchronisation.
pub fn keep_freed_memory(device: &Device) -> Result<()> {
    imp::keep_freed_memory(device)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;

    pub fn pool_memory(_: &Device) -> Result<Option<PoolMemory>> {
        Ok(None)
    }

    pub fn reset_peaks(_: &Device) -> Result<()> {
        Ok(())
    }

    pub fn keep_freed_memory(_: &Device) -> Result<()> {
        Ok(())
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use candle_core::cuda_backend::cudarc::driver::result::{device, mem_pool};
    use candle_core::cuda_backend::cudarc::driver::sys::{CUmemPool_attribute, CUmemoryPool};

    /// The pool `device` allocates from, where it allocates from one.
    fn pool(device: &Device) -> Result<Option<CUmemoryPool>> {
        let Device::Cuda(cuda) = device else {
            return Ok(None);
        };
        let context = cuda.cuda_stream().context().clone();
        if !context.has_async_alloc() {
            return Ok(None);
        }
        // SAFETY: the device handle comes from a live context.
        let pool = unsafe { device::get_mem_pool(context.cu_device()) }
            .map_err(candle_core::Error::wrap)?;
        Ok(Some(pool))
    }

    fn get(pool: CUmemoryPool, attribute: CUmemPool_attribute) -> Result<u64> {
        let mut value = 0u64;
        // SAFETY: the pool is live and these attributes are 64-bit unsigned integers.
        unsafe { mem_pool::get_attribute(pool, attribute, (&raw mut value).cast()) }
            .map_err(candle_core::Error::wrap)?;
        Ok(value)
    }

    fn set(pool: CUmemoryPool, attribute: CUmemPool_attribute, mut value: u64) -> Result<()> {
        // SAFETY: as in `get`.
        unsafe { mem_pool::set_attribute(pool, attribute, (&raw mut value).cast()) }
            .map_err(candle_core::Error::wrap)
    }

    pub fn pool_memory(device: &Device) -> Result<Option<PoolMemory>> {
        use CUmemPool_attribute::*;
        let Some(pool) = pool(device)? else {
            return Ok(None);
        };
        Ok(Some(PoolMemory {
            used: get(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
            used_peak: get(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH)?,
            reserved: get(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
            reserved_peak: get(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?,
        }))
    }

    pub fn reset_peaks(device: &Device) -> Result<()> {
        use CUmemPool_attribute::*;
        if let Some(pool) = pool(device)? {
            // The driver accepts only zero, which restarts each peak at the current value.
            set(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0)?;
            set(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0)?;
        }
        Ok(())
    }

    pub fn keep_freed_memory(device: &Device) -> Result<()> {
        if let Some(pool) = pool(device)? {
            set(
                pool,
                CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                u64::MAX,
            )?;
        }
        Ok(())
    }
}
