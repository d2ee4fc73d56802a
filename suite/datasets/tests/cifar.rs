//! CIFAR-10 on the real data (../shared/data/cifar10) and on files the tests write.

use std::sync::Arc;

use candle_core::Device;
use datasets::cifar::{self, CLASSES, IMAGE_BYTES, Source};
use datasets::{CifarDataset, Loader, LoaderConfig, Normalize, Position, View, augment, split};

#[test]
fn full_parquet_counts_labels_and_cache() {
    let Some(dir) = testkit::shared_data("cifar10") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let source = Source::local(&dir).unwrap();
    assert_eq!(source, Source::Parquet(dir.clone()));
    let data = cifar::load(&source, Some(cache.path())).unwrap();
    assert_eq!(data.train.class_counts(), [5000; 10]);
    assert_eq!(data.test.class_counts(), [1000; 10]);
    assert_eq!(data.train.images.len(), 50_000 * IMAGE_BYTES);
    // The decoded cache is keyed by the sources' checksum, and a second load reads it.
    let cached = cache.path().join(format!("cifar10-{}.u8", data.checksum));
    assert!(cached.is_file());
    let again = cifar::load(&source, Some(cache.path())).unwrap();
    assert_eq!(again.train, data.train);
    assert_eq!(again.test, data.test);
    // A damaged cache file is rebuilt, not trusted.
    std::fs::write(&cached, b"RRCIFAR1 truncated").unwrap();
    let rebuilt = cifar::load(&source, Some(cache.path())).unwrap();
    assert_eq!(rebuilt.test, data.test);
    assert!(std::fs::metadata(&cached).unwrap().len() > 180_000_000);
    // Per-channel statistics of the decoded training set (the data README: 125.5, 122.7, 114.2 for
    // this decoder).
    let (mean, _) = data.train.channel_stats();
    for (m, want) in mean.iter().zip([125.5313f64, 122.7370, 114.2100]) {
        assert!((*m as f64 - want).abs() < 0.01, "{mean:?}");
    }
}

#[test]
fn binary_sample_matches_parquet_sample_and_label_order() {
    let Some(dir) = testkit::shared_data("cifar10/sample") else {
        return;
    };
    let names = std::fs::read_to_string(dir.join("cifar-10-batches-bin/batches.meta.txt")).unwrap();
    assert_eq!(names.lines().collect::<Vec<_>>(), CLASSES);
    let bin = cifar::load(
        &Source::local(&dir.join("cifar-10-batches-bin")).unwrap(),
        None,
    )
    .unwrap();
    let pq = cifar::load(&Source::Parquet(dir.clone()), None).unwrap();
    assert_eq!(bin.train.class_counts(), [100; 10]);
    assert_eq!(bin.test.class_counts(), [20; 10]);
    assert_eq!(bin.train.labels, pq.train.labels);
    // Same images, two JPEG decoders (Pillow wrote the .bin pixels): within 5 levels.
    let max = bin
        .train
        .images
        .iter()
        .zip(&pq.train.images)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(max <= 5, "max pixel difference {max}");
    // A directory holding the parquet files and the binary folder is read as parquet.
    assert_eq!(Source::local(&dir).unwrap(), Source::Parquet(dir.clone()));
}

#[test]
fn binary_files_the_test_writes_and_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    // Two records: pixel (y, x) of channel c has value c*100 + y + x (mod 256).
    let mut bytes = Vec::new();
    for label in [3u8, 9] {
        bytes.push(label);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    bytes.push(((c * 100 + y + x) % 256) as u8);
                }
            }
        }
    }
    std::fs::write(dir.path().join("data_batch_1.bin"), &bytes).unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), &bytes[..3073]).unwrap();
    let data = cifar::load(&Source::local(dir.path()).unwrap(), None).unwrap();
    assert_eq!(data.train.labels, vec![3, 9]);
    assert_eq!(data.test.labels, vec![3]);
    let img = data.train.image(1);
    assert_eq!(&img[..3], &[0, 100, 200]);
    assert_eq!(img[(5 * 32 + 7) * 3 + 1], 112, "HWC layout");

    std::fs::write(dir.path().join("test_batch.bin"), &bytes[..3000]).unwrap();
    let err = cifar::load(&Source::local(dir.path()).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("3073-byte records"),
        "{err}"
    );
    let mut bad = bytes[..3073].to_vec();
    bad[0] = 12;
    std::fs::write(dir.path().join("test_batch.bin"), &bad).unwrap();
    let err = cifar::load(&Source::local(dir.path()).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("label 12"),
        "{err}"
    );
}

#[test]
fn corrupt_parquet_and_missing_sources_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.parquet"), b"not parquet").unwrap();
    std::fs::write(dir.path().join("test.parquet"), b"not parquet").unwrap();
    let err = cifar::load(&Source::local(dir.path()).unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.parquet") && err.contains("not a parquet file"),
        "{err}"
    );
    let empty = tempfile::tempdir().unwrap();
    let err = Source::local(empty.path()).unwrap_err().to_string();
    assert!(
        err.contains(&empty.path().display().to_string()) && err.contains("neither"),
        "{err}"
    );
}

