//! Domain-adaptation models on candle.
//!
//! * [`dann`]: the DANN composition — feature extractor, label predictor, and a domain classifier
//!   behind the gradient reversal layer — generic over the three parts.
//! * [`mlp`]: fully connected stacks (the heads, and the toy feature extractor).
//! * [`conv`]: convolution and max-pool layers on [`adapt_kernels`]' fast CPU kernels.
//! * [`digits`]: the paper's MNIST and SVHN networks.
//! * [`toy`]: the DANN authors' 2D-toy network.
//! * [`gta`]: Generate To Adapt's embedding, classifier, generator and discriminator.
//! * [`params`]: seeded, named parameters with atomic safetensors save/load, and the
//!   [`NamedParams`] view of a store that training and checkpoints use (a `ParamStore` or a
//!   candle-nn `VarMap`).
//! * [`init`]: explicit, PyTorch-matching initialisation (candle-nn's default is larger, and the
//!   SVHN net diverged with it).
pub mod conv;
pub mod dann;
pub mod digits;
pub mod gta;
pub mod init;
pub mod mlp;
pub mod params;
pub mod tensor_file;
pub mod toy;

pub use dann::{Dann, DannOutput};
pub use mlp::{Activation, Mlp, MlpConfig};
pub use params::{NamedParams, ParamStore};
