//! ImageNet runs on a generated image folder (real JPEGs of varied sizes): the paper's protocol at a
//! small resolution on a class subset trains, evaluates on the subset's validation images, and a
//! run interrupted after a checkpoint resumes to the bits of an uninterrupted one.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use datasets::imagenet::{Classes, write_synthetic};
use trainer::{ImageNetProtocol, Observer, Outcome, Provenance, Quiet, RunSpec};

fn protocol() -> ImageNetProtocol {
    ImageNetProtocol::read(&paper::Paper::repository_file()).unwrap()
}

fn spec(data: &Path) -> RunSpec {
    let p = protocol();
    let mut spec = RunSpec::imagenet(&p, "resnet18", 8, p.steps(4, 8), data.to_path_buf());
    spec.batch_size = 6;
    spec.log_every = 2;
    spec.eval_every = 4;
    spec.checkpoint_every = 4;
    spec.data.classes = Some(Classes::Count(3));
    spec.data.resolution = Some(32);
    spec.data.loader_threads = Some(2);
    spec
}

/// Stops the loop (by unwinding) once it reaches `at`, as a killed process would stop.
struct StopAt(u64);

impl Observer for StopAt {
    fn step(&mut self, iteration: u64) {
        assert!(iteration < self.0, "stopped at iteration {iteration}");
    }
}

#[test]
fn a_class_subset_trains_evaluates_and_resumes_exactly() {
    let data = tempfile::tempdir().unwrap();
    let wnids = write_synthetic(data.path(), 4, (6, 2), 7).unwrap();
    assert_eq!(wnids.len(), 4);
    let spec = spec(data.path());
    spec.validate().unwrap();
    assert_eq!(spec.model_spec().unwrap().num_classes, 3);

    let runs = tempfile::tempdir().unwrap();
    let provenance = Provenance::default();
    let whole = runs.path().join("whole");
    let Outcome::Finished(summary) =
        trainer::run(&spec, &whole, None, &provenance, &mut Quiet).unwrap()
    else {
        panic!("a fresh run trains")
    };
    assert_eq!(summary.iterations, 8);
    assert_eq!((summary.train_images, summary.eval_images), (18, 6));
    assert!(summary.final_test_error <= 1.0 && summary.final_train_loss.is_finite());
    let weights = candle_core::safetensors::load(
        whole.join(trainer::run::WEIGHTS_FILE),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        weights["fc.weight"].dims(),
        &[3, 512],
        "one output per class"
    );

    // Interrupted after the checkpoint at iteration 4, then resumed.
    let cut = runs.path().join("cut");
    let stopped = std::panic::catch_unwind(AssertUnwindSafe(|| {
        trainer::run(&spec, &cut, None, &provenance, &mut StopAt(6))
    }));
    assert!(stopped.is_err(), "the first session stops at iteration 6");
    assert!(cut.join(trainer::run::CHECKPOINT_FILE).is_file());
    let Outcome::Finished(resumed) =
        trainer::run(&spec, &cut, None, &provenance, &mut Quiet).unwrap()
    else {
        panic!("the second session trains the rest")
    };
    assert_eq!(resumed.resumes, 1);
    let read = |dir: &Path| std::fs::read(dir.join(trainer::run::WEIGHTS_FILE)).unwrap();
    assert!(read(&whole) == read(&cut), "resumed weights differ");
    assert_eq!(resumed.final_test_error, summary.final_test_error);
}

#[test]
fn imagenet_specs_say_what_is_wrong() {
    let p = protocol();
    let data = Path::new("/data/imagenet");
    let mut cifar_net = RunSpec::imagenet(&p, "resnet20", 10, p.steps(5, 10), data.into());
    let err = cifar_net.validate().unwrap_err().to_string();
    assert!(
        err.contains("resnet20") && err.contains("CIFAR net"),
        "{err}"
    );
    cifar_net.model = "resnet18".into();
    cifar_net.data.path = None;
    let err = cifar_net.validate().unwrap_err().to_string();
    assert!(
        err.contains("data.path") && err.contains("not downloaded"),
        "{err}"
    );

    let mut spec = spec(data);
    spec.data.resolution = Some(8);
    let err = spec.validate().unwrap_err().to_string();
    assert!(err.contains("data.resolution"), "{err}");

    // A missing training folder names the directory.
    let empty = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    let spec = self::spec(empty.path());
    let err = trainer::run(&spec, runs.path(), None, &Provenance::default(), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train/"), "{err}");
}
