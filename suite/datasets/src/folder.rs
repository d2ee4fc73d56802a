//! ImageNet-style image folders and the paper's ImageNet transforms (§3.4).
//!
//! `root/<class>/<image>`: class index = position of the folder name in sorted order, as
//! torchvision's `ImageFolder` (for ImageNet, the sorted WordNet ids give the standard indices).
//!
//! - Training: shorter side resized to a random length in [256, 480], a random 224x224 crop,
//!   a random horizontal flip, mean subtraction, AlexNet's PCA colour augmentation.
//! - Testing: a single center crop (shorter side 256, crop 224); the standard 10 crops (corners and
//!   center of the 256 image and of its mirror); the fully-convolutional multi-scale views (whole
//!   image with shorter side in {224, 256, 384, 480, 640}).
//!
//! The training crop is made by resizing only the region of the original that the crop of the
//! resized image covers ([`resize_region`]): the same pixels as resizing the whole image and
//! cropping, for a fraction of the work.
//!
//! Deviation: the paper subtracts a per-pixel mean; with scale augmentation no fixed mean image lines
//! up with a crop, so a per-channel mean is subtracted (and divided by a per-channel std, as
//! torchvision's models expect).

use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::Error;
use crate::loader::Dataset;

const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// torchvision's ImageNet statistics, in [0, 1] units.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The eigen decomposition of ImageNet's RGB covariance used by AlexNet-style colour augmentation
/// (values of the fb.resnet.torch reproduction, in [0, 1] units).
pub const PCA_EIGVAL: [f32; 3] = [0.2175, 0.0188, 0.0045];
pub const PCA_EIGVEC: [[f32; 3]; 3] = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
];
/// Standard deviation of the PCA weights (AlexNet: 0.1).
pub const PCA_STD: f32 = 0.1;

/// Whether `path` names an image the folders read (by its extension, in any case).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
}

/// The images directly in `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The samples of an image folder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<(PathBuf, usize)>,
}

/// The class folders of an image folder's `root`, sorted: its class indices, without listing the
/// images.
pub fn class_names(root: &Path) -> Result<Vec<String>, Error> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    Ok(classes)
}

