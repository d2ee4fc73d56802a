//! A fresh directory per test and the `suite` binary run in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Default for Dir {
    /// A temporary working directory with the repository's `configs/` copied in.
    fn default() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("configs"), &tmp.path().join("configs"));
        Self { tmp }
    }
}

impl Dir {
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Runs `suite ARGS` in this directory with the user's `SUITE_*` settings removed and caches
    /// inside the directory.
    pub fn suite(&self, args: &[&str]) -> Run {
        self.suite_env(args, &[])
    }

    /// The `suite ARGS` command, set up as [`Dir::suite`] runs it, for callers that manage the
    /// process themselves.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suite"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("SUITE_CONFIGS")
            .env_remove("SUITE_RESULTS")
            .env_remove("HF_HUB_OFFLINE")
            .env("RESNET_REPRO_CACHE", self.join("cache"))
            .env("HF_HOME", self.join("hf"));
        cmd
    }

    /// `bash ARGS` in this directory, with the environment [`Dir::suite`] gives `suite` (for
    /// scripts and command lines that `suite` wrote), and extra variables.
    pub fn bash(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let suite = self.command(&[]);
        let mut bash = Command::new("bash");
        bash.args(args).current_dir(self.path());
        for (k, v) in suite.get_envs() {
            match v {
                Some(v) => bash.env(k, v),
                None => bash.env_remove(k),
            };
        }
        for (k, v) in envs {
            bash.env(k, v);
        }
        Run {
            args: format!("(bash) {}", args.join(" ")),
            output: bash.output().unwrap(),
        }
    }

    /// `suite` with extra environment variables.
    pub fn suite_env(&self, args: &[&str], envs: &[(&str, &Path)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let output = cmd.output().unwrap();
        Run {
            args: args.join(" "),
            output,
        }
    }
}

pub use testkit::{repository as repo, shared_data};

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub struct Run {
    args: String,
    output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn code(self, expected: i32) -> Self {
        let code = self.output.status.code();
        assert_eq!(
            code,
            Some(expected),
            "`suite {}` exited {code:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }
}
