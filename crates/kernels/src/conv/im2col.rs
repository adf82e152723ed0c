//! im2col and col2im: a chunk of images unfolded into the columns `cols[K, nb*P]` one GEMM
//! multiplies (`K = C*KH*KW`, `P = OH*OW`), and columns of gradients folded back into an input
//! gradient. With stride 1 they work on a zero-padded copy of the chunk, so each row is a run of
//! plain `OW`-long copies (AVX-512 or AVX2 moves where available); other strides check bounds per
//! row.
use super::geom::Geom;
use super::rows::{col2im_padded, im2col_padded};
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};
use std::cell::RefCell;

/// `v[..len]`, grown with zeros first when it is shorter (scratch buffers only ever grow).
pub(super) fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Output positions `ox` in `[lo, hi)` read input column `ox*s + kj - pad` inside `[0, w)`.
#[inline]
fn valid_range(out: usize, inp: usize, stride: usize, k_off: usize, pad: usize) -> (usize, usize) {
    // ix = ox*s + k_off - pad >= 0  <=>  ox >= ceil((pad - k_off)/s)
    let lo = if pad > k_off { (pad - k_off).div_ceil(stride) } else { 0 };
    // ix < inp  <=>  ox*s < inp + pad - k_off  <=>  ox < ceil((inp + pad - k_off)/s)
    let hi = if inp + pad > k_off { (inp + pad - k_off).div_ceil(stride) } else { 0 };
    let lo = lo.min(out);
    (lo, hi.clamp(lo, out))
}

