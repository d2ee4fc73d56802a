//! Where configs live when the user does not say.

use std::path::{Path, PathBuf};

/// `--configs`, else `./configs` when it exists (running from a checkout), else the repository's
/// `configs/` this binary was built from.
pub fn configs_dir(given: Option<&Path>) -> PathBuf {
    if let Some(dir) = given {
        return dir.to_path_buf();
    }
    let here = PathBuf::from("configs");
    if here.join("reference").is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}
