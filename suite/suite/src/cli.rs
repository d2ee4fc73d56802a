//! What the user typed, parsed and validated by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

const EXIT_CODES: &str = "\
Exit codes: 0 done (no claim failed), 1 a claim of the paper failed, 2 error.

Examples:
  suite list models
  suite reproduce table1
  suite reproduce table1 --format json
  suite train --model resnet20 --iterations 2000 --data cifar10=../shared/data/cifar10";

/// Reproduce "Deep Residual Learning for Image Recognition" (He et al., 2015) and check the paper's
/// claims.
#[derive(Debug, Parser)]
#[command(name = "suite", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory of experiment configs [default: ./configs if present, else the repository's]
    #[arg(long, global = true, env = "SUITE_CONFIGS", value_name = "DIR")]
    pub configs: Option<PathBuf>,
    /// Directory that run records and result tables are written to
    #[arg(
        long,
        global = true,
        env = "SUITE_RESULTS",
        value_name = "DIR",
        default_value = "results"
    )]
    pub results: PathBuf,
    /// A local copy of a dataset instead of the hub, as NAME=PATH (cifar10=DIR, imagenet=DIR);
    /// repeatable
    #[arg(long = "data", global = true, value_name = "NAME=PATH", value_parser = parse_data)]
    pub data: Vec<DataArg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataArg {
    pub name: String,
    pub path: PathBuf,
}

const DATA_NAMES: [&str; 2] = ["cifar10", "imagenet"];

fn parse_data(text: &str) -> Result<DataArg, String> {
    let (name, path) = text.split_once('=').ok_or_else(|| {
        format!("`{text}`: expected NAME=PATH, e.g. cifar10=../shared/data/cifar10")
    })?;
    if !DATA_NAMES.contains(&name) {
        return Err(format!(
            "`{name}` is not a dataset (expected one of {DATA_NAMES:?})"
        ));
    }
    Ok(DataArg {
        name: name.into(),
        path: PathBuf::from(path),
    })
}

impl Global {
    /// A command's `--out DIR` where given, else `--results`.
    pub fn results_dir(&self, out: Option<&std::path::Path>) -> PathBuf {
        out.map_or_else(|| self.results.clone(), std::path::Path::to_path_buf)
    }

    /// The path given with `--data NAME=PATH` (the last one wins).
    pub fn data_path(&self, name: &str) -> Option<&std::path::Path> {
        self.data
            .iter()
            .rev()
            .find(|d| d.name == name)
            .map(|d| d.path.as_path())
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    List(cmd::list::Args),
    Reproduce(cmd::reproduce::Args),
    Verify(cmd::reproduce::VerifyArgs),
    Report(cmd::report::Args),
    Regress(cmd::regress::Args),
    Predict(cmd::predict::Args),
    Eval(cmd::eval::Args),
    Init(cmd::init::Args),
    Data(cmd::data::Args),
    Bench(cmd::bench::Args),
    Train(cmd::train::TrainArgs),
    Run(cmd::train::RunArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example_in_its_help() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Example"),
                "`suite {}` help has no example:\n{help}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn data_sources_parse_and_bad_ones_say_why() {
        let cli = Cli::try_parse_from([
            "suite",
            "data",
            "info",
            "--data",
            "cifar10=/a",
            "--data",
            "imagenet=/b",
        ])
        .unwrap();
        assert_eq!(
            cli.global.data_path("cifar10"),
            Some(std::path::Path::new("/a"))
        );
        assert_eq!(
            cli.global.data_path("imagenet"),
            Some(std::path::Path::new("/b"))
        );
        let err = Cli::try_parse_from(["suite", "data", "info", "--data", "mnist=/a"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mnist") && err.contains("cifar10"), "{err}");
        let err = Cli::try_parse_from(["suite", "data", "info", "--data", "cifar10"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NAME=PATH"), "{err}");
    }

    #[test]
    fn the_steps_of_a_split_sweep_exclude_each_other() {
        for extra in [
            ["--run", "resnet20-seed0-0", "--no-train"],
            ["--run", "resnet20-seed0-0", "--emit=slurm"],
            ["--emit", "commands", "--no-train"],
            ["--emit", "commands", "--dry-run"],
        ] {
            let args = ["suite", "reproduce", "fig1"].into_iter().chain(extra);
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{extra:?}: {err}"
            );
        }
        let cli =
            Cli::try_parse_from(["suite", "reproduce", "fig1", "--run", "a-seed0-1,b-seed1-2"])
                .unwrap();
        assert!(matches!(cli.cmd, Cmd::Reproduce(_)));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["suite", "reproduce", "table1", "--results", "/tmp/r"]).unwrap();
        assert_eq!(cli.global.results, PathBuf::from("/tmp/r"));
        assert!(matches!(cli.cmd, Cmd::Reproduce(_)));
    }
}
