//! The paper's ImageNet testing protocols (§3.4) over a validation set: top-1 and top-5 error of
//! one net or of an ensemble (Table 5's method: the nets' class probabilities averaged).
//!
//! - [`Views::Center`]: shorter side 256, the center 224x224 crop (the single-crop figures).
//! - [`Views::TenCrop`]: the standard 10 crops of the 256 image (Tables 2 and 3).
//! - [`Views::MultiScale`]: the fully-convolutional test (Table 4): the whole image with its
//!   shorter side at 224, 256, 384, 480 and 640. The nets end in global average pooling and a
//!   linear classifier, so their logits are exactly the class scores of the fully-convolutional
//!   form averaged over positions.
//!
//! A prediction is the softmax over the classes averaged over an image's views, then over the
//! nets of an ensemble. Images are decoded and cut into views on all cores while the nets run.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use candle_nn::ModuleT;
use rayon::prelude::*;
use serde::Serialize;

use datasets::folder::{self, MULTI_SCALES};

use crate::Error;

/// Which test views an image is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Views {
    Center,
    #[serde(rename = "10crop")]
    TenCrop,
    MultiScale,
}

impl Views {
    pub const ALL: [Views; 3] = [Views::Center, Views::TenCrop, Views::MultiScale];

    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Views::Center => "center",
            Views::TenCrop => "10crop",
            Views::MultiScale => "multiscale",
        }
    }

    /// Views per image.
    pub fn per_image(self) -> usize {
        match self {
            Views::Center => 1,
            Views::TenCrop => 10,
            Views::MultiScale => MULTI_SCALES.len(),
        }
    }
}

impl std::fmt::Display for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Views {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Views::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown views `{s}`: expected center, 10crop or multiscale"))
    }
}

/// One image's label and the (at most) five classes the net, or the ensemble, ranks highest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageResult {
    pub path: PathBuf,
    pub label: usize,
    pub top5: Vec<usize>,
    pub top5_probability: Vec<f32>,
}

impl ImageResult {
    pub fn top1_correct(&self) -> bool {
        self.top5.first() == Some(&self.label)
    }

    pub fn top5_correct(&self) -> bool {
        self.top5.contains(&self.label)
    }
}

/// Errors over a validation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub views: Views,
    pub images: usize,
    pub top1_error: f64,
    pub top5_error: f64,
    pub images_per_s: f64,
    pub per_image: Vec<ImageResult>,
}

/// The paper's test geometry at a crop of `crop` pixels (224 in the paper; a net trained at a
/// smaller resolution is tested at its own, every length scaled alike): the shorter side resized
/// to 256 (scaled) for the center and 10 crops, and to 224, 256, 384, 480, 640 (scaled) for the
/// multi-scale views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub crop: u32,
}

impl Geometry {
    pub const PAPER: Geometry = Geometry { crop: 224 };

    /// A length of the paper's geometry, scaled to this crop.
    pub fn scaled(self, paper: u32) -> u32 {
        folder::scaled(paper, self.crop)
    }
}

/// An image's views as one (views, 3, H, W) tensor on `device`; multi-scale views differ in size,
/// so each is its own (1, 3, H, W) tensor.
fn view_tensors(
    path: &std::path::Path,
    views: Views,
    geometry: Geometry,
    device: &Device,
) -> Result<Vec<Tensor>, Error> {
    let img = folder::decode(path)?;
    let (crop, size) = (geometry.crop, geometry.crop as usize);
    let resize = geometry.scaled(256);
    let tensor = |data: Vec<f32>, n: usize, h: usize, w: usize| {
        Tensor::from_vec(data, (n, 3, h, w), device).map_err(Error::from)
    };
    match views {
        Views::Center => Ok(vec![tensor(
            folder::center_view_at(&img, crop),
            1,
            size,
            size,
        )?]),
        Views::TenCrop => {
            let crops = folder::ten_crop(&img, resize, crop);
            Ok(vec![tensor(crops.concat(), 10, size, size)?])
        }
        Views::MultiScale => {
            let scales = MULTI_SCALES.map(|s| geometry.scaled(s));
            folder::multi_scale(&img, &scales)
                .into_iter()
                .map(|(data, (h, w))| tensor(data, 1, h, w))
                .collect()
        }
    }
}

