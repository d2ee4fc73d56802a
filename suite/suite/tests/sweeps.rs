//! `suite reproduce` sweeps and `suite verify` on the real CIFAR-10 copy: the smoke profile of
//! every CIFAR experiment, a rerun that trains nothing, and a sweep killed with SIGKILL whose
//! rerun ends with the tables of an uninterrupted one.

use std::path::Path;
use std::time::{Duration, Instant};

use experiments::store;
use experiments::sweep::tables;

use crate::util::{Dir, shared_data};

const SWEEPS: [&str; 5] = ["table6", "fig1", "fig6", "fig7", "ablation-skip"];

/// The columns of a CSV table except those that measure time.
fn figures(csv: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !["wall_s", "images_per_s", "commit"].contains(&header[i]))
        .collect();
    std::iter::once(
        keep.iter()
            .map(|&i| header[i])
            .collect::<Vec<_>>()
            .join(","),
    )
    .chain(lines.map(|l| {
        let cells: Vec<&str> = l.split(',').collect();
        keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
    }))
    .collect()
}

fn sweep_args<'a>(experiments: &[&'a str], out: &'a str, data: &'a str) -> Vec<&'a str> {
    let mut args = vec!["reproduce"];
    args.extend_from_slice(experiments);
    args.extend([
        "--profile",
        "smoke",
        "--out",
        out,
        "--data",
        data,
        "--quiet",
        "--no-probe",
    ]);
    args
}

#[test]
fn smoke_sweeps_train_once_resume_after_sigkill_and_verify() {
    let Some(cifar) = shared_data("cifar10") else {
        return;
    };
    let data = format!("cifar10={}", cifar.display());
    let dir = Dir::default();

    let out = dir
        .suite(&sweep_args(&SWEEPS, "whole", &data))
        .code(0)
        .stdout();
    assert!(out.contains("14 of 14 runs to train"), "{out}");
    // The figures find Table 6's runs done.
    assert!(out.contains("0 of 2 runs to train"), "{out}");
    for name in SWEEPS {
        let tables = dir.join(&format!("whole/{name}/smoke"));
        for file in [
            "runs.parquet",
            "runs.csv",
            "curves.parquet",
            "summary.parquet",
            "verdicts.json",
            "verdicts.csv",
        ] {
            assert!(tables.join(file).is_file(), "{name}: no {file}");
        }
        assert_eq!(
            tables.join("fig7.parquet").is_file(),
            name == "fig7",
            "{name}"
        );
    }
    // The tables say how they were made: the command as typed, the versions of every run.
    let invocation = std::fs::read_to_string(dir.join("whole/fig7/smoke/sweep.json")).unwrap();
    assert!(
        invocation.contains(&format!(
            "suite reproduce {} --profile smoke --out whole --data {data} --quiet --no-probe",
            SWEEPS.join(" ")
        )),
        "{invocation}"
    );
    let runs = std::fs::read_to_string(dir.join("whole/table6/smoke/runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 1 + 14, "{runs}");
    assert!(
        runs.starts_with("run_id,")
            && runs
                .lines()
                .next()
                .unwrap()
                .ends_with(",suite_version,candle_version")
    );
    assert!(
        runs.lines()
            .skip(1)
            .all(|l| l.contains(&format!(",{},", env!("CARGO_PKG_VERSION")))),
        "{runs}"
    );
    assert_eq!(runs.matches("resnet110,").count(), 5, "{runs}");
    let verdicts = std::fs::read_to_string(dir.join("whole/table6/smoke/verdicts.json")).unwrap();
    assert!(
        verdicts.contains("\"verdict\": \"not_applicable\""),
        "{verdicts}"
    );

    // A second sweep trains nothing and rewrites the same figures.
    let before = figures(&dir.join("whole/table6/smoke/runs.csv"));
    let again = dir
        .suite(&sweep_args(&["table6"], "whole", &data))
        .code(0)
        .stdout();
    assert!(again.contains("0 of 14 runs to train"), "{again}");
    assert_eq!(figures(&dir.join("whole/table6/smoke/runs.csv")), before);

    for name in SWEEPS {
        let out = dir
            .suite(&["verify", name, "--profile", "smoke", "--out", "whole"])
            .code(0)
            .stdout();
        assert!(
            out.contains("| claim") && out.contains("n/a"),
            "{name}: {out}"
        );
    }
    // Every smoke result set draws its figures and report, and the index counts them all.
    let out = dir
        .suite(&[
            "report",
            "all",
            "--profile",
            "smoke",
            "--out",
            "whole",
            "--reports",
            "drawn",
        ])
        .code(0)
        .stdout();
    for name in SWEEPS {
        for file in ["curves.png", "curves.svg", "report.md", "report.pdf"] {
            let path = format!("drawn/{name}/smoke/{file}");
            assert!(dir.join(&path).is_file(), "{path}: {out}");
        }
    }
    assert!(dir.join("drawn/fig7/smoke/layer-responses.svg").is_file());
    assert!(
        dir.join("drawn/ablation-skip/smoke/skip-span.png")
            .is_file()
    );
    let index = std::fs::read_to_string(dir.join("drawn/index-smoke.md")).unwrap();
    for name in SWEEPS {
        assert!(index.contains(&format!("[{name}]")), "{name}: {index}");
    }
    assert!(dir.join("drawn/index-smoke.pdf").is_file());
    regress_against_baselines(&dir);
    let missing = dir
        .suite(&["verify", "fig1", "--profile", "quick", "--out", "whole"])
        .code(2);
    assert!(
        missing
            .stderr()
            .contains("suite reproduce fig1 --profile quick"),
        "{}",
        missing.stderr()
    );

    // Killed as soon as the first checkpoint lands, then rerun to the end.
    let mut child = dir
        .command(&sweep_args(&["fig1"], "killed", &data))
        .spawn()
        .unwrap();
    let store = dir.join("killed/runs");
    let start = Instant::now();
    let checkpointed = || {
        std::fs::read_dir(&store)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("checkpoint.safetensors").exists())
    };
    while !checkpointed() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !dir.join("killed/fig1/smoke/runs.csv").exists(),
        "the sweep finished before it could be killed"
    );
    let out = dir
        .suite(&sweep_args(&["fig1"], "killed", &data))
        .code(0)
        .stdout();
    assert!(
        out.contains("half done") || out.contains("1 of 2 runs"),
        "{out}"
    );
    assert_eq!(
        figures(&dir.join("killed/fig1/smoke/runs.csv")),
        figures(&dir.join("whole/fig1/smoke/runs.csv"))
    );
    for entry in std::fs::read_dir(&store).unwrap() {
        let run = entry.unwrap().path();
        let name = run.file_name().unwrap().to_owned();
        assert_eq!(
            figures(&run.join("metrics.csv")),
            figures(&dir.join("whole/runs").join(&name).join("metrics.csv")),
            "{}",
            run.display()
        );
    }
}

