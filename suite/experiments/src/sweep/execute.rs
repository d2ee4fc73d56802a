//! Running a plan: what is missing trains, half-done runs resume, finished ones are skipped; up to
//! `jobs` runs at once, each in its own thread pool so that CPU jobs split the cores between them.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use trainer::{DeviceName, Provenance, Summary};

use super::plan::{PlannedRun, Status};
use crate::Error;

/// What a sweep tells whoever watches it; each run also gets the trainer's own observer.
pub trait SweepObserver: Sync {
    /// A run starts (or resumes); the returned observer watches its loop.
    fn run_started(&self, run: &PlannedRun) -> Box<dyn trainer::Observer + Send>;
    /// A run ended with its summary.
    fn run_finished(&self, run: &PlannedRun, summary: &Summary);
}

/// Watches nothing.
pub struct QuietSweep;

impl SweepObserver for QuietSweep {
    fn run_started(&self, _run: &PlannedRun) -> Box<dyn trainer::Observer + Send> {
        Box::new(trainer::Quiet)
    }
    fn run_finished(&self, _run: &PlannedRun, _summary: &Summary) {}
}

/// Trains every run of `runs` that is not done, `jobs` at a time. The first error stops new runs
/// from starting (those already going finish) and is returned; finished runs stay finished.
pub fn execute(
    runs: &[PlannedRun],
    jobs: usize,
    cache_dir: Option<&Path>,
    provenance: &Provenance,
    observer: &dyn SweepObserver,
) -> Result<(), Error> {
    let queue: Mutex<VecDeque<&PlannedRun>> =
        Mutex::new(runs.iter().filter(|r| r.status != Status::Done).collect());
    let jobs = jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // CPU jobs share the cores; GPU jobs share the device and keep the host's pool.
    let on_cpu = runs
        .first()
        .is_some_and(|r| r.spec.device == DeviceName::Cpu);
    let threads = if on_cpu { (cores / jobs).max(1) } else { cores };
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                    Ok(pool) => pool,
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(Error::Threads(e.to_string()));
                        return;
                    }
                };
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(run) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let mut watcher = observer.run_started(run);
                    let outcome = pool.install(|| {
                        trainer::run(&run.spec, &run.dir, cache_dir, provenance, watcher.as_mut())
                    });
                    match outcome {
                        Ok(outcome) => observer.run_finished(run, outcome.summary()),
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            first_error.lock().unwrap().get_or_insert(Error::Run {
                                dir: run.dir.clone(),
                                source: e,
                            });
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
