//! 2D convolution ([`conv2d`]) and convolution fused with a max-pool ([`conv2d_max_pool2d`]):
//! im2col + GEMM on the CPU, forward and backward, as candle custom ops, and a fallback built
//! from candle's own ops for other devices and dtypes.
//!
//! Work is split into chunks of whole images; rayon runs the chunks in parallel and each chunk
//! calls a single-threaded GEMM on its own scratch buffers:
//!
//! * forward: `cols[K, nb*P] = im2col(x)`, `tmp[O, nb*P] = W[O, K] * cols`, then the copy of
//!   `tmp` into the NCHW output adds the bias and applies the ReLU, or, with a fused max-pool,
//!   pools each output plane straight out of `tmp` and records the argmax;
//! * backward: the incoming gradient of the chunk is gathered into `g[O, nb*P]` (times the ReLU
//!   mask, scattered through the pooling argmax when the pool was fused), `dcols[K, nb*P] = W^T *
//!   g` is added back with col2im into the input gradient, `dW[O, K] += g * cols^T` and
//!   `db[O] += rowsum(g)` go into one accumulator per rayon worker, summed at the end.
//!
//! `K = C*KH*KW`, `P = OH*OW` and `nb` is the number of images in a chunk (chosen so that the
//! scratch buffers stay around four megabytes, and there are enough chunks to balance the
//! threads). The GEMMs are the `gemm` crate's, built with its AVX-512 kernels (`x86-v4`,
//! selected at run time), about twice as fast as its AVX2 ones on CPUs that have AVX-512. With
//! stride 1 (most small convnets), im2col and col2im work on a zero-padded copy of the chunk, so
//! each row is a run of plain `OW`-long copies (AVX-512 masked moves where available).
use crate::Backend;
use crate::glue::{SendPtr, SideChannel, f32_slice, packed_grads, unpack_grads, with_cpu_f32};
use crate::pool::{self, check_pool, max_pool2d_with, pool_out};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Mutex;

/// Geometry and fused epilogue of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dParams {
    pub stride: usize,
    /// Zero padding on each side of both spatial dimensions.
    pub padding: usize,
    /// Apply a ReLU to the output (after the bias).
    pub relu: bool,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0, relu: false }
    }
}

/// 2D convolution of `xs` `[N, C, H, W]` with `w` `[O, C, KH, KW]`, plus the optional bias
/// `[O]`, then a ReLU if `p.relu`. Output `[N, O, (H + 2p - KH)/s + 1, (W + 2p - KW)/s + 1]`.
pub fn conv2d(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    conv2d_with(xs, w, bias, p, Backend::Auto)
}

/// [`conv2d`] with an explicit [`Backend`].
pub fn conv2d_with(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    backend: Backend,
) -> Result<Tensor> {
    check_conv(xs, w, bias, p)?;
    if backend.use_fast(xs, "conv2d")? { conv2d_fast(xs, w, bias, p, None) } else { conv2d_candle(xs, w, bias, p) }
}

