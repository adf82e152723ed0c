//! The fast convolution's forward and backward passes: work split into chunks of whole images,
//! rayon running the chunks in parallel, each chunk calling a single-threaded GEMM on its own
//! scratch buffers (see the [module docs](super)).
use super::geom::Geom;
use super::im2col::{col2im, grow, im2col};
use crate::gemm::sgemm;
use crate::glue::SendPtr;
use crate::pool;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Mutex;

thread_local! {
    /// Per-thread scratch: im2col columns, GEMM output / gathered gradient, dcols.
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Sum of `xs` in 16 interleaved partial sums: a plain `iter().sum()` is one serial chain of
/// dependent additions (the compiler may not reorder float additions), four times slower.
fn sum_f32(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Max-pooling fused into a convolution: `kernel`, `stride`, pooled output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FusedPool {
    pub kernel: usize,
    pub stride: usize,
    pub ph: usize,
    pub pw: usize,
}

/// Forward pass: `y = act(conv(x, w) + b)`, NCHW, then the max-pool if `pool` is given (the
/// argmax of every pooled output, relative to its `OH x OW` plane, comes back with it). Pooling
/// before the bias and the ReLU gives the same values (both are monotonic) and the same gradients
/// (a window whose maximum the ReLU clamps passes no gradient either way).
pub(crate) fn forward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    pool: Option<FusedPool>,
) -> (Vec<f32>, Option<Vec<u32>>) {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let q = pool.map_or(p, |pl| pl.ph * pl.pw);
    let nb = g.chunk_images();
    let mut out = vec![0f32; g.n * o * q];
    let mut arg = pool.map(|_| vec![0u32; g.n * o * q]);
    let pool_arg = pool.zip(arg.as_deref_mut().map(SendPtr::new));
    out.par_chunks_mut(nb * o * q).enumerate().for_each(|(ci, out_chunk)| {
        let i0 = ci * nb;
        let nbc = out_chunk.len() / (o * q);
        let ld = nbc * p;
        SCRATCH.with_borrow_mut(|[cols, tmp, _]| {
            let cols = grow(cols, k * ld);
            let tmp = grow(tmp, o * ld);
            im2col(g, x, i0, nbc, cols);
            sgemm(o, ld, k, tmp, (ld, 1), false, w, (k, 1), cols, (ld, 1));
            let act = |v: f32| if relu { v.max(0.0) } else { v };
            for b in 0..nbc {
                for oc in 0..o {
                    let src = &tmp[oc * ld + b * p..][..p];
                    let dst = &mut out_chunk[(b * o + oc) * q..][..q];
                    let bv = bias.map_or(0.0, |bs| bs[oc]);
                    match pool_arg {
                        None => {
                            for (d, s) in dst.iter_mut().zip(src) {
                                *d = act(s + bv);
                            }
                        }
                        Some((pl, arg_ptr)) => {
                            // SAFETY: chunk `ci` owns the same range of the argmax as of the output.
                            let am = unsafe { arg_ptr.slice_mut((i0 + b) * o * q + oc * q, q) };
                            pool::pool_plane(src, g.oh, g.ow, pl.kernel, pl.stride, dst, am);
                            for d in dst.iter_mut() {
                                *d = act(*d + bv);
                            }
                        }
                    }
                }
            }
        });
    });
    (out, arg)
}

/// Gradients of one convolution. Each is computed only when asked for.
pub(crate) struct Grads {
    pub dx: Option<Vec<f32>>,
    pub dw: Option<Vec<f32>>,
    pub db: Option<Vec<f32>>,
}

/// Which gradients to compute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    pub dx: bool,
    pub dw: bool,
    pub db: bool,
}

