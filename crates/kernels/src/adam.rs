//! One Adam update (PyTorch's `torch.optim.Adam` without weight decay) in a single parallel pass.
//!
//! Written as candle ops, an Adam update allocates and walks about a dozen parameter-sized tensors
//! per variable and step (the moments' decays and sums, the square, the square root, the bias
//! corrections, the division, the step and the parameter's copy); GTA runs four Adams, one per
//! network, every iteration. Here the parameter is updated in place and the new moments are
//! written in the same pass. Every element goes through the f32 operations of the candle
//! expression it replaces (`adapt_train`'s `Adam::step`), in the same order, scalar factors
//! rounded to f32 as candle's affine maps round them, so the results are bit-identical to it.
use crate::backend::generic_forced;
use crate::glue::{f32_slice_mut, with_cpu_f32};
use crate::profile::{Kernel, Timer};
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::sync::Mutex;

/// Settings of one update, with PyTorch's meaning; `t` counts the variable's updates from 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub t: i32,
}

const CHUNK: usize = 1 << 14;

/// Whether [`adam_update`] can run on these tensors (f32, contiguous, on the CPU), and the
/// generic path is not [forced](crate::force_generic): callers run the candle expression
/// otherwise.
pub fn adam_update_supported(var: &Var, grad: &Tensor, moments: [Option<&Tensor>; 2]) -> bool {
    !generic_forced() && adam_update_possible(var, grad, moments)
}

/// The tensors' part of [`adam_update_supported`].
fn adam_update_possible(var: &Var, grad: &Tensor, moments: [Option<&Tensor>; 2]) -> bool {
    let ok = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32 && t.is_contiguous();
    ok(var.as_tensor()) && ok(grad) && moments.into_iter().flatten().all(ok)
}

/// Updates `var` in place with gradient `grad` and returns the new first and second moments.
/// `m` and `v` are the previous moments, `None` before the variable's first update. Needs
/// [`adam_update_supported`] tensors.
///
/// Per element, as the candle expression: `m' = (m * b1 + 0) + (g * (1 - b1) + 0)` (or only the
/// second term at first), `v' = (v * b2 + 0) + (g * g * (1 - b2) + 0)`,
/// `p' = p - ((m' / ((sqrt(v') * (1 / c2) + 0) * 1 + eps)) * step + 0)` with
/// `step = lr / (1 - b1^t)` and `c2 = sqrt(1 - b2^t)`.
pub fn adam_update(
    var: &Var,
    m: Option<&Tensor>,
    v: Option<&Tensor>,
    grad: &Tensor,
    s: AdamStep,
) -> Result<(Tensor, Tensor)> {
    let p = var.as_tensor();
    if !adam_update_possible(var, grad, [m, v]) {
        candle_core::bail!("adam: the fused update needs contiguous f32 tensors on the CPU");
    }
    for (t, what) in [(Some(grad), "gradient"), (m, "first moment"), (v, "second moment")] {
        if let Some(t) = t
            && t.shape() != p.shape()
        {
            candle_core::bail!("adam: {what} shape {:?} does not match the variable's {:?}", t.shape(), p.shape());
        }
    }
    let op = AdamOp {
        step: s,
        grad: grad.detach(),
        m: m.map(Tensor::detach),
        v: v.map(Tensor::detach),
        moments: Mutex::new(None),
    };
    p.inplace_op1(&op)?;
    let (m, v) = op
        .moments
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or_else(|| candle_core::Error::msg("adam: the update wrote no moments"))?;
    Ok((Tensor::from_vec(m, p.shape(), p.device())?, Tensor::from_vec(v, p.shape(), p.device())?))
}

struct AdamOp {
    step: AdamStep,
    grad: Tensor,
    m: Option<Tensor>,
    v: Option<Tensor>,
    /// The new moments, written by the update.
    moments: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

/// The previous moment's data, or none.
fn with_moment<R>(t: Option<&Tensor>, what: &str, f: impl FnOnce(Option<&[f32]>) -> Result<R>) -> Result<R> {
    match t {
        Some(t) => with_cpu_f32(t, what, |s| f(Some(s))),
        None => f(None),
    }
}

impl InplaceOp1 for AdamOp {
    fn name(&self) -> &'static str {
        "adapt-adam"
    }