fn check_conv(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<()> {
    let (_, c, h, wd) = xs.dims4()?;
    let (o, c_k, kh, kw) = w.dims4()?;
    if c != c_k {
        candle_core::bail!("conv2d: input has {c} channels, kernel expects {c_k}");
    }
    if p.stride == 0 {
        candle_core::bail!("conv2d: stride must be positive");
    }
    if h + 2 * p.padding < kh || wd + 2 * p.padding < kw {
        candle_core::bail!("conv2d: kernel {kh}x{kw} larger than the padded input {h}x{wd} (padding {})", p.padding);
    }
    if let Some(b) = bias
        && b.dims() != [o]
    {
        candle_core::bail!("conv2d: bias shape {:?}, expected [{o}]", b.dims());
    }
    Ok(())
}

/// [`conv2d`] followed by [`max_pool2d`](crate::max_pool2d)`(kernel, stride)`, fused on the
/// CPU: the pooling runs on the GEMM output while it is in cache, only the pooled tensor (and the
/// argmax) is kept, and the backward pass routes the gradient through the argmax straight into
/// the convolution's GEMMs, without the full-size intermediate tensors and their gradients.
pub fn conv2d_max_pool2d(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    conv2d_max_pool2d_with(xs, w, bias, p, kernel, stride, Backend::Auto)
}

/// [`conv2d_max_pool2d`] with an explicit [`Backend`].
pub fn conv2d_max_pool2d_with(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    kernel: usize,
    stride: usize,
    backend: Backend,
) -> Result<Tensor> {
    if !backend.use_fast(xs, "conv2d_max_pool2d")? {
        return max_pool2d_with(&conv2d_with(xs, w, bias, p, backend)?, kernel, stride, backend);
    }
    // Validate both halves with the unfused checks (cheap: shapes only).
    let (_, _, h, wd) = xs.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    check_conv(xs, w, bias, p)?;
    let (oh, ow) = ((h + 2 * p.padding - kh) / p.stride + 1, (wd + 2 * p.padding - kw) / p.stride + 1);
    check_pool(oh, ow, kernel, stride)?;
    conv2d_fast(xs, w, bias, p, Some((kernel, stride)))
}

/// The candle fallback: `Tensor::conv2d`, bias broadcast, ReLU.
///
/// candle 0.11's conv2d backward derives the `conv_transpose2d` output padding of both spatial
/// dimensions from the height alone, so its input gradient has the wrong width when the stride
/// leaves a different remainder in the two dimensions. When the stride leaves any remainder, the
/// input is padded explicitly and cropped to the rows and columns the windows actually cover
/// (pad and narrow have correct gradients), which makes the fit exact.
fn conv2d_candle(xs: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    let (_, _, h, wd) = xs.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let (hp, wp) = (h + 2 * p.padding, wd + 2 * p.padding);
    let (h_used, w_used) = ((hp - kh) / p.stride * p.stride + kh, (wp - kw) / p.stride * p.stride + kw);
    let mut ys = if h_used == hp && w_used == wp {
        xs.conv2d(w, p.padding, p.stride, 1, 1)?
    } else {
        let xp = if p.padding > 0 {
            xs.pad_with_zeros(2, p.padding, p.padding)?.pad_with_zeros(3, p.padding, p.padding)?
        } else {
            xs.clone()
        };
        xp.narrow(2, 0, h_used)?.narrow(3, 0, w_used)?.conv2d(w, 0, p.stride, 1, 1)?
    };
    if let Some(b) = bias {
        ys = ys.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
    }
    if p.relu { relu_torch(&ys) } else { Ok(ys) }
}

/// ReLU whose gradient is 0 at 0, as in PyTorch (candle's `relu` passes the gradient at 0).
fn relu_torch(xs: &Tensor) -> Result<Tensor> {
    xs.relu()?.mul(&xs.gt(0.0)?.to_dtype(xs.dtype())?.detach())
}

/// Everything about one convolution's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    pub(crate) fn new(x: &Shape, w: &Shape, stride: usize, pad: usize) -> Result<Self> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, c_k, kh, kw) = w.dims4()?;
        if c != c_k {
            candle_core::bail!("conv2d: input has {c} channels, kernel expects {c_k}");
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        Ok(Self { n, c, h, w: wd, o, kh, kw, stride, pad, oh, ow })
    }
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Images per chunk: scratch of about `TARGET` floats, and at least 3 chunks per thread.
    fn chunk_images(&self) -> usize {
        const TARGET: usize = 1 << 20;
        let per_image = (self.k() + self.o) * self.p();
        let by_size = (TARGET / per_image.max(1)).max(1);
        let threads = rayon::current_num_threads().max(1);
        let by_balance = self.n.div_ceil(3 * threads).max(1);
        by_size.min(by_balance).min(self.n.max(1))
    }
}