thread_local! {
    /// Per-thread zero-padded copy of a chunk's input (im2col) or input gradient (col2im).
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `cols[K, nb*P]` (row stride `nb*P`) for the images `i0..i0+nb` of `x`.
pub(super) fn im2col(g: &Geom, x: &[f32], i0: usize, nb: usize, cols: &mut [f32]) {
    if g.stride != 1 {
        return im2col_strided(g, x, i0, nb, cols);
    }
    // Stride 1: pad the chunk once, then every row of `cols` is made of plain copies of `OW`
    // values, without the bounds arithmetic and the tiny fills and copies of the general case.
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    PADDED.with_borrow_mut(|xp| {
        let xp = grow(xp, nb * g.c * hp * wp);
        let hw = g.h * g.w;
        for (plane, xpp) in x[i0 * g.c * hw..][..nb * g.c * hw].chunks_exact(hw).zip(xp.chunks_exact_mut(hp * wp)) {
            xpp[..g.pad * wp].fill(0.0);
            xpp[(g.pad + g.h) * wp..].fill(0.0);
            for (src, dst) in plane.chunks_exact(g.w).zip(xpp[g.pad * wp..].chunks_exact_mut(wp)) {
                dst[..g.pad].fill(0.0);
                dst[g.pad..g.pad + g.w].copy_from_slice(src);
                dst[g.pad + g.w..].fill(0.0);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available.
            unsafe { avx512::im2col(g, xp, nb, cols) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            unsafe { avx2::im2col(g, xp, nb, cols) };
            return;
        }
        im2col_padded(g, xp, nb, cols, |d, s| d.copy_from_slice(s));
    });
}

/// `cols[K, nb*P]` for any stride, bounds checked per row.
fn im2col_strided(g: &Geom, x: &[f32], i0: usize, nb: usize, cols: &mut [f32]) {
    let (p, ld, hw) = (g.p(), nb * g.p(), g.h * g.w);
    let mut row = 0;
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst_row = &mut cols[row * ld..(row + 1) * ld];
                row += 1;
                let (lo, hi) = valid_range(g.ow, g.w, g.stride, kj, g.pad);
                for b in 0..nb {
                    let plane = &x[((i0 + b) * g.c + c) * hw..][..hw];
                    let dst = &mut dst_row[b * p..(b + 1) * p];
                    for oy in 0..g.oh {
                        let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                        let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            d.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * g.w..][..g.w];
                        d[..lo].fill(0.0);
                        d[hi..].fill(0.0);
                        if hi > lo {
                            let ix0 = lo * g.stride + kj - g.pad;
                            if g.stride == 1 {
                                d[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                            } else {
                                for (j, v) in d[lo..hi].iter_mut().enumerate() {
                                    *v = src[ix0 + j * g.stride];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds `dcols[K, nb*P]` back into `dx` (the `nb` images of the chunk, NCHW, zeroed).
pub(super) fn col2im(g: &Geom, dcols: &[f32], nb: usize, dx: &mut [f32]) {
    if g.stride != 1 {
        return col2im_strided(g, dcols, nb, dx);
    }
    // Stride 1: accumulate into a padded chunk gradient, then copy its interior out.
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    PADDED.with_borrow_mut(|dxp| {
        let dxp = grow(dxp, nb * g.c * hp * wp);
        dxp.fill(0.0);
        #[cfg(target_arch = "x86_64")]
        let done = if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available.
            unsafe { avx512::col2im(g, dcols, nb, dxp) };
            true
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            unsafe { avx2::col2im(g, dcols, nb, dxp) };
            true
        } else {
            false
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        if !done {
            col2im_padded(g, dcols, nb, dxp, |d, s| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
        }
        let hw = g.h * g.w;
        for (plane, dpp) in dx[..nb * g.c * hw].chunks_exact_mut(hw).zip(dxp.chunks_exact(hp * wp)) {
            for (dst, src) in plane.chunks_exact_mut(g.w).zip(dpp[g.pad * wp..].chunks_exact(wp)) {
                dst.copy_from_slice(&src[g.pad..g.pad + g.w]);
            }
        }
    });
}

/// [`col2im`] for any stride, bounds checked per row.
fn col2im_strided(g: &Geom, dcols: &[f32], nb: usize, dx: &mut [f32]) {
    let (p, ld, hw) = (g.p(), nb * g.p(), g.h * g.w);
    let mut row = 0;
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src_row = &dcols[row * ld..(row + 1) * ld];
                row += 1;
                let (lo, hi) = valid_range(g.ow, g.w, g.stride, kj, g.pad);
                if hi <= lo {
                    continue;
                }
                for b in 0..nb {
                    let plane = &mut dx[(b * g.c + c) * hw..][..hw];
                    let src = &src_row[b * p..(b + 1) * p];
                    for oy in 0..g.oh {
                        let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let d = &mut plane[iy as usize * g.w..][..g.w];
                        let s = &src[oy * g.ow..(oy + 1) * g.ow];
                        let ix0 = lo * g.stride + kj - g.pad;
                        if g.stride == 1 {
                            for (dv, sv) in d[ix0..ix0 + (hi - lo)].iter_mut().zip(&s[lo..hi]) {
                                *dv += sv;
                            }
                        } else {
                            for (j, sv) in s[lo..hi].iter().enumerate() {
                                d[ix0 + j * g.stride] += sv;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Shape;

    /// Every vectorised stride-1 im2col / col2im this CPU runs gives exactly the portable copies'
    /// and sums (training uses only the widest one, so the others would go untested otherwise).
    #[test]
    fn vectorised_row_moves_match_the_portable_ones() {
        // Output widths below, at and around the 8- and 16-lane blocks.
        for (h, w, k, pad) in [(4, 4, 1, 0), (7, 7, 3, 1), (8, 8, 1, 0), (13, 13, 3, 1), (28, 28, 5, 2), (14, 21, 5, 2)]
        {
            let x_shape = Shape::from((2, 3, h, w));
            let g = Geom::new(&x_shape, &Shape::from((4, 3, k, k)), 1, pad).unwrap();
            let (hp, wp) = (h + 2 * pad, w + 2 * pad);
            let xp: Vec<f32> = (0..2 * 3 * hp * wp).map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5).collect();
            let ld = 2 * g.p();
            let dcols: Vec<f32> = (0..g.k() * ld).map(|i| ((i * 104_729) % 1000) as f32 / 991.0 - 0.5).collect();
            let mut cols_ref = vec![0f32; g.k() * ld];
            im2col_padded(&g, &xp, 2, &mut cols_ref, |d, s| d.copy_from_slice(s));
            let mut dxp_ref = vec![0f32; xp.len()];
            col2im_padded(&g, &dcols, 2, &mut dxp_ref, |d, s| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
            type Moves = (
                &'static str,
                unsafe fn(&Geom, &[f32], usize, &mut [f32]),
                unsafe fn(&Geom, &[f32], usize, &mut [f32]),
            );
            let mut variants: Vec<Moves> = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    variants.push(("avx512", avx512::im2col, avx512::col2im));
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    variants.push(("avx2", avx2::im2col, avx2::col2im));
                }
            }
            for (name, im2col, col2im) in variants {
                let mut cols = vec![f32::NAN; g.k() * ld];
                let mut dxp = vec![0f32; xp.len()];
                // SAFETY: only the variants this CPU supports were collected.
                unsafe {
                    im2col(&g, &xp, 2, &mut cols);
                    col2im(&g, &dcols, 2, &mut dxp);
                }
                assert_eq!(cols, cols_ref, "{name} im2col {h}x{w} k{k}");
                assert_eq!(dxp, dxp_ref, "{name} col2im {h}x{w} k{k}");
            }
        }
    }
}
