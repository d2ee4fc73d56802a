//! A seeded, prefetching batch loader.
//!
//! - Epoch `e` visits the samples in a permutation drawn from (seed, e); each sample's augmentation
//!   is drawn from (seed, e, position in the epoch). The same seed gives the same batches whatever
//!   the number of threads.
//! - Batches are assembled in parallel (rayon) on a background thread, `prefetch` batches ahead, so
//!   training does not wait on data whenever the pipeline keeps pace.
//! - A [`Position`] (epoch, batch) says where the stream is; starting a stream at a saved position
//!   continues exactly where an earlier one stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::Error;
use crate::seed;

/// A collection of labelled samples that can be prepared into float tensors of one shape.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (channels, height, width) of every prepared sample.
    fn sample_shape(&self) -> (usize, usize, usize);

    fn label(&self, index: usize) -> usize;

    /// Prepares sample `index` into `out` (CHW), drawing any randomness from `rng`.
    fn prepare(&self, index: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) -> Result<(), Error>;
}

/// Where a stream stands: the next batch to produce is batch `batch` of epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: u64,
    pub batch: u64,
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// A fresh permutation each epoch (training); in order otherwise (evaluation).
    pub shuffle: bool,
    /// Drop an epoch's last, smaller batch (training keeps every batch the same size).
    pub drop_last: bool,
    pub seed: u64,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Skip samples that fail to load (counted in [`Loader::skipped`]) instead of failing.
    pub skip_unreadable: bool,
    /// Threads that prepare samples; `None`: rayon's global pool (one per core).
    pub threads: Option<usize>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            shuffle: true,
            drop_last: true,
            seed: 0,
            prefetch: 2,
            skip_unreadable: false,
            threads: None,
        }
    }
}

/// One batch: images (B, C, H, W) f32, labels (B,) u32, on the loader's device.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    /// Where this batch was in the stream; `next` is the position after it.
    pub at: Position,
    pub next: Position,
}

pub struct Loader {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    device: Device,
    skipped: Arc<AtomicUsize>,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Loader {
    pub fn new(
        dataset: Arc<dyn Dataset>,
        config: LoaderConfig,
        device: &Device,
    ) -> Result<Self, Error> {
        if config.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if dataset.len() < config.batch_size && config.drop_last {
            return Err(Error::Config(format!(
                "batch size {} is larger than the dataset ({} samples)",
                config.batch_size,
                dataset.len()
            )));
        }
        let pool = match config.threads {
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot start {n} loader threads: {e}")))?,
            )),
            None => None,
        };
        Ok(Self {
            dataset,
            config,
            device: device.clone(),
            skipped: Arc::new(AtomicUsize::new(0)),
            pool,
        })
    }

    pub fn batches_per_epoch(&self) -> u64 {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        (if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }) as u64
    }

    /// Samples skipped as unreadable so far (with `skip_unreadable`).
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The order in which epoch `epoch` visits the samples.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        self.producer().order(epoch)
    }

    /// Prepares one batch synchronously.
    pub fn batch(&self, at: Position) -> Result<Batch, Error> {
        let producer = self.producer();
        producer.batch(at, &producer.order(at.epoch))
    }

    fn producer(&self) -> Producer {
        Producer {
            dataset: self.dataset.clone(),
            config: self.config.clone(),
            device: self.device.clone(),
            skipped: self.skipped.clone(),
            batches_per_epoch: self.batches_per_epoch(),
            pool: self.pool.clone(),
        }
    }

    /// The batches of one epoch, in order, prefetched.
    pub fn epoch(&self, epoch: u64) -> Stream {
        self.stream_until(Position { epoch, batch: 0 }, Some(epoch + 1))
    }

    /// An endless stream of batches from `start`, across epochs, prefetched.
    pub fn stream(&self, start: Position) -> Stream {
        self.stream_until(start, None)
    }

    fn stream_until(&self, start: Position, end_epoch: Option<u64>) -> Stream {
        let producer = self.producer();
        let (tx, rx) = sync_channel(self.config.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            let mut at = start;
            let mut order = producer.order(at.epoch);
            loop {
                if at.batch >= producer.batches_per_epoch {
                    at = Position {
                        epoch: at.epoch + 1,
                        batch: 0,
                    };
                    order = producer.order(at.epoch);
                }
                if end_epoch.is_some_and(|end| at.epoch >= end) {
                    return;
                }
                let result = producer.batch(at, &order);
                let failed = result.is_err();
                // The consumer hung up: stop producing.
                if tx.send(result).is_err() || failed {
                    return;
                }
                at.batch += 1;
            }
        });
        Stream {
            rx,
            worker: Some(worker),
        }
    }
}

struct Producer {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    device: Device,
    skipped: Arc<AtomicUsize>,
    batches_per_epoch: u64,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Producer {
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut seed::rng(self.config.seed, &[0, epoch]));
        }
        order
    }

    fn batch(&self, at: Position, order: &[usize]) -> Result<Batch, Error> {
        let b = self.config.batch_size;
        let first = at.batch as usize * b;
        let indices = &order[first..(first + b).min(order.len())];
        let (c, h, w) = self.dataset.sample_shape();
        let size = c * h * w;
        let mut data = vec![0f32; indices.len() * size];
        let mut prepare = || -> Vec<Result<(), Error>> {
            data.par_chunks_mut(size)
                .zip(indices.par_iter().enumerate())
                .map(|(out, (k, &index))| {
                    let mut rng = seed::rng(self.config.seed, &[1, at.epoch, (first + k) as u64]);
                    self.dataset.prepare(index, &mut rng, out)
                })
                .collect()
        };
        let results = match &self.pool {
            Some(pool) => pool.install(prepare),
            None => prepare(),
        };
        let mut labels = Vec::with_capacity(indices.len());
        let mut ok = Vec::with_capacity(indices.len());
        for (result, &index) in results.into_iter().zip(indices) {
            let keep = match result {
                Ok(()) => true,
                Err(_) if self.config.skip_unreadable => false,
                Err(e) => return Err(e),
            };
            if keep {
                labels.push(self.dataset.label(index) as u32);
            } else {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            ok.push(keep);
        }
        // Only a batch that lost samples is compacted; a full one is used as it is.
        let kept = if labels.len() == indices.len() {
            data
        } else {
            data.chunks(size)
                .zip(&ok)
                .filter(|(_, keep)| **keep)
                .flat_map(|(sample, _)| sample.iter().copied())
                .collect()
        };
        let n = labels.len();
        let images = Tensor::from_vec(kept, (n, c, h, w), &Device::Cpu)?.to_device(&self.device)?;
        let labels = Tensor::from_vec(labels, n, &Device::Cpu)?.to_device(&self.device)?;
        let mut next = Position {
            epoch: at.epoch,
            batch: at.batch + 1,
        };
        if next.batch >= self.batches_per_epoch {
            next = Position {
                epoch: at.epoch + 1,
                batch: 0,
            };
        }
        Ok(Batch {
            images,
            labels,
            at,
            next,
        })
    }
}

/// Batches arriving from the background thread. Dropping it stops the thread.
pub struct Stream {
    rx: Receiver<Result<Batch, Error>>,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for Stream {
    type Item = Result<Batch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Close the channel first so that a blocked send returns and the worker exits.
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