thread_local! {
    /// Per-thread scratch: im2col columns, GEMM output / gathered gradient, dcols.
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
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
fn im2col(g: &Geom, x: &[f32], i0: usize, nb: usize, cols: &mut [f32]) {
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
            unsafe { rows_avx512::im2col(g, xp, nb, cols) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            unsafe { rows_avx2::im2col(g, xp, nb, cols) };
            return;
        }
        im2col_padded(g, xp, nb, cols, |d, s| d.copy_from_slice(s));
    });
}

/// The stride-1 im2col from the padded chunk `xp` `[nb, C, H+2p, W+2p]`, copying each run of
/// `OW` values with `copy`.
#[inline(always)]
fn im2col_padded(g: &Geom, xp: &[f32], nb: usize, cols: &mut [f32], copy: impl Fn(&mut [f32], &[f32])) {
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
fn col2im_padded(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32], add: impl Fn(&mut [f32], &[f32])) {
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

/// The stride-1 row copies and adds with AVX-512 masked moves: runs of `OW` (7 to 32 values on
/// 28x28 and 32x32 images) are too short for `memcpy` calls and auto-vectorised loops to pay off.
#[cfg(target_arch = "x86_64")]
mod rows_avx512 {
    use super::Geom;
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
        super::im2col_padded(g, xp, nb, cols, |d, s| unsafe { copy(d, s) });
    }

    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn col2im(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32]) {
        // SAFETY: AVX-512F is available (this function's contract).
        super::col2im_padded(g, dcols, nb, dxp, |d, s| unsafe { add(d, s) });
    }
}

