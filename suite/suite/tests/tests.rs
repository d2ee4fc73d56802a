//! The `suite` binary end to end, as a user runs it.

mod sweeps;
mod training;
mod util;

use candle_core::{DType, Device, Tensor};
use candle_nn::ModuleT;
use serde_json::Value;
use util::{Dir, shared_data};

#[test]
fn reproduce_table1_holds_and_writes_csv_and_parquet() {
    let dir = Dir::default();
    let run = dir.suite(&["reproduce", "table1"]).code(0);
    let out = run.stdout();
    for model in ["resnet18", "resnet152", "resnet20", "resnet1202"] {
        assert!(out.contains(&format!("| {model} ")), "{out}");
    }
    assert!(out.contains("11 of 11 rows held"), "{out}");
    assert!(!out.contains("failed"), "{out}");
    for file in ["results/table1/table1.csv", "results/table1/table1.parquet"] {
        let len = std::fs::metadata(dir.join(file)).unwrap().len();
        assert!(len > 100, "{file}: {len} bytes");
    }
    assert!(
        run.stderr().contains("wrote results/table1/table1.parquet"),
        "{}",
        run.stderr()
    );
}

#[test]
fn reproduce_table1_as_json() {
    let dir = Dir::default();
    let out = dir
        .suite(&["reproduce", "table1", "--format", "json"])
        .code(0)
        .stdout();
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 11);
    for row in &rows {
        for key in [
            "model",
            "params",
            "flops",
            "paper_params",
            "paper_flops",
            "verdict",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        assert_eq!(row["verdict"], "held", "{row}");
    }
    let r18 = rows.iter().find(|r| r["model"] == "resnet18").unwrap();
    assert_eq!(r18["params"], 11_689_512);
    assert_eq!(r18["paper_flops"].as_f64(), Some(1.8e9));
    assert!(r18["paper_params"].is_null());
    let r56 = rows.iter().find(|r| r["model"] == "resnet56").unwrap();
    assert_eq!(r56["paper_params"].as_f64(), Some(0.85e6));
    assert!(r56["paper_flops"].is_null());
}

#[test]
fn a_paper_number_that_disagrees_fails_with_exit_code_1() {
    let dir = Dir::default();
    let paper = dir.join("configs/reference/paper.toml");
    let text = std::fs::read_to_string(&paper).unwrap();
    std::fs::write(&paper, text.replace("flops = 3.8e9", "flops = 4.4e9")).unwrap();
    let out = dir.suite(&["reproduce", "table1"]).code(1).stdout();
    let line = out.lines().find(|l| l.starts_with("| resnet50 ")).unwrap();
    assert!(line.contains("4.4e9") && line.contains("failed"), "{line}");
    assert!(out.contains("10 of 11 rows held"), "{out}");
}

#[test]
fn errors_name_what_is_wrong_and_exit_2() {
    let dir = Dir::default();
    let err = dir.suite(&["reproduce", "table7"]).code(2).stderr();
    assert!(err.contains("no experiment `table7`"), "{err}");
    let available = err.split("available: ").nth(1).unwrap_or_default();
    for name in ["table1", "table6", "fig1", "fig6", "fig7", "ablation-skip"] {
        assert!(available.contains(name), "{name} not listed: {err}");
    }
    std::fs::write(dir.join("configs/table6.toml"), "[experiment\n").unwrap();
    let err = dir.suite(&["reproduce", "table6"]).code(2).stderr();
    assert!(err.contains("table6.toml"), "{err}");
    std::fs::write(dir.join("configs/table1.toml"), "paper = 3\n").unwrap();
    let err = dir.suite(&["reproduce", "table1"]).code(2).stderr();
    assert!(
        err.contains("table1.toml") && err.contains("paper"),
        "{err}"
    );
}

