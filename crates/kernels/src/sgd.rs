//! In-place SGD with momentum (PyTorch's `torch.optim.SGD` update) as candle in-place ops.
//!
//! The tensor-op version of the update allocates four or five parameter-sized tensors per
//! variable and step and walks them single-threaded; on a network of 28M parameters that costs
//! more than its whole convolution forward pass. Here the velocity and the parameter are updated
//! in place, in two parallel passes and without allocation.
use crate::backend::generic_forced;
use crate::glue::{f32_slice, f32_slice_mut};
use crate::profile::{Kernel, Timer};
use candle_core::{CpuStorage, DType, Device, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

/// Settings of one update, with PyTorch's meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

const CHUNK: usize = 1 << 15;

/// `v = momentum * v + (g + weight_decay * p)` in place on `v`; sources `(g, p)`.
struct VelocityOp(SgdStep);

impl InplaceOp3 for VelocityOp {
    fn name(&self) -> &'static str {
        "adapt-sgd-velocity"
    }

    fn cpu_fwd(
        &self,
        sv: &mut CpuStorage,
        lv: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
        sp: &CpuStorage,
        lp: &Layout,
    ) -> Result<()> {
        let (m, wd) = (self.0.momentum as f32, self.0.weight_decay as f32);
        let v = f32_slice_mut(sv, lv, "sgd velocity")?;
        let (g, p) = (f32_slice(sg, lg, "sgd gradient")?, f32_slice(sp, lp, "sgd parameter")?);
        if g.len() != v.len() || p.len() != v.len() {
            candle_core::bail!("sgd: velocity, gradient and parameter sizes differ");
        }
        let _timer = Timer::start(Kernel::Optimizer);
        v.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(p.par_chunks(CHUNK)).for_each(|((v, g), p)| {
            for ((v, g), p) in v.iter_mut().zip(g).zip(p) {
                *v = m * *v + (g + wd * p);
            }
        });
        Ok(())
    }
}

/// `p -= lr * (nesterov ? (g + wd * p) + momentum * v : v)` in place on `p`; sources `(v, g)`.
struct ParamOp(SgdStep);

impl InplaceOp3 for ParamOp {
    fn name(&self) -> &'static str {
        "adapt-sgd-param"
    }

    fn cpu_fwd(
        &self,
        sp: &mut CpuStorage,
        lp: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> Result<()> {
        let s = self.0;
        let (lr, m, wd) = (s.lr as f32, s.momentum as f32, s.weight_decay as f32);
        let p = f32_slice_mut(sp, lp, "sgd parameter")?;
        let (v, g) = (f32_slice(sv, lv, "sgd velocity")?, f32_slice(sg, lg, "sgd gradient")?);
        if g.len() != p.len() || v.len() != p.len() {
            candle_core::bail!("sgd: velocity, gradient and parameter sizes differ");
        }
        let _timer = Timer::start(Kernel::Optimizer);
        p.par_chunks_mut(CHUNK).zip(v.par_chunks(CHUNK)).zip(g.par_chunks(CHUNK)).for_each(|((p, v), g)| {
            for ((p, v), g) in p.iter_mut().zip(v).zip(g) {
                let step = if s.nesterov { (g + wd * *p) + m * v } else { *v };
                *p -= lr * step;
            }
        });
        Ok(())
    }
}

/// One SGD update of `var` with gradient `grad` and momentum buffer `velocity` (None before the
/// first step: it is then created from the gradient, as PyTorch does).
///
/// f32 on the CPU: in place, parallel, no allocation after the first step. Elsewhere (and when
/// the generic path is [forced](crate::force_generic)): the same update with tensor ops and
/// `Var::set`. The velocity never holds a graph.
pub fn sgd_momentum_update(var: &Var, velocity: &mut Option<Tensor>, grad: &Tensor, s: SgdStep) -> Result<()> {
    if grad.shape() != var.shape() {
        candle_core::bail!("sgd: gradient shape {:?} does not match the variable's {:?}", grad.shape(), var.shape());
    }
    let p = var.as_tensor();
    let fast = matches!(p.device(), Device::Cpu) && p.dtype() == DType::F32 && p.is_contiguous() && !generic_forced();
    if !fast {
        let mut g = grad.detach();
        if s.weight_decay != 0.0 {
            g = (g + (p.detach() * s.weight_decay)?)?;
        }
        let update = if s.momentum == 0.0 {
            g
        } else {
            let v = match velocity.take() {
                Some(v) => ((v * s.momentum)? + &g)?,
                None => g.clone(),
            };
            let u = if s.nesterov { (&g + (&v * s.momentum)?)? } else { v.clone() };
            *velocity = Some(v.detach());
            u
        };
        return var.set(&(p.detach() - (update * s.lr)?)?);
    }
    let grad = grad.detach().contiguous()?;
    // The first step starts from v = 0 (then v = g + wd * p); momentum 0 keeps a scratch buffer.
    let fresh = velocity.is_none();
    let v = match velocity.take() {
        Some(v) if v.is_contiguous() && v.shape() == p.shape() => v,
        Some(_) => candle_core::bail!("sgd: velocity buffer must be contiguous and shaped like the variable"),
        None => Tensor::zeros(p.shape(), DType::F32, p.device())?,
    };
    // Momentum 0 (or the first step): v = 0 * v + g, the plain gradient step.
    let vs = SgdStep { momentum: if fresh { 0.0 } else { s.momentum }, ..s };
    v.inplace_op3(&grad, p, &VelocityOp(vs))?;
    p.inplace_op3(&v, &grad, &ParamOp(s))?;
    *velocity = if s.momentum == 0.0 { None } else { Some(v) };
    Ok(())
}
