//! Initialisation that matches PyTorch's defaults, written out explicitly.
//!
//! PyTorch initialises `Linear` and `Conv2d` weights with Kaiming-uniform (a = sqrt(5)), which is
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and biases with the same bound. candle-nn's `linear`
//! uses a larger weight range; published DANN recipes were tuned with PyTorch's (or TF's Glorot)
//! scale, and the deep SVHN net diverges with the larger one.
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// The PyTorch default bound `1/sqrt(fan_in)`.
pub fn pytorch_bound(fan_in: usize) -> f64 {
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// A `[out, in]` weight and `[out]` bias with PyTorch's default `Linear` initialisation.
pub fn linear_params(in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Result<(Tensor, Tensor)> {
    let b = pytorch_bound(in_dim);
    let init = Init::Uniform { lo: -b, up: b };
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok((w, bias))
}

/// A `[out, in, k, k]` weight and `[out]` bias with PyTorch's default `Conv2d` initialisation.
pub fn conv2d_params(in_ch: usize, out_ch: usize, kernel: usize, vb: &VarBuilder) -> Result<(Tensor, Tensor)> {
    let b = pytorch_bound(in_ch * kernel * kernel);
    let init = Init::Uniform { lo: -b, up: b };
    let w = vb.get_with_hints((out_ch, in_ch, kernel, kernel), "weight", init)?;
    let bias = vb.get_with_hints(out_ch, "bias", init)?;
    Ok((w, bias))
}

/// A PyTorch-initialised [`candle_nn::Linear`].
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let (w, b) = linear_params(in_dim, out_dim, &vb)?;
    Ok(candle_nn::Linear::new(w, Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn linear_weights_stay_inside_the_pytorch_bound() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let (w, b) = linear_params(400, 30, &vb.pp("fc"))?;
        let bound = pytorch_bound(400) as f32;
        let w = w.flatten_all()?.to_vec1::<f32>()?;
        assert!(w.iter().all(|v| v.abs() <= bound));
        // Uniform on [-b, b] has std b / sqrt(3): the draw must actually fill the range.
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - bound / 3f32.sqrt()).abs() < 0.1 * bound, "std {std} bound {bound}");
        assert!(b.to_vec1::<f32>()?.iter().all(|v| v.abs() <= bound));
        Ok(())
    }
}