/// The experiments a command names run one after the other, so each is checked before the first
/// trains: a model, profile or name wrong for the last one stops the command at once.
#[test]
fn a_list_of_experiments_is_checked_before_anything_trains() {
    let dir = Dir::default();
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["reproduce", "table6", "fig1", "--models", "plain32"],
            &["`plain32` is not a run of fig1", "plain20, plain56"],
        ),
        (
            &[
                "reproduce",
                "table6",
                "ablation-skip",
                "--profile",
                "medium",
            ],
            &["ablation-skip.toml", "no profile `medium`"],
        ),
        (
            &["reproduce", "table6", "fig99"],
            &["no experiment `fig99`"],
        ),
    ];
    for (args, expected) in cases {
        let err = dir.suite(args).code(2).stderr();
        for text in expected {
            assert!(err.contains(text), "{args:?}: {err}");
        }
        assert!(!dir.join("results").exists(), "{args:?} wrote results");
    }
}

/// A `--data` copy is recognised before the plan's speed probe and the first run: a wrong path
/// stops the command at once, naming the flag and what the folder lacks.
#[test]
fn a_data_copy_that_is_not_the_dataset_stops_reproduce_before_anything_trains() {
    let dir = Dir::default();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let cases = [
        (
            "table6",
            "cifar10=missing",
            &["--data cifar10=missing", "is not a directory"][..],
        ),
        (
            "table6",
            "cifar10=empty",
            &["--data cifar10=empty", "parquet"],
        ),
        (
            "table2",
            "imagenet=empty",
            &["--data imagenet=empty", "no train/ folder"],
        ),
    ];
    for (experiment, data, expected) in cases {
        let args = [
            "reproduce",
            experiment,
            "--profile",
            "smoke",
            "--data",
            data,
        ];
        let err = dir.suite(&args).code(2).stderr();
        for text in expected {
            assert!(err.contains(text), "{args:?}: {err}");
        }
        assert!(!err.contains("probing"), "{args:?} probed: {err}");
        assert!(!dir.join("results").exists(), "{args:?} wrote results");
    }
}

#[test]
fn bench_train_times_inference_when_asked_and_says_so() {
    let dir = Dir::default();
    let args = [
        "bench", "train", "--model", "resnet8", "--batch", "4", "--warmup", "1", "--steps", "2",
        "--json",
    ];
    let train: Value = serde_json::from_str(&dir.suite(&args).code(0).stdout()).unwrap();
    assert_eq!(
        train["mode"],
        Value::Null,
        "training reports keep their old keys"
    );
    let out = dir
        .suite(&[&args[..], &["--inference"]].concat())
        .code(0)
        .stdout();
    let inference: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inference["mode"], "inference", "{out}");
    assert_eq!(inference["steps"], 2, "{out}");
    assert!(inference["images_per_s"].as_f64().unwrap() > 0.0, "{out}");
    let text = dir
        .suite(&[
            "bench",
            "train",
            "--model",
            "resnet8",
            "--batch",
            "4",
            "--steps",
            "1",
            "--inference",
        ])
        .code(0)
        .stdout();
    assert!(text.contains(", inference: "), "{text}");
}

#[test]
fn bench_op_times_each_pass_of_a_conv_that_doubles_the_channels() {
    let dir = Dir::default();
    let args = [
        "bench",
        "op",
        "--batch",
        "3",
        "--channels",
        "4",
        "--out-channels",
        "8",
        "--size",
        "8",
        "--stride",
        "2",
        "--repeats",
        "1",
        "--json",
    ];
    let out = dir.suite(&args).code(0).stdout();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &report["channels"],
            &report["out_channels"],
            &report["stride"]
        ),
        (&Value::from(4), &Value::from(8), &Value::from(2)),
        "{out}"
    );
    let ops = report["ops"].as_array().unwrap();
    for pass in [
        "conv forward, pass alone",
        "conv input gradient, pass alone",
        "conv weight gradient, pass alone",
        "sgemm 1024 (reference)",
    ] {
        let row = ops.iter().find(|o| o["op"] == pass);
        let gflops = row.and_then(|r| r["gflop_per_s"].as_f64());
        assert!(gflops.is_some_and(|g| g > 0.0), "{pass}: {out}");
    }
    let err = dir
        .suite(&["bench", "op", "--out-channels", "0"])
        .code(2)
        .stderr();
    assert!(err.contains("--out-channels"), "{err}");
}

