//! SGD with momentum and weight decay, as PyTorch and Caffe define it:
//! `v = mu * v + (g + wd * w); w = w - lr * v`.
//!
//! candle-nn's SGD has neither momentum nor weight decay. The momentum buffers live in `Var`s
//! updated in place from detached tensors: in candle a parameter's gradient can still reference
//! the forward graph after `backward()`, so a buffer kept as a plain tensor derived from it would
//! hold every step's activations alive.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Momentum and weight decay; the learning rate comes with each step (it follows a schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    /// The paper's values (§3.4, §4.2): momentum 0.9, weight decay 1e-4.
    fn default() -> Self {
        Self {
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

struct Param {
    name: String,
    value: Var,
    velocity: Var,
}

pub struct Sgd {
    params: Vec<Param>,
    config: SgdConfig,
}

impl Sgd {
    /// Optimises `params` (name, variable), e.g. `nets::weights::trainable(&vars)`: BN running
    /// statistics must not be among them.
    pub fn new(params: Vec<(String, Var)>, config: SgdConfig) -> Result<Self> {
        let params = params
            .into_iter()
            .map(|(name, value)| {
                let velocity = Var::zeros(value.shape(), value.dtype(), value.device())?;
                Ok(Param {
                    name,
                    value,
                    velocity,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { params, config })
    }

    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// One update with learning rate `lr`. A parameter without a gradient is left alone (its
    /// velocity too), as PyTorch does.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let SgdConfig {
            momentum,
            weight_decay,
        } = self.config;
        for p in &self.params {
            let Some(grad) = grads.get(p.value.as_tensor()) else {
                continue;
            };
            let weights = p.value.as_detached_tensor();
            let mut grad = grad.detach();
            if weight_decay != 0.0 {
                grad = (grad + (&weights * weight_decay)?)?;
            }
            let velocity = ((p.velocity.as_detached_tensor() * momentum)? + grad)?;
            p.value.set(&(weights - (&velocity * lr)?)?)?;
            p.velocity.set(&velocity)?;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name, for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.velocity.as_detached_tensor()))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::state`]; every parameter must be present with its shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for p in &self.params {
            let Some(saved) = state.get(&p.name) else {
                candle_core::bail!("optimiser state has no momentum buffer for `{}`", p.name);
            };
            if saved.dims() != p.velocity.dims() {
                candle_core::bail!(
                    "optimiser state: `{}` has shape {:?}, the parameter {:?}",
                    p.name,
                    saved.dims(),
                    p.velocity.dims()
                );
            }
            p.velocity.set(&saved.to_device(p.velocity.device())?)?;
        }
        if state.len() != self.params.len() {
            candle_core::bail!(
                "optimiser state holds {} buffers, the model has {} parameters",
                state.len(),
                self.params.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_steps_match_the_update_rule_by_hand() {
        let dev = Device::Cpu;
        let w = Var::new(&[1.0f32, -2.0], &dev).unwrap();
        let mut sgd = Sgd::new(vec![("w".into(), w.clone())], SgdConfig::default()).unwrap();
        // loss = sum(w^2 * [1, 3]) => g = [2 w0, 6 w1]
        let scale = Tensor::new(&[1.0f32, 3.0], &dev).unwrap();
        let mut expect_w = [1.0f64, -2.0];
        let mut v = [0.0f64; 2];
        for lr in [0.1, 0.05] {
            let loss = (w.as_tensor().sqr().unwrap() * &scale)
                .unwrap()
                .sum_all()
                .unwrap();
            sgd.step(&loss.backward().unwrap(), lr).unwrap();
            for i in 0..2 {
                let g = 2.0 * [1.0, 3.0][i] * expect_w[i] + 1e-4 * expect_w[i];
                v[i] = 0.9 * v[i] + g;
                expect_w[i] -= lr * v[i];
            }
            let got = w.as_tensor().to_vec1::<f32>().unwrap();
            for i in 0..2 {
                assert!(
                    (got[i] as f64 - expect_w[i]).abs() < 1e-6,
                    "{got:?} vs {expect_w:?}"
                );
            }
        }
        let state = sgd.state();
        let saved = state["w"].to_vec1::<f32>().unwrap();
        assert!((saved[0] as f64 - v[0]).abs() < 1e-6 && (saved[1] as f64 - v[1]).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips_and_mismatches_are_named() {
        let dev = Device::Cpu;
        let w = Var::new(&[1.0f32, 2.0, 3.0], &dev).unwrap();
        let mut sgd = Sgd::new(vec![("layer.w".into(), w)], SgdConfig::default()).unwrap();
        let mut state = HashMap::new();
        state.insert(
            "layer.w".to_string(),
            Tensor::new(&[0.5f32, 0.0, -1.0], &dev).unwrap(),
        );
        sgd.load_state(&state).unwrap();
        assert_eq!(
            sgd.state()["layer.w"].to_vec1::<f32>().unwrap(),
            [0.5, 0.0, -1.0]
        );
        state.insert("layer.w".to_string(), Tensor::new(&[0.5f32], &dev).unwrap());
        let err = sgd.load_state(&state).unwrap_err().to_string();
        assert!(err.contains("layer.w") && err.contains("[1]"), "{err}");
    }
}
