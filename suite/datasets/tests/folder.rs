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

#[test]
fn ten_crop_offsets_round_as_torchvisions_ten_crop() {
    // 259x256: already at the 256 shorter side, so not resized. torchvision's center crop starts
    // at round((259 - 224) / 2) = round(17.5) = 18 (half to even); the right corners at 35. The
    // mirror's center crop starts at mirrored column 18, original column 259 - 224 - 18 = 17, and
    // shows it right to left: its first column is original column 17 + 223 = 240.
    let img = gradient(259, 256);
    let views = folder::ten_crop(&img, 256, 224);
    let red =
        |v: &[f32], x: usize| (v[x] * folder::IMAGENET_STD[0] + folder::IMAGENET_MEAN[0]) * 255.0;
    let green = |v: &[f32], y: usize| {
        (v[224 * 224 + y * 224] * folder::IMAGENET_STD[1] + folder::IMAGENET_MEAN[1]) * 255.0
    };
    let first_columns: Vec<f32> = views.iter().map(|v| red(v, 0).round()).collect();
    assert_eq!(
        first_columns,
        vec![
            0.0,
            35.0,
            0.0,
            35.0,
            18.0,
            258.0 - 256.0,
            223.0,
            2.0,
            223.0,
            240.0
        ],
        "mirrored views' first columns are original columns 258 (mod 256), 223, 258, 223, 240"
    );
    let first_rows: Vec<f32> = views.iter().map(|v| green(v, 0).round()).collect();
    assert_eq!(
        first_rows,
        vec![0.0, 0.0, 32.0, 32.0, 16.0, 0.0, 0.0, 32.0, 32.0, 16.0]
    );
    assert_eq!(folder::center_offset(259, 224), 18);
    assert_eq!(folder::center_offset(257, 224), 16, "16.5 rounds to even");
    assert_eq!(folder::center_offset(256, 224), 16);
}

/// A flat directory of `n` images named as the Kaggle copy names them, with its solution file.
fn write_kaggle(dir: &Path, wnids: &[&str]) {
    let images = dir.join("ILSVRC/Data/CLS-LOC/val");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("ImageId,PredictionString\n");
    for (i, wnid) in wnids.iter().enumerate() {
        let id = format!("ILSVRC2012_val_{:08}", i + 1);
        gradient(300, 260)
            .save(images.join(format!("{id}.JPEG")))
            .unwrap();
        csv.push_str(&format!("{id},{wnid} 10 20 200 220 {wnid} 5 5 50 50 \n"));
    }
    std::fs::write(dir.join("LOC_val_solution.csv"), csv).unwrap();
}

#[test]
fn validation_layouts_are_recognised_and_labelled_by_the_models_classes() {
    use datasets::imagenet::{Layout, Validation, imagenet1k_wnids};
    let classes = imagenet1k_wnids();

    let kaggle = tempfile::tempdir().unwrap();
    write_kaggle(kaggle.path(), &["n01443537", "n01440764", "n15075141"]);
    let val = Validation::open(kaggle.path(), &classes).unwrap();
    assert!(
        matches!(val.layout, Layout::Kaggle { .. }),
        "{:?}",
        val.layout
    );
    let labels: Vec<usize> = val.samples.iter().map(|s| s.1).collect();
    assert_eq!(labels, vec![1, 0, 999]);

    // A class the model does not have is an error naming it.
    let err = Validation::open(kaggle.path(), &classes[..2])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("n15075141") && err.contains("2 classes"),
        "{err}"
    );

    // An image without a row names the solution file.
    let images = kaggle.path().join("ILSVRC/Data/CLS-LOC/val");
    gradient(300, 260)
        .save(images.join("ILSVRC2012_val_00000099.JPEG"))
        .unwrap();
    let err = Validation::open(kaggle.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LOC_val_solution.csv") && err.contains("ILSVRC2012_val_00000099"),
        "{err}"
    );

    // A malformed row names the file and line.
    let bad = tempfile::tempdir().unwrap();
    write_kaggle(bad.path(), &["n01443537"]);
    std::fs::write(
        bad.path().join("LOC_val_solution.csv"),
        "ImageId,PredictionString\nILSVRC2012_val_00000001\n",
    )
    .unwrap();
    let err = Validation::open(bad.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2") && err.contains("LOC_val_solution.csv"),
        "{err}"
    );

    // The official flat images without their devkit: what is missing is named.
    let devkit = tempfile::tempdir().unwrap();
    let official = devkit.path().join("ILSVRC2012_img_val");
    std::fs::create_dir_all(&official).unwrap();
    gradient(300, 260)
        .save(official.join("ILSVRC2012_val_00000001.JPEG"))
        .unwrap();
    let err = Validation::open(devkit.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta.mat") && err.contains("devkit"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = Validation::open(empty.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an ImageNet validation set"), "{err}");
}

