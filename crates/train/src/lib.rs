//! Training loops for unsupervised domain adaptation on candle.
//!
//! * [`optim`]: momentum SGD (PyTorch's update), the DANN learning-rate schedule, Adam settings.
//! * [`dann`]: the source-only and DANN loops (one loop: source-only is DANN with the gradient
//!   reversal switched off, so its domain classifier still measures how separable the features are).
//! * [`gta`]: the Generate To Adapt loop (one Adam per network, updates D, G, C, F) and its
//!   ablation variants.
//! * [`batches`]: mixed source/target batches as tensors.
//! * [`checkpoint`]: parameters, momentum, step and sampler position in one safetensors file.
//! * [`log`]: the run's `metrics.jsonl` and progress bar.
pub mod batches;
pub mod checkpoint;
pub mod dann;
pub mod error;
pub mod gta;
pub mod log;
pub mod optim;

pub use dann::{Method, StepMetrics, TrainConfig, TrainHooks, TrainOutcome, train_dann};
pub use error::{Result, TrainError};
pub use gta::{GtaConfig, GtaHooks, GtaOutcome, GtaStepLosses, GtaStepMetrics, GtaTrainer, GtaVariant, train_gta};
