//! Gradient reversal for candle (Ganin & Lempitsky, 2015).
//!
//! The gradient reversal layer (GRL) is the identity in the forward pass and multiplies the
//! gradient flowing back through it by `-lambda`. Put it between a feature extractor and a domain
//! classifier: the classifier learns to tell the domains apart while the features below it learn to
//! make that impossible.
//!
//! It is a candle custom op whose forward pass is a plain strided copy written against candle's
//! backend traits, so it runs on every backend (CPU, CUDA, Metal) and its output is bit-identical
//! to its input. The backward pass is `grad * -lambda`, an ordinary tensor op.
//!
//! # Adding it to your own model
//!
//! ```
//! use adapt_grl::{lambda_schedule, GradientReversal};
//! use candle_core::{Device, Module, Tensor, Var};
//!
//! # fn main() -> candle_core::Result<()> {
//! let features = Var::new(&[[0.5f32, -1.0], [2.0, 3.0]], &Device::Cpu)?;
//! let lambda = lambda_schedule(0.25, 10.0); // p = training progress in [0, 1]
//! let grl = GradientReversal::new(lambda);
//! let domain_logits = grl.forward(features.as_tensor())?; // then your domain classifier
//! let grads = domain_logits.sum_all()?.backward()?;
//! let g = grads.get(features.as_tensor()).unwrap().to_vec2::<f32>()?;
//! assert!((g[0][0] + lambda as f32).abs() < 1e-6); // d(sum)/dx = 1, reversed and scaled
//! # Ok(())
//! # }
//! ```
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, MetalStorage, Module, Result, Shape, Tensor};

/// The custom op behind [`grad_reverse`]. `lambda` only matters in the backward pass.
#[derive(Debug, Clone, Copy)]
struct GradReverseOp {
    lambda: f64,
}

/// Copies the tensor described by `layout` into fresh contiguous storage on the same device.
///
/// Written once against candle's backend traits so the forward pass needs no per-backend kernel.
fn strided_copy<S>(storage: &S, layout: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let shape = layout.shape().clone();
    // SAFETY: `copy_strided_src` below writes every one of the `shape.elem_count()` elements.
    let mut out = unsafe { storage.device().alloc_uninit(&shape, storage.dtype())? };
    storage.copy_strided_src(&mut out, 0, layout)?;
    Ok((out, shape))
}

impl CustomOp1 for GradReverseOp {
    fn name(&self) -> &'static str {
        "grad-reverse"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        strided_copy(storage, layout)
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        strided_copy(storage, layout)
    }

    fn metal_fwd(&self, storage: &MetalStorage, layout: &Layout) -> Result<(MetalStorage, Shape)> {
        strided_copy(storage, layout)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.affine(-self.lambda, 0.0)?))
    }
}

/// Identity in the forward pass; multiplies the incoming gradient by `-lambda` in the backward pass.
///
/// `lambda = 0` blocks the gradient entirely (it comes back as zeros). `lambda` must be finite.
pub fn grad_reverse(x: &Tensor, lambda: f64) -> Result<Tensor> {
    if !lambda.is_finite() {
        candle_core::bail!("grad_reverse: lambda must be finite, got {lambda}");
    }
    x.apply_op1(GradReverseOp { lambda })
}

/// The gradient reversal layer as a [`Module`], holding the current `lambda`.
///
/// Training loops usually build a new one per step from [`lambda_schedule`], or call
/// [`GradientReversal::set_lambda`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientReversal {
    lambda: f64,
}

impl GradientReversal {
    pub fn new(lambda: f64) -> Self {
        Self { lambda }
    }

    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    pub fn set_lambda(&mut self, lambda: f64) {
        self.lambda = lambda;
    }
}

impl Module for GradientReversal {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        grad_reverse(xs, self.lambda)
    }
}

/// The DANN paper's adaptation factor: `2 / (1 + exp(-gamma * p)) - 1`.
///
/// `p` is training progress from 0 to 1 (clamped); the paper uses `gamma = 10`. The factor rises
/// from 0 at the start, which keeps the noisy early domain signal away from the features, to
/// nearly 1 at the end.
pub fn lambda_schedule(p: f64, gamma: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    2.0 / (1.0 + (-gamma * p).exp()) - 1.0
}

