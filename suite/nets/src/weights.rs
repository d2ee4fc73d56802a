//! Weights as safetensors files with torchvision's state-dict names.
//!
//! Loading checks the file against the model before touching any parameter: every tensor the model
//! has must be in the file with the same shape, and the file may hold nothing else except
//! torchvision's `*.num_batches_tracked` counters, which these nets do not keep. Saved files hold
//! f32 tensors; PyTorch's `load_state_dict` accepts them (BatchNorm fills in the missing counters).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::Error;

/// Names of BN running statistics: saved and loaded with the weights, never trained.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// The trainable parameters of `vars`, sorted by name (a stable order for optimiser state).
pub fn trainable(vars: &VarMap) -> Vec<(String, Var)> {
    let data = vars.data().lock().expect("var map lock poisoned");
    let mut out: Vec<_> = data
        .iter()
        .filter(|(name, _)| !is_buffer(name))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes every tensor of `vars` (parameters and BN statistics) to `path`, atomically.
pub fn save(vars: &VarMap, path: &Path) -> Result<(), Error> {
    let tensors: HashMap<String, Tensor> = {
        let data = vars.data().lock().expect("var map lock poisoned");
        data.iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<candle_core::Result<_>>()?
    };
    let bytes = safetensors::serialize(&tensors, None).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    files::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads `path` into the existing parameters of `vars`, after checking names and shapes.
pub fn load(vars: &VarMap, path: &Path) -> Result<(), Error> {
    let file =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let data = vars.data().lock().expect("var map lock poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in &names {
        let expected = data[*name].dims().to_vec();
        match file.get(*name) {
            None => {
                return Err(Error::MissingTensor {
                    path: path.to_path_buf(),
                    name: (*name).clone(),
                    expected,
                });
            }
            Some(t) if t.dims() != expected.as_slice() => {
                return Err(Error::ShapeMismatch {
                    path: path.to_path_buf(),
                    name: (*name).clone(),
                    expected,
                    found: t.dims().to_vec(),
                });
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = file
        .keys()
        .filter(|k| !data.contains_key(*k) && !k.ends_with(".num_batches_tracked"))
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(Error::UnexpectedTensor {
            path: path.to_path_buf(),
            name: (*name).clone(),
            shape: file[*name].dims().to_vec(),
            count: extra.len(),
        });
    }
    for name in names {
        let var = &data[name];
        let value = file[name].to_dtype(DType::F32)?.to_device(var.device())?;
        var.set(&value)?;
    }
    Ok(())
}