/// `suite regress` on the smoke results in `whole/`: they pass the committed CPU baseline and one
/// written from them; a baseline they fall short of, a metric they lack and a baseline of another
/// format each say so.
fn regress_against_baselines(dir: &Dir) {
    let committed = testkit::repository().join("ci/baselines/cpu-smoke.json");
    let committed = committed.to_str().unwrap();
    let out = dir
        .suite(&["regress", "--baseline", committed, "--out", "whole"])
        .code(0)
        .stdout();
    assert!(out.contains("33 of 33 metrics passed"), "{out}");

    let written = dir
        .suite(&[
            "regress",
            "--write-baseline",
            "--baseline",
            "base.json",
            "--out",
            "whole",
        ])
        .code(0)
        .stdout();
    assert!(
        written.contains("33 accuracy and 0 throughput metrics"),
        "{written}"
    );
    let text = std::fs::read_to_string(dir.join("base.json")).unwrap();
    let mut baseline: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        baseline["command"],
        "suite regress --write-baseline --baseline base.json --out whole"
    );
    dir.suite(&["regress", "--baseline", "base.json", "--out", "whole"])
        .code(0);
    // --profile keeps one profile's sweeps, and names the ones there are when it finds none.
    let smoke = dir
        .suite(&[
            "regress",
            "--baseline",
            "base.json",
            "--out",
            "whole",
            "--profile",
            "smoke",
        ])
        .code(0)
        .stdout();
    assert!(smoke.contains("33 of 33 metrics passed"), "{smoke}");
    let err = dir
        .suite(&[
            "regress",
            "--baseline",
            "base.json",
            "--out",
            "whole",
            "--profile",
            "medium",
        ])
        .code(2)
        .stderr();
    assert!(
        err.contains("base.json") && err.contains("`medium`") && err.contains("profiles: smoke"),
        "{err}"
    );
    let err = dir
        .suite(&[
            "regress",
            "--write-baseline",
            "--baseline",
            "medium.json",
            "--out",
            "whole",
            "--profile",
            "medium",
        ])
        .code(2)
        .stderr();
    assert!(err.contains("no sweep of profile `medium`"), "{err}");
    assert!(!dir.join("medium.json").exists());

    // The first model's baseline 50 points better than measured: a regression.
    let first = &mut baseline["accuracy"][0];
    let mean = first["test_error_mean"].as_f64().unwrap();
    first["test_error_mean"] = (mean - 50.0).into();
    first["test_error_std"] = serde_json::Value::Null;
    // A model the results do not have: missing, which never passes.
    let mut absent = baseline["accuracy"][1].clone();
    absent["model"] = "resnet9".into();
    baseline["accuracy"].as_array_mut().unwrap().push(absent);
    std::fs::write(dir.join("tampered.json"), baseline.to_string()).unwrap();
    let out = dir
        .suite(&["regress", "--baseline", "tampered.json", "--out", "whole"])
        .code(1)
        .stdout();
    assert!(
        out.contains("REGRESSED") && out.contains("MISSING"),
        "{out}"
    );
    assert!(out.contains("no run of resnet9"), "{out}");
    assert!(out.contains("32 of 34 metrics passed"), "{out}");

    baseline["format"] = 99.into();
    std::fs::write(dir.join("future.json"), baseline.to_string()).unwrap();
    let err = dir
        .suite(&["regress", "--baseline", "future.json", "--out", "whole"])
        .code(2)
        .stderr();
    assert!(
        err.contains("future.json") && err.contains("format 99"),
        "{err}"
    );
}

