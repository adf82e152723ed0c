//! The DANN authors' network for the 2D toy: one hidden layer of features (15 units in the paper),
//! a linear label predictor, and a domain classifier on the same features.
use crate::dann::Dann;
use crate::mlp::{Activation, Mlp, MlpConfig};
use candle_core::Result;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Widths of the toy network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToyConfig {
    pub input_dim: usize,
    /// Width of the feature layer (the paper's hidden layer).
    pub hidden: usize,
    /// Hidden widths of the domain classifier between features and its 2 logits (empty: a
    /// logistic regressor on the features, as in the paper's shallow DANN).
    pub domain_hidden: Vec<usize>,
    pub activation: Activation,
    pub classes: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self { input_dim: 2, hidden: 15, domain_hidden: vec![15], activation: Activation::Relu, classes: 2 }
    }
}

/// The toy DANN: parameters under `features.*`, `label.*`, `domain.*`.
pub type ToyDann = Dann<Mlp, Mlp, Mlp>;

pub fn toy_dann(cfg: &ToyConfig, vb: VarBuilder) -> Result<ToyDann> {
    let features = Mlp::new(
        &MlpConfig { activation: cfg.activation, ..MlpConfig::features(&[cfg.input_dim, cfg.hidden]) },
        vb.pp("features"),
    )?;
    let label = Mlp::new(&MlpConfig::head(&[cfg.hidden, cfg.classes]), vb.pp("label"))?;
    let mut domain_dims = vec![cfg.hidden];
    domain_dims.extend(&cfg.domain_hidden);
    domain_dims.push(2);
    let domain = Mlp::new(&MlpConfig { activation: cfg.activation, ..MlpConfig::head(&domain_dims) }, vb.pp("domain"))?;
    Ok(Dann::new(features, label, domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor, Var};
    use candle_nn::VarMap;

    #[test]
    fn forward_shapes_and_reversed_domain_gradient() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let model = toy_dann(&ToyConfig::default(), vb)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 2), &Device::Cpu)?)?;
        let out = model.forward_mixed(x.as_tensor(), 4, 1.0, true)?;
        assert_eq!(out.features.dims(), &[6, 15]);
        assert_eq!(out.class_logits.dims(), &[4, 2]);
        assert_eq!(out.domain_logits.dims(), &[6, 2]);
        assert!(model.forward_mixed(x.as_tensor(), 7, 1.0, true).is_err());

        // The domain loss's gradient on the feature layer flips sign with the GRL, while the
        // domain classifier's own gradient does not.
        let grads_for = |lambda: f64| -> Result<(Vec<f32>, Vec<f32>)> {
            let out = model.forward_mixed(x.as_tensor(), 4, lambda, true)?;
            let loss = out.domain_logits.sum_all()?;
            let g = loss.backward()?;
            let data = vm.data().lock().unwrap();
            let fw = g.get(data["features.fc0.weight"].as_tensor()).unwrap().flatten_all()?.to_vec1()?;
            let dw = g.get(data["domain.fc0.weight"].as_tensor()).unwrap().flatten_all()?.to_vec1()?;
            Ok((fw, dw))
        };
        let (f_pos, d_pos) = grads_for(-1.0)?; // lambda = -1: an ordinary, unreversed gradient
        let (f_neg, d_neg) = grads_for(1.0)?;
        for (a, b) in f_pos.iter().zip(&f_neg) {
            assert!((a + b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert_eq!(d_pos, d_neg);
        Ok(())
    }
}
