//! Sweeps without training: the repository's configs, config errors, plan decisions, claim rules on
//! hand-made results, and the tables' schema.

use std::path::{Path, PathBuf};

use experiments::Verdict;
use experiments::store;
use experiments::sweep::claims::{self, binomial_sd};
use experiments::sweep::config::SweepConfig;
use experiments::sweep::plan::{self, Options, Status};
use experiments::sweep::tables::{self, LayerRow, Measurements, RunRecord};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn protocol() -> trainer::Protocols {
    trainer::Protocols::read(&configs().join("reference/paper.toml")).unwrap()
}

fn reference() -> (paper::Paper, toml::Value) {
    let path = configs().join("reference/paper.toml");
    (
        paper::Paper::load(&path).unwrap(),
        paper::read_toml(&path).unwrap(),
    )
}

#[test]
fn the_repository_sweeps_load() {
    for name in ["table6", "fig1", "fig6", "fig7", "ablation-skip"] {
        let config = SweepConfig::load(&configs(), name).unwrap();
        for profile in ["smoke", "quick", "paper"] {
            config.profile(profile).unwrap();
        }
        assert!(!config.claims.is_empty(), "{name}");
    }
    // A figure's runs are the table's runs: the same specs, so the same directories.
    let store = Path::new("/store");
    let ids = |name: &str| -> Vec<PathBuf> {
        let config = SweepConfig::load(&configs(), name).unwrap();
        plan::plan(&config, "quick", &protocol(), &Options::default(), store)
            .unwrap()
            .into_iter()
            .map(|r| r.dir)
            .collect()
    };
    let table6 = ids("table6");
    for name in ["fig1", "fig6", "fig7"] {
        for dir in ids(name) {
            assert!(table6.contains(&dir), "{name}: {}", dir.display());
        }
    }
    // Table 6's resnet20 seed 0 is also the ablation's span-2 net.
    assert!(ids("ablation-skip").iter().any(|d| table6.contains(d)));
}

/// A plan's time estimate counts the evaluations over the validation images the run will read:
/// those of the copy given, not ImageNet's 50,000 (which made a smoke sweep of four 4-step runs on
/// a generated folder look like hours).
#[test]
fn imagenet_estimates_count_the_copys_validation_images() {
    let store = Path::new("/store");
    let table2 = SweepConfig::load(&configs(), "table2").unwrap();
    let plan_with = |data: &Path, profile: &str| {
        let options = Options {
            data: Some(data.to_path_buf()),
            ..Options::default()
        };
        plan::plan(&table2, profile, &protocol(), &options, store).unwrap()
    };
    let copy = tempfile::tempdir().unwrap();
    datasets::imagenet::write_synthetic(copy.path(), 4, (2, 3), 0).unwrap();
    let smoke = plan_with(copy.path(), "smoke");
    assert_eq!(plan::eval_images(&smoke[0].spec), 4 * 3);
    // No readable copy: ImageNet's own 50 images a class, of every class or of the profile's.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        plan::eval_images(&plan_with(empty.path(), "smoke")[0].spec),
        50_000
    );
    let quick = &plan_with(empty.path(), "quick")[0].spec;
    let classes = quick.data.classes.as_ref().unwrap().len();
    assert_eq!(plan::eval_images(quick), 50 * classes);
    // Evaluations are the larger part of a smoke run's estimate with ImageNet's count, a small
    // one with the copy's.
    let spec = &smoke[0].spec;
    let train_only = plan::seconds_left(spec, Status::New, 100.0, 0);
    let counted = plan::seconds_left(spec, Status::New, 100.0, 12);
    let assumed = plan::seconds_left(spec, Status::New, 100.0, 50_000);
    assert!(
        train_only < counted && counted < 2.0 * train_only,
        "{train_only} {counted}"
    );
    assert!(assumed > 100.0 * counted, "{assumed} {counted}");
}