#[test]
fn list_shows_experiments_and_every_model() {
    let dir = Dir::default();
    let out = dir.suite(&["list"]).code(0).stdout();
    assert!(out.contains("table1"), "{out}");
    for name in [
        "resnet20",
        "plain56",
        "resnet34-a",
        "resnet34-c",
        "plain18",
        "resnet152",
        "resnet50-v1.5",
        "resnet1202",
    ] {
        assert!(
            out.contains(&format!("| {name} ")),
            "{name} not listed:\n{out}"
        );
    }
    let models: Vec<Value> = serde_json::from_str(
        &dir.suite(&["list", "models", "--format", "json"])
            .code(0)
            .stdout(),
    )
    .unwrap();
    let r34c = models.iter().find(|m| m["name"] == "resnet34-c").unwrap();
    assert_eq!(r34c["shortcut"], "C");
    assert_eq!(r34c["block"], "basic");
    let plain = models.iter().find(|m| m["name"] == "plain18").unwrap();
    assert!(plain["shortcut"].is_null());
}

#[test]
fn help_has_examples() {
    let dir = Dir::default();
    for cmd in ["list", "reproduce", "predict", "init", "data"] {
        let out = dir.suite(&[cmd, "--help"]).code(0).stdout();
        assert!(out.contains("Example"), "{cmd}: {out}");
    }
}

/// Writes random weights of `name` and returns the model.
fn weights(dir: &Dir, name: &str, file: &str) -> nets::Model {
    let model = nets::Model::new(name.parse().unwrap(), 5, &Device::Cpu).unwrap();
    model.save(&dir.join(file)).unwrap();
    model
}

#[test]
fn predict_on_a_tensor_gives_the_models_logits() {
    let dir = Dir::default();
    let model = weights(&dir, "resnet20", "w.safetensors");
    let input = Tensor::randn(0f32, 1.0, (3, 3, 32, 32), &Device::Cpu).unwrap();
    let file = dir.join("x.safetensors");
    candle_core::safetensors::save(&[("input", input.clone())].into_iter().collect(), &file)
        .unwrap();
    let out = dir
        .suite(&[
            "predict",
            "--model",
            "resnet20",
            "--weights",
            "w.safetensors",
            "--tensor",
            "x.safetensors",
            "--json",
        ])
        .code(0)
        .stdout();
    let v: Value = serde_json::from_str(&out).unwrap();
    let expected = model
        .net
        .forward_t(&input, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let logits = v["logits"].as_array().unwrap();
    assert_eq!(logits.len(), 3);
    for (row, want) in logits.iter().zip(&expected) {
        let got: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&got, want);
    }
    let top = v["top5"][0].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let best = (0..10)
        .max_by(|&a, &b| expected[0][a].total_cmp(&expected[0][b]))
        .unwrap();
    assert_eq!(top[0]["class"], best);
    let probs: Vec<f64> = top
        .iter()
        .map(|c| c["probability"].as_f64().unwrap())
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
}

#[test]
fn predict_on_real_imagenet_jpegs() {
    let Some(val) = shared_data("imagenet-sample/val") else {
        return;
    };
    let dir = Dir::default();
    weights(&dir, "resnet18", "r18.safetensors");
    let mut classes: Vec<_> = std::fs::read_dir(&val)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    let image = |class: &std::path::Path| {
        let mut files: Vec<_> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files[0].display().to_string()
    };
    let (a, b) = (image(&classes[0]), image(&classes[500]));
    let labels = dir.join("labels.txt");
    let names: Vec<String> = classes
        .iter()
        .map(|c| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    let out = dir
        .suite(&[
            "predict",
            "--model",
            "resnet18",
            "--weights",
            "r18.safetensors",
            "--labels",
            "labels.txt",
            "--json",
            &a,
            &b,
        ])
        .code(0)
        .stdout();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["logits"].as_array().unwrap().len(), 2);
    assert_eq!(v["logits"][0].as_array().unwrap().len(), 1000);
    assert!(
        v["top5"][1][0]["label"].as_str().unwrap().starts_with('n'),
        "{}",
        v["top5"]
    );
    let text = dir
        .suite(&[
            "predict",
            "--model",
            "resnet18",
            "--weights",
            "r18.safetensors",
            &a,
        ])
        .code(0)
        .stdout();
    assert!(text.starts_with(&a) && text.lines().count() == 6, "{text}");
}

