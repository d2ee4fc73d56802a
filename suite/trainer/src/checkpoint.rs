//! Checkpoints: one safetensors file holding the model's tensors under torchvision's names, the
//! optimiser's momentum buffers under `optimizer.momentum.<name>`, and the loop's state as JSON in
//! the file's metadata. Written to a temporary file, synced, then renamed over the old one, so a
//! crash at any moment leaves either the previous checkpoint or the new one, never a mix.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::schedule::ScheduleState;

const FORMAT: &str = "resnet-repro checkpoint 1";
const MOMENTUM: &str = "optimizer.momentum.";

/// Where the loop stands after `iteration` completed iterations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub iteration: u64,
    /// The loader position of the next batch (epoch, batch within the epoch): with the seed, all
    /// the randomness the rest of the run needs.
    pub epoch: u64,
    pub batch: u64,
    pub schedule: ScheduleState,
    /// Seconds spent training and evaluating so far, over every session of the run.
    pub wall_s: f64,
    /// How many times the run was resumed.
    pub resumes: u32,
}

/// Writes the checkpoint of `vars` (all of them: parameters and BN statistics), the momentum
/// buffers and `state` to `path`, atomically.
pub fn save(
    path: &Path,
    vars: &VarMap,
    momentum: &HashMap<String, Tensor>,
    state: &LoopState,
) -> Result<(), Error> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    {
        let data = vars.data().lock().expect("var map lock poisoned");
        for (name, var) in data.iter() {
            tensors.push((name.clone(), var.as_tensor().to_device(&Device::Cpu)?));
        }
    }
    for (name, buffer) in momentum {
        tensors.push((format!("{MOMENTUM}{name}"), buffer.to_device(&Device::Cpu)?));
    }
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            "state".to_string(),
            serde_json::to_string(state).expect("state serialises"),
        ),
    ]);
    let bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
    files::write_atomic(path, &bytes)?;
    Ok(())
}

/// A checkpoint read back: model tensors by name, momentum buffers by parameter name, loop state.
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub momentum: HashMap<String, Tensor>,
    pub state: LoopState,
}

pub fn load(path: &Path, device: &Device) -> Result<Loaded, Error> {
    let bad = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a checkpoint of this suite (expected metadata format `{FORMAT}`)"
        )));
    }
    let state: LoopState = serde_json::from_str(metadata.get("state").map_or("", String::as_str))
        .map_err(|e| bad(format!("bad loop state: {e}")))?;
    let all = candle_core::safetensors::load_buffer(&bytes, device)?;
    let (mut tensors, mut momentum) = (HashMap::new(), HashMap::new());
    for (name, tensor) in all {
        match name.strip_prefix(MOMENTUM) {
            Some(param) => momentum.insert(param.to_string(), tensor),
            None => tensors.insert(name, tensor),
        };
    }
    Ok(Loaded {
        tensors,
        momentum,
        state,
    })
}

/// Copies checkpointed tensors into the model's variables; names and shapes must match exactly.
pub fn restore(path: &Path, vars: &VarMap, tensors: &HashMap<String, Tensor>) -> Result<(), Error> {
    let bad = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let data = vars.data().lock().expect("var map lock poisoned");
    if data.len() != tensors.len() {
        return Err(bad(format!(
            "holds {} model tensors, the model has {} (a checkpoint of another model?)",
            tensors.len(),
            data.len()
        )));
    }
    for (name, var) in data.iter() {
        let Some(saved) = tensors.get(name) else {
            return Err(bad(format!("tensor `{name}` is missing")));
        };
        if saved.dims() != var.dims() {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                saved.dims(),
                var.dims()
            )));
        }
        var.set(saved)?;
    }
    Ok(())
}
