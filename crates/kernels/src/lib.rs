//! Fast CPU kernels for candle, as custom ops with backward passes.
//!
//! candle 0.11's CPU convolution is slow (no GEMM in the forward pass, and a direct-loop
//! `conv_transpose2d` for the input gradient), its `max_pool2d` backward scales gradients by
//! `1/(k*k)`, and `max_pool2d_with_stride` has no backward at all. This crate provides, one
//! module per op family (the items are also re-exported at the root):
//!
//! * [`conv`]: [`conv2d`], NCHW f32 convolution with stride, zero padding, optional fused bias
//!   and fused ReLU. On the CPU the forward pass, the input gradient and the weight gradient are
//!   all batched im2col + GEMM (the `gemm` crate candle itself uses), run in parallel over chunks
//!   of images with rayon; bias and ReLU are fused into the copy out of the GEMM buffer, the ReLU
//!   mask into the gather of the incoming gradient, and the input gradient is skipped when the
//!   input does not track gradients (the images fed to a first layer). [`conv2d_max_pool2d`]
//!   fuses a max-pool into it, without the full-size convolution output.
//! * [`conv_transpose`]: [`conv_transpose2d`], PyTorch's `ConvTranspose2d`, on the same im2col +
//!   GEMM machinery.
//! * [`pool`]: [`max_pool2d`], max-pooling with kernel `k` and stride `s` in PyTorch's floor mode
//!   (`MaxPool2d(k, s)`, no padding). The forward pass keeps the argmax of every window, the
//!   backward pass routes each gradient to it (ties go to the first maximum in scan order, as in
//!   PyTorch).
//! * [`linear`](mod@linear): [`linear()`], candle-nn's `Linear` as parallel blocked GEMMs.
//! * [`batch_norm`]: [`BatchNorm2d`], spatial BatchNorm (PyTorch's semantics) whose training
//!   pass is one fused op forward and one backward;
//!   [`BatchNorm2d::forward_max_pool_leaky`] fuses a max-pool and a LeakyReLU after it (GTA's
//!   discriminator blocks).
//! * [`activation`]: [`relu`] and [`leaky_relu`], candle's `relu()` and `maximum(x, slope x)`
//!   with their exact gradients, one pass forward and one backward.
//! * [`adam`]: [`adam_update`], one Adam update in one pass, bit-identical to its candle ops.
//! * [`sgd`]: [`sgd_momentum_update`], PyTorch's momentum-SGD update, in place.
//! * [`profile`]: the wall time spent in each kernel, the arithmetic done in GEMMs and the
//!   machine's single-thread GEMM peak.
//!
//! The ops pick their implementation with a [`Backend`]: [`Backend::Auto`] (the default of the
//! functions without a `_with` suffix) runs the fast kernels for f32 tensors on the CPU and falls
//! back to [`Backend::Candle`] elsewhere (CUDA, Metal, other dtypes). The candle fallback is
//! built only from candle ops with correct gradients: `Tensor::conv2d` (+ bias + ReLU) for the
//! convolution, and for pooling a stack of strided window views, `argmax` over the window and a
//! `gather` (so ties route to one element, like the fast kernel).
//!
//! The generic path (what CUDA and Metal run) can be forced on the CPU, to test it where no GPU
//! is: process-wide with the environment variable `ADAPT_GENERIC_KERNELS=1` (read once, at the
//! first dispatch), or on the calling thread for the duration of a closure with
//! [`force_generic`]. Forced, [`Backend::Auto`] takes [`Backend::Candle`] and the optimizers'
//! fused updates ([`adam_update_supported`], [`sgd_momentum_update`]) take their tensor-op
//! form, exactly as on a GPU; an explicit [`Backend::Fast`] still runs the fast kernels.
pub mod activation;
pub mod adam;
mod backend;
pub mod batch_norm;
mod bn_pool;
mod bn_stats;
pub mod conv;
pub mod conv_transpose;
mod gemm;
mod glue;
pub mod linear;
pub mod pool;
pub mod profile;
pub mod sgd;

pub use activation::{leaky_relu, leaky_relu_with, relu, relu_with};
pub use adam::{AdamStep, adam_update, adam_update_supported};
pub use backend::{Backend, GENERIC_ENV, force_generic, generic_forced, num_threads};
pub use batch_norm::BatchNorm2d;
pub use conv::{Conv2dParams, conv2d, conv2d_max_pool2d, conv2d_max_pool2d_with, conv2d_with};
pub use conv_transpose::{ConvTranspose2dParams, conv_transpose2d, conv_transpose2d_with};
pub use linear::{linear, linear_with};
pub use pool::{max_pool2d, max_pool2d_with};
pub use sgd::{SgdStep, sgd_momentum_update};

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