#[test]
fn the_imagenet_sweeps_load_and_plan_the_papers_protocol() {
    for name in ["table2", "fig4", "table3", "table4"] {
        let config = SweepConfig::load(&configs(), name).unwrap();
        assert_eq!(config.header.dataset, "imagenet");
        assert!(!config.claims.is_empty(), "{name}");
    }
    let store = Path::new("/store");
    let data = tempfile::tempdir().unwrap();
    let options = Options {
        data: Some(data.path().to_path_buf()),
        ..Options::default()
    };
    let plan_of = |name: &str, profile: &str| {
        let config = SweepConfig::load(&configs(), name).unwrap();
        plan::plan(&config, profile, &protocol(), &options, store).unwrap()
    };
    // Fig. 4's runs are Table 2's, Table 4's are Table 3's.
    for (table, figure) in [("table2", "fig4"), ("table3", "table4")] {
        let runs: Vec<PathBuf> = plan_of(table, "quick").into_iter().map(|r| r.dir).collect();
        for run in plan_of(figure, "quick") {
            assert!(runs.contains(&run.dir), "{figure}: {}", run.dir.display());
        }
    }
    // The paper profile is the protocol of paper.toml: batch 256, lr 0.1 on a plateau, 600k
    // iterations, all classes at 224.
    let paper = plan_of("table2", "paper");
    let spec = &paper[0].spec;
    assert_eq!((spec.batch_size, spec.iterations), (256, 600_000));
    assert!(matches!(
        spec.schedule,
        trainer::Schedule::Plateau {
            lr: 0.1,
            factor: 0.1,
            patience: 3,
            ..
        }
    ));
    assert_eq!(
        (spec.data.classes.clone(), spec.data.resolution),
        (None, None)
    );
    // The quick profile: 100 classes at 128, fixed steps.
    let quick = plan_of("table3", "quick");
    let spec = &quick[0].spec;
    assert_eq!(spec.data.classes, Some(trainer::spec::Classes::Count(100)));
    assert_eq!(spec.data.resolution, Some(128));
    assert_eq!(
        spec.schedule,
        trainer::Schedule::MultiStep {
            lr: 0.1,
            milestones: vec![5000, 10000],
            factor: 0.1
        }
    );
    assert_eq!(quick[0].spec.model_spec().unwrap().num_classes, 100);

    // The time estimate probes a net at its run's crop, not the paper's 224: the smoke profile's
    // 32x32 here (the probe cache's key names the side).
    let mut smoke: Vec<_> = plan_of("table2", "smoke").into_iter().take(1).collect();
    assert_eq!(smoke[0].spec.data.resolution, Some(32));
    let cache = data.path().join("probes.json");
    plan::estimate(&mut smoke, Some(&cache), 1);
    assert!(smoke[0].estimate_s.is_some_and(|s| s > 0.0));
    let probes: plan::ProbeCache =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let keys: Vec<&String> = probes.images_per_s.keys().collect();
    assert!(
        keys.len() == 1 && keys[0].ends_with(&format!("|{}|32", smoke[0].spec.batch_size)),
        "{keys:?}"
    );
}

/// A configs directory holding the real reference, Table 6 and `bad.toml` with `text`, and what
/// loading `bad` says.
fn config_with(text: &str) -> (tempfile::TempDir, Result<(), String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("reference")).unwrap();
    std::fs::copy(
        configs().join("reference/paper.toml"),
        dir.path().join("reference/paper.toml"),
    )
    .unwrap();
    std::fs::copy(
        configs().join("table6.toml"),
        dir.path().join("table6.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let loaded = SweepConfig::load(dir.path(), "bad")
        .map(|_| ())
        .map_err(|e| e.to_string());
    (dir, loaded)
}

const GOOD: &str = r#"
[experiment]
title = "t"
dataset = "cifar10"
profiles_from = "table6"

[[runs]]
models = ["plain20", "plain56"]

[[claims]]
id = "c"
paper = "figures.fig1.claim"
profiles = ["quick"]
check = { rule = "ascending", metric = "final_train_error", chains = [["plain20", "plain56"]] }
"#;

#[test]
fn bad_configs_name_the_file_the_key_and_what_is_allowed() {
    config_with(GOOD).1.unwrap();
    for (from, to, needles) in [
        (
            "title = \"t\"",
            "title = \"t\"\ncolour = 1",
            vec!["colour", "experiment"],
        ),
        (
            "models = [\"plain20\", \"plain56\"]",
            "models = \"plain20\"",
            vec!["runs[0].models"],
        ),
        (
            "models = [\"plain20\", \"plain56\"]",
            "models = [\"plain20\", \"plain57\"]",
            vec!["runs[0].models[1]", "6n+2"],
        ),
        (
            "models = [\"plain20\", \"plain56\"]",
            "models = [\"plain20\", \"resnet50\"]",
            vec!["runs[0].models[1]", "ImageNet"],
        ),
        (
            "[[\"plain20\", \"plain56\"]]",
            "[[\"plain20\", \"resnet56\"]]",
            vec!["claims[0].check.chains[0][1]", "plain20, plain56"],
        ),
        (
            "profiles = [\"quick\"]",
            "profiles = [\"fast\"]",
            vec!["claims[0].profiles[0]", "smoke"],
        ),
        (
            "figures.fig1.claim",
            "figures.fig1.claims",
            vec!["claims[0].paper", "figures.fig1.claims"],
        ),
        (
            "rule = \"ascending\"",
            "rule = \"sideways\"",
            vec!["claims[0]", "sideways"],
        ),
        (
            "dataset = \"cifar10\"",
            "dataset = \"mnist\"",
            vec!["experiment.dataset", "cifar10"],
        ),
        (
            "profiles_from = \"table6\"",
            "profiles_from = \"table9\"",
            vec!["experiment.profiles_from", "table9"],
        ),
        (
            "dataset = \"cifar10\"",
            "dataset = \"imagenet\"",
            vec!["runs[0].models[0]", "CIFAR net"],
        ),
        (
            "profiles_from = \"table6\"",
            "profiles_from = \"table6\"\nviews = [\"10crop\"]",
            vec!["experiment.views", "ImageNet"],
        ),
        (
            "metric = \"final_train_error\"",
            "metric = \"top1_error_10crop\"",
            vec!["claims[0].check.metric", "views = [\"10crop\"]"],
        ),
    ] {
        let err = config_with(&GOOD.replace(from, to)).1.unwrap_err();
        assert!(err.contains("bad.toml"), "{to}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{to}: `{needle}` not in: {err}");
        }
    }
}

