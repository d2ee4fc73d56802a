//! The paper's ImageNet testing protocols (`trainer::eval`) on real JPEGs of the shared ImageNet
//! sample, with seeded ResNet-18 weights: each protocol's probabilities against the same views
//! scored one at a time by hand, and the bookkeeping of errors and ensembles.

use candle_core::{Device, Tensor};
use candle_nn::ModuleT;
use datasets::folder::{self, MULTI_SCALES};
use datasets::imagenet::{Validation, imagenet1k_wnids};
use trainer::eval::{self, Geometry, Views};

fn sample() -> Option<Validation> {
    let root = testkit::shared_data("imagenet-sample")?;
    Some(Validation::open(&root, &imagenet1k_wnids()).unwrap())
}

fn resnet18(seed: u64) -> nets::Model {
    nets::Model::new("resnet18".parse().unwrap(), seed, &Device::Cpu).unwrap()
}

/// Softmax of the net's logits for one (1, 3, H, W) view.
fn softmax_of(net: &nets::ResNet, data: Vec<f32>, h: usize, w: usize) -> Vec<f32> {
    let x = Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap();
    let logits = net.forward_t(&x, false).unwrap();
    candle_nn::ops::softmax_last_dim(&logits)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn mean(rows: &[Vec<f32>]) -> Vec<f32> {
    (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c]).sum::<f32>() / rows.len() as f32)
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    // Probabilities near 1/1000: batching changes only the order of some sums.
    assert!(worst < 1e-6, "{what}: max difference {worst:e}");
}

#[test]
fn each_protocol_averages_the_softmax_of_its_views() {
    let Some(val) = sample() else {
        return;
    };
    let model = resnet18(0);
    let path = &val.samples[7].0;
    let img = folder::decode(path).unwrap();

    let center = softmax_of(&model.net, folder::center_view(&img), 224, 224);
    let got = eval::image_probabilities(&model.net, path, Views::Center, &Device::Cpu).unwrap();
    assert_close(&got, &center, "center");

    let crops: Vec<Vec<f32>> = folder::ten_crop(&img, 256, 224)
        .into_iter()
        .map(|c| softmax_of(&model.net, c, 224, 224))
        .collect();
    assert_eq!(crops.len(), 10);
    assert_close(&crops[4], &center, "the fifth crop is the center crop");
    let got = eval::image_probabilities(&model.net, path, Views::TenCrop, &Device::Cpu).unwrap();
    assert_close(&got, &mean(&crops), "10crop");

    // Multi-scale: every scale runs, its shorter side at the scale.
    let scales: Vec<Vec<f32>> = folder::multi_scale(&img, &MULTI_SCALES)
        .into_iter()
        .zip(MULTI_SCALES)
        .map(|((data, (h, w)), s)| {
            assert_eq!(h.min(w), s as usize);
            softmax_of(&model.net, data, h, w)
        })
        .collect();
    let got = eval::image_probabilities(&model.net, path, Views::MultiScale, &Device::Cpu).unwrap();
    assert_close(&got, &mean(&scales), "multiscale");
    assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-4);
}

#[test]
fn errors_count_the_labels_among_the_top_classes_and_ensembles_average_nets() {
    let Some(mut val) = sample() else {
        return;
    };
    // Every 100th image: ten classes far apart.
    val.samples = val.samples.into_iter().step_by(100).collect();
    let (a, b) = (resnet18(0), resnet18(1));
    let single = eval::evaluate(
        &[&a.net],
        &val.samples,
        (Views::Center, Geometry::PAPER),
        &Device::Cpu,
        4,
        |_| {},
    )
    .unwrap();
    assert_eq!(single.images, 10);
    for r in &single.per_image {
        assert_eq!(r.top5.len(), 5);
        assert!(r.top5_probability.windows(2).all(|p| p[0] >= p[1]));
    }
    let top1 = single
        .per_image
        .iter()
        .filter(|r| r.top5[0] != r.label)
        .count();
    let top5 = single
        .per_image
        .iter()
        .filter(|r| !r.top5.contains(&r.label))
        .count();
    assert_eq!(single.top1_error, top1 as f64 / 10.0);
    assert_eq!(single.top5_error, top5 as f64 / 10.0);

    // Batching does not change a prediction.
    let one_by_one = eval::evaluate(
        &[&a.net],
        &val.samples,
        (Views::Center, Geometry::PAPER),
        &Device::Cpu,
        1,
        |_| {},
    )
    .unwrap();
    for (x, y) in single.per_image.iter().zip(&one_by_one.per_image) {
        assert_eq!(x.top5, y.top5);
    }

    // An ensemble's probabilities are the mean of its nets'.
    let mut seen = 0;
    let pair = eval::evaluate(
        &[&a.net, &b.net],
        &val.samples,
        (Views::Center, Geometry::PAPER),
        &Device::Cpu,
        4,
        |n| seen += n,
    )
    .unwrap();
    assert_eq!(seen, 10, "progress is told of every image");
    for r in &pair.per_image {
        let pa = eval::image_probabilities(&a.net, &r.path, Views::Center, &Device::Cpu).unwrap();
        let pb = eval::image_probabilities(&b.net, &r.path, Views::Center, &Device::Cpu).unwrap();
        let both = mean(&[pa, pb]);
        for (k, &c) in r.top5.iter().enumerate() {
            assert!((r.top5_probability[k] - both[c]).abs() < 1e-6);
        }
        let best = (0..both.len())
            .max_by(|&x, &y| both[x].total_cmp(&both[y]).then(y.cmp(&x)))
            .unwrap();
        assert_eq!(r.top5[0], best);
    }
}

#[test]
fn views_parse_by_name() {
    for v in Views::ALL {
        assert_eq!(v.name().parse::<Views>().unwrap(), v);
    }
    let err = "5crop".parse::<Views>().unwrap_err();
    assert!(err.contains("5crop") && err.contains("10crop"), "{err}");
}
