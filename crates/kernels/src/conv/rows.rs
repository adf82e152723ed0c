//! The stride-1 im2col and col2im row loops over a zero-padded chunk, generic over how a run of
//! `OW` values is moved: the portable copies and sums, and the SIMD paths (`avx512`, `avx2`)
//! instantiate them with their own moves.
use super::geom::Geom;

/// The stride-1 im2col from the padded chunk `xp` `[nb, C, H+2p, W+2p]`, copying each run of
/// `OW` values with `copy`.
#[inline(always)]
pub(super) fn im2col_padded(g: &Geom, xp: &[f32], nb: usize, cols: &mut [f32], copy: impl Fn(&mut [f32], &[f32])) {
    let (p, ld) = (g.p(), nb * g.p());
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let mut rows = cols.chunks_exact_mut(ld);
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst_row = rows.next().expect("cols holds K rows");
                for b in 0..nb {
                    let plane = &xp[(b * g.c + c) * hp * wp..][..hp * wp];
                    let dst = &mut dst_row[b * p..(b + 1) * p];
                    for (oy, d) in dst.chunks_exact_mut(g.ow).enumerate() {
                        copy(d, &plane[(oy + ki) * wp + kj..][..g.ow]);
                    }
                }
            }
        }
    }
}

/// The stride-1 col2im into the padded, zeroed chunk gradient `dxp`, adding each run of `OW`
/// values with `add`.
#[inline(always)]
pub(super) fn col2im_padded(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32], add: impl Fn(&mut [f32], &[f32])) {
    let (p, ld) = (g.p(), nb * g.p());
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let mut rows = dcols.chunks_exact(ld);
    for c in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src_row = rows.next().expect("dcols holds K rows");
                for b in 0..nb {
                    let plane = &mut dxp[(b * g.c + c) * hp * wp..][..hp * wp];
                    for (oy, s) in src_row[b * p..(b + 1) * p].chunks_exact(g.ow).enumerate() {
                        add(&mut plane[(oy + ki) * wp + kj..][..g.ow], s);
                    }
                }
            }
        }
    }
}
