//! One training step (forward, cross-entropy, backward, SGD update) and its throughput.

use std::time::Instant;

use candle_core::{D, DType, Result, Tensor};
use candle_nn::ModuleT;

use crate::optim::Sgd;

/// Loss and misclassified examples of one step's batch, left on the step's device: reading a
/// value makes the host wait for the device, so on a GPU the loop reads a whole window of steps at
/// once ([`read_outcomes`]) instead of stalling every step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The batch's mean cross-entropy, a scalar f32 tensor outside the autograd graph.
    pub loss: Tensor,
    /// The batch's misclassified examples, a scalar u32 tensor.
    pub errors: Tensor,
}

impl StepOutcome {
    /// Reads the loss and the error count (one device-to-host copy on a GPU).
    pub fn read(&self) -> Result<(f32, usize)> {
        Ok((
            self.loss.to_scalar::<f32>()?,
            self.errors.to_scalar::<u32>()? as usize,
        ))
    }
}

/// Reads the losses and error counts of several steps with one copy from their device.
pub fn read_outcomes(outcomes: &[StepOutcome]) -> Result<Vec<(f32, usize)>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let losses: Vec<Tensor> = outcomes.iter().map(|o| o.loss.clone()).collect();
    let errors: Vec<Tensor> = outcomes
        .iter()
        .map(|o| o.errors.to_dtype(DType::F32))
        .collect::<Result<_>>()?;
    // Error counts are at most a batch, exact in f32.
    let both = Tensor::stack(&[Tensor::stack(&losses, 0)?, Tensor::stack(&errors, 0)?], 0)?
        .to_vec2::<f32>()?;
    Ok(both[0]
        .iter()
        .zip(&both[1])
        .map(|(&loss, &errors)| (loss, errors as usize))
        .collect())
}

/// Forward in training mode, mean cross-entropy, backward, one SGD update with `lr`. Nothing is
/// copied to the host: the outcome stays on the device until read.
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
        loss: loss.detach(),
        errors: error_count(&logits, labels)?,
    })
}

/// Examples whose arg-max logit is not their label, as a scalar u32 tensor on the logits' device.
pub fn error_count(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let predicted = logits.detach().argmax(D::Minus1)?;
    let wrong = predicted.ne(&labels.to_dtype(predicted.dtype())?)?;
    wrong.to_dtype(DType::U32)?.sum_all()
}

/// Examples whose arg-max logit is not their label.
pub fn count_errors(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(error_count(logits, labels)?.to_scalar::<u32>()? as usize)
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
        Self {
            median: median_of_sorted(&rates).unwrap_or(f64::NAN),
            min: rates.first().copied().unwrap_or(f64::NAN),
            max: rates.last().copied().unwrap_or(f64::NAN),
            steps: rates.len(),
        }
    }
}

/// The median of values sorted in ascending order (the mean of the middle two where their number
/// is even); `None` for no values.
pub fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Times `steps` training steps on one fixed batch after `warmup` untimed ones (learning rate 0.1).
/// `on_step` sees each timed step's seconds (for progress display).
pub fn time_steps(
    net: &nets::ResNet,
    sgd: &mut Sgd,
    (images, labels): (&Tensor, &Tensor),
    counts: (usize, usize),
    on_step: impl FnMut(f64),
) -> Result<Throughput> {
    time_repeated(images, counts, on_step, || {
        train_step(net, sgd, images, labels, 0.1).map(drop)
    })
}

/// Times `steps` runs of `step` on the batch `images` after `warmup` untimed ones, each run ended
/// by waiting for the device (work is asynchronous on CUDA: the queued kernels are timed, not
/// their launch). `on_step` sees each timed run's seconds.
pub fn time_repeated(
    images: &Tensor,
    (warmup, steps): (usize, usize),
    mut on_step: impl FnMut(f64),
    mut step: impl FnMut() -> Result<()>,
) -> Result<Throughput> {
    let device = images.device();
    for _ in 0..warmup {
        step()?;
        device.synchronize()?;
    }
    let mut seconds = Vec::with_capacity(steps);
    for _ in 0..steps {
        let start = Instant::now();
        step()?;
        device.synchronize()?;
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
    fn outcomes_are_read_in_one_go() {
        let dev = candle_core::Device::Cpu;
        // Rows 0 and 2 are predicted right, row 1 wrong (its label is 0, its largest logit 1).
        let logits = Tensor::new(&[[2f32, 1.0], [0.5, 3.0], [0.0, -1.0]], &dev).unwrap();
        let labels = Tensor::new(&[0u32, 0, 0], &dev).unwrap();
        let errors = error_count(&logits, &labels).unwrap();
        assert_eq!(errors.to_scalar::<u32>().unwrap(), 1);
        assert_eq!(count_errors(&logits, &labels).unwrap(), 1);
        let outcome = |loss: f32, errors: u32| StepOutcome {
            loss: Tensor::new(loss, &dev).unwrap(),
            errors: Tensor::new(errors, &dev).unwrap(),
        };
        let steps = [outcome(2.5, 7), outcome(f32::NAN, 0), outcome(0.125, 128)];
        let read = read_outcomes(&steps).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!((read[0], read[2]), ((2.5, 7), (0.125, 128)));
        assert!(read[1].0.is_nan());
        assert_eq!(steps[2].read().unwrap(), (0.125, 128));
        assert!(read_outcomes(&[]).unwrap().is_empty());
    }

    #[test]
    fn throughput_statistics() {
        let t = Throughput::from_step_times(10, &[1.0, 0.5, 2.0, 0.25]);
        assert_eq!((t.min, t.max, t.steps), (5.0, 40.0, 4));
        assert_eq!(t.median, 15.0);
        assert_eq!(Throughput::from_step_times(4, &[2.0]).median, 2.0);
    }
}
