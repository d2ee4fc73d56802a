//! One training step (forward, cross-entropy, backward, SGD update) and its throughput.

use std::time::Instant;

use candle_core::{D, Result, Tensor};
use candle_nn::ModuleT;

use crate::optim::Sgd;

/// Loss and misclassified examples of one step's batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub loss: f32,
    pub errors: usize,
}

/// Forward in training mode, mean cross-entropy, backward, one SGD update with `lr`.
pub fn train_step(
    net: &nets::ResNet,
    sgd: &mut Sgd,
    images: &Tensor,
    labels: &Tensor,
    lr: f64,
) -> Result<StepOutcome> {
    let logits = net.forward_t(images, true)?;
    let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
    let grads = loss.backward()?;
    sgd.step(&grads, lr)?;
    Ok(StepOutcome {
        loss: loss.to_scalar::<f32>()?,
        errors: count_errors(&logits, labels)?,
    })
}

/// Examples whose arg-max logit is not their label.
pub fn count_errors(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let predicted = logits.detach().argmax(D::Minus1)?;
    let correct = predicted
        .eq(&labels.to_dtype(predicted.dtype())?)?
        .to_dtype(candle_core::DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize;
    Ok(labels.elem_count() - correct)
}

/// Images per second of repeated training steps: median, min and max over the timed steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Throughput {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub steps: usize,
}

impl Throughput {
    /// From per-step wall times in seconds, each step processing `batch` images.
    pub fn from_step_times(batch: usize, seconds: &[f64]) -> Self {
        let mut rates: Vec<f64> = seconds.iter().map(|s| batch as f64 / s).collect();
        rates.sort_by(f64::total_cmp);
        let median = match rates.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        };
        Self {
            median,
            min: rates.first().copied().unwrap_or(f64::NAN),
            max: rates.last().copied().unwrap_or(f64::NAN),
            steps: rates.len(),
        }
    }
}

/// Times `steps` training steps on one fixed batch after `warmup` untimed ones (learning rate 0.1).
/// `on_step` sees each timed step's seconds (for progress display).
pub fn time_steps(
    net: &nets::ResNet,
    sgd: &mut Sgd,
    (images, labels): (&Tensor, &Tensor),
    (warmup, steps): (usize, usize),
    mut on_step: impl FnMut(f64),
) -> Result<Throughput> {
    for _ in 0..warmup {
        train_step(net, sgd, images, labels, 0.1)?;
    }
    let mut seconds = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        train_step(net, sgd, images, labels, 0.1)?;
        // Device work is asynchronous on CUDA: wait for it before reading the clock.
        images.device().synchronize()?;
        let s = start.elapsed().as_secs_f64();
        on_step(s);
        seconds.push(s);
    }
    Ok(Throughput::from_step_times(images.dim(0)?, &seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_statistics() {
        let t = Throughput::from_step_times(10, &[1.0, 0.5, 2.0, 0.25]);
        assert_eq!((t.min, t.max, t.steps), (5.0, 40.0, 4));
        assert_eq!(t.median, 15.0);
        assert_eq!(Throughput::from_step_times(4, &[2.0]).median, 2.0);
    }
}
