//! Transposed 2D convolution (PyTorch's `ConvTranspose2d`, no bias, no output padding, no
//! dilation) with a fast CPU forward and backward as candle custom ops.
//!
//! candle 0.11's CPU `conv_transpose2d` is a direct loop, and its backward runs two candle
//! convolutions (no GEMM in the forward pass either), which made the GTA generator the slowest
//! part of a training step. A transposed convolution is the input gradient of the convolution with
//! the same weight and geometry, so the same im2col + GEMM machinery does all three passes. Seen
//! as that convolution, the transposed op's *output* `[N, O, OH, OW]` is the convolution's input,
//! its *input* `[N, C, H, W]` the convolution's output, and its weight `[C, O, K, K]` the
//! convolution's weight `[C, O*K*K]`:
//!
//! * forward: `dcols[O*K*K, nb*P] = W^T * x[C, nb*P]`, then col2im adds the columns into the
//!   output (`P = H*W`, `nb` images per chunk, `x` regrouped channel-major);
//! * backward: `cols_t[nb*P, O*K*K] = im2col(dy)` (patch-major), then the input gradient
//!   `dx[C, nb*P] = W * cols_t^T` and the weight gradient `dW[C, O*K*K] += x[C, nb*P] * cols_t`;
//!   one im2col serves both.
//!
//! Chunks of whole images run in parallel on rayon, each with a single-threaded GEMM on its own
//! scratch buffers; weight gradients go into one accumulator per worker, summed at the end.
//!
//! The helpers here repeat the index arithmetic of `conv.rs` for the transposed geometry rather
//! than sharing it, so the convolution kernels can change without touching this file.
use super::Backend;
use super::conv::f32_slice;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Mutex;

/// Geometry of a transposed convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvTranspose2dParams {
    pub stride: usize,
    /// PyTorch's `padding`: rows and columns removed from each side of the full output.
    pub padding: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0 }
    }
}

impl ConvTranspose2dParams {
    /// Output size for an input of size `n` and kernel `k`: `(n - 1) * stride - 2 * padding + k`.
    pub fn out_size(&self, n: usize, k: usize) -> usize {
        (n - 1) * self.stride + k - 2 * self.padding
    }
}

/// Transposed convolution of `xs` `[N, C, H, W]` with `w` `[C, O, K, K]` (PyTorch's layout):
/// output `[N, O, (H - 1) * stride - 2 * padding + K, ...]`. Fast kernels for f32 on the CPU,
/// candle's `conv_transpose2d` elsewhere.
pub fn conv_transpose2d(xs: &Tensor, w: &Tensor, p: ConvTranspose2dParams) -> Result<Tensor> {
    conv_transpose2d_with(xs, w, p, Backend::Auto)
}

/// [`conv_transpose2d`] with an explicit [`Backend`].
pub fn conv_transpose2d_with(xs: &Tensor, w: &Tensor, p: ConvTranspose2dParams, backend: Backend) -> Result<Tensor> {
    let g = TGeom::new(xs.shape(), w.shape(), p)?;
    if backend.use_fast(xs, "conv_transpose2d")? {
        if w.dtype() != xs.dtype() || !w.device().same_device(xs.device()) {
            candle_core::bail!("conv_transpose2d: weight is {:?} on {:?}, input f32 on the CPU", w.dtype(), w.device());
        }
        xs.contiguous()?.apply_op2(&w.contiguous()?, ConvTranspose2dOp { geom: g })
    } else {
        xs.conv_transpose2d(w, p.padding, 0, p.stride, 1)
    }
}