#[test]
fn the_plan_skips_finished_runs_and_resumes_half_done_ones() {
    let store = tempfile::tempdir().unwrap();
    let config = SweepConfig::load(&configs(), "fig1").unwrap();
    let runs = plan::plan(
        &config,
        "smoke",
        &protocol(),
        &Options::default(),
        store.path(),
    )
    .unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status == Status::New));
    assert_eq!(runs[0].spec.iterations, 4);
    assert_eq!(runs[0].spec.batch_size, 8);
    // Finished: the summary marks it. Half done: a checkpoint, resumed from the last metrics row.
    std::fs::create_dir_all(&runs[0].dir).unwrap();
    std::fs::write(runs[0].dir.join(trainer::run::SUMMARY_FILE), "{}").unwrap();
    std::fs::create_dir_all(&runs[1].dir).unwrap();
    std::fs::write(runs[1].dir.join(trainer::run::CHECKPOINT_FILE), b"x").unwrap();
    std::fs::write(
        runs[1].dir.join(trainer::run::METRICS_FILE),
        format!(
            "{}\n2,0.16,0.1,2.3,0.9,2.3,0.9,10.0,1.0\n",
            trainer::metrics::HEADER
        ),
    )
    .unwrap();
    let again = plan::plan(
        &config,
        "smoke",
        &protocol(),
        &Options::default(),
        store.path(),
    )
    .unwrap();
    assert_eq!(again[0].status, Status::Done);
    assert_eq!(again[1].status, Status::HalfDone { iteration: 2 });
    // Half done: only the iterations left are estimated.
    let eval = plan::eval_images(&again[1].spec);
    let full = plan::seconds_left(&again[1].spec, Status::New, 100.0, eval);
    let half = plan::seconds_left(&again[1].spec, again[1].status, 100.0, eval);
    assert!(half < full && half > 0.0, "{half} {full}");
    // --models restricts; `core` expands; an unknown name lists the runs.
    let table6 = SweepConfig::load(&configs(), "table6").unwrap();
    let core = plan::selection(&table6, "quick", &["core".into()]).unwrap();
    assert_eq!(core, ["plain20", "plain56", "resnet20", "resnet56"]);
    let err = plan::selection(&table6, "quick", &["resnet21".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resnet21") && err.contains("resnet1202"),
        "{err}"
    );
    let options = Options {
        models: vec!["resnet110".into()],
        ..Options::default()
    };
    let paper = plan::plan(&table6, "paper", &protocol(), &options, store.path()).unwrap();
    assert_eq!(paper.len(), 5, "ResNet-110 runs five times");
    assert_eq!(paper[0].spec.iterations, 64_000);
    let quick = plan::plan(&table6, "quick", &protocol(), &options, store.path()).unwrap();
    assert_eq!(quick.len(), 1, "quick takes one seed");
    // More seeds than the profile's: the config's first, then the integers after its largest.
    let quick_with = |models: &[&str], seeds: Option<usize>| {
        let options = Options {
            models: models.iter().map(|m| m.to_string()).collect(),
            seeds,
            ..Options::default()
        };
        plan::plan(&table6, "quick", &protocol(), &options, store.path()).unwrap()
    };
    let seeds = |model: &str, count: usize| -> Vec<u64> {
        let runs = quick_with(&[model], Some(count));
        assert!(runs.iter().all(|r| r.model == model));
        runs.iter().map(|r| r.seed).collect()
    };
    assert_eq!(seeds("resnet20", 3), [0, 1, 2]);
    assert_eq!(seeds("resnet110", 2), [0, 1]);
    assert_eq!(seeds("resnet110", 7), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(plan::seeds_of(&[3, 7], None, Some(4)), [3, 7, 8, 9]);
    assert_eq!(plan::seeds_of(&[0, 1, 2], Some(1), None), [0]);
    assert_eq!(plan::seeds_of(&[0, 1, 2], None, None), [0, 1, 2]);
    // Seed 0 of `--seeds 3` is the profile's own run: the same spec, the same directory.
    let own = quick_with(&[], None);
    let more = quick_with(&[], Some(3));
    assert_eq!(more.len(), 3 * own.len());
    for run in &own {
        assert!(
            more.iter().any(|r| r.dir == run.dir),
            "{}",
            run.dir.display()
        );
    }
}

fn record(model: &str, seed: u64, train: f64, test: f64) -> RunRecord {
    let spec: nets::ModelSpec = model.parse().unwrap();
    RunRecord {
        run_id: format!("{model}-seed{seed}"),
        model: model.into(),
        depth: spec.depth() as u64,
        residual: spec.residual,
        shortcut: if spec.residual {
            spec.shortcut.letter().to_ascii_uppercase().to_string()
        } else {
            String::new()
        },
        convs_per_unit: spec.convs_per_unit().unwrap_or(2) as u64,
        seed,
        iterations: 400,
        final_train_error: train,
        train_error_images: 2560,
        final_test_error: test,
        test_images: 10_000,
        best_test_error: test - 0.5,
        parameters: 1,
        flops: 2,
        wall_s: 3.0,
        images_per_s: 4.0,
        device: "cpu".into(),
        kernels: "fast".into(),
        commit: "abc".into(),
        suite_version: "0.1.0".into(),
        candle_version: "0.11.1".into(),
    }
}

fn verdicts(
    name: &str,
    profile: &str,
    records: &[RunRecord],
    layers: &[LayerRow],
) -> Vec<(String, Verdict, String)> {
    let config = SweepConfig::load(&configs(), name).unwrap();
    let (paper, toml) = reference();
    let measurements = Measurements {
        layers: layers.to_vec(),
        ..Measurements::default()
    };
    claims::decide(&config, profile, records, &measurements, &paper, &toml)
        .into_iter()
        .map(|v| (v.claim, v.verdict, v.why))
        .collect()
}

fn verdict_of(all: &[(String, Verdict, String)], id: &str) -> Verdict {
    all.iter()
        .find(|v| v.0 == id)
        .unwrap_or_else(|| panic!("{id}"))
        .1
}

#[test]
fn orderings_hold_fail_or_are_inconclusive_by_their_margin() {
    // Binomial sd of 50% on 10,000 images is 0.5 points; two such means have a margin of 0.71.
    assert!((binomial_sd(50.0, 10_000) - 0.5).abs() < 1e-12);
    let with = |plain56_test: f64| {
        let records = [
            record("plain20", 0, 60.0, 56.0),
            record("plain56", 0, 80.0, plain56_test),
        ];
        verdicts("fig1", "quick", &records, &[])
    };
    assert_eq!(
        verdict_of(&with(78.0), "fig1-plain56-higher-test-error"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&with(56.3), "fig1-plain56-higher-test-error"),
        Verdict::Inconclusive
    );
    assert_eq!(
        verdict_of(&with(50.0), "fig1-plain56-higher-test-error"),
        Verdict::Failed
    );
    // On the smoke profile no claim applies; with a run missing, the claim is not run.
    let smoke = verdicts("fig1", "smoke", &[record("plain20", 0, 60.0, 56.0)], &[]);
    assert!(smoke.iter().all(|v| v.1 == Verdict::NotApplicable));
    let missing = verdicts("fig1", "quick", &[record("plain20", 0, 60.0, 56.0)], &[]);
    assert_eq!(
        verdict_of(&missing, "fig1-plain56-higher-train-error"),
        Verdict::NotRun
    );
    assert!(missing[0].2.contains("plain56"), "{:?}", missing[0]);
}

#[test]
fn seeds_widen_the_margin_and_table6_bands_follow_the_paper() {
    // Five ResNet-110 seeds around the paper's 6.61 ± 0.16, the rest on Table 6's values.
    let mut records: Vec<RunRecord> = [6.4, 6.5, 6.6, 6.7, 6.8]
        .iter()
        .enumerate()
        .map(|(s, e)| record("resnet110", s as u64, 0.5, *e))
        .collect();
    for (model, test) in [
        ("resnet20", 8.75),
        ("resnet32", 7.51),
        ("resnet44", 7.17),
        ("resnet56", 6.97),
        ("resnet1202", 7.93),
    ] {
        records.push(record(
            model,
            0,
            if model == "resnet1202" { 0.05 } else { 1.0 },
            test,
        ));
    }
    let all = verdicts("table6", "paper", &records, &[]);
    assert_eq!(verdict_of(&all, "table6-resnet-errors"), Verdict::Held);
    assert_eq!(verdict_of(&all, "fig6-resnet1202-fits"), Verdict::Held);
    assert_eq!(
        verdict_of(&all, "fig6-resnet1202-tests-worse-than-110"),
        Verdict::Held
    );
    // ResNet-44 vs -56 differ by 0.2 points, inside the binomial margin on 10k images.
    assert_eq!(
        verdict_of(&all, "fig6-resnets-gain-with-depth"),
        Verdict::Inconclusive
    );
    // Plain runs missing: not run, never held.
    assert_eq!(
        verdict_of(&all, "fig1-plain56-higher-train-error"),
        Verdict::NotRun
    );
    // ResNet-20 a point off Table 6: outside twice the combined sd (about 0.8 points).
    records
        .iter_mut()
        .find(|r| r.model == "resnet20")
        .unwrap()
        .final_test_error = 9.75;
    let off = verdicts("table6", "paper", &records, &[]);
    assert_eq!(verdict_of(&off, "table6-resnet-errors"), Verdict::Failed);
}

#[test]
fn the_span_question_and_layer_responses() {
    let ablation = |k1: f64, k2: f64, k3: f64| {
        let mut records = Vec::new();
        for seed in 0..2 {
            let d = seed as f64 * 0.2;
            records.push(record("resnet20-k1", seed, 50.0, k1 + d));
            records.push(record("resnet20", seed, 50.0, k2 + d));
            records.push(record("resnet20-k3", seed, 50.0, k3 + d));
        }
        verdict_of(
            &verdicts("ablation-skip", "quick", &records, &[]),
            "span2-lowest-test-error-20",
        )
    };
    assert_eq!(ablation(52.0, 49.0, 53.0), Verdict::Held);
    assert_eq!(ablation(49.0, 52.0, 53.0), Verdict::Failed);
    assert_eq!(ablation(49.3, 49.0, 53.0), Verdict::Inconclusive);

    let layers = |model: &str, stds: &[f64]| -> Vec<LayerRow> {
        stds.iter()
            .enumerate()
            .map(|(i, s)| LayerRow {
                run_id: format!("{model}-seed0"),
                model: model.into(),
                seed: 0,
                layer: i as u64 + 1,
                name: format!("l{i}"),
                std: *s,
                rank: 0,
            })
            .collect()
    };
    let records = [
        record("plain20", 0, 1.0, 1.0),
        record("resnet20", 0, 1.0, 1.0),
        record("plain56", 0, 1.0, 1.0),
        record("resnet56", 0, 1.0, 1.0),
    ];
    let mut rows = layers("plain20", &[1.0, 1.0, 1.0, 1.0]);
    rows.extend(layers("resnet20", &[0.5, 0.5, 0.5, 2.0]));
    rows.extend(layers("plain56", &[1.0, 1.0, 1.0, 1.0]));
    rows.extend(layers("resnet56", &[0.4, 0.4, 0.4, 0.4]));
    let all = verdicts("fig7", "quick", &records, &rows);
    assert_eq!(
        verdict_of(&all, "fig7-resnet-responses-smaller"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&all, "fig7-resnet56-smaller-than-resnet20"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&all, "fig7-deeper-resnets-smaller"),
        Verdict::NotRun
    );
}

#[test]
fn tables_keep_their_schema_through_parquet() {
    let records = vec![
        record("plain20", 0, 60.0, 56.0),
        record("resnet110", 3, 5.0, 6.5),
    ];
    let mut frame = tables::runs_frame(&records).unwrap();
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    for column in [
        "model",
        "depth",
        "residual",
        "shortcut",
        "seed",
        "iterations",
        "final_train_error",
        "final_test_error",
        "best_test_error",
        "parameters",
        "flops",
        "wall_s",
        "images_per_s",
        "device",
        "kernels",
        "commit",
        "suite_version",
        "candle_version",
    ] {
        assert!(names.iter().any(|n| n == column), "runs lacks {column}");
    }
    let dir = tempfile::tempdir().unwrap();
    store::write_table(&mut frame, dir.path(), "runs").unwrap();
    let path = dir.path().join("runs.parquet");
    let back = tables::records_from(&store::read_parquet(&path).unwrap(), &path).unwrap();
    assert_eq!(back, records);
    let (paper, _) = reference();
    let summary = tables::summarise(&records, &paper);
    assert_eq!(summary[1].paper_error_mean, Some(6.61));
    assert_eq!(
        summary[0].paper_error, None,
        "plain nets have no Table 6 row"
    );
    let mut frame_summary = tables::summary_frame(&summary).unwrap();
    store::write_table(&mut frame_summary, dir.path(), "summary").unwrap();
    let path = dir.path().join("summary.parquet");
    let back = tables::summaries_from(&store::read_parquet(&path).unwrap(), &path).unwrap();
    assert_eq!(back.len(), summary.len());
    assert_eq!(back[1].paper_error_mean, Some(6.61));
    assert_eq!(back[0].paper_error, None);
    assert_eq!(back[1].test_error_mean, summary[1].test_error_mean);
    // A column of the wrong type says which, and what it is.
    let mut wrong = frame.clone();
    wrong
        .with_column(polars::prelude::Column::new(
            "depth".into(),
            vec!["twenty"; records.len()],
        ))
        .unwrap();
    store::write_table(&mut wrong, dir.path(), "wrong").unwrap();
    let path = dir.path().join("wrong.parquet");
    let err = tables::records_from(&store::read_parquet(&path).unwrap(), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong.parquet") && err.contains("column `depth`"),
        "{err}"
    );
    // A table without a column says which.
    let mut broken = frame.drop("seed").unwrap();
    store::write_table(&mut broken, dir.path(), "broken").unwrap();
    let path = dir.path().join("broken.parquet");
    let err = tables::records_from(&store::read_parquet(&path).unwrap(), &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.parquet") && err.contains("seed"),
        "{err}"
    );
    // Tables written before the version columns existed still read, with the versions empty.
    let mut older = frame
        .drop("suite_version")
        .and_then(|f| f.drop("candle_version"))
        .unwrap();
    store::write_table(&mut older, dir.path(), "older").unwrap();
    let path = dir.path().join("older.parquet");
    let back = tables::records_from(&store::read_parquet(&path).unwrap(), &path).unwrap();
    assert_eq!(back[0].commit, "abc");
    assert!(back.iter().all(|r| r.suite_version.is_empty()));
    // A version column of the wrong type is still an error.
    let mut wrong = frame.clone();
    wrong
        .with_column(polars::prelude::Column::new(
            "suite_version".into(),
            vec![1u64; records.len()],
        ))
        .unwrap();
    store::write_table(&mut wrong, dir.path(), "wrong-version").unwrap();
    let path = dir.path().join("wrong-version.parquet");
    let err = tables::records_from(&store::read_parquet(&path).unwrap(), &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("suite_version"), "{err}");
}

#[test]
fn claims_on_test_views_read_the_views_rows_and_are_not_run_without_them() {
    use experiments::sweep::views::ViewErrors;
    use trainer::eval::Views;
    let (paper, toml) = reference();
    let config = SweepConfig::load(&configs(), "table2").unwrap();
    let records: Vec<RunRecord> = ["plain18", "plain34", "resnet18-a", "resnet34-a"]
        .iter()
        .map(|&model| RunRecord {
            run_id: format!("{model}-seed0"),
            model: model.into(),
            ..record("resnet20", 0, 50.0, 50.0)
        })
        .collect();
    let views = |model: &str, top1: f64| ViewErrors {
        run_id: format!("{model}-seed0"),
        views: Views::TenCrop,
        images: 5000,
        top1_error: top1,
        top5_error: top1 / 3.0,
    };
    let decide_on = |profile: &str, views: Vec<ViewErrors>| {
        let measurements = Measurements {
            views,
            ..Measurements::default()
        };
        claims::decide(&config, profile, &records, &measurements, &paper, &toml)
            .into_iter()
            .map(|v| (v.claim, v.verdict, v.why))
            .collect::<Vec<_>>()
    };
    let decide = |views| decide_on("quick", views);
    // 5,000 images at about 35% error: a binomial sd of 0.67 points per net, so a 3-point gap
    // holds, a 0.5-point one is inconclusive, and a reversed 3-point one fails.
    let all = decide(vec![
        views("plain18", 36.0),
        views("plain34", 36.5),
        views("resnet18-a", 38.0),
        views("resnet34-a", 35.0),
    ]);
    assert_eq!(
        verdict_of(&all, "table2-resnet34-beats-resnet18"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&all, "table2-plain34-higher-val-error"),
        Verdict::Inconclusive
    );
    assert_eq!(
        verdict_of(&all, "table2-resnet34-beats-plain34"),
        Verdict::Held
    );
    let reversed = decide(vec![
        views("plain18", 36.0),
        views("plain34", 36.5),
        views("resnet18-a", 32.0),
        views("resnet34-a", 35.0),
    ]);
    assert_eq!(
        verdict_of(&reversed, "table2-resnet34-beats-resnet18"),
        Verdict::Failed
    );
    // Without the views' rows the claims on them are not run; the training-error ones still are.
    let none = decide(Vec::new());
    assert_eq!(
        verdict_of(&none, "table2-resnet34-beats-resnet18"),
        Verdict::NotRun
    );
    assert_ne!(
        verdict_of(&none, "fig4-resnet34-lower-train-error"),
        Verdict::NotRun
    );

    // The paper profile: values within 3 sd of Table 2 (0.2 points of binomial noise on the
    // paper's 50,000 images and 0.63 on the run's 5,000 at 28%: a band of about 2 points), and the
    // gaps of §4.1 (2.8 and 3.5 points) within theirs.
    let at_paper = |plain18, plain34, r18, r34| {
        decide_on(
            "paper",
            vec![
                views("plain18", plain18),
                views("plain34", plain34),
                views("resnet18-a", r18),
                views("resnet34-a", r34),
            ],
        )
    };
    let close = at_paper(28.4, 28.0, 27.5, 25.3);
    assert_eq!(
        verdict_of(&close, "table2-values-within-bands"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&close, "table2-resnet34-gain-over-resnet18"),
        Verdict::Held
    );
    assert_eq!(
        verdict_of(&close, "table2-resnet34-reduction-over-plain34"),
        Verdict::Held
    );
    let off = at_paper(28.0, 28.5, 33.5, 25.0);
    assert_eq!(
        verdict_of(&off, "table2-values-within-bands"),
        Verdict::Failed
    );
    assert_eq!(
        verdict_of(&off, "table2-resnet34-gain-over-resnet18"),
        Verdict::Failed
    );
}

#[test]
fn throughout_training_reads_every_logged_point_of_the_curves() {
    use experiments::sweep::tables::CurvePoint;
    let (paper, toml) = reference();
    let config = SweepConfig::load(&configs(), "fig4").unwrap();
    let records: Vec<RunRecord> = ["plain18", "plain34", "resnet18-a", "resnet34-a"]
        .iter()
        .map(|&model| RunRecord {
            run_id: format!("{model}-seed0"),
            model: model.into(),
            // Windows of 100 iterations of batch 256.
            train_error_images: 25_600,
            ..record("resnet20", 0, 50.0, 50.0)
        })
        .collect();
    // Training-error curves logged every 100 iterations for 1,000: `plain34` minus `plain18` is
    // `gap(iteration)`; the residual nets keep their order by 5 points throughout.
    let verdict = |gap: &dyn Fn(u64) -> f64| {
        let mut curves = Vec::new();
        for iteration in (100..=1000).step_by(100) {
            let base = 90.0 - iteration as f64 / 20.0;
            for (model, error) in [
                ("plain18", base),
                ("plain34", base + gap(iteration)),
                ("resnet18-a", base),
                ("resnet34-a", base - 5.0),
            ] {
                curves.push(CurvePoint {
                    run_id: format!("{model}-seed0"),
                    model: model.into(),
                    iteration,
                    train_error: error,
                    test_error: None,
                });
            }
        }
        let measurements = Measurements {
            curves,
            ..Measurements::default()
        };
        let all: Vec<(String, Verdict, String)> =
            claims::decide(&config, "quick", &records, &measurements, &paper, &toml)
                .into_iter()
                .map(|v| (v.claim, v.verdict, v.why))
                .collect();
        verdict_of(&all, "fig4-plain34-higher-train-error")
    };
    // At 25,600 images and about 60% error the binomial sd is 0.31 points, a margin of 0.43.
    assert_eq!(verdict(&|_| 2.0), Verdict::Held);
    // Reversed by 2 points at iteration 500: failed, even though the end keeps the order.
    assert_eq!(
        verdict(&|it| if it == 500 { -2.0 } else { 2.0 }),
        Verdict::Failed
    );
    // Reversed only before a tenth of the run (the first window is iteration 100): not judged.
    assert_eq!(
        verdict(&|it| if it < 100 { -2.0 } else { 2.0 }),
        Verdict::Held
    );
    // Within the noise at the end: inconclusive.
    assert_eq!(
        verdict(&|it| if it == 1000 { 0.1 } else { 2.0 }),
        Verdict::Inconclusive
    );
    // Without curves the claim is not run.
    let measurements = Measurements::default();
    let none = claims::decide(&config, "quick", &records, &measurements, &paper, &toml);
    let fig4 = none
        .iter()
        .find(|v| v.claim == "fig4-plain34-higher-train-error")
        .unwrap();
    assert_eq!(fig4.verdict, Verdict::NotRun, "{}", fig4.why);
}

#[test]
fn nets_under_test_views_stand_beside_the_papers_numbers() {
    use experiments::sweep::views::ViewErrors;
    use trainer::eval::Views;
    let (paper, _) = reference();
    let record_of = |model: &str, seed| record(model, seed, 50.0, 50.0);
    let records = vec![
        record_of("plain18", 0),
        record_of("resnet34-a", 0),
        record_of("resnet34-a", 1),
        record_of("resnet50", 0),
    ];
    let scored = |run: &RunRecord, views, top1: f64| ViewErrors {
        run_id: run.run_id.clone(),
        views,
        images: 5000,
        top1_error: top1,
        top5_error: top1 / 4.0,
    };
    let views = vec![
        scored(&records[0], Views::TenCrop, 40.0),
        scored(&records[1], Views::TenCrop, 36.0),
        scored(&records[2], Views::TenCrop, 38.0),
        scored(&records[3], Views::TenCrop, 30.0),
        scored(&records[3], Views::MultiScale, 29.0),
    ];
    let rows = tables::summarise_views(&records, &views, "table2", &paper);
    let row = |model: &str, kind: &str| {
        rows.iter()
            .find(|r| r.model == model && r.views == kind)
            .unwrap_or_else(|| panic!("no row for {model} under {kind}: {rows:?}"))
    };
    assert_eq!(rows.len(), 4, "{rows:?}");
    // Table 2 prints plain-18's top-1 only; no table has its top-5.
    let plain18 = row("plain18", "10crop");
    assert_eq!(
        (plain18.paper_top1_error, plain18.paper_top5_error),
        (Some(27.94), None)
    );
    assert_eq!(plain18.paper_source, "Table 2");
    // ResNet-34 A: the experiment's own Table 2 for top-1, Table 3 for the top-5 it lacks; the
    // two seeds are averaged.
    let resnet34 = row("resnet34-a", "10crop");
    assert_eq!(resnet34.seeds, 2);
    assert_eq!(resnet34.top1_error_mean, 37.0);
    assert!((resnet34.top1_error_std - 2f64.sqrt()).abs() < 1e-12);
    assert_eq!(
        (resnet34.paper_top1_error, resnet34.paper_top5_error),
        (Some(25.03), Some(7.76))
    );
    assert_eq!(resnet34.paper_source, "Tables 2, 3");
    // ResNet-50 (option B) under both kinds: Table 3 for 10 crops, Table 4 for multi-scale.
    let ten = row("resnet50", "10crop");
    assert_eq!(
        (ten.paper_top1_error, ten.paper_top5_error),
        (Some(22.85), Some(6.71))
    );
    let multi = row("resnet50", "multiscale");
    assert_eq!(
        (multi.paper_top1_error, multi.paper_top5_error),
        (Some(20.74), Some(5.25))
    );
    assert_eq!(multi.paper_source, "Table 4");
    assert!(
        multi.top1_error_std.is_nan(),
        "one seed leaves no spread: {multi:?}"
    );
    // Center crops: the paper prints none for these nets.
    let center = tables::summarise_views(
        &records[..1],
        &[scored(&records[0], Views::Center, 41.0)],
        "table2",
        &paper,
    );
    assert_eq!(center[0].paper_source, "");
    assert_eq!(center[0].paper_top1_error, None);

    let dir = tempfile::tempdir().unwrap();
    let mut frame = tables::view_summary_frame(&rows).unwrap();
    store::write_table(&mut frame, dir.path(), "views_summary").unwrap();
    let path = dir.path().join("views_summary.parquet");
    let back = tables::view_summaries_from(&store::read_parquet(&path).unwrap(), &path).unwrap();
    assert_eq!(back.len(), rows.len());
    for (a, b) in back.iter().zip(&rows) {
        assert_eq!(
            (&a.model, &a.views, a.paper_top1_error, a.paper_top5_error),
            (&b.model, &b.views, b.paper_top1_error, b.paper_top5_error)
        );
        assert_eq!(a.paper_source, b.paper_source);
        assert_eq!(a.top1_error_mean, b.top1_error_mean);
    }
}
