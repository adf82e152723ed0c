//! Evaluation of domain-adaptation runs, kept apart from training.
//!
//! * [`metrics`]: accuracy, adjusted Rand index.
//! * [`a_distance`]: proxy A-distance between source and target features.
//! * [`inference`]: batched predictions, features and the per-domain evaluation of a DANN.
//! * [`pca`]: principal components of feature sets.
//! * [`tsne`](mod@tsne): t-SNE embeddings of feature sets.
//! * [`plots`]: decision boundaries, feature scatter plots and training curves (PNG, plotters).
//! * [`report`]: the Markdown report of a run.
pub mod a_distance;
pub mod error;
pub mod inference;
pub mod metrics;
pub mod pca;
pub mod plots;
pub mod report;
pub mod tsne;
pub mod validators;

pub use a_distance::{ADistance, proxy_a_distance};
pub use error::{EvalError, Result};
pub use inference::{BatchNormStatistics, DomainEval, evaluate_dann, evaluate_dann_with, predict, predict_with};
pub use metrics::{accuracy, adjusted_rand_index};
pub use pca::Pca;
pub use tsne::{LearningRate, TsneConfig, TsneResult, principal_scores, tsne, tsne_with_kl};
