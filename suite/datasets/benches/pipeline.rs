//! Images per second of the input pipelines, beside what ResNet-20 training consumes, in one run.
//!
//! `cargo bench -p datasets --bench pipeline`. Groups (throughput in images):
//! - `cifar_train_batch/{threads}`: one augmented, normalised batch of 128 as a candle tensor.
//! - `imagenet_train_transform_{sample,synthetic}/...`: decoding a JPEG alone; decoding and the
//!   training transform (scale augmentation, crop, flip, PCA colour, normalisation) as the loader
//!   runs it; and, for the ratio, decoding, resizing the whole image and cropping. On the shared
//!   ImageNet sample's first 32 JPEGs where it is present, else a generated 500x375 image.
//! - `imagenet_decode_dct_scaled_{sample,synthetic}/{8,4,2,1}`: the same JPEGs decoded by
//!   jpeg-decoder with its IDCT scaled to n/8 of each side, the reduced-scale decoding a transform
//!   could use when the target is small enough; `8` is its full-size decode, beside `decode` above.
//! - `resnet20_forward_backward/128`: the consumer, a forward and backward pass at batch 128 with
//!   candle's stock ops (the SGD update it leaves out is a small part of a step).
//!
//! CIFAR's pixels are synthetic: its pipeline's cost does not depend on the content.

use std::hint::black_box;
use std::sync::Arc;

use candle_core::{D, Device, Tensor};
use candle_nn::ModuleT;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datasets::cifar::{IMAGE_BYTES, Split};
use datasets::{CifarDataset, Loader, LoaderConfig, Normalize, Position, Transform};
use rand::SeedableRng;

fn synthetic_split(n: usize) -> Split {
    Split {
        images: (0..n * IMAGE_BYTES)
            .map(|i| (i * 7919 % 251) as u8)
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

fn cifar(c: &mut Criterion) {
    let split = synthetic_split(5000);
    let normalize = Normalize::pixel_mean(&split);
    let dataset = Arc::new(CifarDataset::new(split, normalize, true));
    let mut group = c.benchmark_group("cifar_train_batch");
    group.throughput(Throughput::Elements(128));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1, cores];
    // One core gives one case, not the same id twice (which criterion refuses).
    thread_counts.dedup();
    for threads in thread_counts {
        let config = LoaderConfig {
            batch_size: 128,
            threads: Some(threads),
            ..Default::default()
        };
        let loader = Loader::new(dataset.clone(), config, &Device::Cpu).unwrap();
        let mut batch = 0u64;
        group.bench_function(format!("{threads}"), |b| {
            b.iter(|| {
                batch = (batch + 1) % loader.batches_per_epoch();
                black_box(loader.batch(Position { epoch: 0, batch }).unwrap())
            })
        });
    }
    group.finish();
}

/// JPEGs to time the ImageNet transform on: the shared ImageNet sample's first 32 (real photos,
/// of varied sizes) where it is present, else one generated 500x375 image, ImageNet's typical size.
fn imagenet_jpegs() -> (Vec<Vec<u8>>, &'static str) {
    if let Some(root) = testkit::shared_data("imagenet-sample/val") {
        let folder = datasets::ImageFolder::open(&root).unwrap();
        let files = folder
            .samples
            .iter()
            .take(32)
            .map(|(path, _)| std::fs::read(path).unwrap())
            .collect();
        return (files, "sample");
    }
    let img = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    (vec![jpeg], "synthetic")
}

fn imagenet(c: &mut Criterion) {
    use rand::Rng;
    let (jpegs, source) = imagenet_jpegs();
    let mut out = vec![0f32; 3 * 224 * 224];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut group = c.benchmark_group(format!("imagenet_train_transform_{source}"));
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    let mut jpeg = || {
        next = (next + 1) % jpegs.len();
        &jpegs[next]
    };
    group.bench_function("decode", |b| {
        b.iter(|| black_box(image::load_from_memory(jpeg()).unwrap().to_rgb8()))
    });
    // The transform as the loader runs it: only the region under the crop is resized.
    group.bench_function("decode+transform", |b| {
        b.iter(|| {
            let decoded = image::load_from_memory(jpeg()).unwrap().to_rgb8();
            Transform::TRAIN
                .apply(&decoded, &mut rng, &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    // The same draws the straightforward way, for the ratio: the whole image resized with the
    // image crate's antialiased triangle filter, then cropped (colour and normalisation left out,
    // which favours this side).
    group.bench_function("decode+resize_whole_then_crop", |b| {
        b.iter(|| {
            let decoded = image::load_from_memory(jpeg()).unwrap().to_rgb8();
            let short = rng.random_range(256..=480u32);
            let (w, h) = datasets::folder::shorter_side_size(decoded.dimensions(), short);
            let resized =
                image::imageops::resize(&decoded, w, h, image::imageops::FilterType::Triangle);
            let (x, y) = (rng.random_range(0..=w - 224), rng.random_range(0..=h - 224));
            black_box(image::imageops::crop_imm(&resized, x, y, 224, 224).to_image());
        })
    });
    group.finish();

    // Reduced-scale decoding saves IDCT and colour-conversion work, not the entropy decoding every
    // scale does; these cases measure what that leaves.
    let mut group = c.benchmark_group(format!("imagenet_decode_dct_scaled_{source}"));
    group.throughput(Throughput::Elements(1));
    for eighths in [8u32, 4, 2, 1] {
        group.bench_function(format!("{eighths}"), |b| {
            b.iter(|| {
                let mut decoder = jpeg_decoder::Decoder::new(&jpeg()[..]);
                decoder.read_info().unwrap();
                let info = decoder.info().unwrap();
                let side = |len: u16| (len as u32 * eighths).div_ceil(8) as u16;
                decoder.scale(side(info.width), side(info.height)).unwrap();
                black_box(decoder.decode().unwrap())
            })
        });
    }
    group.finish();
}

fn resnet20(c: &mut Criterion) {
    let model = nets::Model::new("resnet20".parse().unwrap(), 0, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (128, 3, 32, 32), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(
        (0..128u32).map(|i| i % 10).collect::<Vec<_>>(),
        128,
        &Device::Cpu,
    )
    .unwrap();
    let mut group = c.benchmark_group("resnet20_forward_backward");
    group.throughput(Throughput::Elements(128));
    group.sample_size(10);
    group.bench_function("128", |b| {
        b.iter(|| {
            let logits = model.net.forward_t(&x, true).unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
            black_box(loss.backward().unwrap());
            black_box(logits.argmax(D::Minus1).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, cifar, imagenet, resnet20);
criterion_main!(benches);
