//! The stride-1 row copies and adds with AVX-512 masked moves: runs of `OW` (7 to 32 values on
//! 28x28 and 32x32 images) are too short for `memcpy` calls and auto-vectorised loops to pay off.
use super::geom::Geom;
use super::rows;
use std::arch::x86_64::*;

/// `d = s` (equal lengths).
#[inline(always)]
unsafe fn copy(d: &mut [f32], s: &[f32]) {
    let n = d.len().min(s.len());
    let mut i = 0;
    while i < n {
        let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
        // SAFETY: the mask limits the accesses to elements i..min(i + 16, n) of both slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, s.as_ptr().add(i));
            _mm512_mask_storeu_ps(d.as_mut_ptr().add(i), m, v);
        }
        i += 16;
    }
}

/// `d += s` (equal lengths).
#[inline(always)]
unsafe fn add(d: &mut [f32], s: &[f32]) {
    let n = d.len().min(s.len());
    let mut i = 0;
    while i < n {
        let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
        // SAFETY: the mask limits the accesses to elements i..min(i + 16, n) of both slices.
        unsafe {
            let a = _mm512_maskz_loadu_ps(m, d.as_ptr().add(i));
            let b = _mm512_maskz_loadu_ps(m, s.as_ptr().add(i));
            _mm512_mask_storeu_ps(d.as_mut_ptr().add(i), m, _mm512_add_ps(a, b));
        }
        i += 16;
    }
}

/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn im2col(g: &Geom, xp: &[f32], nb: usize, cols: &mut [f32]) {
    // SAFETY: AVX-512F is available (this function's contract).
    rows::im2col_padded(g, xp, nb, cols, |d, s| unsafe { copy(d, s) });
}

/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn col2im(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32]) {
    // SAFETY: AVX-512F is available (this function's contract).
    rows::col2im_padded(g, dcols, nb, dxp, |d, s| unsafe { add(d, s) });
}