#[test]
fn eval_scores_real_imagenet_jpegs_with_every_protocol_and_writes_tables() {
    let Some(sample) = shared_data("imagenet-sample") else {
        return;
    };
    let dir = Dir::default();
    weights(&dir, "resnet18", "r18.safetensors");
    weights(&dir, "resnet34", "r34.safetensors");
    let data = format!("imagenet={}", sample.display());
    // `suite --data imagenet=SAMPLE --results res eval --model resnet18 ... EXTRA --quiet`.
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "--data",
            &data,
            "--results",
            "res",
            "eval",
            "--model",
            "resnet18",
        ];
        args.extend(["--weights", "r18.safetensors", "--quiet"]);
        args.extend_from_slice(extra);
        dir.suite(&args).code(0).stdout()
    };
    let out = eval(&[
        "--views",
        "center,10crop,multiscale",
        "--limit",
        "3",
        "--json",
    ]);
    let rows: Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    let views: Vec<&str> = rows.iter().map(|r| r["views"].as_str().unwrap()).collect();
    assert_eq!(views, vec!["center", "10crop", "multiscale"]);
    for r in rows {
        assert_eq!(r["images"], 3);
        let (top1, top5) = (
            r["top1_error"].as_f64().unwrap(),
            r["top5_error"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&top5) && top5 <= top1, "{r}");
    }
    let summary = std::fs::read_to_string(dir.join("res/eval/resnet18/summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4, "{summary}");
    assert!(summary.starts_with("nets,weights,views,images,top1_error,top5_error"));
    let predictions =
        std::fs::read_to_string(dir.join("res/eval/resnet18/predictions-10crop.csv")).unwrap();
    let lines: Vec<&str> = predictions.lines().collect();
    assert_eq!(lines.len(), 4, "{predictions}");
    assert!(lines[1].contains("n01440764_tench.JPEG,0,"), "{}", lines[1]);
    assert_eq!(lines[1].split(',').count(), 12);

    // An ensemble of two nets, as a text table.
    let text = eval(&["--ensemble", "resnet34=r34.safetensors", "--limit", "2"]);
    assert!(
        text.contains("| resnet18+resnet34 | center | 2 |"),
        "{text}"
    );
    assert!(
        dir.join("res/eval/resnet18+resnet34/summary.json")
            .is_file()
    );
}

#[test]
fn eval_errors_say_what_is_missing_or_wrong() {
    let dir = Dir::default();
    weights(&dir, "resnet18", "r18.safetensors");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    // `suite [GLOBAL] eval --model resnet18 --weights r18.safetensors [EXTRA]`, which must fail.
    let eval = |global: &[&str], extra: &[&str]| {
        let mut args = global.to_vec();
        args.extend([
            "eval",
            "--model",
            "resnet18",
            "--weights",
            "r18.safetensors",
        ]);
        args.extend_from_slice(extra);
        dir.suite(&args).code(2).stderr()
    };
    let err = eval(&[], &[]);
    assert!(err.contains("--data imagenet=DIR"), "{err}");
    let empty = ["--data", "imagenet=empty"];
    let err = eval(&empty, &[]);
    assert!(
        err.contains("empty") && err.contains("not an ImageNet validation set"),
        "{err}"
    );
    let err = eval(&empty, &["--ensemble", "resnet34"]);
    assert!(err.contains("MODEL=WEIGHTS"), "{err}");
    let err = eval(&[], &["--views", "5crop"]);
    assert!(err.contains("5crop"), "{err}");
}

#[test]
fn predict_errors_name_the_tensor_and_shapes() {
    let dir = Dir::default();
    weights(&dir, "resnet20", "w.safetensors");
    let err = dir
        .suite(&[
            "predict",
            "--model",
            "resnet32",
            "--weights",
            "w.safetensors",
            "--tensor",
            "x",
        ])
        .code(2)
        .stderr();
    assert!(
        err.contains("w.safetensors") && err.contains("layer1.3") && err.contains("missing"),
        "{err}"
    );
    let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &[("images", x)].into_iter().collect(),
        dir.join("x.safetensors"),
    )
    .unwrap();
    let err = dir
        .suite(&[
            "predict",
            "--model",
            "resnet20",
            "--weights",
            "w.safetensors",
            "--tensor",
            "x.safetensors",
        ])
        .code(2)
        .stderr();
    assert!(
        err.contains("x.safetensors") && err.contains("`input`") && err.contains("images"),
        "{err}"
    );
    std::fs::write(dir.join("bad.jpg"), b"not a jpeg").unwrap();
    weights(&dir, "resnet18", "r18.safetensors");
    let err = dir
        .suite(&[
            "predict",
            "--model",
            "resnet18",
            "--weights",
            "r18.safetensors",
            "bad.jpg",
        ])
        .code(2)
        .stderr();
    assert!(err.contains("bad.jpg"), "{err}");
    let err = dir
        .suite(&[
            "predict",
            "--model",
            "resnet18",
            "--weights",
            "w.safetensors",
            "bad.jpg",
        ])
        .code(2)
        .stderr();
    assert!(
        err.contains("w.safetensors")
            && err.contains("`bn1.bias`")
            && err.contains("[16]")
            && err.contains("[64]"),
        "{err}"
    );
}

