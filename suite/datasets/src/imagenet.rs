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
//! - the official flat `ILSVRC2012_val_*.JPEG` files (in `ILSVRC2012_img_val/`, `val/` or the
//!   directory itself) with the
//!   devkit (`ILSVRC2012_devkit_t12/data/`, in the directory, beside the images or one level
//!   up): its
//!   `ILSVRC2012_validation_ground_truth.txt` labels the images in file order by ILSVRC2012 id, and
//!   its MATLAB `meta.mat` maps those ids to wnids ([`crate::matfile`]), as torchvision reads them.
//!
//! Class indices follow the model: ImageNet-1k models index the 1,000 wnids in sorted order (as
//! torchvision's weights do, [`IMAGENET1K_CLASSES`]); a model trained on a subset of classes
//! indexes its own sorted list. Images of a class the model does not have are an error, not
//! silently dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::folder::{ImageFolder, image_files, is_image};

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
    /// The official flat images, labelled by the devkit (its directory `data/`).
    Devkit { images: PathBuf, devkit: PathBuf },
}

/// The devkit's files, in its `data/` directory.
const GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
const META: &str = "meta.mat";

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
        let official = [
            dir.join("ILSVRC2012_img_val"),
            dir.join("val"),
            dir.to_path_buf(),
        ]
        .into_iter()
        .find(|p| {
            std::fs::read_dir(p).is_ok_and(|entries| {
                entries.filter_map(|e| e.ok()).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("ILSVRC2012_val_")
                })
            })
        });
        if let Some(images) = official {
            let devkit = [dir, &images, &dir.join("..")]
                .into_iter()
                .map(|d| d.join("ILSVRC2012_devkit_t12/data"))
                .find(|d| d.join(GROUND_TRUTH).is_file() && d.join(META).is_file());
            return match devkit {
                Some(devkit) => Ok(Self::Devkit { images, devkit }),
                None => Err(Error::Source {
                    path: dir.to_path_buf(),
                    msg: format!(
                        "holds the official flat validation images but not the devkit that labels \
                         them: expected ILSVRC2012_devkit_t12/data/{GROUND_TRUTH} and {META} \
                         beside them (or sort the images into val/<wnid>/ folders)"
                    ),
                }),
            };
        }
        // After the flat layouts, whose image directory would otherwise pass for a class folder.
        for root in [dir.join("val"), dir.to_path_buf()] {
            if has_class_folders(&root) {
                return Ok(Self::Folder { root });
            }
        }
        Err(Error::Source {
            path: dir.to_path_buf(),
            msg: "is not an ImageNet validation set: expected val/<wnid>/<image> (or \
                  <wnid>/<image>) folders, flat images with the Kaggle LOC_val_solution.csv, or \
                  the official flat images with the devkit"
                .into(),
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

/// The training images' folder of the ImageNet copy at `dir`: `dir/train`, one folder per class;
/// the error names `dir` and the layout expected.
pub fn training_root(dir: &Path) -> Result<PathBuf, Error> {
    let root = dir.join("train");
    if root.is_dir() {
        Ok(root)
    } else {
        Err(Error::Source {
            path: dir.to_path_buf(),
            msg: "has no train/ folder: expected train/<wnid>/<image> beside the validation images"
                .into(),
        })
    }
}

/// Which of the training folder's classes a run trains on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Classes {
    /// This many, spread evenly over the sorted wnids (the `i`-th of `n` is number
    /// `i * available / n`), so a subset samples the whole hierarchy rather than its first
    /// branches (the first hundred wnids are nearly all fish, birds and amphibians).
    Count(usize),
    /// These wnids.
    Wnids(Vec<String>),
}

impl Classes {
    /// How many classes the subset has.
    pub fn len(&self) -> usize {
        match self {
            Classes::Count(n) => *n,
            Classes::Wnids(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chosen wnids, sorted (a net's class order), from the `available` sorted ones; the
    /// error says what is missing or impossible.
    pub fn choose(&self, available: &[String]) -> Result<Vec<String>, String> {
        match self {
            Classes::Count(n) if *n == 0 || *n > available.len() => Err(format!(
                "{n} classes asked for, {} available",
                available.len()
            )),
            Classes::Count(n) => Ok((0..*n)
                .map(|i| available[i * available.len() / n].clone())
                .collect()),
            Classes::Wnids(wnids) => {
                let mut chosen = wnids.clone();
                chosen.sort();
                chosen.dedup();
                if chosen.len() != wnids.len() {
                    return Err("a wnid is listed twice".into());
                }
                match chosen.iter().find(|w| available.binary_search(w).is_err()) {
                    Some(missing) => Err(format!("class `{missing}` has no training folder")),
                    None => Ok(chosen),
                }
            }
        }
    }
}

/// `folder` restricted to `classes` (a sorted subset of its classes), relabelled by position in
/// `classes`.
pub fn restrict(folder: ImageFolder, classes: &[String]) -> ImageFolder {
    let index: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let samples = folder
        .samples
        .into_iter()
        .filter_map(|(path, label)| Some((path, *index.get(folder.classes[label].as_str())?)))
        .collect();
    ImageFolder {
        root: folder.root,
        classes: classes.to_vec(),
        samples,
    }
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
    /// order); an image of another class is an error.
    pub fn open(dir: &Path, classes: &[String]) -> Result<Self, Error> {
        Self::read(dir, classes, false)
    }

    /// The validation images under `dir` of `classes` only (a net trained on a subset).
    pub fn open_only(dir: &Path, classes: &[String]) -> Result<Self, Error> {
        Self::read(dir, classes, true)
    }

    /// As an image folder (the loader's dataset).
    pub fn into_folder(self) -> ImageFolder {
        let root = match self.layout {
            Layout::Folder { root } => root,
            Layout::Kaggle { images, .. } | Layout::Devkit { images, .. } => images,
        };
        ImageFolder {
            root,
            classes: self.classes,
            samples: self.samples,
        }
    }

    fn read(dir: &Path, classes: &[String], only: bool) -> Result<Self, Error> {
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
                    match index.get(wnid.as_str()) {
                        Some(&class) => samples.push((path, class)),
                        None if only => {}
                        None => return Err(unknown(&root.join(wnid), wnid)),
                    }
                }
            }
            Layout::Devkit { images, devkit } => {
                let labels = read_devkit(devkit)?;
                let files = image_files(images)?;
                if files.len() != labels.len() {
                    return Err(Error::Source {
                        path: devkit.join(GROUND_TRUTH),
                        msg: format!(
                            "labels {} images, {} holds {}",
                            labels.len(),
                            images.display(),
                            files.len()
                        ),
                    });
                }
                for (path, wnid) in files.into_iter().zip(labels) {
                    match index.get(wnid.as_str()) {
                        Some(&class) => samples.push((path, class)),
                        None if only => {}
                        None => return Err(unknown(&devkit.join(GROUND_TRUTH), &wnid)),
                    }
                }
            }
            Layout::Kaggle { images, solution } => {
                let labels = read_kaggle_solution(solution)?;
                for path in image_files(images)? {
                    let id = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let wnid = labels.get(&id).ok_or_else(|| Error::Source {
                        path: solution.clone(),
                        msg: format!("has no row for image `{id}` ({})", path.display()),
                    })?;
                    match index.get(wnid.as_str()) {
                        Some(&class) => samples.push((path, class)),
                        None if only => {}
                        None => return Err(unknown(solution, wnid)),
                    }
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

/// Writes a small ImageNet-style dataset of real JPEGs under `dir`: `train/<wnid>/` and
/// `val/<wnid>/` for `classes` wnids spread over [`IMAGENET1K_CLASSES`], `per_class` training and
/// `val_per_class` validation images each. Sizes vary (64 to 191 pixels a side, either
/// orientation) so that every transform resizes and crops; each class has its own colour and
/// stripe direction, with noise, so a net can learn them. For tests and the ImageNet experiments'
/// smoke profile; the same `seed` writes the same files.
pub fn write_synthetic(
    dir: &Path,
    classes: usize,
    (per_class, val_per_class): (usize, usize),
    seed: u64,
) -> Result<Vec<String>, Error> {
    use rand::{Rng, SeedableRng};
    let all = imagenet1k_wnids();
    let wnids = Classes::Count(classes)
        .choose(&all)
        .map_err(|msg| Error::Source {
            path: dir.to_path_buf(),
            msg,
        })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (c, wnid) in wnids.iter().enumerate() {
        let hue = c as f32 / classes as f32;
        let base = [0.0, 1.0 / 3.0, 2.0 / 3.0]
            .map(|shift: f32| 127.0 + 100.0 * (std::f32::consts::TAU * (hue + shift)).cos());
        let vertical = c % 2 == 0;
        for (part, count) in [("train", per_class), ("val", val_per_class)] {
            let folder = dir.join(part).join(wnid);
            std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
                path: folder.clone(),
                source,
            })?;
            for i in 0..count {
                let (w, h) = (rng.random_range(64..192), rng.random_range(64..192));
                let period = rng.random_range(6..14);
                let mut img = image::RgbImage::new(w, h);
                for (x, y, p) in img.enumerate_pixels_mut() {
                    let along = if vertical { x } else { y };
                    let stripe = if (along / period) % 2 == 0 {
                        40.0
                    } else {
                        -40.0
                    };
                    for (k, v) in p.0.iter_mut().enumerate() {
                        let noise: f32 = rng.random_range(-25.0..25.0);
                        *v = (base[k] + stripe + noise).clamp(0.0, 255.0) as u8;
                    }
                }
                let path = folder.join(format!("{wnid}_{i:04}.JPEG"));
                img.save(&path).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    msg: format!("cannot write the JPEG: {e}"),
                })?;
            }
        }
    }
    Ok(wnids)
}

/// The wnid of each official validation image, in file order: the ground-truth file's ids
/// (one per line) through `meta.mat`'s synsets.
fn read_devkit(devkit: &Path) -> Result<Vec<String>, Error> {
    let meta_path = devkit.join(META);
    let bytes = std::fs::read(&meta_path).map_err(|source| Error::Io {
        path: meta_path.clone(),
        source,
    })?;
    let wnids: HashMap<u32, String> = crate::matfile::devkit_wnids(&bytes)
        .map_err(|msg| Error::Corrupt {
            path: meta_path.clone(),
            msg,
        })?
        .into_iter()
        .collect();
    let truth = devkit.join(GROUND_TRUTH);
    let text = std::fs::read_to_string(&truth).map_err(|source| Error::Io {
        path: truth.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let id: u32 = line.trim().parse().map_err(|_| Error::Corrupt {
                path: truth.clone(),
                msg: format!("line {}: expected a class id, got `{line}`", i + 1),
            })?;
            wnids.get(&id).cloned().ok_or_else(|| Error::Corrupt {
                path: truth.clone(),
                msg: format!(
                    "line {}: class id {id} is not in {}",
                    i + 1,
                    meta_path.display()
                ),
            })
        })
        .collect()
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
    fn class_subsets_spread_over_the_list_or_name_their_wnids() {
        let available: Vec<String> = (0..10).map(|i| format!("n{i:08}")).collect();
        let four = Classes::Count(4).choose(&available).unwrap();
        assert_eq!(four, ["n00000000", "n00000002", "n00000005", "n00000007"]);
        assert_eq!(Classes::Count(10).choose(&available).unwrap(), available);
        assert!(
            Classes::Count(11)
                .choose(&available)
                .unwrap_err()
                .contains("11")
        );
        let named = Classes::Wnids(vec!["n00000003".into(), "n00000001".into()]);
        assert_eq!(
            named.choose(&available).unwrap(),
            ["n00000001", "n00000003"]
        );
        let missing = Classes::Wnids(vec!["n00000042".into()]);
        assert!(
            missing
                .choose(&available)
                .unwrap_err()
                .contains("n00000042")
        );

        let folder = ImageFolder {
            root: PathBuf::from("train"),
            classes: available.clone(),
            samples: (0..10)
                .map(|i| (PathBuf::from(format!("{i}.jpg")), i))
                .collect(),
        };
        let kept = restrict(folder, &four);
        assert_eq!(kept.classes, four);
        let labels: Vec<(String, usize)> = kept
            .samples
            .iter()
            .map(|(p, l)| (p.display().to_string(), *l))
            .collect();
        assert_eq!(
            labels,
            [("0.jpg", 0), ("2.jpg", 1), ("5.jpg", 2), ("7.jpg", 3)]
                .map(|(p, l)| (p.to_string(), l))
        );
    }

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
