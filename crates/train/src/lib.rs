//! Training loops for unsupervised domain adaptation on candle.
//!
//! * [`optim`]: momentum SGD (PyTorch's update), the DANN learning-rate schedule, Adam settings.
//! * [`dann`]: the source-only and DANN loops (one loop: source-only is DANN with the gradient
//!   reversal switched off, so its domain classifier still measures how separable the features are).
//! * [`batches`]: mixed source/target batches as tensors.
//! * [`log`]: the run's `metrics.jsonl` and progress bar.
pub mod batches;
pub mod dann;
pub mod error;
pub mod log;
pub mod optim;

pub use dann::{Method, StepMetrics, TrainConfig, TrainOutcome, train_dann};
pub use error::{Result, TrainError};
