//! Spatial BatchNorm with a fused CPU kernel.
//!
//! Built from candle ops, a training-mode BatchNorm is about ten passes over the activations
//! forward and more backward, and candle's reductions over the strided `(N, H, W)` dimensions took
//! a third of a training step in a network of small convolutions. On the CPU (f32) the training
//! forward pass here is one custom op, parallel over channels: the channel's mean and (biased)
//! variance in two passes with f64 sums, then `y = (x - mean) * weight / sqrt(var + eps) + bias`;
//! the backward op computes all three gradients in two passes per channel with the standard formula
//! `dx = weight / sqrt(var + eps) / M * (M dy - sum(dy) - xhat sum(dy xhat))`. Elsewhere the same
//! maths runs as candle ops.
use crate::backend::Backend;
use crate::bn_stats::{EPS, GROUP, GradSums, mean_var, per_group, scale_shift};
use crate::glue::{SendPtr, SideChannel, f32_slice, packed_grads, unpack_grads};
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp3, Layout, ModuleT, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};

const MOMENTUM: f64 = 0.1;

/// Spatial BatchNorm over `[N, C, H, W]` with PyTorch's semantics: training normalises with the
/// batch statistics (biased variance) and moves the running statistics by momentum 0.1 (unbiased
/// variance); evaluation uses the running statistics.
///
/// candle-nn's `BatchNorm` would do, but it cannot run with detached (frozen) weights, it always
/// initialises the weights to 1, and it is slow on the CPU.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    backend: Backend,
}

impl BatchNorm2d {
    /// Parameters `weight` (drawn from `weight_init`; PyTorch's default is `Init::Const(1.0)`)
    /// and `bias` (zeros), and buffers `running_mean`, `running_var` (PyTorch's names, by which
    /// a store can tell the buffers from the trainable parameters) under `vb`.
    pub fn new(channels: usize, weight_init: Init, backend: Backend, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", weight_init)?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        // `Var::from_tensor` of a variable shares its storage: updates land in the store.
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(Self { weight, bias, running_mean, running_var, backend })
    }

    /// A copy with detached weight and bias (same storage, same running statistics).
    pub fn frozen(&self) -> Self {
        Self { weight: self.weight.detach(), bias: self.bias.detach(), ..self.clone() }
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// Training mode: the normalised output and the batch's per-channel mean and biased variance.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Moves the running statistics towards a batch's `mean` and biased `var` over `count`
    /// values per channel, as PyTorch does (momentum 0.1, unbiased variance).
    pub(crate) fn update_running_stats(&self, mean: Tensor, var: Tensor, count: usize) -> Result<()> {
        let unbiased = count as f64 / (count - 1) as f64;
        let rm = ((self.running_mean.as_tensor() * (1.0 - MOMENTUM))? + (mean * MOMENTUM)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - MOMENTUM))? + (var * (MOMENTUM * unbiased))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }

    fn forward_train(&self, xs: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let c = xs.dim(1)?;
        if self.backend.use_fast(xs, "batch norm")? {
            let stats = SideChannel::default();
            let op = BatchNormOp { stats: stats.clone() };
            let ys = xs.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)?;
            let (mean, var) = stats.recorded("batch norm statistics")?;
            let mean = Tensor::from_vec(mean.clone(), c, xs.device())?;
            let var = Tensor::from_vec(var.clone(), c, xs.device())?;
            return Ok((ys, mean, var));
        }
        let shape = (1, c, 1, 1);
        let mean = xs.mean_keepdim((0, 2, 3))?;
        let centred = xs.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
        let scale = (&var + EPS)?.sqrt()?.recip()?.broadcast_mul(&self.weight.reshape(shape)?)?;
        let ys = centred.broadcast_mul(&scale)?.broadcast_add(&self.bias.reshape(shape)?)?;
        Ok((ys, mean.detach().flatten_all()?, var.detach().flatten_all()?))
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = xs.dims4()?;
        if c != self.weight.dim(0)? {
            candle_core::bail!("batch norm over {} channels got {:?}", self.weight.dim(0)?, xs.dims());
        }
        if train {
            let count = n * h * w;
            if count < 2 {
                candle_core::bail!("batch norm in training needs more than one value per channel, got {:?}", xs.dims());
            }
            let (ys, mean, var) = self.forward_train(xs)?;
            self.update_running_stats(mean, var, count)?;
            Ok(ys)
        } else {
            let shape = (1, c, 1, 1);
            let mean = self.running_mean.as_detached_tensor().reshape(shape)?;
            let var = self.running_var.as_detached_tensor().reshape(shape)?;
            let scale = (var + EPS)?.sqrt()?.recip()?.broadcast_mul(&self.weight.reshape(shape)?)?;
            xs.broadcast_sub(&mean)?.broadcast_mul(&scale)?.broadcast_add(&self.bias.reshape(shape)?)
        }
    }
}

