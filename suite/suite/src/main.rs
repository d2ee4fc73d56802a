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
            eprintln!("error: {}", message(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line. Many of the libraries' errors already end their message
/// with their source's (`{path}: {source}`), so a cause the line already ends with is left out
/// rather than printed twice, as `{:#}` would; any other cause is kept.
fn message(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::message;

    /// An error that quotes its source in its own message, as `#[error("{path}: {source}")]` does.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "data.parquet: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn missing() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn a_cause_is_printed_once() {
        let quoted = anyhow::Error::new(Quoting(missing())).context("run r1");
        assert_eq!(message(&quoted), "run r1: data.parquet: no such file");
        let plain = anyhow::Error::new(missing()).context("reading data.parquet");
        assert_eq!(message(&plain), "reading data.parquet: no such file");
    }
}
