//! Which implementation an op runs ([`Backend`]), and the switch that forces the generic path
//! (what CUDA and Metal run) on the CPU, process-wide or on one thread.
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
fn fast_capable(xs: &Tensor) -> bool {
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