/// What the forward pass of one group of channels reads and writes.
struct Forward<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    dims: (usize, usize, usize),
    y: SendPtr<f32>,
    mean: SendPtr<f32>,
    var: SendPtr<f32>,
}

impl Forward<'_> {
    /// Mean and biased variance (two passes, f64 sums), then `y = x * scale + shift`, for the `G`
    /// channels from `c0`.
    #[inline(always)]
    fn group<const G: usize>(&self, c0: usize) {
        let (n, c, hw) = self.dims;
        let (mu, sq) = mean_var::<G>(self.x, self.dims, c0);
        for k in 0..G {
            let ch = c0 + k;
            let (scale, shift) = scale_shift(self.weight[ch], self.bias[ch], mu[k], sq[k]);
            for i in 0..n {
                // SAFETY: channel `ch` belongs to this group alone, which owns the planes (i, ch)
                // of y and entry ch of mean and var.
                let out = unsafe { self.y.slice_mut((i * c + ch) * hw, hw) };
                for (o, &v) in out.iter_mut().zip(&self.x[(i * c + ch) * hw..][..hw]) {
                    *o = v * scale + shift;
                }
            }
            // SAFETY: as above.
            unsafe {
                self.mean.write(ch, mu[k] as f32);
                self.var.write(ch, sq[k] as f32);
            }
        }
    }
}

/// Forward op: `(x, weight, bias) -> y`; the batch mean and biased variance go to `stats`.
struct BatchNormOp {
    stats: SideChannel<(Vec<f32>, Vec<f32>)>,
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "adapt-batch-norm2d"
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
        let hw = h * w;
        let mut y = vec![0f32; x.len()];
        let mut mean = vec![0f32; c];
        let mut var = vec![0f32; c];
        let (yp, mp, vp) = (SendPtr::new(&mut y), SendPtr::new(&mut mean), SendPtr::new(&mut var));
        let fwd = Forward { x, weight, bias, dims: (n, c, hw), y: yp, mean: mp, var: vp };
        profile::timed(Kernel::BatchNormForward, || per_group(c, |c0| fwd.group::<GROUP>(c0), |ch| fwd.group::<1>(ch)));
        self.stats.record((mean, var));
        Ok((CpuStorage::F32(y), lx.shape().clone()))
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
        let (mean, var) = self.stats.recorded("batch norm backward statistics")?;
        let c = weight.elem_count();
        let stats = Tensor::from_vec([mean.as_slice(), var.as_slice()].concat(), 2 * c, x.device())?;
        // The backward op sees (x, weight with the statistics appended, dy) and returns
        // [dx | dweight | dbias] flattened.
        let packed = x.apply_op3_no_bwd(
            &Tensor::cat(&[weight.detach(), stats], 0)?,
            &grad_res.contiguous()?,
            &BatchNormBackward { need_dx: need[0] },
        )?;
        // The kernel computes both parameter gradients in the same pass, wanted or not.
        let [dx, dw, db] = unpack_grads(&packed, [x, weight, bias], [need[0], true, true])?;
        Ok((dx, dw.filter(|_| need[1]), db.filter(|_| need[2])))
    }
}

/// What the backward pass of one group of channels reads and writes.
struct Backward<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    weight: &'a [f32],
    mean: &'a [f32],
    var: &'a [f32],
    dims: (usize, usize, usize),
    m: f64,
    /// `[dx (xn values) | dweight | dbias]`.
    out: SendPtr<f32>,
    xn: usize,
    need_dx: bool,
}

