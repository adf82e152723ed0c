//! Max-pooling ([`max_pool2d`]) with argmax on the CPU, as candle custom ops, and a fallback
//! built from candle's own ops for other devices and dtypes.
//!
//! The forward op records, for every output, the flat index (within its `H x W` plane) of the
//! first maximum of its window in scan order; PyTorch's `MaxPool2d` picks the same one (and, as
//! there, a NaN wins over any number, the last NaN of a window over earlier ones). The backward
//! op scatter-adds the output gradient to those indices (windows overlap when `stride < kernel`,
//! so an input can receive several).
use crate::backend::Backend;
use crate::glue::{SideChannel, f32_slice};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Output size of a floor-mode pooling window of `kernel` with `stride` over `n` positions.
pub(crate) fn pool_out(n: usize, kernel: usize, stride: usize) -> usize {
    (n - kernel) / stride + 1
}

/// Max-pooling of `xs` `[N, C, H, W]` with a `kernel x kernel` window moved by `stride`, no
/// padding, floor mode (PyTorch's `MaxPool2d(kernel, stride)`): output
/// `[N, C, (H - kernel)/stride + 1, (W - kernel)/stride + 1]`.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    max_pool2d_with(xs, kernel, stride, Backend::Auto)
}

/// [`max_pool2d`] with an explicit [`Backend`].
pub fn max_pool2d_with(xs: &Tensor, kernel: usize, stride: usize, backend: Backend) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    check_pool(h, w, kernel, stride)?;
    if backend.use_fast(xs, "max_pool2d")? {
        max_pool2d_fast(xs, kernel, stride)
    } else {
        max_pool2d_candle(xs, kernel, stride)
    }
}

/// The candle fallback: the `kernel * kernel` elements of every window on a last dimension (in
/// scan order), the first argmax over it, and a gather (whose backward is a correct scatter-add).
///
/// Non-overlapping windows (`kernel == stride`, every pool of the digit networks and of GTA's
/// discriminator) are a reshape and one permuting copy of the covered rows and columns; others
/// (DANN's SVHN pool 3/2) stack `kernel * kernel` strided views made with `index_select`.
fn max_pool2d_candle(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = (pool_out(h, kernel, stride), pool_out(w, kernel, stride));
    if kernel == stride {
        let covered = xs.narrow(2, 0, oh * kernel)?.narrow(3, 0, ow * kernel)?;
        let windows = covered
            .reshape((n, c, oh, kernel, ow, kernel))?
            .permute((0, 1, 2, 4, 3, 5))?
            .contiguous()?
            .reshape((n, c, oh, ow, kernel * kernel))?;
        let idx = windows.argmax_keepdim(D::Minus1)?;
        return windows.gather(&idx, D::Minus1)?.reshape((n, c, oh, ow));
    }
    let dev = xs.device();
    let mut views = Vec::with_capacity(kernel * kernel);
    for di in 0..kernel {
        let rows: Vec<u32> = (0..oh).map(|i| (di + i * stride) as u32).collect();
        let rows = Tensor::from_vec(rows, oh, dev)?;
        let xr = xs.index_select(&rows, 2)?;
        for dj in 0..kernel {
            let cols: Vec<u32> = (0..ow).map(|j| (dj + j * stride) as u32).collect();
            let cols = Tensor::from_vec(cols, ow, dev)?;
            views.push(xr.index_select(&cols, 3)?.unsqueeze(4)?);
        }
    }
    let windows = Tensor::cat(&views, 4)?; // [N, C, OH, OW, k*k], in scan order
    let idx = windows.argmax_keepdim(D::Minus1)?;
    windows.gather(&idx, D::Minus1)?.reshape((n, c, oh, ow))
}

pub(crate) fn check_pool(h: usize, w: usize, kernel: usize, stride: usize) -> Result<()> {
    if kernel == 0 || stride == 0 {
        candle_core::bail!("max_pool2d: kernel and stride must be positive, got {kernel} and {stride}");
    }
    if h < kernel || w < kernel {
        candle_core::bail!("max_pool2d: kernel {kernel} larger than the input {h}x{w}");
    }
    Ok(())
}

/// Pooling geometry.
#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

