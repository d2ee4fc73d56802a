//! Test support shared by the suite's crates: where the real data is ([`shared_data`]) and how far
//! two tensors are apart ([`max_abs_diff`], [`rel_diff`]).
//!
//! Tests that need the shared data (CIFAR-10 and the ImageNet sample) skip, visibly, on a
//! newcomer's machine without it; with `RESNET_REPRO_REQUIRE_DATA=1` (CI sets it) a missing data
//! directory fails the test instead, so a CI run can never pass by skipping.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// The variable that names the data directory.
pub const DATA_VAR: &str = "RESNET_REPRO_DATA";
/// The variable under which missing data fails a test instead of skipping it.
pub const REQUIRE_DATA_VAR: &str = "RESNET_REPRO_REQUIRE_DATA";

/// The repository's root (this crate sits at `suite/testkit`).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data directory: `$RESNET_REPRO_DATA`, else `../shared/data` beside the checkout.
pub fn data_root() -> PathBuf {
    std::env::var_os(DATA_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("../shared/data"))
}

/// `rel` inside the shared data directory, if it exists. When it does not, prints that the test is
/// skipped and returns `None`, or, with `RESNET_REPRO_REQUIRE_DATA=1`, panics naming the path.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    present_or_skip(data_root().join(rel))
}

/// The shared copy of the paper's reference file (`../shared/reference/paper.toml`), under the
/// same rule as [`shared_data`].
pub fn shared_reference() -> Option<PathBuf> {
    present_or_skip(repository().join("../shared/reference/paper.toml"))
}

fn present_or_skip(path: PathBuf) -> Option<PathBuf> {
    let required = std::env::var(REQUIRE_DATA_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    present_or_skip_unless(path, required)
}

fn present_or_skip_unless(path: PathBuf, required: bool) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        !required,
        "{} is absent and {REQUIRE_DATA_VAR} is set: this test needs the shared data \
         (../shared beside the checkout, or {DATA_VAR} naming the directory that holds cifar10/ \
         and imagenet-sample/)",
        path.display()
    );
    eprintln!(
        "skipped: {} is absent (set {DATA_VAR} to the data directory)",
        path.display()
    );
    None
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_scalar::<f32>())
        .expect("a tensor's largest magnitude")
}

/// max |a - b| over all elements, on the CPU; the shapes must match.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_device(&Device::Cpu).expect("a on the CPU");
    let b = b.to_device(&Device::Cpu).expect("b on the CPU");
    max_abs(&(a - b).expect("a - b"))
}

/// max |a - b| / (1 + max |b|): an absolute difference for small values, a relative one for large.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = max_abs(&b.to_device(&Device::Cpu).expect("b on the CPU"));
    max_abs_diff(a, b) / (1.0 + scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_of_tensors() {
        let a = Tensor::new(&[1f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, -2.5, 4.0], &Device::Cpu).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 1.0);
        assert_eq!(rel_diff(&a, &b), 1.0 / 5.0);
        assert_eq!(max_abs_diff(&a, &a), 0.0);
    }

    #[test]
    fn missing_data_skips_unless_required() {
        let dir = std::env::temp_dir();
        assert_eq!(present_or_skip_unless(dir.clone(), false), Some(dir));
        let missing = repository().join("no-such-data-directory");
        assert_eq!(present_or_skip_unless(missing.clone(), false), None);
        let err = std::panic::catch_unwind(|| present_or_skip_unless(missing, true)).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("no-such-data-directory") && msg.contains(REQUIRE_DATA_VAR),
            "{msg}"
        );
    }
}