impl Backward<'_> {
    /// `sum(dy)` and `sum(dy xhat)` (one f64 chain each per channel, over the images and then
    /// the plane), the parameter gradients, then `dx`, for the `G` channels from `c0`.
    #[inline(always)]
    fn group<const G: usize>(&self, c0: usize) {
        let (n, c, hw) = self.dims;
        let at = |i: usize, k: usize| (i * c + c0 + k) * hw;
        let mu: [f32; G] = std::array::from_fn(|k| self.mean[c0 + k]);
        let mut sums = GradSums::<G>::new();
        for i in 0..n {
            let dy: [&[f32]; G] = std::array::from_fn(|k| &self.dy[at(i, k)..][..hw]);
            let x: [&[f32]; G] = std::array::from_fn(|k| &self.x[at(i, k)..][..hw]);
            sums.add(dy, x, &mu, hw);
        }
        for (k, &mean) in mu.iter().enumerate() {
            let ch = c0 + k;
            let grad = sums.channel(k, self.weight[ch], mean, self.var[ch], self.m);
            // SAFETY: channel `ch` belongs to this group alone, which owns the planes (i, ch) of
            // dx and entries ch of dweight and dbias.
            unsafe {
                self.out.write(self.xn + ch, grad.dweight);
                self.out.write(self.xn + c + ch, grad.dbias);
            }
            if self.need_dx {
                for i in 0..n {
                    let at = (i * c + ch) * hw;
                    // SAFETY: as above.
                    let d = unsafe { self.out.slice_mut(at, hw) };
                    grad.input_grad(d, &self.dy[at..][..hw], &self.x[at..][..hw]);
                }
            }
        }
    }
}

