//! Table 1 against the repository's real configs and the paper's reference file.

use std::path::{Path, PathBuf};

use experiments::table1::{self, Config};
use experiments::{Verdict, store};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_row_holds_with_the_papers_numbers_side_by_side() {
    let table = table1::run(&configs()).unwrap();
    assert_eq!(table.rows.len(), 11);
    for row in &table.rows {
        assert_eq!(row.verdict, Verdict::Held, "{row:?}");
    }
    let find = |name: &str| table.rows.iter().find(|r| r.model == name).unwrap();
    let r50 = find("resnet50");
    assert_eq!(
        (r50.params, r50.torchvision_params),
        (25_557_032, Some(25_557_032))
    );
    assert_eq!(r50.paper_flops, Some(3.8e9));
    assert!(
        (r50.flops as f64 / 1e9 - 3.858).abs() < 0.001,
        "{}",
        r50.flops
    );
    let r110 = find("resnet110");
    assert_eq!(r110.paper_params, Some(1.7e6));
    assert_eq!(r110.paper_flops, None);
    assert_eq!(r110.params, 1_727_962);
    assert_eq!(table.verdict(), Verdict::Held);
}

#[test]
fn the_table_round_trips_through_csv_and_parquet() {
    let table = table1::run(&configs()).unwrap();
    let mut df = table.to_frame().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths = store::write_table(&mut df, dir.path(), "table1").unwrap();
    assert_eq!(paths.len(), 2);
    let back = store::read_parquet(&paths[1]).unwrap();
    assert!(back.equals_missing(&df), "{back}\n{df}");
    let csv = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(
        csv.starts_with("model,family,depth,input_size,params,flops,paper_params"),
        "{csv}"
    );
    assert!(
        csv.contains("resnet18,imagenet,18,224,11689512,1814073344,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 12);
}

#[test]
fn markdown_shows_paper_and_measured_side_by_side() {
    let md = table1::run(&configs()).unwrap().to_markdown();
    assert!(md.contains("| resnet20 "), "{md}");
    assert!(md.contains("0.27M"), "{md}");
    assert!(md.contains("11.3e9"), "{md}");
    assert_eq!(md.lines().count(), 13);
}

#[test]
fn the_reference_copy_matches_the_shared_reference() {
    let Some(shared) = testkit::shared_reference() else {
        return;
    };
    let shared = std::fs::read(shared).unwrap();
    assert_eq!(
        std::fs::read(configs().join("reference/paper.toml")).unwrap(),
        shared
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_configs_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let tol = "[tolerance]\nflops_units_in_last_place = 1.0\nparams_units_in_last_place = 0.5\n";
    let path = write(
        dir.path(),
        "table1.toml",
        &format!("paper = \"p.toml\"\n{tol}[[model]]\nname = \"resnet21\"\n"),
    );
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("table1.toml") && err.contains("model[0].name") && err.contains("6n+2"),
        "{err}"
    );

    let path = write(
        dir.path(),
        "table1.toml",
        &format!("paper = \"p.toml\"\n{tol}[[model]]\nname = \"resnet20\"\nparams = 3\n"),
    );
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("table1.toml") && err.contains("model[0]") && err.contains("params"),
        "{err}"
    );

    let path = write(
        dir.path(),
        "table1.toml",
        &format!("paper = \"p.toml\"\n{tol}[[model]]\nname = 20\n"),
    );
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("model[0].name") && err.contains("line"),
        "{err}"
    );

    // A reference file with a model's row missing: the experiment says which file and which model.
    write(
        dir.path(),
        "table1.toml",
        &format!("paper = \"p.toml\"\n{tol}[[model]]\nname = \"resnet18\"\n"),
    );
    let paper = std::fs::read_to_string(configs().join("reference/paper.toml")).unwrap();
    write(
        dir.path(),
        "p.toml",
        &paper.replace("depth = 18\nblock", "depth = 19\nblock"),
    );
    let err = table1::run(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("p.toml") && err.contains("resnet18") && err.contains("depth 18"),
        "{err}"
    );

    let err = table1::run(&dir.path().join("nowhere"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nowhere/table1.toml"), "{err}");
}