/// Class probabilities (images, classes) of a batch of images' views, averaged over each image's
/// views and over the nets.
fn probabilities(
    nets: &[&nets::ResNet],
    views: Views,
    images: &[Vec<Tensor>],
) -> Result<Tensor, Error> {
    let mut sum: Option<Tensor> = None;
    for net in nets {
        let probs = match views {
            Views::Center | Views::TenCrop => {
                let per = views.per_image();
                let batch = Tensor::cat(&images.iter().map(|v| &v[0]).collect::<Vec<_>>(), 0)?;
                let p = candle_nn::ops::softmax_last_dim(&net.forward_t(&batch, false)?)?;
                let classes = p.dim(1)?;
                p.reshape((images.len(), per, classes))?.mean(1)?
            }
            Views::MultiScale => {
                let mut rows = Vec::with_capacity(images.len());
                for scales in images {
                    let per_scale = scales
                        .iter()
                        .map(|x| candle_nn::ops::softmax_last_dim(&net.forward_t(x, false)?))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    rows.push(Tensor::cat(&per_scale, 0)?.mean_keepdim(0)?);
                }
                Tensor::cat(&rows, 0)?
            }
        };
        sum = Some(match sum {
            None => probs,
            Some(s) => (s + probs)?,
        });
    }
    let sum = sum.expect("at least one net");
    Ok((sum / nets.len() as f64)?)
}

/// An image's highest-ranked classes and their probabilities, best first.
pub type Ranked = (Vec<usize>, Vec<f32>);

/// The (at most) five largest entries of each row.
pub fn top5(probs: &Tensor) -> Result<Vec<Ranked>, Error> {
    let rows = probs.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // A stable sort: ties go to the lower class index.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order.truncate(5);
            let p = order.iter().map(|&c| row[c]).collect();
            (order, p)
        })
        .collect())
}

/// Scores every labelled image of `samples` with `views` at `geometry` on the nets (one, or an
/// ensemble); `batch` images go through the nets at once (multi-scale runs each view alone).
/// `on_images` is told how many images each batch finished, for progress.
pub fn evaluate(
    nets: &[&nets::ResNet],
    samples: &[(PathBuf, usize)],
    (views, geometry): (Views, Geometry),
    device: &Device,
    batch: usize,
    mut on_images: impl FnMut(usize),
) -> Result<Evaluation, Error> {
    if nets.is_empty() {
        return Err(Error::invalid("models", "no net to evaluate"));
    }
    if batch == 0 {
        return Err(Error::invalid("batch", "must be at least 1"));
    }
    let start = std::time::Instant::now();
    if samples.is_empty() {
        return Err(Error::invalid("samples", "no image to evaluate"));
    }
    let mut per_image = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(batch) {
        let images = chunk
            .par_iter()
            .map(|(path, _)| view_tensors(path, views, geometry, device))
            .collect::<Result<Vec<_>, Error>>()?;
        let probs = probabilities(nets, views, &images)?;
        for ((path, label), (classes, p)) in chunk.iter().zip(top5(&probs)?) {
            per_image.push(ImageResult {
                path: path.clone(),
                label: *label,
                top5: classes,
                top5_probability: p,
            });
        }
        on_images(chunk.len());
    }
    let n = per_image.len();
    let wrong = |correct: fn(&ImageResult) -> bool| {
        per_image.iter().filter(|r| !correct(r)).count() as f64 / n as f64
    };
    Ok(Evaluation {
        views,
        images: n,
        top1_error: wrong(ImageResult::top1_correct),
        top5_error: wrong(ImageResult::top5_correct),
        images_per_s: n as f64 / start.elapsed().as_secs_f64(),
        per_image,
    })
}

/// The class probabilities one image gets under `views` at the paper's geometry (averaged over
/// its views), for checks.
pub fn image_probabilities(
    net: &nets::ResNet,
    path: &std::path::Path,
    views: Views,
    device: &Device,
) -> Result<Vec<f32>, Error> {
    let images = [view_tensors(path, views, Geometry::PAPER, device)?];
    let probs = probabilities(&[net], views, &images)?;
    Ok(probs.squeeze(0)?.to_vec1::<f32>()?)
}