fn sample_split() -> Option<cifar::Split> {
    let dir = testkit::shared_data("cifar10/sample")?;
    Some(cifar::load(&Source::Parquet(dir), None).unwrap().train)
}

#[test]
fn augmented_crops_are_windows_of_the_padded_image_and_flips_mirror() {
    let Some(train) = sample_split() else { return };
    let norm = Normalize::pixel_mean(&train);
    let mut plain = vec![0f32; IMAGE_BYTES];
    norm.apply(train.image(7), &mut plain);
    // The zero-padded normalised image, 40x40 per channel.
    let padded = |c: usize, y: usize, x: usize| -> f32 {
        if (4..36).contains(&y) && (4..36).contains(&x) {
            plain[c * 1024 + (y - 4) * 32 + (x - 4)]
        } else {
            0.0
        }
    };
    let mut out = vec![0f32; IMAGE_BYTES];
    for (dy, dx) in [(0, 0), (8, 8), (3, 6), (4, 4)] {
        augment::crop_flip(
            &plain,
            View {
                dy,
                dx,
                flip: false,
            },
            &mut out,
        );
        let mut flipped = vec![0f32; IMAGE_BYTES];
        augment::crop_flip(&plain, View { dy, dx, flip: true }, &mut flipped);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    assert_eq!(out[c * 1024 + y * 32 + x], padded(c, y + dy, x + dx));
                    assert_eq!(
                        flipped[c * 1024 + y * 32 + x],
                        padded(c, y + dy, 31 - x + dx)
                    );
                }
            }
        }
    }
    augment::crop_flip(&plain, View::ORIGINAL, &mut out);
    assert_eq!(out, plain);
    // Per-pixel mean subtraction: the mean of the normalised training set is zero at every pixel.
    let mut sum = vec![0f64; IMAGE_BYTES];
    for i in 0..train.len() {
        norm.apply(train.image(i), &mut out);
        sum.iter_mut().zip(&out).for_each(|(s, v)| *s += *v as f64);
    }
    assert!(sum.iter().all(|s| (s / train.len() as f64).abs() < 1e-4));
}

#[test]
fn validation_split_of_the_real_labels_is_balanced() {
    let Some(dir) = testkit::shared_data("cifar10") else {
        return;
    };
    let data = cifar::load(
        &Source::Parquet(dir),
        Some(&std::env::temp_dir().join("resnet-repro-tests")),
    )
    .unwrap();
    let (train, val) = split::stratified(&data.train.labels, 5000, 0);
    assert_eq!((train.len(), val.len()), (45_000, 5000));
    assert_eq!(data.train.select(&val).class_counts(), [500; 10]);
    assert_eq!(data.train.select(&train).class_counts(), [4500; 10]);
}

fn loader(train: &cifar::Split, seed: u64, threads: usize) -> Loader {
    let dataset = Arc::new(CifarDataset::new(
        train.clone(),
        Normalize::pixel_mean(train),
        true,
    ));
    let config = LoaderConfig {
        batch_size: 64,
        seed,
        threads: Some(threads),
        ..Default::default()
    };
    Loader::new(dataset, config, &Device::Cpu).unwrap()
}

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn batches_depend_on_the_seed_only_not_on_threads() {
    let Some(train) = sample_split() else { return };
    let (one, two, other) = (
        loader(&train, 5, 1),
        loader(&train, 5, 2),
        loader(&train, 6, 2),
    );
    assert_eq!(one.batches_per_epoch(), 15);
    let a: Vec<_> = one
        .stream(Position::default())
        .take(20)
        .map(Result::unwrap)
        .collect();
    let b: Vec<_> = two
        .stream(Position::default())
        .take(20)
        .map(Result::unwrap)
        .collect();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(flat(&x.images), flat(&y.images));
        assert_eq!(
            x.labels.to_vec1::<u32>().unwrap(),
            y.labels.to_vec1::<u32>().unwrap()
        );
    }
    assert_eq!(
        a[15].at,
        Position { epoch: 1, batch: 0 },
        "the stream crosses into the next epoch"
    );
    assert_eq!(a[14].next, Position { epoch: 1, batch: 0 });
    let c = other.batch(Position::default()).unwrap();
    assert_ne!(flat(&c.images), flat(&a[0].images));
    // Each epoch is a permutation of its own: every sample once (64 * 15 of 1000; the rest dropped).
    assert_ne!(one.order(0), one.order(1));
    let mut seen = one.order(1);
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    // Resuming at a saved position gives exactly the batches that followed it.
    let resumed: Vec<_> = one.stream(a[16].at).take(3).map(Result::unwrap).collect();
    for (x, y) in resumed.iter().zip(&a[16..19]) {
        assert_eq!(flat(&x.images), flat(&y.images));
    }
    // An epoch stream ends with the epoch.
    assert_eq!(one.epoch(2).count(), 15);
}

#[test]
fn loader_rejects_bad_settings() {
    let Some(train) = sample_split() else { return };
    let dataset = Arc::new(CifarDataset::new(
        train.clone(),
        Normalize::channel(&train),
        false,
    ));
    let config = LoaderConfig {
        batch_size: 5000,
        ..Default::default()
    };
    let err = Loader::new(dataset, config, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("5000") && err.contains("1000"), "{err}");
}
