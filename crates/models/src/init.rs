//! Initialisation that matches PyTorch's defaults, written out explicitly.
//!
//! PyTorch initialises `Linear` and `Conv2d` weights with Kaiming-uniform (a = sqrt(5)), which is
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and biases with the same bound. candle-nn's `linear`
//! uses a larger weight range; published DANN recipes were tuned with PyTorch's (or TF's Glorot)
//! scale, and the deep SVHN net diverges with the larger one.
use crate::NamedParams;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// How weights and biases start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    /// PyTorch's defaults (`U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for weights and biases).
    #[default]
    Pytorch,
    /// TensorFlow's `get_variable` default, which the TensorFlow 1 reproduction of the DANN
    /// paper (pumpikano/tf-dann) ran with: Glorot-uniform weights
    /// `U(-sqrt(6/(fan_in+fan_out)), ..)`, zero biases.
    Glorot,
}

/// Redraws every `*.weight` (2-D fully connected or 4-D convolution) and `*.bias` under
/// `prefix` with `scheme`, each from its own generator seeded by `seed` and the name, so the
/// result does not depend on creation order. BatchNorm parameters are left alone.
///
/// [`InitScheme::Pytorch`] changes nothing: the constructors already draw PyTorch's defaults.
/// A [`crate::ParamStore`] run passes the store's own seed ([`crate::ParamStore::seed`]), so
/// one seed decides every weight; a `VarMap` has no seed of its own, and its Glorot weights
/// are reproducible only through this one.
pub fn reinitialize(params: &(impl NamedParams + ?Sized), prefix: &str, scheme: InitScheme, seed: u64) -> Result<()> {
    if scheme == InitScheme::Pytorch {
        return Ok(());
    }
    let named = params.trainable_named_vars(prefix);
    for (name, var) in &named {
        let dims = var.dims().to_vec();
        let is_bn = name.rsplit('.').nth(1).is_some_and(|layer| layer.starts_with("bn"));
        if is_bn {
            continue;
        }
        let (fan_in, fan_out) = match dims.as_slice() {
            [out, inp] => (*inp, *out),
            [out, inp, kh, kw] => (inp * kh * kw, out * kh * kw),
            _ => {
                if name.ends_with("bias") {
                    var.set(&var.zeros_like()?)?;
                }
                continue;
            }
        };
        let bound = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
        let values: Vec<f32> =
            (0..var.elem_count()).map(|_| rand::Rng::random_range(&mut rng, -bound..=bound)).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

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
    use crate::ParamStore;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use std::collections::HashMap;

    #[test]
    fn glorot_reinitialisation_redraws_weights_and_zeroes_biases() -> Result<()> {
        let params = ParamStore::new(3);
        let vb = params.var_builder(DType::F32, &Device::Cpu);
        linear_params(400, 30, &vb.pp("fc"))?;
        conv2d_params(3, 8, 5, &vb.pp("conv"))?;
        reinitialize(&params, "", InitScheme::Glorot, params.seed())?;
        let t = params.tensors();
        let w = t["fc.weight"].flatten_all()?.to_vec1::<f32>()?;
        let bound = (6.0f32 / 430.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - bound / 3f32.sqrt()).abs() < 0.1 * bound, "std {std} bound {bound}");
        assert!(t["fc.bias"].to_vec1::<f32>()?.iter().all(|v| *v == 0.0));
        let c = t["conv.weight"].flatten_all()?.to_vec1::<f32>()?;
        let conv_bound = (6.0f32 / (75.0 + 200.0)).sqrt();
        assert!(c.iter().all(|v| v.abs() <= conv_bound) && c.iter().any(|v| v.abs() > 0.5 * conv_bound));
        // Same seed, same draw.
        let again = ParamStore::new(3);
        let vb = again.var_builder(DType::F32, &Device::Cpu);
        conv2d_params(3, 8, 5, &vb.pp("conv"))?;
        linear_params(400, 30, &vb.pp("fc"))?;
        reinitialize(&again, "", InitScheme::Glorot, again.seed())?;
        assert_eq!(again.tensors()["fc.weight"].flatten_all()?.to_vec1::<f32>()?, w);
        Ok(())
    }

    #[test]
    fn a_var_map_reinitialises_like_a_param_store_of_the_same_seed() -> Result<()> {
        let build = |params: &dyn NamedParams| -> Result<()> {
            let vb = params.var_builder(DType::F32, &Device::Cpu);
            linear_params(40, 30, &vb.pp("fc"))?;
            conv2d_params(3, 8, 5, &vb.pp("conv"))?;
            candle_nn::batch_norm(8, 1e-5, vb.pp("bn0"))?;
            Ok(())
        };
        let (vm, store) = (VarMap::new(), ParamStore::new(11));
        build(&vm)?;
        build(&store)?;
        reinitialize(&vm, "", InitScheme::Glorot, 11)?;
        reinitialize(&store, "", InitScheme::Glorot, store.seed())?;
        let (a, b) = (NamedParams::tensors(&vm), store.tensors());
        // Glorot redraws every weight and zeroes every bias: nothing of candle's unseeded draw is
        // left, so the VarMap now holds exactly the store's values. BatchNorm starts constant.
        for (name, t) in &a {
            assert_eq!(t.flatten_all()?.to_vec1::<f32>()?, b[name].flatten_all()?.to_vec1::<f32>()?, "{name}");
        }
        assert!(a["fc.bias"].to_vec1::<f32>()?.iter().all(|v| *v == 0.0));
        // Only what is under the prefix moves; PyTorch's scheme moves nothing.
        let vm = VarMap::new();
        build(&vm)?;
        // Copies: the tensors share the variables' storage, which reinitialising overwrites.
        let values = |vm: &VarMap| -> Result<HashMap<String, Vec<f32>>> {
            NamedParams::tensors(vm).into_iter().map(|(k, t)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?))).collect()
        };
        let before = values(&vm)?;
        reinitialize(&vm, "conv", InitScheme::Glorot, 11)?;
        reinitialize(&vm, "", InitScheme::Pytorch, 11)?;
        let after = values(&vm)?;
        assert_eq!(before["fc.weight"], after["fc.weight"]);
        assert_eq!(before["fc.bias"], after["fc.bias"]);
        assert_eq!(after["conv.weight"], b["conv.weight"].flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(before["conv.weight"], after["conv.weight"]);
        Ok(())
    }

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
