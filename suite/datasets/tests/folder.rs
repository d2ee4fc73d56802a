//! Image folders: written by the tests, and the real ImageNet sample (../shared/data/imagenet-sample).

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use datasets::folder::{self, ImageFolder, MULTI_SCALES, Transform};
use datasets::{FolderDataset, Loader, LoaderConfig, Position};
use image::{Rgb, RgbImage};
use rand::SeedableRng;

/// A `w` x `h` image whose red channel is the column and green the row (mod 256).
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
}

fn write_folder(root: &Path) {
    for (class, n) in [("b_cat", 2), ("a_dog", 3)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..n {
            gradient(300 + 10 * i, 260)
                .save(root.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(root.join("a_dog").join("notes.txt"), "not an image").unwrap();
}

#[test]
fn classes_are_sorted_folder_names() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let f = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(f.classes, vec!["a_dog", "b_cat"]);
    assert_eq!(f.len(), 5, "the .txt file is not a sample");
    assert_eq!(
        f.samples.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![0, 0, 0, 1, 1]
    );
    let err = ImageFolder::open(&dir.path().join("a_dog"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a_dog") && err.contains("no class folders"),
        "{err}"
    );
}

#[test]
fn center_crop_takes_the_middle_of_the_resized_image() {
    // 512x256 -> shorter side 256 gives 512x256 unchanged; the center 224 crop starts at (144, 16).
    let img = gradient(512, 256);
    let mut out = vec![0f32; 3 * 224 * 224];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    Transform::CENTER.apply(&img, &mut rng, &mut out).unwrap();
    let red =
        |x: usize, y: usize| out[y * 224 + x] * folder::IMAGENET_STD[0] + folder::IMAGENET_MEAN[0];
    assert!(
        (red(0, 0) - 144.0 / 255.0).abs() < 1e-5,
        "{}",
        red(0, 0) * 255.0
    );
    assert!((red(10, 5) - 154.0 / 255.0).abs() < 1e-5);
}

#[test]
fn ten_crop_has_corners_center_and_mirrors() {
    let img = gradient(256, 256);
    let views = folder::ten_crop(&img, 256, 224);
    assert_eq!(views.len(), 10);
    let red =
        |v: &[f32], x: usize| (v[x] * folder::IMAGENET_STD[0] + folder::IMAGENET_MEAN[0]) * 255.0;
    // Top-left corner starts at column 0, top-right at 32, center at 16.
    assert!((red(&views[0], 0) - 0.0).abs() < 1e-3);
    assert!((red(&views[1], 0) - 32.0).abs() < 1e-3);
    assert!((red(&views[4], 0) - 16.0).abs() < 1e-3);
    // Views 5..10 are the five crops of the mirrored image (torchvision's TenCrop): its top-left
    // crop shows original columns 255 down to 32.
    assert!((red(&views[5], 0) - 255.0).abs() < 1e-3);
    assert!((red(&views[5], 223) - 32.0).abs() < 1e-3);
    assert!((red(&views[9], 0) - 239.0).abs() < 1e-3, "mirrored center");
}

#[test]
fn training_transform_is_seeded_and_the_right_size() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let dataset = Arc::new(FolderDataset {
        folder: ImageFolder::open(dir.path()).unwrap(),
        transform: Transform::TRAIN,
    });
    let config = |seed| LoaderConfig {
        batch_size: 2,
        seed,
        ..Default::default()
    };
    let a = Loader::new(dataset.clone(), config(1), &Device::Cpu).unwrap();
    let b = Loader::new(dataset.clone(), config(1), &Device::Cpu).unwrap();
    let x = a.batch(Position::default()).unwrap();
    let y = b.batch(Position::default()).unwrap();
    assert_eq!(x.images.dims(), &[2, 3, 224, 224]);
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&x.images), flat(&y.images));
}

#[test]
fn unreadable_images_name_the_file_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    std::fs::write(dir.path().join("b_cat").join("9.jpg"), b"truncated").unwrap();
    let dataset = Arc::new(FolderDataset {
        folder: ImageFolder::open(dir.path()).unwrap(),
        transform: Transform::CENTER,
    });
    let strict = LoaderConfig {
        batch_size: 6,
        shuffle: false,
        ..Default::default()
    };
    let loader = Loader::new(dataset.clone(), strict.clone(), &Device::Cpu).unwrap();
    let err = loader.batch(Position::default()).unwrap_err().to_string();
    assert!(
        err.contains("9.jpg") && err.contains("does not decode"),
        "{err}"
    );
    let lenient = LoaderConfig {
        skip_unreadable: true,
        ..strict
    };
    let loader = Loader::new(dataset, lenient, &Device::Cpu).unwrap();
    let batch = loader.batch(Position::default()).unwrap();
    assert_eq!(batch.images.dim(0).unwrap(), 5);
    assert_eq!(
        batch.labels.to_vec1::<u32>().unwrap(),
        vec![0, 0, 0, 1, 1],
        "labels stay with their images"
    );
    assert_eq!(loader.skipped(), 1);
}

#[test]
fn real_imagenet_sample() {
    let Some(root) = testkit::shared_data("imagenet-sample/val") else {
        return;
    };
    let f = ImageFolder::open(&root).unwrap();
    assert_eq!(f.classes.len(), 1000);
    assert_eq!(f.classes[0], "n01440764");
    assert_eq!(f.len(), 1000);
    let dataset = Arc::new(FolderDataset {
        folder: f.clone(),
        transform: Transform::TRAIN,
    });
    let loader = Loader::new(
        dataset,
        LoaderConfig {
            batch_size: 8,
            ..Default::default()
        },
        &Device::Cpu,
    )
    .unwrap();
    let batch = loader.batch(Position::default()).unwrap();
    assert_eq!(batch.images.dims(), &[8, 3, 224, 224]);
    let img = folder::decode(&f.samples[0].0).unwrap();
    let views = folder::multi_scale(&img, &MULTI_SCALES);
    for ((data, (h, w)), s) in views.iter().zip(MULTI_SCALES) {
        assert_eq!(*h.min(w), s as usize);
        assert_eq!(data.len(), 3 * h * w);
    }
}
