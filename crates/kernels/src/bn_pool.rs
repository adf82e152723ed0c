//! A training-mode BatchNorm, a max-pool (kernel = stride) and a LeakyReLU as one op on the CPU:
//! the block after each convolution of GTA's discriminator.
//!
//! Unfused, the BatchNorm writes its full-size output, the pool reads it, and backward candle
//! zero-fills and accumulates a full-size gradient for the BatchNorm's output and a pooled one for
//! the pool's, between four ops: at D's first block that is several passes over 16 MB per call,
//! six calls a GTA iteration. Fused, the normalised values exist only one plane at a time in a
//! scratch buffer, and so does the dense gradient the BatchNorm's backward pass reads.
//!
//! Values and gradients are bit-identical to the unfused
//! [`BatchNorm2d::forward_t`] + [`max_pool2d`](crate::max_pool2d) + [`leaky_relu`](crate::leaky_relu):
//! the same statistics and gradient sums ([`crate::bn_stats`]), the same pooling ([`pool::pool_plane`]) and the same
//! per-element formulas; the BatchNorm's backward sums run over the same dense gradient planes
//! in the same order (its zeros, where no window's maximum lies, included).
use crate::batch_norm::BatchNorm2d;
use crate::bn_stats::{GROUP, GradSums, mean_var, per_group, scale_shift};
use crate::glue::{SendPtr, SideChannel, f32_slice, packed_grads, unpack_grads};
use crate::pool::{self, pool_out};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp3, Layout, ModuleT, Result, Shape, Tensor};
use std::cell::RefCell;

/// What the forward pass hands to the backward pass: per channel the batch mean, the biased
/// variance, the scale and shift it normalised with, and the argmax of every pooled output.
struct Recorded {
    mean: Vec<f32>,
    var: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    argmax: Vec<u32>,
}

