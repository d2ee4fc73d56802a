//! `suite train` and `suite run` end to end on real CIFAR-10 images: a run killed with SIGKILL and
//! started again finishes with the figures of an uninterrupted run, bit for bit.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Dir, shared_data};

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        "resnet8",
        "--iterations",
        "60",
        "--batch",
        "32",
        "--log-every",
        "10",
        "--eval-every",
        "20",
        "--checkpoint-every",
        "10",
        "--quiet",
        "--data",
        data,
        "--out",
        out,
    ]
}

/// The metrics rows without the time columns (images/s, wall time).
fn figures(metrics: &Path) -> Vec<String> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
        .collect()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_killed_run_resumes_to_the_figures_of_an_uninterrupted_one() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let data = format!("cifar10={}", sample.display());
    let dir = Dir::default();

    let out = dir.suite(&train_args(&data, "whole")).code(0).stdout();
    assert!(out.contains("finished: 60 iterations"), "{out}");

    let mut child = dir.command(&train_args(&data, "killed")).spawn().unwrap();
    let checkpoint = dir.join("killed/checkpoint.safetensors");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("killed/summary.json").exists(),
        "the run finished before it could be killed"
    );

    let out = dir.suite(&train_args(&data, "killed")).code(0).stdout();
    assert!(out.contains("(1 resume(s))"), "{out}");
    assert_eq!(
        figures(&dir.join("whole/metrics.csv")),
        figures(&dir.join("killed/metrics.csv"))
    );
    let (a, b) = (summary(&dir.join("whole")), summary(&dir.join("killed")));
    for key in [
        "iterations",
        "final_train_loss",
        "final_train_error",
        "final_test_loss",
        "final_test_error",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(a["iterations"], 60);
    assert_eq!(b["resumes"], 1);
    assert_eq!(
        std::fs::read(dir.join("whole/weights.safetensors")).unwrap(),
        std::fs::read(dir.join("killed/weights.safetensors")).unwrap(),
        "final weights"
    );

    // A third time: nothing to do.
    let out = dir.suite(&train_args(&data, "killed")).code(0).stdout();
    assert!(out.contains("already finished"), "{out}");
}

#[test]
fn run_executes_a_spec_file_and_refuses_a_different_one_in_the_same_directory() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let dir = Dir::default();
    let spec = format!(
        "model = \"plain8\"\niterations = 20\nbatch_size = 16\nlog_every = 10\neval_every = 20\n\
         checkpoint_every = 10\n[data]\ndataset = \"cifar10\"\npath = \"{}\"\neval_subset = 100\n\
         [schedule]\nkind = \"multi-step\"\nlr = 0.05\nmilestones = [15]\n",
        sample.display()
    );
    std::fs::write(dir.join("run.toml"), &spec).unwrap();
    let out = dir
        .suite(&["run", "--spec", "run.toml", "--out", "r", "--quiet"])
        .code(0)
        .stdout();
    assert!(out.contains("finished: 20 iterations"), "{out}");
    let s = summary(&dir.join("r"));
    assert_eq!(s["eval_images"], 100);
    assert_eq!(s["final_lr"].as_f64().unwrap(), 0.005000000000000001);
    let rows = std::fs::read_to_string(dir.join("r/metrics.csv")).unwrap();
    assert_eq!(rows.lines().count(), 3, "{rows}");

    std::fs::write(dir.join("run.toml"), spec.replace("lr = 0.05", "lr = 0.1")).unwrap();
    let err = dir
        .suite(&["run", "--spec", "run.toml", "--out", "r"])
        .code(2)
        .stderr();
    assert!(err.contains("holds a different run"), "{err}");

    std::fs::write(dir.join("bad.toml"), spec.replace("batch_size", "batch")).unwrap();
    let err = dir.suite(&["run", "--spec", "bad.toml"]).code(2).stderr();
    assert!(err.contains("bad.toml") && err.contains("batch"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_an_error_and_keeps_its_last_checkpoint() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let dir = Dir::default();
    let spec = format!(
        "model = \"resnet8\"\niterations = 200\nbatch_size = 32\nlog_every = 1\neval_every = 0\n\
         checkpoint_every = 1\n[data]\ndataset = \"cifar10\"\npath = \"{}\"\neval_subset = 100\n\
         [schedule]\nkind = \"multi-step\"\nlr = 1e12\nmilestones = []\n",
        sample.display()
    );
    std::fs::write(dir.join("run.toml"), spec).unwrap();
    let err = dir
        .suite(&["run", "--spec", "run.toml", "--out", "r", "--quiet"])
        .code(2)
        .stderr();
    assert!(err.contains("the loss became"), "{err}");
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert!(!dir.join("r/summary.json").exists());
    // The checkpoint kept is a good one: its metrics rows are finite.
    let rows = std::fs::read_to_string(dir.join("r/metrics.csv")).unwrap();
    assert!(
        rows.lines().count() >= 2 && !rows.contains("NaN") && !rows.contains("inf"),
        "{rows}"
    );

    // Losses are read once per metrics window (10 steps here), and the error still names the
    // first step whose loss was not finite, before the window's end; nothing of that window is
    // written.
    let windowed = std::fs::read_to_string(dir.join("run.toml"))
        .unwrap()
        .replace("log_every = 1\n", "log_every = 10\n")
        .replace("checkpoint_every = 1\n", "checkpoint_every = 10\n");
    std::fs::write(dir.join("windowed.toml"), windowed).unwrap();
    let err = dir
        .suite(&["run", "--spec", "windowed.toml", "--out", "w", "--quiet"])
        .code(2)
        .stderr();
    let iteration: u64 = err
        .split("at iteration ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no iteration in {err}"));
    assert!((1..10).contains(&iteration), "{err}");
    assert!(err.contains("No checkpoint had been written yet"), "{err}");
    let rows = std::fs::read_to_string(dir.join("w/metrics.csv")).unwrap_or_default();
    assert!(rows.lines().count() <= 1, "{rows}");
}

