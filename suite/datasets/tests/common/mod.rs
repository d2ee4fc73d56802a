//! Where the tests find real data: `$RESNET_REPRO_DATA`, else `../shared/data` beside the checkout.

use std::path::PathBuf;

pub fn data(rel: &str) -> Option<PathBuf> {
    let root = std::env::var_os("RESNET_REPRO_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = root.join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is absent (set RESNET_REPRO_DATA to the data directory)",
            path.display()
        );
        None
    }
}
