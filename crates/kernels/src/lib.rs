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
pub mod batch_norm;
mod bn_pool;
pub mod conv;
pub mod conv_transpose;
mod glue;
pub mod linear;
pub mod pool;
pub mod profile;
pub mod sgd;

pub use activation::{leaky_relu, leaky_relu_with, relu, relu_with};
pub use adam::{AdamStep, adam_update, adam_update_supported};
pub use batch_norm::BatchNorm2d;
pub use conv::{Conv2dParams, conv2d, conv2d_max_pool2d, conv2d_max_pool2d_with, conv2d_with};
pub use conv_transpose::{ConvTranspose2dParams, conv_transpose2d, conv_transpose2d_with};
pub use linear::{linear, linear_with};
pub use pool::{max_pool2d, max_pool2d_with};
pub use sgd::{SgdStep, sgd_momentum_update};

#[cfg(test)]
mod tests;

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::OnceLock;

/// The environment variable that forces the generic path process-wide (`1`, `true` or `yes`).
pub const GENERIC_ENV: &str = "ADAPT_GENERIC_KERNELS";

thread_local! {
    /// Depth of [`force_generic`] calls on this thread.
    static FORCED: Cell<u32> = const { Cell::new(0) };
}

/// Whether the generic path is forced here: by [`GENERIC_ENV`] (read once per process) or by a
/// [`force_generic`] call on this thread.
pub fn generic_forced() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    let env = *FROM_ENV.get_or_init(|| {
        std::env::var(GENERIC_ENV).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    });
    env || FORCED.with(|f| f.get() > 0)
}

/// Runs `f` with the generic path forced on this thread (see the crate docs): every op and
/// optimizer update dispatched from this thread inside `f` takes the path a GPU takes. Calls
/// nest, and the previous state comes back when `f` returns or panics. Other threads (other
/// tests of the same process) are not affected.
pub fn force_generic<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(c.get() - 1));
        }
    }
    FORCED.with(|c| c.set(c.get() + 1));
    let _restore = Restore;
    f()
}

/// Whether a tensor may take the fast CPU kernels under [`Backend::Auto`]: f32 on the CPU, and
/// the generic path not forced.
pub(crate) fn fast_capable(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32
}

/// Which implementation the `_with` functions (and [`BatchNorm2d`]) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The fast kernels on the CPU for f32, [`Backend::Candle`] otherwise (and when
    /// [`generic_forced`]).
    #[default]
    Auto,
    /// The fast CPU kernels; an error for tensors that are not f32 on the CPU.
    Fast,
    /// candle's own ops (with a correct max-pool built from them): any device, any float dtype.
    Candle,
}

impl Backend {
    pub(crate) fn use_fast(self, xs: &Tensor, what: &str) -> Result<bool> {
        let fast_ok = fast_capable(xs);
        match self {
            Backend::Auto => Ok(fast_ok && !generic_forced()),
            Backend::Candle => Ok(false),
            Backend::Fast if fast_ok => Ok(true),
            Backend::Fast => {
                candle_core::bail!(
                    "{what}: the fast kernels need f32 on the CPU, got {:?} on {:?}",
                    xs.dtype(),
                    xs.device()
                )
            }
        }
    }
}

/// Threads the fast kernels run on (rayon's global pool, which candle's matmul shares).
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