/// Backward pass. `grad_y` is the gradient of the (pooled, if `pool_arg`) output; `y` the output
/// itself when the ReLU was fused (the gradient is masked by `y > 0`); `pool_arg` the argmax of
/// the fused max-pool, each gradient goes to that position of its conv output plane.
pub(crate) fn backward(
    g: &Geom,
    (x, w): (&[f32], &[f32]),
    grad_y: &[f32],
    y: Option<&[f32]>,
    pool_arg: Option<&[u32]>,
    need: Need,
) -> Grads {
    let (k, p, o) = (g.k(), g.p(), g.o);
    let q = grad_y.len() / (g.n * o).max(1);
    let nb = g.chunk_images();
    let n_chunks = g.n.div_ceil(nb);
    let mut dx = if need.dx { Some(vec![0f32; g.n * g.c * g.h * g.w]) } else { None };
    let dx_ptr = dx.as_deref_mut().map(SendPtr::new);
    let threads = rayon::current_num_threads().max(1).min(n_chunks.max(1));
    // One (dW, db) accumulator per lane; lane t takes chunks t, t + threads, ... in order, and the
    // lanes are summed in order, so the sums do not depend on thread scheduling: the same seed on
    // the same thread count gives bit-identical training runs (and exact resume).
    type GradAccumulator = Mutex<Option<(Vec<f32>, Vec<f32>)>>;
    // Where gemm's special paths (tiny, vector or depth-2 products; every chunk's depth is at
    // least P) could treat the two orientations differently, keep the row-major one.
    let dw_transposed = o > 1 && k > 1 && o * k > 256 && p > 2;
    let accs: Vec<GradAccumulator> = (0..threads).map(|_| Mutex::new(None)).collect();
    let chw = g.c * g.h * g.w;

    let process = |ci: usize, lane: usize| {
        let i0 = ci * nb;
        let nbc = nb.min(g.n - i0);
        let ld = nbc * p;
        SCRATCH.with_borrow_mut(|[cols, gbuf, dcols]| {
            // Gather the chunk's gradient as [O, nb*P]: masked by the ReLU, routed through the
            // pooling argmax.
            let gbuf = grow(gbuf, o * ld);
            for b in 0..nbc {
                for oc in 0..o {
                    let off = ((i0 + b) * o + oc) * q;
                    let src = &grad_y[off..off + q];
                    let dst = &mut gbuf[oc * ld + b * p..][..p];
                    match (pool_arg, y) {
                        (Some(arg), y) => {
                            dst.fill(0.0);
                            let arg = &arg[off..off + q];
                            match y {
                                Some(y) => {
                                    for ((s, &a), yv) in src.iter().zip(arg).zip(&y[off..off + q]) {
                                        if *yv > 0.0 {
                                            dst[a as usize] += s;
                                        }
                                    }
                                }
                                None => {
                                    for (s, &a) in src.iter().zip(arg) {
                                        dst[a as usize] += s;
                                    }
                                }
                            }
                        }
                        (None, Some(y)) => {
                            for ((d, s), yv) in dst.iter_mut().zip(src).zip(&y[off..off + q]) {
                                *d = if *yv > 0.0 { *s } else { 0.0 };
                            }
                        }
                        (None, None) => dst.copy_from_slice(src),
                    }
                }
            }
            if let Some(dx_ptr) = dx_ptr {
                let dcols = grow(dcols, k * ld);
                // dcols[K, ld] = W^T[K, O] * g[O, ld]; W is [O, K] row-major.
                sgemm(k, ld, o, dcols, (ld, 1), false, w, (1, k), gbuf, (ld, 1));
                // SAFETY: chunk `ci` owns images i0..i0+nbc of dx, disjoint from other chunks.
                let dx_chunk = unsafe { dx_ptr.slice_mut(i0 * chw, nbc * chw) };
                col2im(g, dcols, nbc, dx_chunk);
            }
            if need.dw || need.db {
                let mut guard = accs[lane].lock().unwrap_or_else(|e| e.into_inner());
                let (dw, db) =
                    guard.get_or_insert_with(|| (vec![0f32; if need.dw { o * k } else { 0 }], vec![0f32; o]));
                if need.db {
                    for (oc, dbv) in db.iter_mut().enumerate() {
                        *dbv += sum_f32(&gbuf[oc * ld..(oc + 1) * ld]);
                    }
                }
                if need.dw {
                    let cols = grow(cols, k * ld);
                    im2col(g, x, i0, nbc, cols);
                    // dW[O, K] += g[O, ld] * cols[K, ld]^T. With the gemm crate's AVX-512 kernels
                    // this is faster overall than the patch-major columns, which cost more to build.
                    if dw_transposed {
                        // The same products written column-major ([K][O]): gemm then packs the
                        // O x ld gradient instead of the K x ld columns (K = C*KH*KW is up to 17
                        // times O here), and every dW element is still one FMA chain over the
                        // same kc blocks of ld (gemm's blocking depends on the depth alone).
                        sgemm(o, k, ld, dw, (1, o), true, gbuf, (ld, 1), cols, (1, ld));
                    } else {
                        sgemm(o, k, ld, dw, (k, 1), true, gbuf, (ld, 1), cols, (1, ld));
                    }
                }
            }
        });
    };
    (0..threads).into_par_iter().for_each(|lane| {
        for ci in (lane..n_chunks).step_by(threads) {
            process(ci, lane);
        }
    });

    let mut dw_sum = need.dw.then(|| vec![0f32; o * k]);
    let mut db_sum = need.db.then(|| vec![0f32; o]);
    for acc in accs {
        if let Some((dw, db)) = acc.into_inner().unwrap_or_else(|e| e.into_inner()) {
            if let Some(s) = dw_sum.as_mut() {
                if dw_transposed {
                    for (oc, row) in s.chunks_exact_mut(k).enumerate() {
                        row.iter_mut().zip(dw[oc..].iter().step_by(o)).for_each(|(a, b)| *a += b);
                    }
                } else {
                    s.iter_mut().zip(&dw).for_each(|(a, b)| *a += b);
                }
            }
            if let Some(s) = db_sum.as_mut() {
                s.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
            }
        }
    }
    Grads { dx, dw: dw_sum, db: db_sum }
}