/// Planes handled per rayon task.
fn planes_per_task(plane_len: usize) -> usize {
    (16384 / plane_len.max(1)).max(1)
}

/// Max-pools one `h x w` plane into `out` (`oh x ow`, floor mode) and records in `arg` the flat
/// index of each window's maximum: the first in scan order, or the last NaN, like PyTorch.
#[inline]
pub(crate) fn pool_plane(plane: &[f32], h: usize, w: usize, k: usize, st: usize, out: &mut [f32], arg: &mut [u32]) {
    let (oh, ow) = (pool_out(h, k, st), pool_out(w, k, st));
    assert!(plane.len() >= h * w && out.len() >= oh * ow && arg.len() >= oh * ow);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is available (checked above); the assert above bounds every access.
        unsafe { avx512::pool_plane(plane, (h, w), (k, st), (oh, ow), out, arg) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked above); the assert above bounds every access.
        unsafe { avx2::pool_plane(plane, (h, w), (k, st), (oh, ow), out, arg) };
        return;
    }
    pool_plane_scalar(plane, h, w, k, st, out, arg);
}

/// The signature of [`pool_plane`]: plane, height, width, kernel, stride, output, argmax.
#[cfg(test)]
pub(crate) type PoolPlaneFn = fn(&[f32], usize, usize, usize, usize, &mut [f32], &mut [u32]);

/// The vectorised [`pool_plane`]s this CPU can run, by name, for tests that compare each with
/// [`pool_plane_scalar`] (a machine runs only the widest one in training).
#[cfg(test)]
pub(crate) fn vectorised_pool_planes() -> Vec<(&'static str, PoolPlaneFn)> {
    let mut found: Vec<(&'static str, PoolPlaneFn)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        /// The output size, after the bounds `pool_plane` asserts before it dispatches.
        fn checked(
            plane: &[f32],
            (h, w, k, st): (usize, usize, usize, usize),
            out: &[f32],
            arg: &[u32],
        ) -> (usize, usize) {
            let (oh, ow) = (pool_out(h, k, st), pool_out(w, k, st));
            assert!(plane.len() >= h * w && out.len() >= oh * ow && arg.len() >= oh * ow);
            (oh, ow)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push(("avx512", |plane, h, w, k, st, out, arg| {
                let (oh, ow) = checked(plane, (h, w, k, st), out, arg);
                // SAFETY: AVX-512F is available; sizes checked above.
                unsafe { avx512::pool_plane(plane, (h, w), (k, st), (oh, ow), out, arg) }
            }));
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            found.push(("avx2", |plane, h, w, k, st, out, arg| {
                let (oh, ow) = checked(plane, (h, w, k, st), out, arg);
                // SAFETY: AVX2 is available; sizes checked above.
                unsafe { avx2::pool_plane(plane, (h, w), (k, st), (oh, ow), out, arg) }
            }));
        }
    }
    found
}

/// The portable [`pool_plane`].
pub(crate) fn pool_plane_scalar(
    plane: &[f32],
    h: usize,
    w: usize,
    k: usize,
    st: usize,
    out: &mut [f32],
    arg: &mut [u32],
) {
    let (oh, ow) = (pool_out(h, k, st), pool_out(w, k, st));
    for oy in 0..oh {
        let (out, arg) = (&mut out[oy * ow..(oy + 1) * ow], &mut arg[oy * ow..(oy + 1) * ow]);
        if k == 2 && st == 2 {
            let (r0, r1) = (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]);
            for ox in 0..ow {
                let x0 = 2 * ox;
                let cand = [(r0[x0], x0), (r0[x0 + 1], x0 + 1), (r1[x0], w + x0), (r1[x0 + 1], w + x0 + 1)];
                let (mut bv, mut bi) = cand[0];
                for &(v, i) in &cand[1..] {
                    if v > bv || v.is_nan() {
                        (bv, bi) = (v, i);
                    }
                }
                out[ox] = bv;
                arg[ox] = (2 * oy * w + bi) as u32;
            }
            continue;
        }
        let y0 = oy * st;
        for ox in 0..ow {
            let x0 = ox * st;
            let mut best = y0 * w + x0;
            let mut bv = plane[best];
            for dy in 0..k {
                let row = &plane[(y0 + dy) * w + x0..][..k];
                for (dx, &v) in row.iter().enumerate() {
                    if v > bv || v.is_nan() {
                        bv = v;
                        best = (y0 + dy) * w + x0 + dx;
                    }
                }
            }
            out[ox] = bv;
            arg[ox] = best as u32;
        }
    }
}

