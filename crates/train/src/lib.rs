//! Training loops for unsupervised domain adaptation on candle.
//!
//! * [`optim`]: momentum SGD (PyTorch's update), the DANN learning-rate schedule, Adam settings.
//! * [`training_loop`]: the loop every trainer runs (hooks, metric windows, checkpoint cadence,
//!   resume, the stop on a non-finite loss); every hook optional.
//! * [`dann`]: source-only and DANN training: [`DannTrainer`] per step, [`train_dann`] in the
//!   loop (source-only is DANN with the gradient reversal switched off, so its domain classifier
//!   still measures how separable the features are).
//! * [`gta`]: Generate To Adapt (one Adam per network, updates D, G, C, F) and its ablation
//!   variants: [`GtaTrainer`] per step, [`train_gta`] in the loop.
//!
//! Trainers and checkpoints take the parameters as any [`adapt_models::NamedParams`] store: a
//! seeded `ParamStore` or a candle-nn `VarMap`.
//! * [`batches`]: mixed source/target batches as tensors.
//! * [`checkpoint`]: parameters, momentum, step and sampler position in one safetensors file.
//! * [`log`]: the run's `metrics.jsonl` and progress bar.
//! * [`losses`]: label-free losses on target predictions (entropy, information maximisation).
//! * [`weight_average`]: the moving average of the weights that averaged recipes evaluate.
pub mod batches;
pub mod checkpoint;
pub mod dann;
pub mod error;
pub mod gta;
pub mod log;
pub mod losses;
pub mod optim;
pub mod training_loop;
pub mod weight_average;

pub use dann::{DannStepLosses, DannTrainer, Method, StepMetrics, TrainConfig, TrainHooks, TrainOutcome, train_dann};
pub use error::{Result, TrainError};
pub use gta::{GtaConfig, GtaHooks, GtaOutcome, GtaStepLosses, GtaStepMetrics, GtaTrainer, GtaVariant, train_gta};
pub use training_loop::{Hooks, LoopTrainer, MetricWindow, Outcome};