#[test]
fn init_writes_the_seeded_initial_weights() {
    let dir = Dir::default();
    let run = dir
        .suite(&[
            "init",
            "--model",
            "resnet20",
            "--seed",
            "4",
            "--out",
            "w.safetensors",
        ])
        .code(0);
    assert!(
        run.stderr().contains("269722 parameters"),
        "{}",
        run.stderr()
    );
    let loaded = nets::Model::load(
        "resnet20".parse().unwrap(),
        &dir.join("w.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let fresh = nets::Model::new("resnet20".parse().unwrap(), 4, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let diff = testkit::max_abs_diff(
        &loaded.net.forward_t(&x, false).unwrap(),
        &fresh.net.forward_t(&x, false).unwrap(),
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn data_fetch_from_a_local_copy_fills_the_decoded_cache() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let dir = Dir::default();
    let arg = format!("cifar10={}", sample.display());
    let out = dir
        .suite(&["data", "fetch", "cifar10", "--data", &arg])
        .code(0)
        .stdout();
    assert!(out.contains("train 1000 images, test 200 images"), "{out}");
    let cached: Vec<_> = std::fs::read_dir(dir.join("cache")).unwrap().collect();
    assert_eq!(cached.len(), 1, "one decoded cache file");
    let info = dir
        .suite(&["data", "info", "--json", "--data", &arg])
        .code(0)
        .stdout();
    let v: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v[0]["train"], 1000);
    assert_eq!(v[0]["files"].as_array().unwrap().len(), 2);
}

/// Lays out files as hf-hub's cache holds a dataset revision.
fn fake_hub_cache(hf_home: &std::path::Path, sample: &std::path::Path) {
    let repo = hf_home.join("hub/datasets--uoft-cs--cifar10");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
    std::fs::write(repo.join("refs/refs/convert/parquet"), commit).unwrap();
    for split in ["train", "test"] {
        let dir = repo.join(format!("snapshots/{commit}/plain_text/{split}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            sample.join(format!("{split}.parquet")),
            dir.join("0000.parquet"),
        )
        .unwrap();
    }
}

#[test]
fn the_hub_source_reads_hf_hubs_cache_offline_and_says_what_failed() {
    let Some(sample) = shared_data("cifar10/sample") else {
        return;
    };
    let dir = Dir::default();
    let offline = [("HF_HUB_OFFLINE", std::path::Path::new("1"))];
    let err = dir
        .suite_env(&["data", "fetch", "cifar10"], &offline)
        .code(2)
        .stderr();
    assert!(
        err.contains("uoft-cs/cifar10")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("--data cifar10="),
        "{err}"
    );
    let info = dir.suite(&["data", "info"]).code(0).stdout();
    assert!(
        info.contains("not available") && info.contains("suite data fetch cifar10"),
        "{info}"
    );
    fake_hub_cache(&dir.join("hf"), &sample);
    let out = dir
        .suite_env(&["data", "fetch", "cifar10"], &offline)
        .code(0)
        .stdout();
    assert!(
        out.contains("hf://datasets/uoft-cs/cifar10@refs/convert/parquet"),
        "{out}"
    );
    assert!(out.contains("train 1000 images, test 200 images"), "{out}");
}

#[test]
fn data_info_describes_an_image_folder() {
    let Some(val) = shared_data("imagenet-sample/val") else {
        return;
    };
    let dir = Dir::default();
    let arg = format!("imagenet={}", val.display());
    let v: Value = serde_json::from_str(
        &dir.suite(&["data", "info", "--json", "--data", &arg])
            .code(0)
            .stdout(),
    )
    .unwrap();
    let imagenet = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "imagenet")
        .unwrap();
    assert_eq!(
        (imagenet["classes"].as_u64(), imagenet["images"].as_u64()),
        (Some(1000), Some(1000))
    );
    let err = dir
        .suite(&["data", "info", "--data", "imagenet=nowhere"])
        .code(2)
        .stderr();
    assert!(err.contains("nowhere"), "{err}");
}

/// Every committed sweep's tables (`results/<experiment>/<profile>/`, and those of results sets
/// one level down such as `results/seed-spread/`) are what a fresh clone verifies without
/// training: `verify` reads them with this build's schema and reaches the committed verdicts again.
#[test]
fn verify_recomputes_every_committed_sweeps_verdicts() {
    let dir = Dir::default();
    let results = util::repo().join("results");
    let name = |p: &std::path::Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let subdirs = |p: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(p)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    // (results set below `results/`, "" for the main one; experiment; profile)
    let mut sweeps = Vec::new();
    let mut sets = vec![String::new()];
    sets.extend(subdirs(&results).iter().map(|p| name(p)));
    for set in sets {
        for experiment in subdirs(&results.join(&set)) {
            for profile in subdirs(&experiment) {
                if profile.join("verdicts.json").is_file() {
                    sweeps.push((set.clone(), name(&experiment), name(&profile)));
                }
            }
        }
    }
    // The sweeps the README sends a new user to; more may be committed, none may go missing.
    for (set, experiment, profile) in [
        ("", "table6", "quick"),
        ("", "fig1", "quick"),
        ("", "fig6", "quick"),
        ("", "fig7", "quick"),
        ("", "ablation-skip", "quick"),
        ("", "table6", "medium"),
        ("", "fig1", "medium"),
        ("", "fig6", "medium"),
        ("", "fig7", "medium"),
        ("seed-spread", "table6", "quick"),
        ("seed-spread", "fig1", "quick"),
        ("seed-spread", "table6", "medium"),
        ("seed-spread", "fig1", "medium"),
        ("seed-spread", "fig7", "medium"),
    ] {
        assert!(
            sweeps
                .iter()
                .any(|(s, e, p)| s == set && e == experiment && p == profile),
            "{set}/{experiment}/{profile} not in {sweeps:?}"
        );
    }
    for (set, name, profile) in &sweeps {
        let committed = results.join(set).join(name).join(profile);
        let out = format!("results/{set}");
        let copy = dir.join(&format!("{out}/{name}/{profile}"));
        util::copy_dir(&committed, &copy);
        let run = dir.suite(&["verify", name, "--profile", profile, "--out", &out]);
        let code = if std::fs::read_to_string(committed.join("verdicts.csv"))
            .unwrap()
            .contains(",failed,")
        {
            1
        } else {
            0
        };
        let printed = run.code(code).stdout();
        assert!(
            printed.contains("| claim"),
            "{set}/{name}/{profile}: {printed}"
        );
        let verdicts = |dir: &std::path::Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join("verdicts.json")).unwrap())
                .unwrap()
        };
        assert_eq!(
            verdicts(&copy),
            verdicts(&committed),
            "{set}/{name}/{profile}"
        );
    }
}

