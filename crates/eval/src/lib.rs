//! Evaluation of domain-adaptation runs, kept apart from training.
//!
//! * [`metrics`]: accuracy, adjusted Rand index.
//! * [`inference`]: batched predictions, features and the per-domain evaluation of a DANN.
//! * [`pca`]: principal components of feature sets.
//! * [`plots`]: decision boundaries, feature scatter plots and training curves (PNG, plotters).
//! * [`report`]: the Markdown report of a run.
pub mod error;
pub mod inference;
pub mod metrics;
pub mod pca;
pub mod plots;
pub mod report;

pub use error::{EvalError, Result};
pub use inference::{DomainEval, evaluate_dann, predict};
pub use metrics::{accuracy, adjusted_rand_index};
pub use pca::Pca;
