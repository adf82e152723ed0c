//! Cumulative wall time spent in each kernel of this crate, for profiling a training step.
//!
//! Always on (one `Instant::now()` pair per kernel call, negligible against the kernels).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The timed kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    ConvForward,
    ConvBackward,
    PoolForward,
    PoolBackward,
    LinearForward,
    LinearBackward,
}

const KERNELS: [Kernel; 6] = [
    Kernel::ConvForward,
    Kernel::ConvBackward,
    Kernel::PoolForward,
    Kernel::PoolBackward,
    Kernel::LinearForward,
    Kernel::LinearBackward,
];

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::ConvForward => "conv2d forward",
            Kernel::ConvBackward => "conv2d backward",
            Kernel::PoolForward => "max_pool2d forward",
            Kernel::PoolBackward => "max_pool2d backward",
            Kernel::LinearForward => "linear forward",
            Kernel::LinearBackward => "linear backward",
        }
    }
}

static NANOS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static CALLS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// Times `f` as one call of `kernel`.
pub(crate) fn timed<R>(kernel: Kernel, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    NANOS[kernel as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[kernel as usize].fetch_add(1, Ordering::Relaxed);
    r
}

/// `(kernel, total time, calls)` since the last [`reset`] (or the start of the process).
pub fn snapshot() -> Vec<(Kernel, Duration, u64)> {
    KERNELS
        .iter()
        .map(|&k| {
            let i = k as usize;
            (k, Duration::from_nanos(NANOS[i].load(Ordering::Relaxed)), CALLS[i].load(Ordering::Relaxed))
        })
        .collect()
}

/// Zeroes the counters.
pub fn reset() {
    for i in 0..KERNELS.len() {
        NANOS[i].store(0, Ordering::Relaxed);
        CALLS[i].store(0, Ordering::Relaxed);
    }
}
