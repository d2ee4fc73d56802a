//! What data the suite can see (`suite data info`): files, counts and checksums of each source,
//! without downloading anything.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Error, cifar};

/// What the suite sees of one data source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    pub name: String,
    pub location: String,
    pub available: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub note: String,
}

/// One file of a source.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub bytes: u64,
}

fn file_info(paths: &[PathBuf]) -> Vec<FileInfo> {
    paths
        .iter()
        .map(|p| FileInfo {
            path: p.display().to_string(),
            bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        })
        .collect()
}

/// CIFAR-10 from `source`: its files, counts and checksum. A hub source is looked up in the hub's
/// cache only: this never downloads.
pub fn cifar10(source: &cifar::Source, cache: &Path) -> Result<SourceInfo, Error> {
    let location = source.location().display().to_string();
    let offline_files = match source {
        // Ask the hub cache only: `info` never downloads.
        cifar::Source::Hub { .. } => cifar::hub_cached_files(),
        _ => Some(source.files()?),
    };
    let Some(files) = offline_files else {
        return Ok(SourceInfo {
            name: "cifar10".into(),
            location,
            available: false,
            files: Vec::new(),
            train: None,
            test: None,
            classes: None,
            images: None,
            sha256: None,
            note: "not in the hub cache: `suite data fetch cifar10` downloads it".into(),
        });
    };
    let data = cifar::load(source, Some(cache))?;
    Ok(SourceInfo {
        name: "cifar10".into(),
        location,
        available: true,
        files: file_info(
            &files
                .train
                .iter()
                .chain(&files.test)
                .cloned()
                .collect::<Vec<_>>(),
        ),
        train: Some(data.train.len()),
        test: Some(data.test.len()),
        classes: Some(cifar::CLASSES.len()),
        images: None,
        sha256: Some(data.checksum),
        note: String::new(),
    })
}

/// An image folder (`<class>/<image>`) as dataset `name`: classes, images, bytes and checksum.
pub fn image_folder(name: &str, path: &Path) -> Result<SourceInfo, Error> {
    let folder = crate::ImageFolder::open(path)?;
    let files: Vec<PathBuf> = folder.samples.iter().map(|s| s.0.clone()).collect();
    let bytes: u64 = file_info(&files).iter().map(|f| f.bytes).sum();
    Ok(SourceInfo {
        name: name.into(),
        location: path.display().to_string(),
        available: true,
        files: Vec::new(),
        train: None,
        test: None,
        classes: Some(folder.classes.len()),
        images: Some(folder.len()),
        sha256: Some(cifar::checksum(&files)?),
        note: format!("{bytes} bytes of images"),
    })
}
