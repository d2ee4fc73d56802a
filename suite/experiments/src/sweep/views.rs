//! The paper's test views on a sweep's trained ImageNet nets: each finished run's weights scored
//! with the views the sweep names (10 crops for Tables 2 and 3, multi-scale for Table 4) on the
//! validation images it evaluated on, at its own resolution; measured once per run and kept in
//! the run's directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use trainer::RunSpec;
use trainer::eval::{Geometry, Views};

use crate::Error;

/// One run's errors under one kind of views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewErrors {
    pub run_id: String,
    pub views: Views,
    pub images: usize,
    /// Percent, as every error of the sweep tables.
    pub top1_error: f64,
    pub top5_error: f64,
}

/// The file in a run's directory that keeps its errors under `views`.
pub fn file_name(views: Views) -> String {
    format!("views-{views}.json")
}

/// Images per forward pass: ten views each for 10-crop, so small batches.
const BATCH: usize = 8;

/// The errors of the finished run in `dir` under each of `kinds`: read from their files, or
/// measured from the run's weights on its validation images (loaded once for all the kinds
/// missing) and written there.
pub fn measure(spec: &RunSpec, dir: &Path, kinds: &[Views]) -> Result<Vec<ViewErrors>, Error> {
    let cached = |views: Views| -> Option<ViewErrors> {
        let text = std::fs::read_to_string(dir.join(file_name(views))).ok()?;
        serde_json::from_str(&text).ok()
    };
    let mut measured: Vec<Option<ViewErrors>> = kinds.iter().map(|&k| cached(k)).collect();
    if measured.iter().all(Option::is_some) {
        return Ok(measured.into_iter().flatten().collect());
    }
    let device = spec.device.open()?;
    let weights = dir.join(trainer::run::WEIGHTS_FILE);
    let mut model = nets::Model::load(spec.model_spec()?, &weights, &device)?;
    model.net.set_kernels(spec.kernels);
    let eval = trainer::data::imagenet_eval(spec)?;
    let geometry = Geometry {
        crop: trainer::data::imagenet_crop(spec),
    };
    for (slot, &views) in measured.iter_mut().zip(kinds) {
        if slot.is_some() {
            continue;
        }
        let evaluation = trainer::eval::evaluate(
            &[&model.net],
            &eval.samples,
            (views, geometry),
            &device,
            BATCH,
            |_| {},
        )?;
        let errors = ViewErrors {
            run_id: spec.run_id(),
            views,
            images: evaluation.images,
            top1_error: 100.0 * evaluation.top1_error,
            top5_error: 100.0 * evaluation.top5_error,
        };
        let json = serde_json::to_string_pretty(&errors).expect("view errors serialise");
        files::write_atomic(&dir.join(file_name(views)), json.as_bytes())?;
        *slot = Some(errors);
    }
    Ok(measured.into_iter().flatten().collect())
}
