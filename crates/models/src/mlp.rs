//! Fully connected layers ([`Dense`]) and stacks of them: `Linear -> [BatchNorm] -> activation
//! -> [Dropout]`, repeated ([`Mlp`]).
use crate::init;
use adapt_kernels::Backend;
use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, VarBuilder};
use serde::{Deserialize, Serialize};

/// A fully connected layer `xs W^T + b` with PyTorch's default initialisation, on
/// [`adapt_kernels::linear_with`] (parallel GEMMs in the final layouts on the CPU, candle's
/// matmul elsewhere).
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
    backend: Backend,
}

impl Dense {
    /// Parameters `weight` `[out, in]` and `bias` `[out]` under `vb`.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let (weight, bias) = init::linear_params(in_dim, out_dim, &vb)?;
        Ok(Self { weight, bias, backend: Backend::Auto })
    }

    /// Uses `backend` for the product.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// A copy with detached weight and bias (same storage): its forward passes track no
    /// gradients for them, and it sees every later update.
    pub fn frozen(&self) -> Self {
        Self { weight: self.weight.detach(), bias: self.bias.detach(), ..self.clone() }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Module for Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        adapt_kernels::linear_with(xs, &self.weight, Some(&self.bias), self.backend)
    }
}

/// The non-linearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            // candle's relu, values and gradients, in one pass each way on the CPU.
            Activation::Relu => adapt_kernels::relu(xs),
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs),
            Activation::Tanh => xs.tanh(),
        }
    }
}

/// Shape and regularisation of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Layer widths including input and output, e.g. `[2, 15]` or `[100, 100, 10]`.
    pub dims: Vec<usize>,
    pub activation: Activation,
    /// Apply the activation (and BN/dropout) after the last layer too: true for feature
    /// extractors, false for heads that produce logits.
    pub activate_last: bool,
    pub batch_norm: bool,
    /// Dropout probability after each activated layer (0 disables it).
    pub dropout: f32,
}

impl MlpConfig {
    /// A head producing logits: no activation after the last layer.
    pub fn head(dims: &[usize]) -> Self {
        Self {
            dims: dims.to_vec(),
            activation: Activation::Relu,
            activate_last: false,
            batch_norm: false,
            dropout: 0.0,
        }
    }

    /// A feature extractor: activation after every layer.
    pub fn features(dims: &[usize]) -> Self {
        Self { activate_last: true, ..Self::head(dims) }
    }
}

struct Layer {
    linear: Dense,
    batch_norm: Option<BatchNorm>,
    activated: bool,
}

/// A multi-layer perceptron built from an [`MlpConfig`].
pub struct Mlp {
    layers: Vec<Layer>,
    activation: Activation,
    dropout: f32,
}

impl Mlp {
    /// Parameters live under `vb` as `fc{i}.weight`, `fc{i}.bias` (and `bn{i}.*`).
    pub fn new(cfg: &MlpConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.dims.len() < 2 {
            candle_core::bail!("an MLP needs at least an input and an output width, got {:?}", cfg.dims);
        }
        let n = cfg.dims.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let activated = i + 1 < n || cfg.activate_last;
            let linear = Dense::new(cfg.dims[i], cfg.dims[i + 1], vb.pp(format!("fc{i}")))?;
            let batch_norm = if cfg.batch_norm && activated {
                Some(candle_nn::batch_norm(cfg.dims[i + 1], 1e-5, vb.pp(format!("bn{i}")))?)
            } else {
                None
            };
            layers.push(Layer { linear, batch_norm, activated });
        }
        Ok(Self { layers, activation: cfg.activation, dropout: cfg.dropout })
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.linear.forward(&xs)?;
            if let Some(bn) = &layer.batch_norm {
                xs = xs.apply_t(bn, train)?;
            }
            if layer.activated {
                xs = self.activation.apply(&xs)?;
                if train && self.dropout > 0.0 {
                    xs = candle_nn::ops::dropout(&xs, self.dropout)?;
                }
            }
        }
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_parameter_names() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mlp = Mlp::new(&MlpConfig { batch_norm: true, ..MlpConfig::head(&[5, 7, 3]) }, vb.pp("head"))?;
        let y = mlp.forward_t(&Tensor::zeros((4, 5), DType::F32, &Device::Cpu)?, true)?;
        assert_eq!(y.dims(), &[4, 3]);
        let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert!(names.contains(&"head.fc0.weight".to_string()));
        assert!(names.contains(&"head.bn0.running_mean".to_string()));
        // No batch norm after the logits layer.
        assert!(!names.iter().any(|n| n.starts_with("head.bn1")));
        Ok(())
    }

    #[test]
    fn too_few_dims_is_an_error() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        assert!(Mlp::new(&MlpConfig::head(&[5]), vb).is_err());
    }
}
