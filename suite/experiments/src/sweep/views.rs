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

/// The errors of the finished run in `dir` under `views`: read from its file, or measured from the
/// run's weights on its validation images and written there.
pub fn measure(spec: &RunSpec, dir: &Path, views: Views) -> Result<ViewErrors, Error> {
    let path = dir.join(file_name(views));
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(errors) = serde_json::from_str::<ViewErrors>(&text)
    {
        return Ok(errors);
    }
    let device = spec.device.open()?;
    let weights = dir.join(trainer::run::WEIGHTS_FILE);
    let mut model = nets::Model::load(spec.model_spec()?, &weights, &device)?;
    model.net.set_kernels(spec.kernels);
    let (_, eval) = trainer::data::imagenet_folders(spec)?;
    let geometry = Geometry {
        crop: trainer::data::imagenet_crop(spec),
    };
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
    files::write_atomic(&path, json.as_bytes())?;
    Ok(errors)
}
