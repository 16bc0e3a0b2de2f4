//! The compression engine: grouping, codebook initialisation and joint
//! learning (ALGORITHM.md §1-3).

pub mod baselines;
pub mod budget;
pub mod calib;
pub mod compress;
pub mod error;
pub mod finetune;
pub mod group;
pub mod hessian;
pub mod kmeans;
pub mod learn;
pub mod rng;
pub mod sequential;
pub(crate) mod vector;

pub use compress::{
    compress_file, compress_matrix, compress_matrix_owned, CompressOptions, Control, Event, Phase,
    TensorReport,
};
pub use error::{EngineError, Result};
pub use hessian::Hessian;
pub use learn::{LossPoint, MoveRule, StepKind};