/// [`pool_plane`] with AVX-512: 16 windows of an output row at a time, the window elements
/// gathered in scan order, branch-free selects with the same rule as the scalar loop (`v > best`
/// or `v` is NaN), so values and argmax are identical. The scalar loop's data-dependent branches
/// mispredict about half the time on real activations.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F must be available; `plane` must hold `h * w` values, `out` and `arg` `oh * ow`,
    /// with `(oh, ow)` the floor-mode output size of a `k x k` window moved by `st`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_plane(
        plane: &[f32],
        (_h, w): (usize, usize),
        (k, st): (usize, usize),
        (oh, ow): (usize, usize),
        out: &mut [f32],
        arg: &mut [u32],
    ) {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lane_off = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(st as i32));
        for oy in 0..oh {
            let y0 = oy * st;
            let mut ox0 = 0;
            while ox0 < ow {
                let n = (ow - ox0).min(16);
                let m: __mmask16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
                // Flat index of each lane's window origin.
                let origin = _mm512_add_epi32(lane_off, _mm512_set1_epi32((y0 * w + ox0 * st) as i32));
                // SAFETY (all gathers): masked-off lanes are not read; a live lane reads
                // (y0 + dy) * w + (ox0 + lane) * st + dx < h * w, inside `plane`.
                let mut best = unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, origin, plane.as_ptr()) };
                let mut best_i = origin;
                for dy in 0..k {
                    for dx in 0..k {
                        if dy == 0 && dx == 0 {
                            continue;
                        }
                        let idx = _mm512_add_epi32(origin, _mm512_set1_epi32((dy * w + dx) as i32));
                        // SAFETY: as above.
                        let v = unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, plane.as_ptr()) };
                        let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                        best = _mm512_mask_mov_ps(best, take, v);
                        best_i = _mm512_mask_mov_epi32(best_i, take, idx);
                    }
                }
                let o = oy * ow + ox0;
                // SAFETY: lanes < n write out[o..o + n] and arg[o..o + n], inside the slices.
                unsafe {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(o), m, best);
                    _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(o).cast(), m, best_i);
                }
                ox0 += 16;
            }
        }
    }
}

/// [`pool_plane`] with AVX2 (CPUs without AVX-512, such as AMD's before Zen 4): 8 windows of an
/// output row at a time, gathered and selected exactly as in the AVX-512 version (the last
/// partial block with masked gathers).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 must be available; `plane` must hold `h * w` values, `out` and `arg` `oh * ow`,
    /// with `(oh, ow)` the floor-mode output size of a `k x k` window moved by `st`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_plane(
        plane: &[f32],
        (_h, w): (usize, usize),
        (k, st): (usize, usize),
        (oh, ow): (usize, usize),
        out: &mut [f32],
        arg: &mut [u32],
    ) {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let lane_off = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(st as i32));
        for oy in 0..oh {
            let y0 = oy * st;
            let mut ox0 = 0;
            while ox0 < ow {
                let n = (ow - ox0).min(8) as i32;
                // All ones in the lanes below `n`.
                let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
                let mf = _mm256_castsi256_ps(m);
                let origin = _mm256_add_epi32(lane_off, _mm256_set1_epi32((y0 * w + ox0 * st) as i32));
                // SAFETY (all gathers): masked-off lanes are not read; a live lane reads
                // (y0 + dy) * w + (ox0 + lane) * st + dx < h * w, inside `plane`.
                let mut best =
                    unsafe { _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), plane.as_ptr(), origin, mf) };
                let mut best_i = origin;
                for dy in 0..k {
                    for dx in 0..k {
                        if dy == 0 && dx == 0 {
                            continue;
                        }
                        let idx = _mm256_add_epi32(origin, _mm256_set1_epi32((dy * w + dx) as i32));
                        // SAFETY: as above.
                        let v = unsafe { _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), plane.as_ptr(), idx, mf) };
                        let take =
                            _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, best), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                        best = _mm256_blendv_ps(best, v, take);
                        best_i = _mm256_castps_si256(_mm256_blendv_ps(
                            _mm256_castsi256_ps(best_i),
                            _mm256_castsi256_ps(idx),
                            take,
                        ));
                    }
                }
                let o = oy * ow + ox0;
                if n == 8 {
                    // SAFETY: o + 8 <= oh * ow, inside both slices.
                    unsafe {
                        _mm256_storeu_ps(out.as_mut_ptr().add(o), best);
                        _mm256_storeu_si256(arg.as_mut_ptr().add(o).cast(), best_i);
                    }
                } else {
                    // A partial block through the stack: masked stores are microcoded on AMD.
                    let (mut v, mut i) = ([0f32; 8], [0u32; 8]);
                    // SAFETY: 8-lane stores into 8-element arrays.
                    unsafe {
                        _mm256_storeu_ps(v.as_mut_ptr(), best);
                        _mm256_storeu_si256(i.as_mut_ptr().cast(), best_i);
                    }
                    let n = n as usize;
                    out[o..o + n].copy_from_slice(&v[..n]);
                    arg[o..o + n].copy_from_slice(&i[..n]);
                }
                ox0 += 8;
            }
        }
    }
}

struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    /// Filled by the forward pass, read by the backward pass.
    argmax: SideChannel<Vec<u32>>,
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "adapt-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "max_pool2d input")?;
        let (k, st) = (self.kernel, self.stride);
        let (oh, ow) = (pool_out(h, k, st), pool_out(w, k, st));
        let (hw, ohw) = (h * w, oh * ow);
        let mut out = vec![0f32; n * c * ohw];
        let mut arg = vec![0u32; n * c * ohw];
        let ppt = planes_per_task(hw);
        profile::timed(Kernel::PoolForward, || {
            out.par_chunks_mut(ppt * ohw).zip(arg.par_chunks_mut(ppt * ohw)).enumerate().for_each(|(t, (out, arg))| {
                for (j, (out, arg)) in out.chunks_mut(ohw).zip(arg.chunks_mut(ohw)).enumerate() {
                    pool_plane(&x[(t * ppt + j) * hw..][..hw], h, w, k, st, out, arg);
                }
            });
        });
        self.argmax.record(arg);
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let (n, c, h, w) = arg.dims4()?;
        let (_, _, oh, ow) = grad_res.dims4()?;
        let geom = PoolGeom { n, c, h, w, oh, ow };
        let grad_res = grad_res.contiguous()?;
        let dx = grad_res.apply_op1_no_bwd(&MaxPoolBackward { geom, argmax: self.argmax.clone() })?;
        Ok(Some(dx))
    }
}

/// `grad_y -> dx`: scatter-add of the output gradient to the recorded argmax.
struct MaxPoolBackward {
    geom: PoolGeom,
    argmax: SideChannel<Vec<u32>>,
}

impl CustomOp1 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "adapt-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let gy = f32_slice(s, l, "max_pool2d backward gradient")?;
        let arg = self.argmax.recorded("max_pool2d backward argmax")?;
        let (hw, ohw, planes) = (g.h * g.w, g.oh * g.ow, g.n * g.c);
        if gy.len() != planes * ohw || arg.len() != gy.len() {
            candle_core::bail!("max_pool2d backward: gradient has {} elements, expected {}", gy.len(), planes * ohw);
        }
        let mut dx = vec![0f32; planes * hw];
        let ppt = planes_per_task(hw);
        profile::timed(Kernel::PoolBackward, || {
            dx.par_chunks_mut(ppt * hw).enumerate().for_each(|(t, dx)| {
                for (j, dx) in dx.chunks_mut(hw).enumerate() {
                    let off = (t * ppt + j) * ohw;
                    for (gv, &i) in gy[off..off + ohw].iter().zip(&arg[off..off + ohw]) {
                        dx[i as usize] += gv;
                    }
                }
            });
        });
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// The fast max-pool; shapes were checked by the caller.
pub(crate) fn max_pool2d_fast(xs: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    xs.apply_op1(MaxPoolOp { kernel, stride, argmax: SideChannel::default() })
}
