//! Devices by name: `cpu`, `cuda` (GPU 0) or `cuda:N`.

use candle_core::Device;

/// Opens the device `name` names. CUDA needs a build with the `cuda` feature; without it the error
/// says so.
pub fn open(name: &str) -> Result<Device, String> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(format!(
                    "unknown device `{name}`: expected cpu, cuda or cuda:N"
                ));
            }
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(format!(
            "device `{name}`: this build has no CUDA support (rebuild with `--features cuda`)"
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| format!("device `{name}`: {e}"))
}

/// The canonical name of `device`, as [`open`] accepts it.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_what_is_expected() {
        assert!(open("cpu").unwrap().is_cpu());
        assert_eq!(name(&Device::Cpu), "cpu");
        let err = open("gpu").unwrap_err();
        assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
        let err = open("cuda:x").unwrap_err();
        assert!(err.contains("cuda:N"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            assert!(open("cuda:0").unwrap_err().contains("--features cuda"));
        }
    }
}