/// Waits until `dir/.lock` names `pid` as its holder.
fn wait_for_lock(dir: &Path, pid: u32) {
    let lock = dir.join(".lock");
    let start = Instant::now();
    let holder = format!("pid {pid} ");
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with(&holder)) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "process {pid} never took the lock on {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_process_on_a_live_run_directory_is_refused_and_a_killed_ones_lock_is_not() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let data = format!("cifar10={}", sample.display());
    let dir = Dir::default();
    // Long enough that the first process is still training when the others start.
    let args = [
        "train",
        "--model",
        "resnet8",
        "--iterations",
        "1000000",
        "--batch",
        "8",
        "--quiet",
        "--data",
        &data,
        "--out",
        "busy",
    ];
    let mut first = dir.command(&args).spawn().unwrap();
    wait_for_lock(&dir.join("busy"), first.id());

    let err = dir.suite(&args).code(2).stderr();
    assert!(err.contains("busy"), "{err}");
    assert!(err.contains("in use by another live process"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first process was disturbed"
    );

    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    let mut second = dir.command(&args).spawn().unwrap();
    wait_for_lock(&dir.join("busy"), second.id());
    assert!(second.try_wait().unwrap().is_none());
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn an_imagenet_subset_trains_and_its_weights_are_scored_by_eval() {
    let dir = Dir::default();
    let wnids = datasets::imagenet::write_synthetic(&dir.join("imagenet"), 5, (4, 2), 3).unwrap();
    let data = format!("imagenet={}", dir.join("imagenet").display());
    let out = dir
        .suite(&[
            "--data",
            &data,
            "train",
            "--model",
            "resnet18",
            "--classes",
            "3",
            "--resolution",
            "32",
            "--iterations",
            "4",
            "--batch",
            "4",
            "--log-every",
            "2",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
            "--schedule",
            "steps",
            "--step-every",
            "2",
            "--out",
            "run",
            "--quiet",
        ])
        .code(0)
        .stdout();
    assert!(
        out.contains("finished: 4 iterations") && out.contains("on 6 images"),
        "{out}"
    );
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/spec.json")).unwrap()).unwrap();
    assert_eq!(spec["data"]["dataset"], "imagenet");
    assert_eq!(spec["data"]["classes"], 3);
    assert_eq!(spec["schedule"]["milestones"], serde_json::json!([2]));

    // The 3-class weights are scored on the 3 classes training chose (every 5/3-th of the five).
    let scored = dir
        .suite(&[
            "--data",
            &data,
            "--results",
            "res",
            "eval",
            "--model",
            "resnet18",
            "--weights",
            "run/weights.safetensors",
            "--json",
            "--quiet",
        ])
        .code(0)
        .stdout();
    let rows: Value = serde_json::from_str(&scored).unwrap();
    assert_eq!(rows[0]["images"], 6, "{rows}");
    let predictions =
        std::fs::read_to_string(dir.join("res/eval/resnet18/predictions-center.csv")).unwrap();
    for (wnid, label) in [(&wnids[0], 0), (&wnids[1], 1), (&wnids[3], 2)] {
        assert!(
            predictions.contains(&format!("{wnid}_0000.JPEG,{label},")),
            "{wnid}: {predictions}"
        );
    }

    // ImageNet nets need ImageNet; CIFAR options do not apply to them.
    let err = dir
        .suite(&["train", "--model", "resnet18", "--iterations", "4"])
        .code(2)
        .stderr();
    assert!(err.contains("--data imagenet=DIR"), "{err}");
    let err = dir
        .suite(&[
            "train",
            "--model",
            "resnet20",
            "--iterations",
            "4",
            "--classes",
            "3",
        ])
        .code(2)
        .stderr();
    assert!(err.contains("--classes"), "{err}");
}
