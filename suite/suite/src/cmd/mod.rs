//! One module per subcommand, each with its `Args` (the `--help` text) and `run`.

pub mod bench;
pub mod cluster;
pub mod data;
pub mod eval;
pub mod init;
pub mod list;
pub mod predict;
pub mod regress;
pub mod report;
pub mod reproduce;
pub mod train;

use std::process::ExitCode;

use crate::cli::{Cli, Cmd};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::List(args) => list::run(args, &cli.global),
        Cmd::Init(args) => init::run(args, &cli.global),
        Cmd::Data(args) => data::run(args, &cli.global),
        Cmd::Reproduce(args) => reproduce::run(args, &cli.global),
        Cmd::Verify(args) => reproduce::verify(args, &cli.global),
        Cmd::Report(args) => report::run(args, &cli.global),
        Cmd::Regress(args) => regress::run(args, &cli.global),
        Cmd::Predict(args) => predict::run(args, &cli.global),
        Cmd::Eval(args) => eval::run(args, &cli.global),
        Cmd::Bench(args) => bench::run(args, &cli.global),
        Cmd::Train(args) => train::train(args, &cli.global),
        Cmd::Run(args) => train::run(args, &cli.global),
    }
}

/// Output format of commands that print a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text (a Markdown table)
    Text,
    /// JSON on standard output
    Json,
}
