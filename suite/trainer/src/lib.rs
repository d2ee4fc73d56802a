//! One training run of a paper net, end to end: momentum SGD ([`optim`]), the paper's learning-rate
//! schedules, and the training step that everything else (the loop, benchmarks) builds on ([`step`]).

pub mod device;
pub mod optim;
pub mod step;

pub use optim::{Sgd, SgdConfig};