/// Shapes of one transposed convolution: input `[n, c, h, w]`, weight `[c, o, k, k]`, output
/// `[n, o, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl TGeom {
    fn new(x: &Shape, w: &Shape, p: ConvTranspose2dParams) -> Result<Self> {
        let (n, c, h, wd) = x.dims4()?;
        let (c_k, o, kh, kw) = w.dims4()?;
        if c != c_k {
            candle_core::bail!("conv_transpose2d: input has {c} channels, kernel expects {c_k}");
        }
        if kh != kw {
            candle_core::bail!("conv_transpose2d: square kernels only, got {kh}x{kw}");
        }
        if p.stride == 0 {
            candle_core::bail!("conv_transpose2d: stride must be positive");
        }
        if h == 0 || wd == 0 {
            candle_core::bail!("conv_transpose2d: empty input {:?}", x.dims());
        }
        let full = |n: usize| (n - 1) * p.stride + kh;
        if full(h) <= 2 * p.padding || full(wd) <= 2 * p.padding {
            candle_core::bail!(
                "conv_transpose2d: padding {} leaves no output for a {h}x{wd} input and kernel {kh}",
                p.padding
            );
        }
        Ok(Self {
            n,
            c,
            h,
            w: wd,
            o,
            k: kh,
            stride: p.stride,
            pad: p.padding,
            oh: p.out_size(h, kh),
            ow: p.out_size(wd, kw),
        })
    }
    /// Rows of the column matrix: `O*K*K`.
    fn kc(&self) -> usize {
        self.o * self.k * self.k
    }
    /// Input pixels per image (columns of the column matrix per image).
    fn p(&self) -> usize {
        self.h * self.w
    }
    /// Images per chunk: scratch of about a megabyte, and at least 3 chunks per thread.
    fn chunk_images(&self) -> usize {
        const TARGET: usize = 1 << 18;
        let per_image = (self.kc() + self.c) * self.p();
        let by_size = (TARGET / per_image.max(1)).max(1);
        let threads = rayon::current_num_threads().max(1);
        let by_balance = self.n.div_ceil(3 * threads).max(1);
        by_size.min(by_balance).min(self.n.max(1))
    }
}

