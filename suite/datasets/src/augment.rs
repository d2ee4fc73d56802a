//! The paper's CIFAR-10 input pipeline (§4.2): normalisation, then 4 pixels of zero padding on each
//! side, a random 32x32 crop and a random horizontal flip for training; the single original view for
//! testing.
//!
//! Values are scaled to [0, 1] before normalising. Padding is applied to the normalised image, so a
//! padded pixel is 0: the mean, as in pipelines that subtract the mean before cropping.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::cifar::{IMAGE_BYTES, SIDE, Split};

pub const PAD: usize = 4;

/// How pixels are normalised.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalize {
    /// Subtract the mean image of the training set (32x32x3, in [0, 1]): the paper's choice.
    PixelMean(Vec<f32>),
    /// Subtract a per-channel mean and divide by a per-channel std (both in [0, 1] units).
    Channel { mean: [f32; 3], std: [f32; 3] },
}

impl Normalize {
    /// The paper's per-pixel mean of `train`.
    pub fn pixel_mean(train: &Split) -> Self {
        Normalize::PixelMean(train.pixel_mean().into_iter().map(|m| m / 255.0).collect())
    }

    /// Per-channel mean and std of `train`.
    pub fn channel(train: &Split) -> Self {
        let (mean, std) = train.channel_stats();
        Normalize::Channel {
            mean: mean.map(|m| m / 255.0),
            std: std.map(|s| s / 255.0),
        }
    }

    /// One HWC u8 image to CHW f32.
    pub fn apply(&self, image: &[u8], out: &mut [f32]) {
        debug_assert_eq!(image.len(), IMAGE_BYTES);
        let plane = SIDE * SIDE;
        for p in 0..plane {
            for c in 0..3 {
                let v = image[p * 3 + c] as f32 / 255.0;
                out[c * plane + p] = match self {
                    Normalize::PixelMean(mean) => v - mean[p * 3 + c],
                    Normalize::Channel { mean, std } => (v - mean[c]) / std[c],
                };
            }
        }
    }
}

/// A training view: the crop's offset in the padded image (0..=8 each) and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
}

impl View {
    pub const ORIGINAL: View = View {
        dy: PAD,
        dx: PAD,
        flip: false,
    };

    pub fn random(rng: &mut ChaCha8Rng) -> Self {
        View {
            dy: rng.random_range(0..=2 * PAD),
            dx: rng.random_range(0..=2 * PAD),
            flip: rng.random_bool(0.5),
        }
    }
}

/// Writes `view` of a normalised CHW image (`normalised`, 3x32x32) into `out` (3x32x32).
pub fn crop_flip(normalised: &[f32], view: View, out: &mut [f32]) {
    let plane = SIDE * SIDE;
    for c in 0..3 {
        for y in 0..SIDE {
            // Row y of the crop is row y + dy of the padded image, row y + dy - PAD of the original.
            let sy = (y + view.dy) as isize - PAD as isize;
            let row = &mut out[c * plane + y * SIDE..c * plane + (y + 1) * SIDE];
            if !(0..SIDE as isize).contains(&sy) {
                row.fill(0.0);
                continue;
            }
            for (x, value) in row.iter_mut().enumerate() {
                let xx = if view.flip { SIDE - 1 - x } else { x };
                let sx = (xx + view.dx) as isize - PAD as isize;
                *value = if (0..SIDE as isize).contains(&sx) {
                    normalised[c * plane + sy as usize * SIDE + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}