/// [`rows_avx512`] for CPUs with AVX2 only (AMD's before Zen 4, for one): whole 8-lane moves
/// and a scalar tail. AVX2's masked stores (`vmaskmovps`) are microcoded on AMD and made the
/// step slower than plain `memcpy` there.
#[cfg(target_arch = "x86_64")]
mod rows_avx2 {
    use super::Geom;
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
        super::im2col_padded(g, xp, nb, cols, |d, s| unsafe { copy(d, s) });
    }

    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn col2im(g: &Geom, dcols: &[f32], nb: usize, dxp: &mut [f32]) {
        // SAFETY: AVX2 is available (this function's contract).
        super::col2im_padded(g, dcols, nb, dxp, |d, s| unsafe { add(d, s) });
    }
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
fn col2im(g: &Geom, dcols: &[f32], nb: usize, dx: &mut [f32]) {
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
            unsafe { rows_avx512::col2im(g, dcols, nb, dxp) };
            true
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            unsafe { rows_avx2::col2im(g, dcols, nb, dxp) };
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

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]`, single-threaded, with explicit
/// row and column strides; counted in [`profile::gemm_flops`].
#[allow(clippy::too_many_arguments)]
fn sgemm(
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
    profile::count_gemm(m, n, k);
    sgemm_unprofiled(m, n, k, dst, dst_strides, accumulate, lhs, lhs_strides, rhs, rhs_strides);
}

/// [`sgemm`] without the count: for [`profile::sgemm_peak_gflops`], which times the same
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
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
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

/// The forward op: `(x, w, b) -> [max-pool](act(conv(x, w) + b))`.
struct Conv2dOp {
    params: Conv2dParams,
    /// `(kernel, stride)` of a fused max-pool.
    pool: Option<(usize, usize)>,
    /// The argmax of the fused max-pool, filled by the forward pass.
    argmax: SideChannel<Vec<u32>>,
}

impl Conv2dOp {
    fn fused_pool(&self, g: &Geom) -> Option<FusedPool> {
        self.pool.map(|(kernel, stride)| FusedPool {
            kernel,
            stride,
            ph: pool_out(g.oh, kernel, stride),
            pw: pool_out(g.ow, kernel, stride),
        })
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        if self.pool.is_some() { "adapt-conv2d-max-pool2d" } else { "adapt-conv2d" }
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(lx.shape(), lw.shape(), self.params.stride, self.params.padding)?;
        let x = f32_slice(sx, lx, "conv2d input")?;
        let w = f32_slice(sw, lw, "conv2d weight")?;
        let b = f32_slice(sb, lb, "conv2d bias")?;
        let pool = self.fused_pool(&g);
        let (y, arg) = profile::timed(Kernel::ConvForward, || forward(&g, x, w, Some(b), self.params.relu, pool));
        if let Some(arg) = arg {
            self.argmax.record(arg);
        }
        let shape = match pool {
            Some(pl) => Shape::from((g.n, g.o, pl.ph, pl.pw)),
            None => Shape::from((g.n, g.o, g.oh, g.ow)),
        };
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need = Need { dx: x.track_op(), dw: w.track_op(), db: b.track_op() };
        if !(need.dx || need.dw || need.db) {
            return Ok((None, None, None));
        }
        let grad_res = grad_res.contiguous()?;
        let op = Conv2dBackward {
            params: self.params,
            res: self.params.relu.then(|| res.clone()),
            pool: self.pool.map(|_| self.argmax.clone()),
            need,
        };
        // One fused pass returns [dx | dw | db] flattened (missing parts have length 0).
        let packed = x.apply_op3_no_bwd(w, &grad_res, &op)?;
        let [dx, dw, db] = unpack_grads(&packed, [x, w, b], [need.dx, need.dw, need.db])?;
        Ok((dx, dw, db))
    }
}

/// The backward op: `(x, w, grad_y) -> [dx | dw | db]` (flattened, only the parts in `need`).
struct Conv2dBackward {
    params: Conv2dParams,
    /// The forward output, when the ReLU was fused: its gradient is masked by `y > 0`.
    res: Option<Tensor>,
    /// The argmax of a fused max-pool.
    pool: Option<SideChannel<Vec<u32>>>,
    need: Need,
}

impl CustomOp3 for Conv2dBackward {
    fn name(&self) -> &'static str {
        "adapt-conv2d-backward"
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
        let g = Geom::new(lx.shape(), lw.shape(), self.params.stride, self.params.padding)?;
        let x = f32_slice(sx, lx, "conv2d backward input")?;
        let w = f32_slice(sw, lw, "conv2d backward weight")?;
        let gy = f32_slice(sg, lg, "conv2d backward gradient")?;
        let arg = match &self.pool {
            Some(a) => Some(a.recorded("conv2d backward pooling argmax")?.as_slice()),
            None => None,
        };
        let expected = arg.map_or(g.n * g.o * g.p(), <[u32]>::len);
        if gy.len() != expected || (arg.is_none() && gy.len() != g.n * g.o * g.p()) {
            candle_core::bail!("conv2d backward: gradient has {} elements, expected {expected}", gy.len());
        }
        let run = |y: Option<&[f32]>| -> Result<Grads> {
            if let Some(y) = y
                && y.len() != gy.len()
            {
                candle_core::bail!("conv2d backward: output has {} elements, gradient {}", y.len(), gy.len());
            }
            Ok(profile::timed(Kernel::ConvBackward, || backward(&g, (x, w), gy, y, arg, self.need)))
        };
        let grads = match &self.res {
            Some(res) => {
                let res = res.contiguous()?;
                with_cpu_f32(&res, "conv2d backward output", |y| run(Some(y)))?
            }
            None => run(None)?,
        };
        Ok(packed_grads([grads.dx, grads.dw, grads.db].map(Option::unwrap_or_default)))
    }
}

/// The fast convolution; shapes were checked by the caller.
pub(crate) fn conv2d_fast(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    pool: Option<(usize, usize)>,
) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let w = w.contiguous()?;
    let b = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
    };
    xs.apply_op3(&w, &b, Conv2dOp { params: p, pool, argmax: SideChannel::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    variants.push(("avx512", rows_avx512::im2col, rows_avx512::col2im));
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    variants.push(("avx2", rows_avx2::im2col, rows_avx2::col2im));
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
