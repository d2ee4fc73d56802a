//! Seeded parameter creation.
//!
//! candle draws initial values from the device's own generator, and `Device::Cpu.set_seed` is not
//! supported, so a run's initial weights could not be reproduced. Here every tensor is drawn on the CPU
//! from one ChaCha stream in construction order, then moved to the target device: one seed gives the
//! same initial weights on any device and any machine.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The init of every conv weight (§3.4: "initialize the weights as in [13]"): Kaiming normal with
/// fan-out and ReLU gain, as torchvision's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
pub const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: candle_nn::init::NonLinearity::ReLU,
};

/// A `VarMap` whose missing entries are created from a seeded generator.
struct SeededVarMap {
    vars: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.vars.data().lock().expect("var map lock poisoned");
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "parameter `{name}` exists with shape {:?}, expected {shape:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let values = {
            let mut rng = self.rng.lock().expect("rng lock poisoned");
            draw(&shape, init, &mut rng)
        };
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("parameter `{name}` needs a shape to be created")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .expect("var map lock poisoned")
            .contains_key(name)
    }
}

fn draw(shape: &Shape, init: Init, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    let uniform = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi) as f32).collect()
    };
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => normal(rng, 0.0, std),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(rng, -bound, bound)
                }
            }
        }
    }
}

/// A `VarBuilder` that creates missing parameters in `vars` from `seed`, in f32 on `device`.
pub fn seeded_var_builder(vars: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        vars: vars.clone(),
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> (VarMap, Tensor) {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, &Device::Cpu);
        let w = vb.get_with_hints((64, 16, 3, 3), "w", CONV_INIT).unwrap();
        (vars, w)
    }

    #[test]
    fn same_seed_same_values_other_seed_other_values() {
        let a = build(7).1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = build(7).1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let c = build(8).1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn kaiming_fan_out_has_the_expected_spread() {
        let (_, w) = build(1);
        let v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // fan_out = 64 * 3 * 3, gain sqrt(2): std = sqrt(2 / 576) = 0.0589.
        let expected = (2.0f64 / 576.0).sqrt();
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!(
            (var.sqrt() / expected - 1.0).abs() < 0.05,
            "std {} vs {expected}",
            var.sqrt()
        );
    }

    #[test]
    fn existing_parameters_are_reused_and_shapes_checked() {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, 0, &Device::Cpu);
        let a = vb.get_with_hints(4, "x", Init::Const(3.0)).unwrap();
        let b = vb.get_with_hints(4, "x", Init::Const(5.0)).unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        let err = vb
            .get_with_hints(5, "x", Init::Const(0.0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`x`") && err.contains("[4]") && err.contains("[5]"),
            "{err}"
        );
    }
}
