//! What the user typed, parsed and validated by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

const EXIT_CODES: &str = "\
Exit codes: 0 done (every claim held), 1 a claim of the paper failed, 2 error.

Examples:
  suite list models
  suite reproduce table1
  suite reproduce table1 --format json";

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
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    List(cmd::list::Args),
    Reproduce(cmd::reproduce::Args),
    Predict(cmd::predict::Args),
    Init(cmd::init::Args),
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
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["suite", "reproduce", "table1", "--results", "/tmp/r"]).unwrap();
        assert_eq!(cli.global.results, PathBuf::from("/tmp/r"));
        assert!(matches!(cli.cmd, Cmd::Reproduce(_)));
    }
}
