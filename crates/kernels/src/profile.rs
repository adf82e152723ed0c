//! Cumulative wall time spent in each kernel of this crate, for profiling a training step, and
//! the arithmetic its GEMMs did, for placing a step against the machine's GEMM peak.
//!
//! Always on (one `Instant::now()` pair per kernel call and one atomic add per GEMM, negligible
//! against the kernels).
use crate::gemm;
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
    ConvTransposeForward,
    ConvTransposeBackward,
    BatchNormForward,
    BatchNormBackward,
    /// ReLU and LeakyReLU, forward and backward.
    Activation,
    /// The fused SGD and Adam updates.
    Optimizer,
}

const KERNELS: [Kernel; 12] = [
    Kernel::ConvForward,
    Kernel::ConvBackward,
    Kernel::PoolForward,
    Kernel::PoolBackward,
    Kernel::LinearForward,
    Kernel::LinearBackward,
    Kernel::ConvTransposeForward,
    Kernel::ConvTransposeBackward,
    Kernel::BatchNormForward,
    Kernel::BatchNormBackward,
    Kernel::Activation,
    Kernel::Optimizer,
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
            Kernel::ConvTransposeForward => "conv_transpose forward",
            Kernel::ConvTransposeBackward => "conv_transpose backward",
            Kernel::BatchNormForward => "batch_norm forward",
            Kernel::BatchNormBackward => "batch_norm backward",
            Kernel::Activation => "relu / leaky_relu",
            Kernel::Optimizer => "sgd / adam update",
        }
    }
}

static NANOS: [AtomicU64; KERNELS.len()] = [const { AtomicU64::new(0) }; KERNELS.len()];
static CALLS: [AtomicU64; KERNELS.len()] = [const { AtomicU64::new(0) }; KERNELS.len()];

/// Floating-point operations done in this crate's GEMMs since the last [`reset`]. Work that runs
/// elsewhere (candle's own matmuls, the generic path) is not counted, so a time bound derived
/// from it is a lower bound.
pub fn gemm_flops() -> u64 {
    gemm::flops()
}

/// Times `f` as one call of `kernel`.
pub(crate) fn timed<R>(kernel: Kernel, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    NANOS[kernel as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[kernel as usize].fetch_add(1, Ordering::Relaxed);
    r
}

/// Times its own life as one call of a kernel (for kernels whose work is not one closure).
pub(crate) struct Timer(Kernel, Instant);

impl Timer {
    pub(crate) fn start(kernel: Kernel) -> Self {
        Self(kernel, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        NANOS[self.0 as usize].fetch_add(self.1.elapsed().as_nanos() as u64, Ordering::Relaxed);
        CALLS[self.0 as usize].fetch_add(1, Ordering::Relaxed);
    }
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
    gemm::reset_flops();
}

/// The best rate, in GFLOP/s, of `reps` single-threaded `size`-cubed f32 products through the
/// same GEMM call the convolutions make: the most one thread of this machine gets out of the
/// GEMMs all the convolutions and linear layers run on. Not counted in [`gemm_flops`].
pub fn sgemm_peak_gflops(size: usize, reps: usize) -> f64 {
    let (a, b) = (vec![1.0f32; size * size], vec![0.5f32; size * size]);
    let mut c = vec![0.0f32; size * size];
    let mut best = f64::INFINITY;
    // One product more than `reps`: the first pays for page faults and the kernel choice, and
    // only the best counts.
    for _ in 0..=reps.max(1) {
        let t = Instant::now();
        let rows = (size, 1);
        gemm::sgemm_unprofiled(size, size, size, &mut c, rows, false, &a, rows, &b, rows);
        best = best.min(t.elapsed().as_secs_f64());
    }
    // `c` is read so that the products cannot be optimised away.
    std::hint::black_box(&c);
    2.0 * (size as f64).powi(3) / best / 1e9
}