/// The seeded baselines (`ci/baselines/cpu-<profile>-seeds.json`) are what `--write-baseline`
/// writes from the committed seed-spread tables, and the committed one-seed tables, trained on
/// another CPU class than the seeds, fall inside their bands: what comparing across machines
/// rests on.
#[test]
fn seeded_baselines_match_the_seed_spread_and_pass_the_committed_tables() {
    let dir = Dir::default();
    let repo = util::repo();
    let path = |p: &str| repo.join(p).to_str().unwrap().to_owned();
    for (profile, metrics) in [("quick", 6), ("medium", 16)] {
        let committed = path(&format!("ci/baselines/cpu-{profile}-seeds.json"));
        let written = format!("{profile}.json");
        dir.suite(&[
            "regress",
            "--write-baseline",
            "--baseline",
            &written,
            "--out",
            &path("results/seed-spread"),
            "--profile",
            profile,
        ])
        .code(0);
        let accuracy = |file: &std::path::Path| -> Value {
            let baseline: Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            baseline["accuracy"].clone()
        };
        let ours = accuracy(&dir.join(&written));
        assert_eq!(ours.as_array().map(Vec::len), Some(metrics), "{ours}");
        for entry in ours.as_array().unwrap() {
            assert_eq!(entry["seeds"], 3, "{entry}");
        }
        assert_eq!(
            ours,
            accuracy(std::path::Path::new(&committed)),
            "{profile}"
        );

        let out = dir
            .suite(&[
                "regress",
                "--baseline",
                &committed,
                "--out",
                &path("results"),
                "--profile",
                profile,
            ])
            .code(0)
            .stdout();
        assert!(
            out.contains(&format!("{metrics} of {metrics} metrics passed")),
            "{profile}: {out}"
        );
    }
}