thread_local! {
    /// Per-thread scratch: columns, channel-major input (or input gradient), spare.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Input positions `ix` in `[lo, hi)` whose output column `ix*s + kj - pad` lies inside `[0, ow)`.
#[inline]
fn valid_range(inp: usize, out: usize, stride: usize, k_off: usize, pad: usize) -> (usize, usize) {
    let lo = if pad > k_off { (pad - k_off).div_ceil(stride) } else { 0 };
    let hi = if out + pad > k_off { (out + pad - k_off).div_ceil(stride) } else { 0 };
    let lo = lo.min(inp);
    (lo, hi.clamp(lo, inp))
}

/// `dst[C, nb*P]` (channel-major) from the images `i0..i0+nb` of `src` `[N, C, P]`.
fn to_channel_major(g: &TGeom, src: &[f32], i0: usize, nb: usize, dst: &mut [f32]) {
    let (p, ld) = (g.p(), nb * g.p());
    for b in 0..nb {
        for c in 0..g.c {
            dst[c * ld + b * p..][..p].copy_from_slice(&src[((i0 + b) * g.c + c) * p..][..p]);
        }
    }
}

/// Adds `dcols[O*K*K, nb*P]` into the chunk's output `out` `[nb, O, OH, OW]`.
fn col2im(g: &TGeom, dcols: &[f32], nb: usize, out: &mut [f32]) {
    let (p, ld, ohw) = (g.p(), nb * g.p(), g.oh * g.ow);
    let mut row = 0;
    for oc in 0..g.o {
        for ki in 0..g.k {
            for kj in 0..g.k {
                let src_row = &dcols[row * ld..(row + 1) * ld];
                row += 1;
                let (lo, hi) = valid_range(g.w, g.ow, g.stride, kj, g.pad);
                if hi <= lo {
                    continue;
                }
                for b in 0..nb {
                    let plane = &mut out[(b * g.o + oc) * ohw..][..ohw];
                    let src = &src_row[b * p..(b + 1) * p];
                    for iy in 0..g.h {
                        let oy = (iy * g.stride + ki) as isize - g.pad as isize;
                        if oy < 0 || oy >= g.oh as isize {
                            continue;
                        }
                        let d = &mut plane[oy as usize * g.ow..][..g.ow];
                        let s = &src[iy * g.w..(iy + 1) * g.w];
                        let ox0 = lo * g.stride + kj - g.pad;
                        if g.stride == 1 {
                            for (dv, sv) in d[ox0..ox0 + (hi - lo)].iter_mut().zip(&s[lo..hi]) {
                                *dv += sv;
                            }
                        } else {
                            for (j, sv) in s[lo..hi].iter().enumerate() {
                                d[ox0 + j * g.stride] += sv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The patch-major columns `cols_t[nb*P, O*K*K]` of the output gradient `dy` `[N, O, OH, OW]`
/// for the images `i0..i0+nb`: row `(b, iy, ix)` holds every `dy` value input pixel `(iy, ix)`
/// of image `b` contributed to.
fn im2col_t(g: &TGeom, dy: &[f32], i0: usize, nb: usize, cols_t: &mut [f32]) {
    let (kc, ohw) = (g.kc(), g.oh * g.ow);
    let mut rows = cols_t.chunks_exact_mut(kc);
    for b in 0..nb {
        let img = &dy[(i0 + b) * g.o * ohw..][..g.o * ohw];
        for iy in 0..g.h {
            for ix in 0..g.w {
                let row = rows.next().expect("cols_t holds nb*P rows");
                let ox0 = (ix * g.stride) as isize - g.pad as isize;
                let inside = ox0 >= 0 && ox0 as usize + g.k <= g.ow;
                for oc in 0..g.o {
                    let plane = &img[oc * ohw..][..ohw];
                    for ki in 0..g.k {
                        let dst = &mut row[(oc * g.k + ki) * g.k..][..g.k];
                        let oy = (iy * g.stride + ki) as isize - g.pad as isize;
                        if oy < 0 || oy >= g.oh as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[oy as usize * g.ow..][..g.ow];
                        if inside {
                            dst.copy_from_slice(&src[ox0 as usize..ox0 as usize + g.k]);
                        } else {
                            for (kj, d) in dst.iter_mut().enumerate() {
                                let ox = ox0 + kj as isize;
                                *d = if ox >= 0 && (ox as usize) < g.ow { src[ox as usize] } else { 0.0 };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]`, single-threaded, with explicit
/// row and column strides.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1));
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every access inside the three slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
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

/// Forward pass: `y[N, O, OH, OW]`.
fn forward(g: &TGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (kc, p, c) = (g.kc(), g.p(), g.c);
    let per_out = g.o * g.oh * g.ow;
    let nb = g.chunk_images();
    let mut out = vec![0f32; g.n * per_out];
    out.par_chunks_mut(nb * per_out).enumerate().for_each(|(ci, out_chunk)| {
        let i0 = ci * nb;
        let nbc = out_chunk.len() / per_out;
        let ld = nbc * p;
        SCRATCH.with_borrow_mut(|[cols, xbuf]| {
            let xbuf = grow(xbuf, c * ld);
            to_channel_major(g, x, i0, nbc, xbuf);
            let dcols = grow(cols, kc * ld);
            // dcols[KC, ld] = W^T[KC, C] * x[C, ld]; W is [C, KC] row-major.
            sgemm(kc, ld, c, dcols, ld, false, w, (1, kc), xbuf, (ld, 1));
            col2im(g, dcols, nbc, out_chunk);
        });
    });
    out
}

/// Backward pass: `(dx, dw)`, each only when asked for.
fn backward(g: &TGeom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool, need_dw: bool) -> (Vec<f32>, Vec<f32>) {
    let (kc, p, c) = (g.kc(), g.p(), g.c);
    let nb = g.chunk_images();
    let n_chunks = g.n.div_ceil(nb);
    let chw = c * p;
    let mut dx = if need_dx { vec![0f32; g.n * chw] } else { Vec::new() };
    let threads = rayon::current_num_threads().max(1);
    // One weight-gradient accumulator per rayon worker, allocated on first use.
    let accs: Vec<Mutex<Option<Vec<f32>>>> = (0..threads).map(|_| Mutex::new(None)).collect();
    let work = |ci: usize, dx_chunk: Option<&mut [f32]>| {
        let i0 = ci * nb;
        let nbc = nb.min(g.n - i0);
        let ld = nbc * p;
        SCRATCH.with_borrow_mut(|[cols, xbuf]| {
            let cols_t = grow(cols, ld * kc);
            im2col_t(g, dy, i0, nbc, cols_t);
            let xbuf = grow(xbuf, c * ld);
            if let Some(dx_chunk) = dx_chunk {
                // dx[C, ld] = W[C, KC] * cols_t^T[KC, ld], then back to [nb, C, P].
                sgemm(c, ld, kc, xbuf, ld, false, w, (kc, 1), cols_t, (1, kc));
                for b in 0..nbc {
                    for ch in 0..c {
                        dx_chunk[(b * c + ch) * p..][..p].copy_from_slice(&xbuf[ch * ld + b * p..][..p]);
                    }
                }
            }
            if need_dw {
                to_channel_major(g, x, i0, nbc, xbuf);
                let t = rayon::current_thread_index().unwrap_or(0) % threads;
                let mut guard = accs[t].lock().unwrap_or_else(|e| e.into_inner());
                let dw = guard.get_or_insert_with(|| vec![0f32; c * kc]);
                // dW[C, KC] += x[C, ld] * cols_t[ld, KC].
                sgemm(c, kc, ld, dw, kc, true, xbuf, (ld, 1), cols_t, (kc, 1));
            }
        });
    };
    if need_dx {
        dx.par_chunks_mut(nb * chw).enumerate().for_each(|(ci, chunk)| work(ci, Some(chunk)));
    } else {
        (0..n_chunks).into_par_iter().for_each(|ci| work(ci, None));
    }
    let mut dw = if need_dw { vec![0f32; c * kc] } else { Vec::new() };
    for acc in accs {
        if let Some(part) = acc.into_inner().unwrap_or_else(|e| e.into_inner()) {
            dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
    }
    (dx, dw)
}

/// The forward op: `(x, w) -> conv_transpose2d(x, w)`.
struct ConvTranspose2dOp {
    geom: TGeom,
}

impl CustomOp2 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        "adapt-conv-transpose2d"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sw: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let x = f32_slice(sx, lx, "conv_transpose2d input")?;
        let w = f32_slice(sw, lw, "conv_transpose2d weight")?;
        let y = forward(&g, x, w);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (need_dx, need_dw) = (x.track_op(), w.track_op());
        if !(need_dx || need_dw) {
            return Ok((None, None));
        }
        let op = ConvTranspose2dBackward { geom: self.geom, need_dx, need_dw };
        // One pass returns [dx | dw] flattened (a part not asked for has length 0).
        let packed = x.apply_op3_no_bwd(w, &grad_res.contiguous()?, &op)?;
        let dx_len = if need_dx { x.elem_count() } else { 0 };
        let dx = need_dx.then(|| packed.narrow(0, 0, dx_len)?.reshape(x.shape())).transpose()?;
        let dw = need_dw.then(|| packed.narrow(0, dx_len, w.elem_count())?.reshape(w.shape())).transpose()?;
        Ok((dx, dw))
    }
}

/// The backward op: `(x, w, grad_y) -> [dx | dw]`.
struct ConvTranspose2dBackward {
    geom: TGeom,
    need_dx: bool,
    need_dw: bool,
}

impl CustomOp3 for ConvTranspose2dBackward {
    fn name(&self) -> &'static str {
        "adapt-conv-transpose2d-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let x = f32_slice(sx, lx, "conv_transpose2d backward input")?;
        let w = f32_slice(sw, lw, "conv_transpose2d backward weight")?;
        let dy = f32_slice(sg, lg, "conv_transpose2d backward gradient")?;
        if dy.len() != g.n * g.o * g.oh * g.ow {
            candle_core::bail!(
                "conv_transpose2d backward: gradient has {} elements, expected {}",
                dy.len(),
                g.n * g.o * g.oh * g.ow
            );
        }
        let (mut dx, dw) = backward(&g, x, w, dy, self.need_dx, self.need_dw);
        dx.extend_from_slice(&dw);
        let len = dx.len();
        Ok((CpuStorage::F32(dx), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    fn tensor(dims: &[usize], seed: u64) -> Tensor {
        Tensor::from_vec(values(dims.iter().product(), seed), dims, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
    }

    /// `|a - b| <= tol * max(1, max |b|)` elementwise.
    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y} (scale {scale})");
        }
    }

    /// `(n, c, h, w, o, k, stride, padding)`.
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Odd sizes, batch 1, strides that leave remainders, padding larger than the stride, and the
    /// GTA generator's layers at a small batch.
    const CASES: &[Case] = &[
        (2, 3, 5, 7, 4, 3, 1, 1),
        (1, 2, 3, 4, 5, 4, 2, 1),
        (3, 4, 5, 5, 2, 3, 2, 0),
        (1, 5, 1, 1, 6, 2, 1, 0),
        (2, 3, 4, 3, 3, 5, 3, 2),
        (1, 1, 6, 5, 1, 3, 2, 2),
        (3, 16, 1, 1, 8, 2, 1, 0),
        (2, 8, 4, 4, 4, 4, 2, 1),
        (5, 6, 8, 8, 3, 4, 2, 1),
    ];

    /// Output and gradients of `sum(y * r)` with respect to `x` and `w`.
    fn run(case: usize, backend: Backend) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, c, h, w, o, k, stride, padding) = CASES[case];
        let seed = 10 * case as u64;
        let x = Var::from_tensor(&tensor(&[n, c, h, w], seed)).unwrap();
        let wt = Var::from_tensor(&(tensor(&[c, o, k, k], seed + 1) * 0.5).unwrap()).unwrap();
        let p = ConvTranspose2dParams { stride, padding };
        let y = conv_transpose2d_with(x.as_tensor(), wt.as_tensor(), p, backend).unwrap();
        assert_eq!(y.dims(), &[n, o, p.out_size(h, k), p.out_size(w, k)], "case {case} shape");
        let r = tensor(y.dims(), seed + 2);
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(wt.as_tensor()).unwrap()))
    }

    #[test]
    fn fast_matches_candle_values_and_gradients() {
        for case in 0..CASES.len() {
            let (fy, fdx, fdw) = run(case, Backend::Fast);
            let (cy, cdx, cdw) = run(case, Backend::Candle);
            assert_close(&fy, &cy, 1e-4, &format!("case {case} y"));
            assert_close(&fdx, &cdx, 1e-4, &format!("case {case} dx"));
            assert_close(&fdw, &cdw, 1e-4, &format!("case {case} dw"));
        }
    }

    /// Every output pixel against the definition `y[n,o,i*s+ki-p, j*s+kj-p] += x[n,c,i,j] w[c,o,ki,kj]`
    /// (candle could share a bug with us in principle).
    #[test]
    fn fast_matches_the_definition() {
        let (n, c, h, w, o, k, stride, padding) = CASES[4];
        let p = ConvTranspose2dParams { stride, padding };
        let (oh, ow) = (p.out_size(h, k), p.out_size(w, k));
        let x = values(n * c * h * w, 40);
        let wt = values(c * o * k * k, 41);
        let mut y = vec![0f64; n * o * oh * ow];
        for b in 0..n {
            for ch in 0..c {
                for i in 0..h {
                    for j in 0..w {
                        for oc in 0..o {
                            for ki in 0..k {
                                for kj in 0..k {
                                    let (yy, yx) = (
                                        (i * stride + ki) as isize - padding as isize,
                                        (j * stride + kj) as isize - padding as isize,
                                    );
                                    if yy < 0 || yx < 0 || yy as usize >= oh || yx as usize >= ow {
                                        continue;
                                    }
                                    y[((b * o + oc) * oh + yy as usize) * ow + yx as usize] +=
                                        x[((b * c + ch) * h + i) * w + j] as f64
                                            * wt[((ch * o + oc) * k + ki) * k + kj] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let xs = Tensor::from_vec(x, (n, c, h, w), &Device::Cpu).unwrap();
        let ws = Tensor::from_vec(wt, (c, o, k, k), &Device::Cpu).unwrap();
        let got = flat(&conv_transpose2d_with(&xs, &ws, p, Backend::Fast).unwrap());
        let want: Vec<f32> = y.into_iter().map(|v| v as f32).collect();
        assert_close(&got, &want, 1e-5, "definition");
    }

    #[test]
    fn input_gradient_is_skipped_for_constant_inputs() {
        let x = tensor(&[2, 3, 4, 4], 1);
        let w = Var::from_tensor(&tensor(&[3, 2, 4, 4], 2)).unwrap();
        let p = ConvTranspose2dParams { stride: 2, padding: 1 };
        let grads = conv_transpose2d(&x, w.as_tensor(), p).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        let cand = x.conv_transpose2d(w.as_tensor(), 1, 0, 2, 1).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(&flat(grads.get(w.as_tensor()).unwrap()), &flat(cand.get(w.as_tensor()).unwrap()), 1e-4, "dw");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = tensor(&[1, 3, 4, 4], 1);
        let p = ConvTranspose2dParams { stride: 2, padding: 1 };
        assert!(conv_transpose2d(&x, &tensor(&[2, 3, 4, 4], 2), p).is_err(), "channel mismatch");
        assert!(conv_transpose2d(&x, &tensor(&[3, 3, 4, 3], 2), p).is_err(), "non-square kernel");
        let huge_pad = ConvTranspose2dParams { stride: 1, padding: 3 };
        assert!(conv_transpose2d(&tensor(&[1, 3, 1, 1], 1), &tensor(&[3, 2, 2, 2], 2), huge_pad).is_err());
        assert!(
            conv_transpose2d(&x, &tensor(&[3, 2, 4, 4], 2), ConvTranspose2dParams { stride: 0, padding: 0 }).is_err()
        );
    }
}