    fn cpu_fwd(&self, sp: &mut CpuStorage, lp: &Layout) -> Result<()> {
        let s = self.step;
        let p = f32_slice_mut(sp, lp, "adam parameter")?;
        // candle's affine maps round their factors to f32.
        let (b1, one_minus_b1) = (s.beta1 as f32, (1.0 - s.beta1) as f32);
        let (b2, one_minus_b2) = (s.beta2 as f32, (1.0 - s.beta2) as f32);
        let step = (s.lr / (1.0 - s.beta1.powi(s.t))) as f32;
        let inv_c2 = (1.0 / (1.0 - s.beta2.powi(s.t)).sqrt()) as f32;
        let eps = s.eps as f32;
        let _timer = Timer::start(Kernel::Optimizer);
        let (mut m_new, mut v_new) = (vec![0f32; p.len()], vec![0f32; p.len()]);
        with_cpu_f32(&self.grad, "adam gradient", |g| {
            with_moment(self.m.as_ref(), "adam first moment", |m| {
                with_moment(self.v.as_ref(), "adam second moment", |v| {
                    if g.len() != p.len()
                        || m.is_some_and(|m| m.len() != p.len())
                        || v.is_some_and(|v| v.len() != p.len())
                    {
                        candle_core::bail!("adam: parameter, gradient and moment sizes differ");
                    }
                    let chunks =
                        p.par_chunks_mut(CHUNK).zip(m_new.par_chunks_mut(CHUNK)).zip(v_new.par_chunks_mut(CHUNK));
                    chunks.enumerate().for_each(|(ci, ((p, m_out), v_out))| {
                        let at = ci * CHUNK;
                        let g = &g[at..at + p.len()];
                        for (i, (((p, mo), vo), &g)) in p.iter_mut().zip(m_out).zip(v_out).zip(g).enumerate() {
                            let mg = g * one_minus_b1 + 0.0;
                            let mn = match m {
                                Some(m) => (m[at + i] * b1 + 0.0) + mg,
                                None => mg,
                            };
                            let vg = (g * g) * one_minus_b2 + 0.0;
                            let vn = match v {
                                Some(v) => (v[at + i] * b2 + 0.0) + vg,
                                None => vg,
                            };
                            let denom = (vn.sqrt() * inv_c2 + 0.0) * 1.0 + eps;
                            *p -= (mn / denom) * step + 0.0;
                            *mo = mn;
                            *vo = vn;
                        }
                    });
                    Ok(())
                })
            })
        })?;
        *self.moments.lock().unwrap_or_else(|e| e.into_inner()) = Some((m_new, v_new));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The candle expression of `adapt_train`'s `Adam::step`, which the fused update reproduces.
    fn candle_adam(
        var: &Var,
        m: Option<&Tensor>,
        v: Option<&Tensor>,
        g: &Tensor,
        s: AdamStep,
    ) -> Result<(Tensor, Tensor)> {
        let m = match m {
            Some(m) => ((m * s.beta1)? + (g * (1.0 - s.beta1))?)?,
            None => (g * (1.0 - s.beta1))?,
        };
        let v = match v {
            Some(v) => ((v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?,
            None => (g.sqr()? * (1.0 - s.beta2))?,
        };
        let step_size = s.lr / (1.0 - s.beta1.powi(s.t));
        let denom = ((v.sqrt()? / (1.0 - s.beta2.powi(s.t)).sqrt())? + s.eps)?;
        var.set(&(var.as_tensor().detach() - ((&m / denom)? * step_size)?)?)?;
        Ok((m, v))
    }

    fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
    }

    #[test]
    fn fused_update_is_bit_identical_to_the_candle_expression() -> Result<()> {
        let n = 40_000; // several parallel chunks
        let dev = Device::Cpu;
        let init: Vec<f32> = crate::test_util::values(n, 1);
        let (fused, reference) = (Var::from_vec(init.clone(), n, &dev)?, Var::from_vec(init, n, &dev)?);
        type Moments = Option<(Tensor, Tensor)>;
        let (mut mv_fused, mut mv_ref): (Moments, Moments) = (None, None);
        for t in 1..=4 {
            let mut g: Vec<f32> = crate::test_util::values(n, 10 + t as u64).into_iter().map(|v| v * 1e-2).collect();
            g[..3].copy_from_slice(&[0.0, -0.0, 1e-30]);
            let g = Tensor::from_vec(g, n, &dev)?;
            let s = AdamStep { lr: 5e-4 / (1.0 + 1e-4 * t as f64), beta1: 0.8, beta2: 0.999, eps: 1e-8, t };
            let (m, v) = mv_fused.as_ref().map(|(m, v)| (Some(m), Some(v))).unwrap_or((None, None));
            mv_fused = Some(adam_update(&fused, m, v, &g, s)?);
            let (m, v) = mv_ref.as_ref().map(|(m, v)| (Some(m), Some(v))).unwrap_or((None, None));
            mv_ref = Some(candle_adam(&reference, m, v, &g, s)?);
            assert_eq!(bits(fused.as_tensor())?, bits(reference.as_tensor())?, "parameter after step {t}");
            let (a, b) = (mv_fused.as_ref().unwrap(), mv_ref.as_ref().unwrap());
            assert_eq!((bits(&a.0)?, bits(&a.1)?), (bits(&b.0)?, bits(&b.1)?), "moments after step {t}");
        }
        Ok(())
    }
}
