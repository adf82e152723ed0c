//! `adapt`: unsupervised domain adaptation on candle.
//!
//! This umbrella crate re-exports the workspace's crates; depend on the one you need directly
//! (`adapt-grl` alone is enough to add gradient reversal to your own model).
pub use adapt_datasets as datasets;
pub use adapt_eval as eval;
pub use adapt_experiment as experiment;
pub use adapt_grl as grl;
pub use adapt_kernels as kernels;
pub use adapt_models as models;
pub use adapt_train as train;
