//! The crate's one entry point into the `gemm` crate: single-threaded f32 products with explicit
//! row and column strides, which the convolutions, the transposed convolutions and the linear
//! layers run on (each parallelises over its own blocks), and the count of the arithmetic they
//! did that the `profile` module reports.
//!
//! The `gemm` crate is built with its AVX-512 kernels (`x86-v4`, selected at run time), about
//! twice as fast as its AVX2 ones on CPUs that have AVX-512.
use std::sync::atomic::{AtomicU64, Ordering};

static FLOPS: AtomicU64 = AtomicU64::new(0);

/// Counts one `m x k` by `k x n` product: `2 m n k` floating-point operations.
fn count(m: usize, n: usize, k: usize) {
    FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
}

/// Floating-point operations of the counted products since the last [`reset_flops`].
pub(crate) fn flops() -> u64 {
    FLOPS.load(Ordering::Relaxed)
}

/// Zeroes the count.
pub(crate) fn reset_flops() {
    FLOPS.store(0, Ordering::Relaxed);
}

/// The `gemm::gemm` call every product goes through: `dst = (accumulate ? dst : 0) + lhs * rhs`.
///
/// # Safety
/// As [`gemm_raw`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn call(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `dst = (accumulate ? dst : 0) + lhs * rhs` on raw pointers, `(rows, cols)` strides for each,
/// single-threaded; counted in [`flops`].
///
/// # Safety
/// Every element addressed through the strides must lie inside the allocations behind the
/// pointers, and no other thread may touch the addressed `dst` elements meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    rhs_strides: (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    count(m, n, k);
    // SAFETY: forwarded to the caller.
    unsafe { call((m, n, k), dst, dst_strides, accumulate, lhs, lhs_strides, rhs, rhs_strides) }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]` on slices, single-threaded, with
/// explicit row and column strides; counted in [`flops`]. Panics when a stride reaches past its
/// slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    count(m, n, k);
    sgemm_unprofiled(m, n, k, dst, dst_strides, accumulate, lhs, lhs_strides, rhs, rhs_strides);
}

/// [`sgemm`] without the count: for `profile::sgemm_peak_gflops`, which times the same
/// products the convolutions run but must not add to the work it is compared against.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_unprofiled(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    if k > 0 {
        assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
        assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    } else {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every access inside the three slices.
    unsafe {
        call(
            (m, n, k),
            dst.as_mut_ptr(),
            (dst_rs, dst_cs),
            accumulate,
            lhs.as_ptr(),
            (lhs_rs, lhs_cs),
            rhs.as_ptr(),
            (rhs_rs, rhs_cs),
        )
    }
}