thread_local! {
    /// Per-thread planes: the normalised values (forward) or the dense gradient (backward) of
    /// the channels of one group.
    static PLANES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `max(v, v * slope)` as candle computes `v.maximum(&(v * slope)?)`.
#[inline(always)]
fn leaky(v: f32, slope: f32) -> f32 {
    let r = v * slope + 0.0;
    if v < r { r } else { v }
}

/// The gradient [`leaky_relu`](crate::leaky_relu) passes back for input `v` (see its backward op).
#[inline(always)]
fn leaky_grad(v: f32, slope: f32, g: f32) -> f32 {
    let r = v * slope + 0.0;
    let y = if v < r { r } else { v };
    let mask_x = if y == v { 1f32 } else { 0.0 };
    let mask_r = if y == r { 1f32 } else { 0.0 };
    let gx = (mask_x * g) / (mask_r * 1.0 + 1.0);
    let gr = 0.0 + (mask_r * g) / (mask_x * 1.0 + 1.0);
    (0.0 + gx) + (gr * slope + 0.0)
}

impl BatchNorm2d {
    /// `leaky_relu(max_pool2d(self.forward_t(xs, train), k, k), slope)`, fused on the CPU in
    /// training mode (the running statistics move as in [`BatchNorm2d::forward_t`]); elsewhere
    /// the three ops.
    pub fn forward_max_pool_leaky(&self, xs: &Tensor, k: usize, slope: f64, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = xs.dims4()?;
        if !(train && self.backend().use_fast(xs, "batch norm")?) {
            let ys = crate::pool::max_pool2d_with(&self.forward_t(xs, train)?, k, k, self.backend())?;
            return crate::activation::leaky_relu_with(&ys, slope, self.backend());
        }
        if c != self.weight().dim(0)? {
            candle_core::bail!("batch norm over {} channels got {:?}", self.weight().dim(0)?, xs.dims());
        }
        if n * h * w < 2 {
            candle_core::bail!("batch norm in training needs more than one value per channel, got {:?}", xs.dims());
        }
        pool::check_pool(h, w, k, k)?;
        let recorded = SideChannel::default();
        let op = BnPoolLeaky { k, slope, recorded: recorded.clone() };
        let ys = xs.contiguous()?.apply_op3(&self.weight().contiguous()?, &self.bias().contiguous()?, op)?;
        let r = recorded.recorded("batch norm statistics")?;
        let mean = Tensor::from_vec(r.mean.clone(), c, xs.device())?;
        let var = Tensor::from_vec(r.var.clone(), c, xs.device())?;
        self.update_running_stats(mean, var, n * h * w)?;
        Ok(ys)
    }
}

/// The forward op: `(x, weight, bias) -> leaky(pool(bn(x)))`.
struct BnPoolLeaky {
    k: usize,
    slope: f64,
    recorded: SideChannel<Recorded>,
}

impl CustomOp3 for BnPoolLeaky {
    fn name(&self) -> &'static str {
        "adapt-batch-norm-max-pool-leaky-relu"
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
        let (n, c, h, w) = lx.shape().dims4()?;
        let x = f32_slice(sx, lx, "batch norm input")?;
        let weight = f32_slice(sw, lw, "batch norm weight")?;
        let bias = f32_slice(sb, lb, "batch norm bias")?;
        let (hw, k) = (h * w, self.k);
        let (ph, pw) = (pool_out(h, k, k), pool_out(w, k, k));
        let q = ph * pw;
        let mut y = vec![0f32; n * c * q];
        let mut r = Recorded {
            mean: vec![0f32; c],
            var: vec![0f32; c],
            scale: vec![0f32; c],
            shift: vec![0f32; c],
            argmax: vec![0u32; n * c * q],
        };
        let ptrs = (
            SendPtr::new(&mut y),
            SendPtr::new(&mut r.argmax),
            [
                SendPtr::new(&mut r.mean),
                SendPtr::new(&mut r.var),
                SendPtr::new(&mut r.scale),
                SendPtr::new(&mut r.shift),
            ],
        );
        let slope = self.slope as f32;
        let group = |c0: usize, g: usize, mu: &[f64], sq: &[f64]| {
            let (yp, ap, [mp, vp, sp, tp]) = ptrs;
            PLANES.with_borrow_mut(|plane| {
                if plane.len() < hw {
                    plane.resize(hw, 0.0);
                }
                let plane = &mut plane[..hw];
                for kk in 0..g {
                    let ch = c0 + kk;
                    let (scale, shift) = scale_shift(weight[ch], bias[ch], mu[kk], sq[kk]);
                    for i in 0..n {
                        for (o, &v) in plane.iter_mut().zip(&x[(i * c + ch) * hw..][..hw]) {
                            *o = v * scale + shift;
                        }
                        // SAFETY: channel `ch` belongs to this group alone, which owns the
                        // pooled planes (i, ch) of y and the argmax and entry ch of the stats.
                        let (out, arg) =
                            unsafe { (yp.slice_mut((i * c + ch) * q, q), ap.slice_mut((i * c + ch) * q, q)) };
                        pool::pool_plane(plane, h, w, k, k, out, arg);
                        for o in out.iter_mut() {
                            *o = leaky(*o, slope);
                        }
                    }
                    // SAFETY: as above.
                    unsafe {
                        mp.write(ch, mu[kk] as f32);
                        vp.write(ch, sq[kk] as f32);
                        sp.write(ch, scale);
                        tp.write(ch, shift);
                    }
                }
            });
        };
        let stats = |c0: usize, mu: &[f64], sq: &[f64]| group(c0, mu.len(), mu, sq);
        profile::timed(Kernel::BatchNormForward, || {
            per_group(
                c,
                |c0| {
                    let (mu, sq) = mean_var::<GROUP>(x, (n, c, hw), c0);
                    stats(c0, &mu, &sq)
                },
                |ch| {
                    let (mu, sq) = mean_var::<1>(x, (n, c, hw), ch);
                    stats(ch, &mu, &sq)
                },
            )
        });
        self.recorded.record(r);
        Ok((CpuStorage::F32(y), Shape::from((n, c, ph, pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need = [x.track_op(), weight.track_op(), bias.track_op()];
        if !need.iter().any(|&b| b) {
            return Ok((None, None, None));
        }
        let op =
            BnPoolLeakyBackward { k: self.k, slope: self.slope, need_dx: need[0], recorded: self.recorded.clone() };
        let packed = x.apply_op3_no_bwd(&weight.detach(), &grad_res.contiguous()?, &op)?;
        // The kernel computes both parameter gradients in the same pass, wanted or not.
        let [dx, dw, db] = unpack_grads(&packed, [x, weight, bias], [need[0], true, true])?;
        Ok((dx, dw.filter(|_| need[1]), db.filter(|_| need[2])))
    }
}

/// What the backward pass of one group of channels reads and writes.
struct BackwardGroup<'a> {
    x: &'a [f32],
    gy: &'a [f32],
    weight: &'a [f32],
    r: &'a Recorded,
    /// `(n, c, h * w, pooled h * w)`.
    dims: (usize, usize, usize, usize),
    m: f64,
    slope: f32,
    /// `[dx (xn values) | dweight | dbias]`.
    out: SendPtr<f32>,
    xn: usize,
    need_dx: bool,
}

impl BackwardGroup<'_> {
    /// The dense gradient of the BatchNorm's output for plane (i, ch): what the pool's backward
    /// pass scatters (`0 + g`) of what the LeakyReLU's passes back.
    #[inline(always)]
    fn dense(&self, plane: &mut [f32], i: usize, ch: usize) {
        let (_, c, hw, q) = self.dims;
        plane.fill(0.0);
        let at = (i * c + ch) * q;
        let (scale, shift) = (self.r.scale[ch], self.r.shift[ch]);
        for (&g, &a) in self.gy[at..at + q].iter().zip(&self.r.argmax[at..at + q]) {
            let v = self.x[(i * c + ch) * hw + a as usize] * scale + shift;
            plane[a as usize] += leaky_grad(v, self.slope, g);
        }
    }

    /// The BatchNorm backward of the `G` channels from `c0` on their dense gradients: its two
    /// sums (one f64 chain each per channel, images then plane), the parameter gradients, `dx`.
    #[inline(always)]
    fn group<const G: usize>(&self, c0: usize) {
        let (n, c, hw, _) = self.dims;
        PLANES.with_borrow_mut(|planes| {
            if planes.len() < G * hw {
                planes.resize(G * hw, 0.0);
            }
            let planes = &mut planes[..G * hw];
            let mu: [f32; G] = std::array::from_fn(|k| self.r.mean[c0 + k]);
            let mut sums = GradSums::<G>::new();
            for i in 0..n {
                for (k, plane) in planes.chunks_exact_mut(hw).enumerate() {
                    self.dense(plane, i, c0 + k);
                }
                let dy: [&[f32]; G] = std::array::from_fn(|k| &planes[k * hw..][..hw]);
                let x: [&[f32]; G] = std::array::from_fn(|k| &self.x[(i * c + c0 + k) * hw..][..hw]);
                sums.add(dy, x, &mu, hw);
            }
            for (k, &mean) in mu.iter().enumerate() {
                let ch = c0 + k;
                let grad = sums.channel(k, self.weight[ch], mean, self.r.var[ch], self.m);
                // SAFETY: channel `ch` belongs to this group alone, which owns the planes (i, ch)
                // of dx and entries ch of dweight and dbias.
                unsafe {
                    self.out.write(self.xn + ch, grad.dweight);
                    self.out.write(self.xn + c + ch, grad.dbias);
                }
                if self.need_dx {
                    let plane = &mut planes[..hw];
                    for i in 0..n {
                        self.dense(plane, i, ch);
                        let at = (i * c + ch) * hw;
                        // SAFETY: as above.
                        let d = unsafe { self.out.slice_mut(at, hw) };
                        grad.input_grad(d, plane, &self.x[at..][..hw]);
                    }
                }
            }
        });
    }
}

/// The backward op: `(x, weight, grad_y) -> [dx | dweight | dbias]` (dx only when asked for).
struct BnPoolLeakyBackward {
    k: usize,
    slope: f64,
    need_dx: bool,
    recorded: SideChannel<Recorded>,
}

impl CustomOp3 for BnPoolLeakyBackward {
    fn name(&self) -> &'static str {
        "adapt-batch-norm-max-pool-leaky-relu-backward"
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
        let (n, c, h, w) = lx.shape().dims4()?;
        let x = f32_slice(sx, lx, "batch norm backward input")?;
        let weight = f32_slice(sw, lw, "batch norm backward weight")?;
        let gy = f32_slice(sg, lg, "batch norm backward gradient")?;
        let r = self.recorded.recorded("batch norm backward statistics")?;
        let (hw, k) = (h * w, self.k);
        let q = pool_out(h, k, k) * pool_out(w, k, k);
        if gy.len() != n * c * q || r.argmax.len() != gy.len() || weight.len() != c {
            candle_core::bail!("batch norm backward: shapes do not match the input {:?}", lx.shape());
        }
        let (m, slope) = ((n * hw) as f64, self.slope as f32);
        let xn = if self.need_dx { x.len() } else { 0 };
        let mut out = vec![0f32; xn + 2 * c];
        let op = SendPtr::new(&mut out);
        let ctx = BackwardGroup { x, gy, weight, r, dims: (n, c, hw, q), m, slope, out: op, xn, need_dx: self.need_dx };
        profile::timed(Kernel::BatchNormBackward, || {
            per_group(c, |c0| ctx.group::<GROUP>(c0), |ch| ctx.group::<1>(ch));
        });
        Ok(packed_grads([out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use candle_core::{DType, Device, Var};
    use candle_nn::{Init, VarBuilder, VarMap};

    fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
    }

    /// Output, input, weight and bias gradients and running statistics, as bits.
    fn run(dims: (usize, usize, usize, usize), k: usize, fused: bool, frozen: bool) -> Result<Vec<Vec<u32>>> {
        let dev = Device::Cpu;
        let mut vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
        let mut bn = BatchNorm2d::new(dims.1, Init::Const(1.0), Backend::Fast, vb)?;
        let seeded = |seed: u64, offset: f32| {
            let v = crate::test_util::values(dims.1, seed).into_iter().map(|v| v * 0.5 + offset).collect();
            Tensor::from_vec(v, dims.1, &dev)
        };
        vars.set_one("weight", seeded(1, 1.0)?)?;
        vars.set_one("bias", seeded(2, 0.0)?)?;
        if frozen {
            bn = bn.frozen();
        }
        let count = dims.0 * dims.1 * dims.2 * dims.3;
        let mut xv: Vec<f32> = crate::test_util::values(count, 7).into_iter().map(|v| v * 2.0 + 0.3).collect();
        // Ties inside windows, exact zeros.
        xv[1] = xv[0];
        xv[5] = 0.0;
        let x = Var::from_vec(xv, dims, &dev)?;
        let y = if fused {
            bn.forward_max_pool_leaky(x.as_tensor(), k, 0.2, true)?
        } else {
            let ys = crate::pool::max_pool2d_with(&bn.forward_t(x.as_tensor(), true)?, k, k, Backend::Fast)?;
            crate::activation::leaky_relu_with(&ys, 0.2, Backend::Fast)?
        };
        let r = Tensor::from_vec(crate::test_util::values(y.elem_count(), 8), y.shape(), &dev)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let mut out = vec![bits(&y)?, bits(grads.get(x.as_tensor()).expect("dx"))?];
        for t in [bn.weight(), bn.bias()] {
            out.push(grads.get(t).map_or(Ok(vec![]), bits)?);
        }
        out.push(bits(bn.running_mean())?);
        out.push(bits(bn.running_var())?);
        Ok(out)
    }

    #[test]
    fn fused_block_is_bit_identical_to_the_three_ops() -> Result<()> {
        for (dims, k) in [((3, 10, 8, 8), 2), ((2, 9, 4, 4), 4), ((4, 16, 6, 5), 2), ((5, 3, 3, 3), 3)] {
            for frozen in [false, true] {
                assert_eq!(run(dims, k, true, frozen)?, run(dims, k, false, frozen)?, "{dims:?} k {k} frozen {frozen}");
            }
        }
        Ok(())
    }

    #[test]
    fn evaluation_mode_runs_the_three_ops() -> Result<()> {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let bn =
            BatchNorm2d::new(4, Init::Const(1.0), Backend::Fast, VarBuilder::from_varmap(&vars, DType::F32, &dev))?;
        let x = Tensor::from_vec(crate::test_util::values(2 * 4 * 4 * 4, 3), (2, 4, 4, 4), &dev)?;
        let fused = bn.forward_max_pool_leaky(&x, 2, 0.2, false)?;
        let plain = crate::activation::leaky_relu(&crate::pool::max_pool2d(&bn.forward_t(&x, false)?, 2, 2)?, 0.2)?;
        assert_eq!(bits(&fused)?, bits(&plain)?);
        Ok(())
    }
}
