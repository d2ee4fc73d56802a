//! Fig. 7: the standard deviation of each 3x3 layer's response (after its BN, before the ReLU or
//! the addition) over the evaluation images, BN in evaluation mode, measured once per trained run
//! and kept in the run's directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use trainer::RunSpec;

use crate::Error;

pub const RESPONSES_FILE: &str = "responses.json";

/// One layer's response statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerResponse {
    /// The BN's weight prefix, e.g. `layer2.0.bn1`.
    pub name: String,
    /// Standard deviation over every element of the layer's output (images, channels, positions).
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Responses {
    pub run_id: String,
    pub images: usize,
    /// In network order.
    pub layers: Vec<LayerResponse>,
}

/// The responses of the finished run in `dir`: read from `responses.json`, or measured from its
/// weights on its evaluation split and written there.
pub fn measure(spec: &RunSpec, dir: &Path, cache_dir: Option<&Path>) -> Result<Responses, Error> {
    let path = dir.join(RESPONSES_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if let Ok(responses) = serde_json::from_str::<Responses>(&text) {
            return Ok(responses);
        }
    }
    let device = spec.device.open()?;
    let weights = dir.join(trainer::run::WEIGHTS_FILE);
    let model = nets::Model::load(spec.model_spec()?, &weights, &device)?;
    let mut net = model.net;
    net.set_kernels(spec.kernels);
    let data = trainer::data::load(spec, cache_dir, &device)?;
    // Per layer: sum, sum of squares and count, in f64 so 10k images of 16k elements add up
    // without losing the variance to cancellation.
    let mut sums: Vec<(String, f64, f64, f64)> = Vec::new();
    for batch in data.eval.epoch(0) {
        let batch = batch.map_err(trainer::Error::from)?;
        let (_, taps) = net.forward_with_taps(&batch.images, false)?;
        if sums.is_empty() {
            sums = taps
                .iter()
                .map(|t| (t.name.clone(), 0.0, 0.0, 0.0))
                .collect();
        }
        for (acc, tap) in sums.iter_mut().zip(&taps) {
            let values = tap
                .response
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?;
            acc.1 += values.sum_all()?.to_scalar::<f64>()?;
            acc.2 += values.sqr()?.sum_all()?.to_scalar::<f64>()?;
            acc.3 += values.elem_count() as f64;
        }
    }
    let layers = sums
        .into_iter()
        .map(|(name, sum, sq, n)| {
            let mean = sum / n;
            LayerResponse {
                name,
                std: (sq / n - mean * mean).max(0.0).sqrt(),
            }
        })
        .collect();
    let responses = Responses {
        run_id: spec.run_id(),
        images: data.eval_len,
        layers,
    };
    let json = serde_json::to_string_pretty(&responses).expect("responses serialise");
    files::write_atomic(&path, json.as_bytes())?;
    Ok(responses)
}
