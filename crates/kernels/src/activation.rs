//! ReLU ([`relu`]) and LeakyReLU ([`leaky_relu`]) as single custom ops on the CPU, with exactly
//! the values and gradients of the candle expressions they replace.
//!
//! In candle, `xs.relu()` costs a forward pass and four backward ops (a comparison, a dtype
//! conversion, a product and the accumulation), and LeakyReLU written as
//! `xs.maximum(&(xs * slope)?)` two forward ops and about a dozen backward ones (two equality
//! masks, their conversions, two products, two divisions, the affine map and three gradient
//! accumulations), each a full pass over the activations with its own allocation. In GTA's
//! discriminator and generator these passes cost more than the BatchNorms next to them. Here each
//! is one pass forward and one backward, computing every element with the same f32 operations in
//! the same order as the candle expressions, so the results are bit-identical to them (and the
//! candle expressions remain the fallback on other devices and dtypes).
use crate::backend::Backend;
use crate::glue::f32_slice;
use crate::profile::{self, Kernel};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel job: big enough to amortise rayon's scheduling, small enough to split
/// the activations of one layer over the threads.
const CHUNK: usize = 1 << 14;

/// candle's `xs.relu()`: `max(x, 0)`, and a gradient that passes where `x >= 0` (candle's
/// convention, unlike PyTorch's `x > 0`).
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    relu_with(xs, Backend::Auto)
}

/// [`relu`] with an explicit [`Backend`].
pub fn relu_with(xs: &Tensor, backend: Backend) -> Result<Tensor> {
    if backend.use_fast(xs, "relu")? { xs.contiguous()?.apply_op1(Relu) } else { xs.relu() }
}

/// LeakyReLU as candle's `xs.maximum(&(xs * slope)?)`, with that expression's gradient (half of
/// it to each side where both are equal, that is at 0).
pub fn leaky_relu(xs: &Tensor, slope: f64) -> Result<Tensor> {
    leaky_relu_with(xs, slope, Backend::Auto)
}

/// [`leaky_relu`] with an explicit [`Backend`].
pub fn leaky_relu_with(xs: &Tensor, slope: f64, backend: Backend) -> Result<Tensor> {
    if backend.use_fast(xs, "leaky_relu")? {
        xs.contiguous()?.apply_op1(LeakyRelu { slope })
    } else {
        xs.maximum(&(xs * slope)?)
    }
}

/// `out[i] = f(a[i], b[i])` in parallel chunks.
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    profile::timed(Kernel::Activation, || {
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((o, a), b)| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = f(a, b);
            }
        });
        out
    })
}

fn map1(a: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    profile::timed(Kernel::Activation, || {
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, a)| {
            for (o, &a) in o.iter_mut().zip(a) {
                *o = f(a);
            }
        });
        out
    })
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "adapt-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "relu input")?;
        // candle's Relu on f32.
        Ok((CpuStorage::F32(map1(x, |v| v.max(0f32))), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &ReluBackward)?))
    }
}

/// `(x, g) -> g * (x >= 0)`: candle's `&grad * arg.ge(0)?.to_dtype(f32)?` (candle then adds it
/// to the zero-initialised gradient of `x`, as it would the original's).
struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "adapt-relu-backward"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sg: &CpuStorage, lg: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(sx, lx, "relu backward input")?;
        let g = f32_slice(sg, lg, "relu backward gradient")?;
        if g.len() != x.len() {
            candle_core::bail!("relu backward: {} gradients for {} inputs", g.len(), x.len());
        }
        let out = map2(x, g, |x, g| g * if x >= 0.0 { 1.0 } else { 0.0 });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }
}

struct LeakyRelu {
    slope: f64,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "adapt-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "leaky_relu input")?;
        let slope = self.slope as f32;
        // `xs * slope` is candle's affine map `x * slope + 0`; `maximum` keeps the left operand
        // unless it is smaller.
        let y = map1(x, |x| {
            let r = x * slope + 0.0;
            if x < r { r } else { x }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        let op = LeakyReluBackward { slope: self.slope, y: res.contiguous()? };
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &op)?))
    }
}

