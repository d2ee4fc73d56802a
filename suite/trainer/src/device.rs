//! Devices by name: `cpu`, `cuda` (GPU 0) or `cuda:N`.

use candle_core::Device;

use crate::Error;

/// The environment variable that, set to `release`, lets the GPU's memory pool return freed
/// memory to the system at every synchronisation (the driver's default) instead of keeping it.
pub const POOL_VARIABLE: &str = "RESNET_REPRO_CUDA_POOL";

/// A device as the user names it on the command line and in run specs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DeviceName {
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceName {
    /// Opens the device. CUDA needs a build with the `cuda` feature; without it the error says so.
    pub fn open(self) -> Result<Device, Error> {
        let ordinal = match self {
            Self::Cpu => return Ok(Device::Cpu),
            Self::Cuda(n) => n,
        };
        let err = |msg: String| Error::Device {
            name: self.to_string(),
            msg,
        };
        if !candle_core::utils::cuda_is_available() {
            return Err(err(
                "this build has no CUDA support (rebuild with `--features cuda`)".into(),
            ));
        }
        let device = Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))?;
        // Training waits for the device once per metrics window and benchmarks once per step; at
        // each wait the driver would hand the pool's free memory back, to map it again on the
        // next step. `RESNET_REPRO_CUDA_POOL=release` keeps the driver's default, for comparison.
        if std::env::var_os(POOL_VARIABLE).is_none_or(|v| v != "release") {
            kernels::memory_pool::keep_freed_memory(&device).map_err(|e| err(e.to_string()))?;
        }
        Ok(device)
    }

    /// The name of an open device.
    pub fn of(device: &Device) -> Self {
        match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => Self::Cuda(gpu_id),
            // The suite opens no other kind of device.
            _ => Self::Cpu,
        }
    }
}

impl std::str::FromStr for DeviceName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{name}`: expected cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The canonical name of `device`, as [`DeviceName`] parses it.
pub fn name(device: &Device) -> String {
    DeviceName::of(device).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_round_trip_and_bad_ones_say_what_is_expected() {
        assert_eq!("cpu".parse(), Ok(DeviceName::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceName::Cuda(0)));
        assert_eq!(
            "cuda:3".parse::<DeviceName>().unwrap().to_string(),
            "cuda:3"
        );
        assert!(DeviceName::Cpu.open().unwrap().is_cpu());
        assert_eq!(name(&Device::Cpu), "cpu");
        let err = "gpu".parse::<DeviceName>().unwrap_err();
        assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
        let err = "cuda:x".parse::<DeviceName>().unwrap_err();
        assert!(err.contains("cuda:N"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            let err = DeviceName::Cuda(0).open().unwrap_err().to_string();
            assert!(
                err.contains("cuda:0") && err.contains("--features cuda"),
                "{err}"
            );
        }
        let json = serde_json::to_string(&DeviceName::Cuda(1)).unwrap();
        assert_eq!(json, "\"cuda:1\"");
        assert_eq!(
            serde_json::from_str::<DeviceName>(&json).unwrap(),
            DeviceName::Cuda(1)
        );
        assert!(serde_json::from_str::<DeviceName>("\"tpu\"").is_err());
    }
}
