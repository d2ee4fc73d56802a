//! ImageNet's validation images in the layouts users have, each labelled with the index of its
//! class in a model's class list.
//!
//! Layouts, detected from what the directory holds:
//!
//! - an image folder, `DIR/val/<wnid>/<image>` or `DIR/<wnid>/<image>` (torchvision's
//!   `ImageFolder`; also what the devkit's `valprep.sh` makes of the flat validation directory);
//! - the Kaggle copy (`imagenet-object-localization-challenge`): the flat
//!   `ILSVRC/Data/CLS-LOC/val/*.JPEG` (or `val/*.JPEG`, or the images beside the file) with
//!   `LOC_val_solution.csv`, whose `PredictionString` starts with the image's wnid.
//!
//! The official flat `ILSVRC2012_img_val/` with the devkit's ground-truth file is recognised and
//! refused with a message: its labels are the devkit's ILSVRC2012 ids, whose wnids are listed only
//! in the devkit's MATLAB `meta.mat`.
//!
//! Class indices follow the model: ImageNet-1k models index the 1,000 wnids in sorted order (as
//! torchvision's weights do, [`IMAGENET1K_CLASSES`]); a model trained on a subset of classes
//! indexes its own sorted list. Images of a class the model does not have are an error, not
//! silently dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::folder::{ImageFolder, is_image};

/// The 1,000 ImageNet-1k classes in torchvision's index order (sorted wnids), each with a short
/// English name: `wnid name` per line. The names are those of the shared ImageNet sample's files
/// (one validation image per class, named `<wnid>_<name>.JPEG`).
pub const IMAGENET1K_CLASSES: &str = include_str!("../data/imagenet1k-classes.txt");

/// The wnids of [`IMAGENET1K_CLASSES`], in index order.
pub fn imagenet1k_wnids() -> Vec<String> {
    IMAGENET1K_CLASSES
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The English names of [`IMAGENET1K_CLASSES`], in index order.
pub fn imagenet1k_names() -> Vec<String> {
    IMAGENET1K_CLASSES
        .lines()
        .map(|l| l.split_once(' ').map_or("", |(_, name)| name).to_string())
        .collect()
}

/// How a validation directory is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/<wnid>/<image>`.
    Folder { root: PathBuf },
    /// Flat images in `images`, labelled by the Kaggle `LOC_val_solution.csv`.
    Kaggle { images: PathBuf, solution: PathBuf },
}

impl Layout {
    /// Recognises the layout under `dir`; the error says which layouts were looked for.
    pub fn detect(dir: &Path) -> Result<Self, Error> {
        let solution = [
            dir.join("LOC_val_solution.csv"),
            dir.join("../LOC_val_solution.csv"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        if let Some(solution) = solution {
            for images in [
                dir.join("ILSVRC/Data/CLS-LOC/val"),
                dir.join("val"),
                dir.to_path_buf(),
            ] {
                if has_images(&images) {
                    return Ok(Self::Kaggle { images, solution });
                }
            }
        }
        for root in [dir.join("val"), dir.to_path_buf()] {
            if has_class_folders(&root) {
                return Ok(Self::Folder { root });
            }
        }
        let devkit = [
            dir.join("ILSVRC2012_img_val"),
            dir.join("ILSVRC2012_devkit_t12"),
        ]
        .into_iter()
        .any(|p| p.exists())
            || std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(|e| e.ok()).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("ILSVRC2012_val_")
                })
            });
        let msg = if devkit {
            "holds the official flat validation images, whose devkit labels them by ILSVRC2012 id \
             (mapped to wnids only in the devkit's meta.mat), which is not read: sort the images \
             into val/<wnid>/ folders (the devkit's valprep.sh does it) or use the Kaggle copy \
             with LOC_val_solution.csv"
        } else {
            "is not an ImageNet validation set: expected val/<wnid>/<image> (or <wnid>/<image>) \
             folders, or flat images with the Kaggle LOC_val_solution.csv"
        };
        Err(Error::Source {
            path: dir.to_path_buf(),
            msg: msg.into(),
        })
    }
}

fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.filter_map(|e| e.ok()).any(|e| is_image(&e.path())))
}

fn has_class_folders(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.path().is_dir() && has_images(&e.path()))
    })
}

/// Validation images with the model's class index of each.
#[derive(Debug, Clone)]
pub struct Validation {
    pub layout: Layout,
    /// The model's classes (wnids) in index order.
    pub classes: Vec<String>,
    /// Each image and its class index, in file-name order.
    pub samples: Vec<(PathBuf, usize)>,
}

impl Validation {
    /// The validation images under `dir`, labelled by `classes` (the model's wnids in index
    /// order).
    pub fn open(dir: &Path, classes: &[String]) -> Result<Self, Error> {
        let layout = Layout::detect(dir)?;
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let unknown = |path: &Path, wnid: &str| Error::Source {
            path: path.to_path_buf(),
            msg: format!(
                "class `{wnid}` is not one of the model's {} classes{}",
                classes.len(),
                classes
                    .first()
                    .map_or(String::new(), |c| format!(" (the first is `{c}`)"))
            ),
        };
        let mut samples = Vec::new();
        match &layout {
            Layout::Folder { root } => {
                let folder = ImageFolder::open(root)?;
                for (path, label) in folder.samples {
                    let wnid = &folder.classes[label];
                    let class = *index
                        .get(wnid.as_str())
                        .ok_or_else(|| unknown(&root.join(wnid), wnid))?;
                    samples.push((path, class));
                }
            }
            Layout::Kaggle { images, solution } => {
                let labels = read_kaggle_solution(solution)?;
                let mut files: Vec<PathBuf> = std::fs::read_dir(images)
                    .map_err(|source| Error::Io {
                        path: images.clone(),
                        source,
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_image(p))
                    .collect();
                files.sort();
                for path in files {
                    let id = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let wnid = labels.get(&id).ok_or_else(|| Error::Source {
                        path: solution.clone(),
                        msg: format!("has no row for image `{id}` ({})", path.display()),
                    })?;
                    let class = *index
                        .get(wnid.as_str())
                        .ok_or_else(|| unknown(solution, wnid))?;
                    samples.push((path, class));
                }
            }
        }
        if samples.is_empty() {
            return Err(Error::Source {
                path: dir.to_path_buf(),
                msg: "holds no validation images".into(),
            });
        }
        Ok(Self {
            layout,
            classes: classes.to_vec(),
            samples,
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// `LOC_val_solution.csv`: `ImageId,PredictionString` with the wnid first in the prediction
/// string (`n01751748 14 71 344 204 ...`), one row per image.
fn read_kaggle_solution(path: &Path) -> Result<HashMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "ImageId,PredictionString" => {}
        other => {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                msg: format!(
                    "line 1 should be the header `ImageId,PredictionString`, got `{}`",
                    other.map_or("", |(_, l)| l)
                ),
            });
        }
    }
    let mut labels = HashMap::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let wnid = line
            .split_once(',')
            .and_then(|(id, prediction)| Some((id, prediction.split_whitespace().next()?)))
            .filter(|(id, wnid)| !id.is_empty() && wnid.starts_with('n'));
        let Some((id, wnid)) = wnid else {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                msg: format!(
                    "line {}: expected `ImageId,<wnid> <box>...`, got `{line}`",
                    i + 1
                ),
            });
        };
        labels.insert(id.to_string(), wnid.to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_imagenet1k_list_is_sorted_and_complete() {
        let wnids = imagenet1k_wnids();
        assert_eq!(wnids.len(), 1000);
        assert!(wnids.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert_eq!(wnids[0], "n01440764");
        let names = imagenet1k_names();
        assert_eq!(
            (names[0].as_str(), names[1].as_str()),
            ("tench", "goldfish")
        );
        assert!(names.iter().all(|n| !n.is_empty()));
    }
}