impl ImageFolder {
    pub fn open(root: &Path) -> Result<Self, Error> {
        let classes = class_names(root)?;
        let mut samples = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let files = image_files(&root.join(class))?;
            samples.extend(files.into_iter().map(|f| (f, label)));
        }
        if samples.is_empty() {
            return Err(Error::Source {
                path: root.to_path_buf(),
                msg: "holds no class folders with images (expected root/<class>/<image>.jpg)"
                    .into(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
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

/// Decodes an image file to RGB, naming the file on failure.
pub fn decode(path: &Path) -> Result<RgbImage, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(image::load_from_memory(&bytes)
        .map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            msg: format!("image does not decode: {e}"),
        })?
        .to_rgb8())
}

/// The size of `(w, h)` with its shorter side resized to `short`, the longer one as torchvision
/// computes it (truncated).
pub fn shorter_side_size((w, h): (u32, u32), short: u32) -> (u32, u32) {
    if w <= h {
        (short, (short as u64 * h as u64 / w as u64) as u32)
    } else {
        ((short as u64 * w as u64 / h as u64) as u32, short)
    }
}

/// Resizes so that the shorter side is `short` (the longer one as torchvision: truncated). An
/// image whose shorter side is already `short` is returned as it is, as torchvision does.
pub fn resize_shorter(img: &RgbImage, short: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.min(h) == short {
        return img.clone();
    }
    let size = shorter_side_size((w, h), short);
    resize_region(img, (0.0, 0.0, w as f64, h as f64), size)
}

/// The region `(left, top, width, height)` of `img` (in its pixels, fractions allowed) resized to
/// `size`, bilinear, antialiased when shrinking (the filter widens with the scale, as PIL's and
/// torchvision's antialiased bilinear do). SIMD (fast_image_resize), one resizer per thread.
pub fn resize_region(
    img: &RgbImage,
    (left, top, width, height): (f64, f64, f64, f64),
    (w, h): (u32, u32),
) -> RgbImage {
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    thread_local! {
        static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
    }
    let mut out = RgbImage::new(w, h);
    // A region computed in floating point can end a rounding error past the image's edge.
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let (left, top) = (left.clamp(0.0, iw), top.clamp(0.0, ih));
    let (width, height) = (width.min(iw - left), height.min(ih - top));
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, width, height);
    RESIZER.with(|resizer| {
        resizer
            .borrow_mut()
            .resize(img, &mut out, &options)
            .expect("an RGB8 image resizes into an RGB8 image of a positive size")
    });
    out
}

/// Per-channel normalisation to a CHW buffer, optionally mirrored and with an RGB offset (PCA).
fn to_chw(img: &RgbImage, flip: bool, offset: [f32; 3], out: &mut [f32]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    for (x, y, p) in img.enumerate_pixels() {
        let x = if flip { w - 1 - x as usize } else { x as usize };
        for c in 0..3 {
            let v = p[c] as f32 / 255.0 + offset[c];
            out[c * plane + y as usize * w + x] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
}

/// Where a centred `size` crop of a side of `len` starts: torchvision's `round((len - size) / 2)`,
/// which rounds half to even (so 17.5 gives 18 and 16.5 gives 16).
pub fn center_offset(len: u32, size: u32) -> u32 {
    let d = len - size;
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

fn crop(img: &RgbImage, x: u32, y: u32, size: u32) -> RgbImage {
    imageops::crop_imm(img, x, y, size, size).to_image()
}

/// The PCA colour offset of one draw: sum_i alpha_i * eigval_i * eigvec_i, alpha_i ~ N(0, 0.1).
pub fn pca_offset(rng: &mut ChaCha8Rng) -> [f32; 3] {
    let normal = Normal::new(0.0f32, PCA_STD).expect("valid std");
    let alpha: [f32; 3] = [0, 1, 2].map(|_| normal.sample(rng));
    [0, 1, 2].map(|c| {
        (0..3)
            .map(|i| PCA_EIGVEC[c][i] * alpha[i] * PCA_EIGVAL[i])
            .sum()
    })
}

/// The standard evaluation view: shorter side 256, center 224x224 crop.
const CENTER_RESIZE: u32 = 256;
const CENTER_CROP: u32 = 224;

/// A length of the paper's geometry (made for 224-pixel crops) scaled to crops of `crop` pixels,
/// rounded: how a run at a smaller resolution keeps the paper's ratios.
pub fn scaled(paper: u32, crop: u32) -> u32 {
    ((paper as u64 * crop as u64 + CENTER_CROP as u64 / 2) / CENTER_CROP as u64) as u32
}

/// How samples of an image folder are turned into tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// The paper's training augmentation.
    Train {
        scale: (u32, u32),
        crop: u32,
        pca: bool,
    },
    /// Resize the shorter side to `resize`, take the center `crop`.
    CenterCrop { resize: u32, crop: u32 },
}

impl Transform {
    pub const TRAIN: Transform = Transform::Train {
        scale: (256, 480),
        crop: 224,
        pca: true,
    };
    pub const CENTER: Transform = Transform::CenterCrop {
        resize: CENTER_RESIZE,
        crop: CENTER_CROP,
    };

    /// [`Transform::TRAIN`] at crops of `crop` pixels, the scale range scaled with them.
    pub fn train_at(crop: u32) -> Self {
        let Transform::Train {
            scale: (low, high),
            pca,
            ..
        } = Self::TRAIN
        else {
            unreachable!("TRAIN is a training transform")
        };
        Transform::Train {
            scale: (scaled(low, crop), scaled(high, crop)),
            crop,
            pca,
        }
    }

    /// [`Transform::CENTER`] at crops of `crop` pixels, the resize scaled with them.
    pub fn center_at(crop: u32) -> Self {
        Transform::CenterCrop {
            resize: scaled(CENTER_RESIZE, crop),
            crop,
        }
    }

    pub fn crop_size(&self) -> u32 {
        match *self {
            Transform::Train { crop, .. } | Transform::CenterCrop { crop, .. } => crop,
        }
    }

    /// Applies the transform to a decoded image, writing a (3, crop, crop) CHW buffer.
    pub fn apply(
        &self,
        img: &RgbImage,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) -> Result<(), String> {
        match *self {
            Transform::Train {
                scale,
                crop: size,
                pca,
            } => {
                let short = rng.random_range(scale.0..=scale.1);
                let (w, h) = shorter_side_size(img.dimensions(), short);
                if w < size || h < size {
                    return Err(format!(
                        "{w}x{h} after resizing is smaller than the {size} crop"
                    ));
                }
                let x = rng.random_range(0..=w - size);
                let y = rng.random_range(0..=h - size);
                let flip = rng.random_bool(0.5);
                let offset = if pca { pca_offset(rng) } else { [0.0; 3] };
                // The crop of the image resized to w x h, made by resizing only the region of the
                // original it covers: the same pixels for a fraction of the work (a 224 crop of
                // an image resized to a shorter side of 480 is a sixth of it).
                let (sx, sy) = (
                    img.width() as f64 / w as f64,
                    img.height() as f64 / h as f64,
                );
                let region = (
                    x as f64 * sx,
                    y as f64 * sy,
                    size as f64 * sx,
                    size as f64 * sy,
                );
                to_chw(&resize_region(img, region, (size, size)), flip, offset, out);
            }
            Transform::CenterCrop { resize, crop: size } => {
                if resize < size {
                    return Err(format!(
                        "the center crop ({size}) is larger than the resized shorter side ({resize})"
                    ));
                }
                center_crop_into(img, resize, size, out);
            }
        }
        Ok(())
    }
}

/// Resizes the shorter side to `resize` and writes the center `size` x `size` crop, normalised,
/// into `out`; `resize >= size`.
fn center_crop_into(img: &RgbImage, resize: u32, size: u32, out: &mut [f32]) {
    let resized = resize_shorter(img, resize);
    let (w, h) = resized.dimensions();
    to_chw(
        &crop(
            &resized,
            center_offset(w, size),
            center_offset(h, size),
            size,
        ),
        false,
        [0.0; 3],
        out,
    );
}

/// The standard evaluation view ([`Transform::CENTER`]: shorter side 256, center 224x224 crop,
/// ImageNet normalisation) of a decoded image, as a (3, 224, 224) CHW buffer: what torchvision's
/// pretrained weights and the paper's single-crop figures expect.
pub fn center_view(img: &RgbImage) -> Vec<f32> {
    center_view_at(img, CENTER_CROP)
}

/// [`center_view`] at crops of `crop` pixels ([`Transform::center_at`]), a (3, crop, crop) buffer.
pub fn center_view_at(img: &RgbImage, crop: u32) -> Vec<f32> {
    let size = crop as usize;
    let mut out = vec![0f32; 3 * size * size];
    center_crop_into(img, scaled(CENTER_RESIZE, crop), crop, &mut out);
    out
}

/// The standard 10-crop test views, in torchvision's `TenCrop` order: the top-left, top-right,
/// bottom-left, bottom-right and center crops of the image resized to `resize`, then the same five
/// of its mirror image; each (3, crop, crop).
pub fn ten_crop(img: &RgbImage, resize: u32, size: u32) -> Vec<Vec<f32>> {
    let resized = resize_shorter(img, resize);
    let (w, h) = resized.dimensions();
    let corners = [
        (0, 0),
        (w - size, 0),
        (0, h - size),
        (w - size, h - size),
        (center_offset(w, size), center_offset(h, size)),
    ];
    let len = 3 * (size * size) as usize;
    let mut views = Vec::with_capacity(10);
    for flip in [false, true] {
        for &(x, y) in &corners {
            // A mirrored corner crop is the crop of the mirrored image at the mirrored corner.
            let x = if flip { w - size - x } else { x };
            let mut out = vec![0f32; len];
            to_chw(&crop(&resized, x, y, size), flip, [0.0; 3], &mut out);
            views.push(out);
        }
    }
    views
}

/// The paper's multi-scale shorter sides for fully-convolutional testing (§3.4).
pub const MULTI_SCALES: [u32; 5] = [224, 256, 384, 480, 640];

/// The whole image at each scale (shorter side = scale), with its (height, width); CHW.
pub fn multi_scale(img: &RgbImage, scales: &[u32]) -> Vec<(Vec<f32>, (usize, usize))> {
    scales
        .iter()
        .map(|&s| {
            let resized = resize_shorter(img, s);
            let (w, h) = resized.dimensions();
            let mut out = vec![0f32; 3 * (w * h) as usize];
            to_chw(&resized, false, [0.0; 3], &mut out);
            (out, (h as usize, w as usize))
        })
        .collect()
}

/// An image folder with a transform: a [`Dataset`] for the loader.
pub struct FolderDataset {
    pub folder: ImageFolder,
    pub transform: Transform,
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.folder.len()
    }

    fn sample_shape(&self) -> (usize, usize, usize) {
        let s = self.transform.crop_size() as usize;
        (3, s, s)
    }

    fn label(&self, index: usize) -> usize {
        self.folder.samples[index].1
    }

    fn prepare(&self, index: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) -> Result<(), Error> {
        let path = &self.folder.samples[index].0;
        let img = decode(path)?;
        self.transform
            .apply(&img, rng, out)
            .map_err(|msg| Error::Corrupt {
                path: path.clone(),
                msg,
            })
    }
}
