//! The `avx512` row moves for CPUs with AVX2 only (AMD's before Zen 4, for one): whole 8-lane
//! moves and a scalar tail. AVX2's masked stores (`vmaskmovps`) are microcoded on AMD and made
//! the step slower than plain `memcpy` there.
use super::geom::Geom;
use super::rows;
use std::arch::x86_64::*;

/// `d = s` (equal lengths). Runs of 8 or more end with one 8-lane copy that overlaps the one
/// before it (the same values written twice).
#[inline(always)]
unsafe fn copy(d: &mut [f32], s: &[f32]) {
    let n = d.len().min(s.len());
    if n < 8 {
        d[..n].iter_mut().zip(&s[..n]).for_each(|(d, s)| *d = *s);
        return;
    }
    let mut i = 0;
    loop {
        let at = i.min(n - 8);
        // SAFETY: at + 8 <= n, inside both slices.
        unsafe { _mm256_storeu_ps(d.as_mut_ptr().add(at), _mm256_loadu_ps(s.as_ptr().add(at))) };
        if at == n - 8 {
            break;
        }
        i += 8;
    }
}

/// `d += s` (equal lengths).
#[inline(always)]
unsafe fn add(d: &mut [f32], s: &[f32]) {
    let n = d.len().min(s.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices.
        unsafe {
            let a = _mm256_loadu_ps(d.as_ptr().add(i));
            let b = _mm256_loadu_ps(s.as_ptr().add(i));
            _mm256_storeu_ps(d.as_mut_ptr().add(i), _mm256_add_ps(a, b));
        }
        i += 8;
    }
    d[i..n].iter_mut().zip(&s[i..n]).for_each(|(d, s)| *d += s);
}

/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn im2col(g: &Geom, xp: &[f32], nb: usize, cols: &mut [f32]) {
    // SAFETY: AVX2 is available (this function's contract).
    rows::im2col_padded(g, xp, nb, cols, |d, s| unsafe { copy(d, s) });
}

/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn col2im(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32]) {
    // SAFETY: AVX2 is available (this function's contract).
    rows::col2im_padded(g, dcols, nb, dxp, |d, s| unsafe { add(d, s) });
}