#[test]
fn report_draws_the_committed_quick_results_and_indexes_them() {
    let dir = Dir::default();
    for name in ["table6", "fig7"] {
        util::copy_dir(
            &util::repo().join("results").join(name).join("quick"),
            &dir.join(&format!("results/{name}/quick")),
        );
    }
    let out = dir
        .suite(&["report", "all", "--profile", "quick"])
        .code(0)
        .stdout();
    for file in [
        "reports/table6/quick/curves.png",
        "reports/table6/quick/curves.svg",
        "reports/table6/quick/report.md",
        "reports/table6/quick/report.pdf",
        "reports/fig7/quick/layer-responses.png",
        "reports/index-quick.md",
        "reports/index-quick.pdf",
    ] {
        assert!(out.contains(&format!("wrote {file}")), "{file}: {out}");
        assert!(dir.join(file).is_file(), "{file}");
    }
    for pdf in ["reports/table6/quick/report.pdf", "reports/index-quick.pdf"] {
        let bytes = std::fs::read(dir.join(pdf)).unwrap();
        assert!(bytes.starts_with(b"%PDF-"), "{pdf}");
        assert!(bytes.trim_ascii_end().ends_with(b"%%EOF"), "{pdf}");
    }
    let index = std::fs::read_to_string(dir.join("reports/index-quick.md")).unwrap();
    // The index counts Table 6's committed verdicts by kind, in this order.
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(util::repo().join("results/table6/quick/verdicts.json")).unwrap(),
    )
    .unwrap();
    let count = |kind: &str| {
        committed
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["verdict"] == kind)
            .count()
            .to_string()
    };
    let expected: Vec<String> = [
        "held",
        "failed",
        "inconclusive",
        "not_run",
        "not_applicable",
    ]
    .iter()
    .map(|k| count(k))
    .collect();
    let row = index.lines().find(|l| l.contains("[table6]")).unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[3..8], expected, "{row}");
    assert!(
        !index.contains("[fig1]"),
        "fig1 has no results here: {index}"
    );
    let err = dir
        .suite(&["report", "fig1", "--profile", "quick"])
        .code(2)
        .stderr();
    assert!(
        err.contains("suite reproduce fig1 --profile quick"),
        "{err}"
    );
}
