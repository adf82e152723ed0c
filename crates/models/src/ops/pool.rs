//! Max-pooling with argmax on the CPU, as candle custom ops.
//!
//! The forward op records, for every output, the flat index (within its `H x W` plane) of the
//! first maximum of its window in scan order; PyTorch's `MaxPool2d` picks the same one (and, as
//! there, a NaN wins over any number, the last NaN of a window over earlier ones). The backward op scatter-adds the output gradient to those
//! indices (windows overlap when `stride < kernel`, so an input can receive several).
use super::conv::f32_slice;
use super::pool_out;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

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
    debug_assert!(plane.len() >= h * w && out.len() >= oh * ow && arg.len() >= oh * ow);
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

struct MaxPoolOp {
    kernel: usize,
    stride: usize,
    /// Filled by the forward pass, read by the backward pass.
    argmax: Arc<OnceLock<Vec<u32>>>,
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
        super::profile::timed(super::profile::Kernel::PoolForward, || {
            out.par_chunks_mut(ppt * ohw).zip(arg.par_chunks_mut(ppt * ohw)).enumerate().for_each(|(t, (out, arg))| {
                for (j, (out, arg)) in out.chunks_mut(ohw).zip(arg.chunks_mut(ohw)).enumerate() {
                    pool_plane(&x[(t * ppt + j) * hw..][..hw], h, w, k, st, out, arg);
                }
            });
        });
        // A second forward of the same op (it never happens with apply_op1) keeps the first argmax,
        // which is the same for the same input.
        let _ = self.argmax.set(arg);
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
    argmax: Arc<OnceLock<Vec<u32>>>,
}

impl CustomOp1 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "adapt-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let gy = f32_slice(s, l, "max_pool2d backward gradient")?;
        let Some(arg) = self.argmax.get() else {
            candle_core::bail!("max_pool2d backward: the forward pass recorded no argmax");
        };
        let (hw, ohw, planes) = (g.h * g.w, g.oh * g.ow, g.n * g.c);
        if gy.len() != planes * ohw || arg.len() != gy.len() {
            candle_core::bail!("max_pool2d backward: gradient has {} elements, expected {}", gy.len(), planes * ohw);
        }
        let mut dx = vec![0f32; planes * hw];
        let ppt = planes_per_task(hw);
        super::profile::timed(super::profile::Kernel::PoolBackward, || {
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
    xs.apply_op1(MaxPoolOp { kernel, stride, argmax: Arc::new(OnceLock::new()) })
}