#[test]
fn the_shared_sample_is_a_validation_folder_in_torchvisions_class_order() {
    let Some(root) = testkit::shared_data("imagenet-sample") else {
        return;
    };
    let classes = datasets::imagenet::imagenet1k_wnids();
    let val = datasets::imagenet::Validation::open(&root, &classes).unwrap();
    assert_eq!(val.len(), 1000);
    // One image per class, in class order, each labelled with its folder's index.
    for (i, (path, label)) in val.samples.iter().enumerate() {
        assert_eq!(*label, i);
        assert!(
            path.starts_with(root.join("val").join(&classes[i])),
            "{path:?}"
        );
    }
}

/// The training transform resizes only the region of the image its crop covers; on real JPEGs that
/// must give the pixels of resizing the whole image (the image crate's antialiased triangle
/// filter, as before) and then cropping, up to the two filters' rounding.
#[test]
fn the_training_crop_matches_resizing_the_whole_image_then_cropping() {
    use rand::Rng;
    let Some(root) = testkit::shared_data("imagenet-sample/val") else {
        return;
    };
    let f = ImageFolder::open(&root).unwrap();
    let size = 224u32;
    let mut worst = 0f32;
    for (i, (path, _)) in f.samples.iter().step_by(97).enumerate() {
        let img = folder::decode(path).unwrap();
        let mut out = vec![0f32; 3 * (size * size) as usize];
        let seed = i as u64;
        let transform = Transform::Train {
            scale: (256, 480),
            crop: size,
            pca: false,
        };
        transform
            .apply(
                &img,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
                &mut out,
            )
            .unwrap();
        // The same draws, the old way.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let short = rng.random_range(256..=480u32);
        let (w, h) = folder::shorter_side_size(img.dimensions(), short);
        let resized = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
        let x = rng.random_range(0..=w - size);
        let y = rng.random_range(0..=h - size);
        let flip = rng.random_bool(0.5);
        let mut diff = 0f64;
        for c in 0..3 {
            for row in 0..size {
                for col in 0..size {
                    let src = if flip { size - 1 - col } else { col };
                    let want = resized.get_pixel(x + src, y + row)[c] as f32 / 255.0;
                    let got = out[(c as u32 * size * size + row * size + col) as usize]
                        * folder::IMAGENET_STD[c]
                        + folder::IMAGENET_MEAN[c];
                    diff += (got - want).abs() as f64;
                }
            }
        }
        worst = worst.max((diff / (3 * size * size) as f64) as f32);
    }
    // Mean absolute difference per pixel, in [0, 1] units: about 1/255 is the filters' rounding.
    eprintln!("worst mean difference {:.3}/255", worst * 255.0);
    assert!(
        worst < 2.0 / 255.0,
        "mean difference {:.2}/255",
        worst * 255.0
    );
}

#[test]
fn a_region_a_rounding_error_past_the_edge_still_resizes() {
    let img = gradient(300, 200);
    let out = folder::resize_region(&img, (0.0, 100.0, 300.000_000_1, 100.000_000_1), (30, 10));
    assert_eq!(out.dimensions(), (30, 10));
    // The region's first rows are row 100 onwards: green starts near 100.
    assert!(
        (out.get_pixel(0, 0)[1] as i32 - 105).abs() <= 6,
        "{:?}",
        out.get_pixel(0, 0)
    );
}