/// Backward op: `(x, [weight | mean | var], dy) -> [dx | dweight | dbias]`.
struct BatchNormBackward {
    need_dx: bool,
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "adapt-batch-norm2d-backward"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = lx.shape().dims4()?;
        let x = f32_slice(sx, lx, "batch norm backward input")?;
        let params = f32_slice(sp, lp, "batch norm backward parameters")?;
        let dy = f32_slice(sg, lg, "batch norm backward gradient")?;
        if params.len() != 3 * c || dy.len() != x.len() {
            candle_core::bail!("batch norm backward: shapes do not match the input {:?}", lx.shape());
        }
        let (weight, mean, var) = (&params[..c], &params[c..2 * c], &params[2 * c..]);
        let hw = h * w;
        let m = (n * hw) as f64;
        let xn = if self.need_dx { x.len() } else { 0 };
        let mut out = vec![0f32; xn + 2 * c];
        let op = SendPtr::new(&mut out);
        let bwd = Backward { x, dy, weight, mean, var, dims: (n, c, hw), m, out: op, xn, need_dx: self.need_dx };
        profile::timed(Kernel::BatchNormBackward, || {
            per_group(c, |c0| bwd.group::<GROUP>(c0), |ch| bwd.group::<1>(ch))
        });
        Ok(packed_grads([out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, values};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// [`values`] times `scale` plus `offset`, shaped `dims`.
    fn seeded(dims: (usize, usize, usize, usize), seed: u64, scale: f32, offset: f32) -> Result<Tensor> {
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let v: Vec<f32> = values(n, seed).into_iter().map(|v| v * scale + offset).collect();
        Tensor::from_vec(v, dims, &Device::Cpu)
    }

    /// A layer over `channels` with seeded weights around 1 and biases around 0, and the store
    /// that holds them (a `VarMap` alone would draw them from candle's unseeded generator).
    fn layer(channels: usize, backend: Backend, seed: u64) -> Result<(BatchNorm2d, VarMap)> {
        let mut vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let bn = BatchNorm2d::new(channels, Init::Const(1.0), backend, vb)?;
        let seeded_1d = |seed: u64, scale: f32, offset: f32| {
            Tensor::from_vec(
                values(channels, seed).into_iter().map(|v| v * scale + offset).collect(),
                channels,
                &Device::Cpu,
            )
        };
        vars.set_one("weight", seeded_1d(seed + 2, 0.5, 1.0)?)?;
        vars.set_one("bias", seeded_1d(seed + 3, 0.3, 0.0)?)?;
        Ok((bn, vars))
    }

    fn stored(vars: &VarMap, name: &str) -> Result<Vec<f32>> {
        let data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
        match data.get(name) {
            Some(v) => v.as_tensor().to_vec1(),
            None => candle_core::bail!("no variable {name}"),
        }
    }

    /// Output, gradients of `sum(y * r)` (x, weight, bias) and running statistics.
    fn run(dims: (usize, usize, usize, usize), backend: Backend, seed: u64) -> Result<Vec<Vec<f32>>> {
        let (bn, _vars) = layer(dims.1, backend, seed)?;
        // Offset and scaled inputs: the statistics must do real work.
        let x = Var::from_tensor(&seeded(dims, seed, 3.0, 1.5)?)?;
        let r = seeded(dims, seed + 1, 1.0, 0.0)?;
        let y = bn.forward_t(x.as_tensor(), true)?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let out = vec![
            flat(&y)?,
            flat(g.get(x.as_tensor()).expect("dx"))?,
            flat(g.get(&bn.weight).expect("dweight"))?,
            flat(g.get(&bn.bias).expect("dbias"))?,
            flat(bn.running_mean())?,
            flat(bn.running_var())?,
        ];
        // Frozen: no parameter gradients, the input gradient still flows.
        let y = bn.frozen().forward_t(x.as_tensor(), true)?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        assert!(g.get(&bn.weight).is_none() && g.get(x.as_tensor()).is_some());
        Ok(out)
    }

    #[test]
    fn fast_kernel_matches_candle_ops() -> Result<()> {
        for (i, dims) in [(3, 4, 5, 7), (1, 2, 3, 3), (5, 3, 1, 1), (2, 6, 8, 8)].into_iter().enumerate() {
            let fast = run(dims, Backend::Fast, 10 * i as u64)?;
            let slow = run(dims, Backend::Candle, 10 * i as u64)?;
            for (k, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert_close(a, b, 1e-4, &format!("{dims:?} output {k}"));
            }
        }
        Ok(())
    }

    #[test]
    fn training_normalises_with_the_batch_and_moves_the_running_statistics() -> Result<()> {
        // Training mode normalises with the batch statistics and moves the running ones like
        // PyTorch (momentum 0.1, unbiased variance); evaluation uses the running ones.
        let (bn, vars) = layer(2, Backend::Auto, 0)?;
        let x = seeded((4, 2, 5, 5), 5, 3.0, 2.0)?;
        let y = bn.forward_t(&x, true)?;
        let (w, b) = (stored(&vars, "weight")?, stored(&vars, "bias")?);
        for c in 0..2 {
            let xc = x.narrow(1, c, 1)?.flatten_all()?.to_vec1::<f32>()?;
            let yc = y.narrow(1, c, 1)?.flatten_all()?.to_vec1::<f32>()?;
            let n = xc.len() as f32;
            let mean = xc.iter().sum::<f32>() / n;
            let var = xc.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            for (a, y) in xc.iter().zip(&yc) {
                assert!(((a - mean) / (var + 1e-5).sqrt() * w[c] + b[c] - y).abs() < 1e-4);
            }
            let rm = bn.running_mean().to_vec1::<f32>()?[c];
            let rv = bn.running_var().to_vec1::<f32>()?[c];
            assert!((rm - 0.1 * mean).abs() < 1e-4, "running mean {rm} vs {}", 0.1 * mean);
            assert!((rv - (0.9 + 0.1 * var * n / (n - 1.0))).abs() < 1e-3, "running var {rv}");
        }
        // The store holds the updated statistics; evaluation leaves them alone.
        let before = stored(&vars, "running_mean")?;
        assert_eq!(before, bn.running_mean().to_vec1::<f32>()?);
        bn.forward_t(&x, false)?;
        assert_eq!(before, bn.running_mean().to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn input_gradient_skipped_for_constant_inputs() -> Result<()> {
        let (bn, _vars) = layer(3, Backend::Fast, 0)?;
        let x = seeded((2, 3, 4, 4), 0, 1.0, 0.0)?;
        let g = bn.forward_t(&x, true)?.sqr()?.sum_all()?.backward()?;
        assert!(g.get(&x).is_none() && g.get(&bn.weight).is_some());
        // One value per channel has no variance to normalise by.
        assert!(bn.forward_t(&seeded((1, 3, 1, 1), 0, 1.0, 0.0)?, true).is_err());
        Ok(())
    }
}