/// The gradient of `max(x, r)` with `r = x * slope`, as candle's backward pass computes it:
/// `mask_x = (y == x)`, `mask_r = (y == r)`, `gx = mask_x * g / (mask_r + 1)`,
/// `gr = 0 + mask_r * g / (mask_x + 1)` (the first contribution to `r`'s gradient), and `x`
/// receives `(0 + gx) + (gr * slope + 0)`.
struct LeakyReluBackward {
    slope: f64,
    y: Tensor,
}

impl CustomOp2 for LeakyReluBackward {
    fn name(&self) -> &'static str {
        "adapt-leaky-relu-backward"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sg: &CpuStorage, lg: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(sx, lx, "leaky_relu backward input")?;
        let g = f32_slice(sg, lg, "leaky_relu backward gradient")?;
        let slope = self.slope as f32;
        let (storage, layout) = self.y.storage_and_layout();
        let candle_core::Storage::Cpu(sy) = &*storage else {
            candle_core::bail!("leaky_relu backward: expected the output on the CPU")
        };
        let y = f32_slice(sy, layout, "leaky_relu backward output")?;
        if g.len() != x.len() || y.len() != x.len() {
            candle_core::bail!(
                "leaky_relu backward: {} gradients and {} outputs for {} inputs",
                g.len(),
                y.len(),
                x.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        let _timer = profile::Timer::start(Kernel::Activation);
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK))).zip(g.par_chunks(CHUNK)).for_each(
            |((o, (x, y)), g)| {
                for (((o, &x), &y), &g) in o.iter_mut().zip(x).zip(y).zip(g) {
                    let r = x * slope + 0.0;
                    let mask_x = if y == x { 1f32 } else { 0.0 };
                    let mask_r = if y == r { 1f32 } else { 0.0 };
                    let gx = (mask_x * g) / (mask_r * 1.0 + 1.0);
                    let gr = 0.0 + (mask_r * g) / (mask_x * 1.0 + 1.0);
                    *o = (0.0 + gx) + (gr * slope + 0.0);
                }
            },
        );
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values with exact zeros, negative zeros, ties and both signs, and gradients likewise.
    fn inputs() -> Result<(Var, Tensor)> {
        let mut x: Vec<f32> = crate::test_util::values(4000, 3).into_iter().map(|v| v * 4.0 - 2.0).collect();
        x[..8].copy_from_slice(&[0.0, -0.0, 1.0, -1.0, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 3.5, -3.5]);
        let mut g: Vec<f32> = crate::test_util::values(4000, 4).into_iter().map(|v| v - 0.5).collect();
        g[..4].copy_from_slice(&[0.0, -0.0, -0.0, 0.0]);
        Ok((Var::from_vec(x, (4, 10, 10, 10), &Device::Cpu)?, Tensor::from_vec(g, (4, 10, 10, 10), &Device::Cpu)?))
    }

    fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
    }

    /// Output and input gradient of `f(x)` weighted by `g`, as bits.
    fn run(f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<(Vec<u32>, Vec<u32>)> {
        let (x, g) = inputs()?;
        let y = f(x.as_tensor())?;
        let grads = (&y * &g)?.sum_all()?.backward()?;
        Ok((bits(&y)?, bits(grads.get(x.as_tensor()).expect("input gradient"))?))
    }

    #[test]
    fn relu_is_bit_identical_to_candles() -> Result<()> {
        assert_eq!(run(|x| relu_with(x, Backend::Fast))?, run(|x| relu_with(x, Backend::Candle))?);
        Ok(())
    }

    #[test]
    fn leaky_relu_is_bit_identical_to_candles() -> Result<()> {
        for slope in [0.2, 0.01] {
            let fast = run(|x| leaky_relu_with(x, slope, Backend::Fast))?;
            assert_eq!(fast, run(|x| leaky_relu_with(x, slope, Backend::Candle))?, "slope {slope}");
        }
        Ok(())
    }
}
