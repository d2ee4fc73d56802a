//! `suite`: the resnet-repro command line. One command per paper artefact (`suite reproduce
//! table1`), plus listing, training runs, benchmarks, data and inference.
//!
//! Each command parses its arguments, calls the library crates and prints: the logic lives in
//! `experiments`, `trainer`, `datasets` and `nets`, so other front ends (CI, a cluster task) reuse it.
//!
//! Exit codes: 0 success and every claim held; 1 a claim of the paper failed; 2 an error.

mod cli;
mod cmd;
mod paths;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: kernels::LineAligned = kernels::LineAligned;

fn main() -> ExitCode {
    // Output piped into a reader that stops early (`suite list | head`) ends the process quietly,
    // as other Unix tools do, instead of panicking on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at startup, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    kernels::keep_freed_memory();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