/// The paper's default `gamma` for [`lambda_schedule`].
pub const PAPER_GAMMA: f64 = 10.0;

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn cpu() -> Device {
        Device::Cpu
    }

    #[test]
    fn forward_is_bit_identical_including_strided_inputs() -> Result<()> {
        let x = Tensor::randn(0f32, 3.0, (4, 5, 6), &cpu())?;
        let xs = [x.clone(), x.transpose(0, 2)?, x.narrow(1, 1, 3)?];
        for x in xs {
            let y = grad_reverse(&x, 0.7)?;
            assert_eq!(y.dims(), x.dims());
            let a: Vec<u32> = x.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = y.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b);
        }
        // Special values travel unchanged too.
        let x = Tensor::new(&[f32::NAN, -0.0, f32::INFINITY, 1e-40], &cpu())?;
        let y = grad_reverse(&x, 1.0)?.to_vec1::<f32>()?;
        assert!(y[0].is_nan());
        assert_eq!(y[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(y[2], f32::INFINITY);
        assert_eq!(y[3].to_bits(), 1e-40f32.to_bits());
        Ok(())
    }

    #[test]
    fn forward_keeps_dtype() -> Result<()> {
        for dtype in [DType::F32, DType::F64, DType::BF16, DType::F16] {
            let x = Tensor::arange(0f32, 12., &cpu())?.reshape((3, 4))?.to_dtype(dtype)?;
            let y = grad_reverse(&x, 0.5)?;
            assert_eq!(y.dtype(), dtype);
            assert_eq!(y.to_dtype(DType::F32)?.to_vec2::<f32>()?, x.to_dtype(DType::F32)?.to_vec2::<f32>()?);
        }
        Ok(())
    }

    /// Loss L(x) = sum(w * tanh(grl(x))^2). With the GRL the analytic gradient must be `-lambda`
    /// times the finite-difference gradient of the same loss without it (the GRL is the identity
    /// in value, so finite differences see no reversal). A wrong sign or scale fails this.
    #[test]
    fn gradient_is_minus_lambda_times_finite_difference() -> Result<()> {
        let dev = cpu();
        let x0: Vec<f64> = (0..12).map(|i| ((i as f64) * 0.37).sin() * 1.3).collect();
        let w: Vec<f64> = (0..12).map(|i| ((i as f64) * 1.7).cos()).collect();
        let w_t = Tensor::new(w.as_slice(), &dev)?;
        let loss = |x: &Tensor, lambda: Option<f64>| -> Result<Tensor> {
            let h = match lambda {
                Some(l) => grad_reverse(x, l)?,
                None => x.clone(),
            };
            (h.tanh()?.sqr()? * &w_t)?.sum_all()
        };
        for lambda in [1.0, 0.31, 2.5] {
            let x = Var::new(x0.as_slice(), &dev)?;
            let grads = loss(x.as_tensor(), Some(lambda))?.backward()?;
            let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f64>()?;
            let eps = 1e-6;
            for i in 0..x0.len() {
                let mut xp = x0.clone();
                let mut xm = x0.clone();
                xp[i] += eps;
                xm[i] -= eps;
                let lp = loss(&Tensor::new(xp.as_slice(), &dev)?, None)?.to_scalar::<f64>()?;
                let lm = loss(&Tensor::new(xm.as_slice(), &dev)?, None)?.to_scalar::<f64>()?;
                let fd = (lp - lm) / (2.0 * eps);
                let expected = -lambda * fd;
                assert!(
                    (g[i] - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
                    "lambda {lambda}, element {i}: analytic {} vs -lambda * finite-difference {}",
                    g[i],
                    expected
                );
            }
        }
        Ok(())
    }

    #[test]
    fn gradient_equals_minus_lambda_upstream_exactly() -> Result<()> {
        let dev = cpu();
        let x = Var::new(&[[1f32, 2., 3.], [4., 5., 6.]], &dev)?;
        let upstream = Tensor::new(&[[0.5f32, -1., 2.], [0.25, 4., -8.]], &dev)?;
        let grads = (grad_reverse(x.as_tensor(), 0.5)? * &upstream)?.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).unwrap().to_vec2::<f32>()?;
        assert_eq!(g, vec![vec![-0.25, 0.5, -1.0], vec![-0.125, -2.0, 4.0]]);
        Ok(())
    }

    #[test]
    fn lambda_zero_blocks_the_gradient() -> Result<()> {
        let dev = cpu();
        let x = Var::new(&[1f32, -2., 3.], &dev)?;
        let grads = grad_reverse(x.as_tensor(), 0.0)?.sqr()?.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>()?;
        assert!(g.iter().all(|v| *v == 0.0), "{g:?}");
        Ok(())
    }

    #[test]
    fn module_reverses_only_its_own_branch() -> Result<()> {
        // features feed a direct head and a reversed head: the gradients add as 1 - lambda.
        let dev = cpu();
        let x = Var::new(&[2f32, 3.], &dev)?;
        let grl = GradientReversal::new(0.25);
        let y = (x.as_tensor().sum_all()? + grl.forward(x.as_tensor())?.sum_all()?)?;
        let g = y.backward()?.get(x.as_tensor()).unwrap().to_vec1::<f32>()?;
        assert_eq!(g, vec![0.75, 0.75]);
        Ok(())
    }

    #[test]
    fn non_finite_lambda_is_an_error() {
        let x = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        assert!(grad_reverse(&x, f64::NAN).is_err());
        assert!(grad_reverse(&x, f64::INFINITY).is_err());
    }

    #[test]
    fn schedule_endpoints_and_monotonicity() {
        assert_eq!(lambda_schedule(0.0, PAPER_GAMMA), 0.0);
        let end = lambda_schedule(1.0, PAPER_GAMMA);
        let exact = 2.0 / (1.0 + (-10f64).exp()) - 1.0;
        assert!((end - exact).abs() < 1e-15 && end > 0.9999 && end < 1.0);
        let mut prev = -1.0;
        for i in 0..=1000 {
            let v = lambda_schedule(i as f64 / 1000.0, PAPER_GAMMA);
            assert!(v > prev, "not increasing at step {i}");
            assert!((0.0..1.0).contains(&v));
            prev = v;
        }
        // Progress is clamped to [0, 1].
        assert_eq!(lambda_schedule(-3.0, PAPER_GAMMA), 0.0);
        assert_eq!(lambda_schedule(7.0, PAPER_GAMMA), end);
        // Half way with gamma 10: 2 / (1 + e^-5) - 1.
        assert!((lambda_schedule(0.5, 10.0) - (2.0 / (1.0 + (-5f64).exp()) - 1.0)).abs() < 1e-15);
    }
}