#[test]
fn imagenet_smoke_sweeps_train_on_a_generated_folder_and_explain_missing_data() {
    let dir = Dir::default();
    let synth = dir
        .suite(&["data", "synth-imagenet", "imagenet", "--classes", "4"])
        .code(0)
        .stdout();
    assert!(synth.contains("wrote 4 classes"), "{synth}");
    let data = format!("imagenet={}", dir.join("imagenet").display());
    let experiments = ["table2", "fig4", "table3", "table4"];

    let out = dir
        .suite(&sweep_args(&experiments, "res", &data))
        .code(0)
        .stdout();
    for experiment in experiments {
        let tables = dir.join(&format!("res/{experiment}/smoke"));
        for file in [
            "runs.parquet",
            "curves.parquet",
            "summary.parquet",
            "verdicts.json",
        ] {
            assert!(tables.join(file).is_file(), "{experiment}: no {file}");
        }
    }
    let runs = std::fs::read_to_string(dir.join("res/table3/smoke/runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 1 + 7, "{runs}");
    // Tables 2 and 3 score their nets with 10 crops, Table 4 Table 3's nets at multiple scales.
    for experiment in ["table2", "table3", "table4"] {
        assert!(
            dir.join(&format!("res/{experiment}/smoke/views.parquet"))
                .is_file()
        );
    }
    let views = std::fs::read_dir(dir.join("res/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("resnet152-")
        })
        .unwrap();
    for kind in ["10crop", "multiscale"] {
        let text = std::fs::read_to_string(views.join(format!("views-{kind}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["images"], 12, "{text}");
        assert!(v["top1_error"].as_f64().unwrap() <= 100.0, "{text}");
    }
    // Each net under the test views stands beside the paper's number for the same views:
    // ResNet-152 beside Table 4's multi-scale 19.38 / 4.49, plain-18 beside Table 2's 27.94.
    let row = |text: &str, first: &[&str]| -> Vec<String> {
        text.lines()
            .map(|l| {
                l.split('|')
                    .map(|c| c.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .find(|cells| cells.len() > first.len() && cells[1..=first.len()] == *first)
            .unwrap_or_else(|| panic!("no row {first:?} in {text}"))
    };
    let resnet152 = row(&out, &["resnet152", "multiscale", "1"]);
    assert_eq!(
        resnet152[6..9],
        ["19.38", "4.49", "Table 4"],
        "{resnet152:?}"
    );
    assert_eq!(row(&out, &["plain18", "10crop", "1"])[6], "27.94", "{out}");
    assert!(dir.join("res/table4/smoke/views_summary.parquet").is_file());
    // The verdicts again from the tables on disk, the test views read back from views.parquet.
    let verified = dir
        .suite(&["verify", "table4", "--profile", "smoke", "--out", "res"])
        .code(0)
        .stdout();
    assert_eq!(
        row(&verified, &["resnet152", "multiscale", "1"]),
        resnet152,
        "{verified}"
    );
    // The report shows the center-crop errors as such and the test views beside the paper's.
    dir.suite(&[
        "report",
        "table4",
        "--profile",
        "smoke",
        "--out",
        "res",
        "--reports",
        "rep",
    ])
    .code(0);
    let report = std::fs::read_to_string(dir.join("rep/table4/smoke/report.md")).unwrap();
    assert!(
        report.contains("val. error (center crop)")
            && report.contains("Training on ImageNet")
            && !report.contains("Table 6"),
        "{report}"
    );
    let reported = row(&report, &["ResNet-152", "multiscale", "1"]);
    assert_eq!(
        (&*reported[6], &*reported[7], &*reported[9]),
        ("19.38", "4.49", "Table 4"),
        "{reported:?}"
    );
    assert!(reported[8].starts_with(['+', '-']), "{reported:?}");
    let html = std::fs::read_to_string(dir.join("rep/table4/smoke/report.html")).unwrap();
    assert!(html.contains("test views</h3>"), "{html}");
    assert!(
        out.contains("decided on the quick, paper profile(s) only"),
        "{out}"
    );
    // Fig. 4 found Table 2's runs done; a second sweep trains nothing.
    let again = dir
        .suite(&sweep_args(&experiments, "res", &data))
        .code(0)
        .stdout();
    assert!(!again.contains("| new "), "{again}");

    // Without a copy of ImageNet the plan is shown, nothing trains, and the error says how to
    // point the suite at one.
    let run = dir
        .suite(&[
            "reproduce",
            "table2",
            "--profile",
            "quick",
            "--out",
            "empty",
            "--quiet",
        ])
        .code(2);
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert!(
        stdout.contains("resnet34-a") && stdout.contains("15000"),
        "{stdout}"
    );
    assert!(
        stderr.contains("--data imagenet=DIR") && stderr.contains("train/<wnid>/<image>"),
        "{stderr}"
    );
    assert!(!dir.join("empty/runs").exists(), "nothing trained");
    dir.suite(&[
        "reproduce",
        "table2",
        "--profile",
        "quick",
        "--dry-run",
        "--quiet",
    ])
    .code(0);
}

/// `--seeds N` trains each model's first N seeds (past the config's one, the next integers), its
/// tables hold every seed, and the jobs it emits repeat it.
#[test]
fn more_seeds_than_the_profile_are_trained_tabulated_and_emitted() {
    let Some(cifar) = shared_data("cifar10") else {
        return;
    };
    let data = format!("cifar10={}", cifar.display());
    let dir = Dir::default();
    let with = |extra: &[&'static str]| {
        let mut args = sweep_args(&["fig1"], "seeds", &data);
        args.extend_from_slice(extra);
        dir.suite(&args)
    };
    let listing = with(&["--seeds", "2", "--emit", "commands"])
        .code(0)
        .stdout();
    assert!(listing.contains("4 of 4 runs to train"), "{listing}");
    let commands: Vec<&str> = listing.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(commands.len(), 5, "{listing}");
    assert!(
        commands.iter().all(|c| c.contains(" --seeds 2 ")),
        "{listing}"
    );

    let printed = with(&["--seeds", "2"]).code(0).stdout();
    let table = dir.join("seeds/fig1/smoke/runs.parquet");
    let records = tables::records_from(&store::read_parquet(&table).unwrap(), &table).unwrap();
    let mut runs: Vec<(&str, u64)> = records.iter().map(|r| (r.model.as_str(), r.seed)).collect();
    runs.sort();
    assert_eq!(
        runs,
        [
            ("plain20", 0),
            ("plain20", 1),
            ("plain56", 0),
            ("plain56", 1)
        ]
    );
    // The summary, printed after the plan, counts both seeds of each model.
    for model in ["plain20", "plain56"] {
        let row = printed
            .lines()
            .rfind(|l| l.starts_with(&format!("| {model} ")))
            .unwrap_or_else(|| panic!("{printed}"));
        assert_eq!(row.split('|').nth(2).map(str::trim), Some("2"), "{row}");
    }

    let zero = with(&["--seeds", "0", "--dry-run"]).code(2).stderr();
    assert!(zero.contains("--seeds"), "{zero}");
}

/// A sweep split into jobs ends with the tables of the same sweep run in one go: the commands of
/// `--emit commands`, each run as its own process, and the task and tabulate modes of the
/// `--emit slurm` script (what Slurm runs on the nodes), task by task.
#[test]
fn sweeps_split_into_jobs_end_with_the_tables_of_one_sweep() {
    let Some(cifar) = shared_data("cifar10") else {
        return;
    };
    let data = format!("cifar10={}", cifar.display());
    let dir = Dir::default();
    dir.suite(&sweep_args(&["fig1"], "whole", &data)).code(0);
    let whole = figures(&dir.join("whole/fig1/smoke/runs.csv"));

    let emit = |out: &str, format: &str| {
        let mut args = sweep_args(&["fig1"], out, &data);
        args.extend(["--emit", format]);
        dir.suite(&args).code(0).stdout()
    };
    let listing = emit("split", "commands");
    let commands: Vec<&str> = listing.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(commands.len(), 3, "{listing}");
    assert!(listing.contains("2 of 2 runs to train"), "{listing}");
    let (tabulate, runs) = commands.split_last().unwrap();
    assert!(tabulate.ends_with(" --no-train"), "{listing}");
    // Tabulating before any run has finished says so and trains nothing.
    let early = dir.bash(&["-c", tabulate], &[]).code(0);
    assert!(
        early.stderr().contains("2 of 2 runs have not finished"),
        "{}",
        early.stderr()
    );
    assert!(!dir.join("split/runs").exists() || store_size(&dir, "split") == 0);
    for (i, command) in runs.iter().enumerate() {
        assert!(command.contains(" --run "), "{command}");
        dir.bash(&["-c", command], &[]).code(0);
        assert_eq!(store_size(&dir, "split"), i + 1, "{command}");
    }
    dir.bash(&["-c", tabulate], &[]).code(0);
    assert_eq!(figures(&dir.join("split/fig1/smoke/runs.csv")), whole);
    let again = emit("split", "commands");
    assert!(again.contains("0 of 2 runs to train"), "{again}");
    assert_eq!(again.lines().filter(|l| !l.starts_with('#')).count(), 1);

    let script = emit("slurm", "slurm");
    std::fs::write(dir.join("fig1.sh"), &script).unwrap();
    dir.bash(&["-n", "fig1.sh"], &[]).code(0);
    // .ci/run names ShellCheck; elsewhere bash's parse above is the check.
    if let Some(shellcheck) = std::env::var_os("SHELLCHECK") {
        let lint = std::process::Command::new(shellcheck)
            .arg(dir.join("fig1.sh"))
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
    assert!(
        script.contains("--array=0-$(( ${#runs[@]} - 1 ))") && !script.contains("--gres"),
        "{script}"
    );
    for task in ["0", "1"] {
        dir.bash(&["fig1.sh", "task"], &[("SLURM_ARRAY_TASK_ID", task)])
            .code(0);
    }
    dir.bash(&["fig1.sh", "tabulate"], &[]).code(0);
    assert_eq!(figures(&dir.join("slurm/fig1/smoke/runs.csv")), whole);

    // A GPU sweep asks Slurm for a GPU per job; a run id not in the plan is an error naming the
    // plan's runs.
    let mut args = sweep_args(&["fig1"], "gpu", &data);
    args.extend(["--device", "cuda", "--emit", "slurm"]);
    let gpu = dir.suite(&args).code(0).stdout();
    assert_eq!(gpu.matches("--gres=gpu:1").count(), 2, "{gpu}");
    let mut args = sweep_args(&["fig1"], "split", &data);
    args.extend(["--run", "resnet20-seed9-00000000"]);
    let err = dir.suite(&args).code(2).stderr();
    assert!(
        err.contains("--run resnet20-seed9-00000000") && err.contains("plain20-seed0-"),
        "{err}"
    );
}

fn store_size(dir: &Dir, out: &str) -> usize {
    std::fs::read_dir(dir.join(out).join("runs"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}
