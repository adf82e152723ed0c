//! The DANN paper's digit networks (Ganin et al., JMLR 2016), as in the project's PyTorch
//! reference benchmark (`dann_torch_bench.py`):
//!
//! * MNIST (input `3 x 28 x 28`): conv5x5 32 (pad 2), ReLU, max-pool 2; conv5x5 48 (pad 2), ReLU,
//!   max-pool 2; features `48 * 7 * 7 = 2352`. Label predictor fc 100-100-10, domain classifier
//!   fc 100-2.
//! * SVHN (input `3 x 32 x 32`): conv5x5 64 (pad 2), ReLU, max-pool 3/2; conv5x5 64 (pad 2), ReLU,
//!   max-pool 3/2; conv5x5 128 (pad 2), ReLU; features `128 * 7 * 7 = 6272`. Label predictor fc
//!   3072-2048-10, domain classifier fc 1024-1024-2.
//!
//! Optionally with BatchNorm (after every convolution and every hidden fully connected layer,
//! before the ReLU) and dropout (after every hidden fully connected layer). Convolutions use
//! [`adapt_kernels`]: the fast CPU kernels with the ReLU fused in when there is no BatchNorm.
//!
//! [`DigitDann::build`] creates a net in a parameter store and applies [`DigitNetConfig::init`].
//! The `VarBuilder` constructors ([`mnist_dann`], [`svhn_dann`], ...) can only create
//! PyTorch-initialised parameters, so they refuse any other `init` instead of ignoring it.
use crate::NamedParams;
use crate::conv::{Conv2d, MaxPool2d};
use crate::dann::Dann;
use crate::init::{self, InitScheme};
use crate::mlp::{Mlp, MlpConfig};
use adapt_kernels::{Backend, Conv2dParams};
use candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, VarBuilder};
use serde::{Deserialize, Serialize};

/// Which of the paper's two networks: the dataset crate's choice for a pair, so that the net
/// and the input size it expects can never disagree.
pub use adapt_datasets::DigitNet;

/// Regularisation and kernel choice of the digit networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DigitNetConfig {
    /// BatchNorm after each convolution and each hidden fully connected layer.
    pub batch_norm: bool,
    /// Dropout probability after each hidden fully connected layer (0 disables it).
    pub dropout: f32,
    /// Convolution / pooling implementation ([`Backend::Auto`]: fast kernels on the CPU).
    pub backend: Backend,
    /// Starting weights, applied by [`DigitDann::build`]. The `VarBuilder` constructors create
    /// PyTorch-initialised parameters and reject any other scheme.
    pub init: InitScheme,
    /// Zero padding of the 5x5 convolutions.
    pub padding: ConvPadding,
    /// Outputs of the label predictor (the ten digits by default).
    pub classes: usize,
}

impl Default for DigitNetConfig {
    fn default() -> Self {
        Self {
            batch_norm: false,
            dropout: 0.0,
            backend: Backend::Auto,
            init: InitScheme::Pytorch,
            padding: ConvPadding::Same,
            classes: 10,
        }
    }
}

/// How the 5x5 convolutions treat borders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvPadding {
    /// 2 pixels of zeros: the output keeps the input's size (TensorFlow's `SAME`, as the
    /// TensorFlow 1 reproduction in pumpikano/tf-dann builds the MNIST net: 2352 features).
    #[default]
    Same,
    /// No padding: each convolution loses 4 pixels (Caffe's default, the paper's own nets: the
    /// MNIST net ends at `48 x 4 x 4 = 768` features).
    Valid,
}

impl ConvPadding {
    fn pixels(self) -> usize {
        match self {
            ConvPadding::Same => KERNEL / 2,
            ConvPadding::Valid => 0,
        }
    }
}

/// One `conv -> [BatchNorm] -> ReLU -> [max-pool]` block.
struct ConvBlock {
    conv: Conv2d,
    batch_norm: Option<BatchNorm>,
    pool: Option<MaxPool2d>,
}

/// Shape of one block: output channels and optional `(kernel, stride)` pooling.
#[derive(Debug, Clone, Copy)]
struct BlockSpec {
    out_ch: usize,
    pool: Option<(usize, usize)>,
}

/// A stack of convolution blocks (the feature extractor of the digit nets), output flattened to
/// `[N, feature_dim]`.
pub struct ConvFeatures {
    blocks: Vec<ConvBlock>,
    input: (usize, usize, usize),
    feature_dim: usize,
}

/// The MNIST feature extractor.
pub type MnistFeatures = ConvFeatures;
/// The SVHN feature extractor.
pub type SvhnFeatures = ConvFeatures;

const KERNEL: usize = 5;

impl ConvFeatures {
    /// Parameters under `vb` as `conv{i}.weight`, `conv{i}.bias` (and `bn{i}.*`).
    fn new(input: (usize, usize, usize), specs: &[BlockSpec], cfg: &DigitNetConfig, vb: VarBuilder) -> Result<Self> {
        let (mut ch, mut h, mut w) = input;
        let pad = cfg.padding.pixels();
        let mut blocks = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            // The ReLU is fused into the convolution unless a BatchNorm sits in between.
            let params = Conv2dParams { stride: 1, padding: pad, relu: !cfg.batch_norm };
            let conv =
                Conv2d::new(ch, spec.out_ch, KERNEL, params, vb.pp(format!("conv{i}")))?.with_backend(cfg.backend);
            let batch_norm = if cfg.batch_norm {
                Some(candle_nn::batch_norm(spec.out_ch, 1e-5, vb.pp(format!("bn{i}")))?)
            } else {
                None
            };
            if h + 2 * pad < KERNEL || w + 2 * pad < KERNEL {
                candle_core::bail!("conv block {i}: {h}x{w} inputs are smaller than the {KERNEL}x{KERNEL} kernel");
            }
            (h, w) = (h + 2 * pad - KERNEL + 1, w + 2 * pad - KERNEL + 1);
            let pool = spec.pool.map(|(k, s)| MaxPool2d { backend: cfg.backend, ..MaxPool2d::new(k, s) });
            if let Some(p) = pool {
                (h, w) = (p.out_size(h), p.out_size(w));
            }
            ch = spec.out_ch;
            blocks.push(ConvBlock { conv, batch_norm, pool });
        }
        Ok(Self { blocks, input, feature_dim: ch * h * w })
    }

    /// Width of the flattened features.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Expected input `(channels, height, width)`.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        self.input
    }
}

impl ModuleT for ConvFeatures {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, h, w) = xs.dims4()?;
        if (c, h, w) != self.input {
            candle_core::bail!(
                "digit net expects inputs [N, {}, {}, {}], got {:?}",
                self.input.0,
                self.input.1,
                self.input.2,
                xs.dims()
            );
        }
        let mut xs = xs.clone();
        for block in &self.blocks {
            xs = match (&block.batch_norm, &block.pool) {
                // conv + ReLU + pool in one fused op.
                (None, Some(pool)) => block.conv.forward_max_pool(&xs, pool.kernel, pool.stride)?,
                (None, None) => block.conv.forward(&xs)?,
                (Some(bn), pool) => {
                    let ys = block.conv.forward(&xs)?.apply_t(bn, train)?.relu()?;
                    match pool {
                        Some(pool) => pool.forward(&ys)?,
                        None => ys,
                    }
                }
            };
        }
        xs.flatten_from(1)
    }
}

/// A DANN on a digit network: parameters under `features.*`, `label.*`, `domain.*`.
pub type DigitDann = Dann<ConvFeatures, Mlp, Mlp>;
/// The MNIST DANN.
pub type MnistDann = DigitDann;
/// The SVHN DANN.
pub type SvhnDann = DigitDann;

fn head(dims: &[usize], cfg: &DigitNetConfig, vb: VarBuilder) -> Result<Mlp> {
    Mlp::new(&MlpConfig { batch_norm: cfg.batch_norm, dropout: cfg.dropout, ..MlpConfig::head(dims) }, vb)
}

/// The `VarBuilder` constructors cannot redraw what they created: refuse a scheme they would
/// silently ignore.
fn require_pytorch_init(cfg: &DigitNetConfig, who: &str) -> Result<()> {
    if cfg.init != InitScheme::Pytorch {
        candle_core::bail!(
            "{who} creates PyTorch-initialised parameters through a VarBuilder and cannot apply init = {:?}; \
             build the net with DigitDann::build, which applies it",
            cfg.init
        );
    }
    Ok(())
}

fn mnist_feature_blocks(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<MnistFeatures> {
    let specs = [BlockSpec { out_ch: 32, pool: Some((2, 2)) }, BlockSpec { out_ch: 48, pool: Some((2, 2)) }];
    ConvFeatures::new((3, 28, 28), &specs, cfg, vb)
}

fn svhn_feature_blocks(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<SvhnFeatures> {
    let specs = [
        BlockSpec { out_ch: 64, pool: Some((3, 2)) },
        BlockSpec { out_ch: 64, pool: Some((3, 2)) },
        BlockSpec { out_ch: 128, pool: None },
    ];
    ConvFeatures::new((3, 32, 32), &specs, cfg, vb)
}

/// `net` with PyTorch-initialised parameters under `vb`, whatever `cfg.init` says.
fn pytorch_initialised(net: DigitNet, cfg: &DigitNetConfig, vb: VarBuilder) -> Result<DigitDann> {
    let (features, label_hidden, domain_hidden): (_, &[usize], &[usize]) = match net {
        DigitNet::Mnist => (mnist_feature_blocks(cfg, vb.pp("features"))?, &[100, 100], &[100]),
        DigitNet::Svhn => (svhn_feature_blocks(cfg, vb.pp("features"))?, &[3072, 2048], &[1024, 1024]),
    };
    let f = features.feature_dim();
    let dims = |hidden: &[usize], out: usize| [&[f][..], hidden, &[out][..]].concat();
    let label = head(&dims(label_hidden, cfg.classes), cfg, vb.pp("label"))?;
    let domain = head(&dims(domain_hidden, 2), cfg, vb.pp("domain"))?;
    Ok(Dann::new(features, label, domain))
}

/// The parameter prefixes of a [`DigitDann`].
const DIGIT_DANN_PREFIXES: [&str; 3] = ["features.", "label.", "domain."];

impl Dann<ConvFeatures, Mlp, Mlp> {
    /// The paper's `net` with `cfg`, its f32 parameters created in `params` on `device` and
    /// initialised as `cfg.init` says: PyTorch's defaults as the store draws them, or those
    /// redrawn by [`init::reinitialize`] from `init_seed`. A [`crate::ParamStore`] run passes the
    /// store's seed (one seed decides every weight, as it always has); a `VarMap` has no seed, so
    /// with Glorot this one makes its weights reproducible.
    pub fn build(
        net: DigitNet,
        cfg: &DigitNetConfig,
        params: &dyn NamedParams,
        init_seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let model = pytorch_initialised(net, cfg, params.var_builder(DType::F32, device))?;
        for prefix in DIGIT_DANN_PREFIXES {
            init::reinitialize(params, prefix, cfg.init, init_seed)?;
        }
        Ok(model)
    }
}

/// The MNIST feature extractor alone (input `3 x 28 x 28`, 2352 features), PyTorch-initialised
/// (any other `cfg.init` is an error).
pub fn mnist_features(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<MnistFeatures> {
    require_pytorch_init(cfg, "mnist_features")?;
    mnist_feature_blocks(cfg, vb)
}

/// The SVHN feature extractor alone (input `3 x 32 x 32`, 6272 features), PyTorch-initialised
/// (any other `cfg.init` is an error).
pub fn svhn_features(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<SvhnFeatures> {
    require_pytorch_init(cfg, "svhn_features")?;
    svhn_feature_blocks(cfg, vb)
}

/// The paper's MNIST DANN: label predictor fc 100-100-10, domain classifier fc 100-2,
/// PyTorch-initialised (any other `cfg.init` is an error: use [`DigitDann::build`]).
pub fn mnist_dann(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<MnistDann> {
    require_pytorch_init(cfg, "mnist_dann")?;
    pytorch_initialised(DigitNet::Mnist, cfg, vb)
}

/// The paper's SVHN DANN: label predictor fc 3072-2048-10, domain classifier fc 1024-1024-2,
/// PyTorch-initialised (any other `cfg.init` is an error: use [`DigitDann::build`]).
pub fn svhn_dann(cfg: &DigitNetConfig, vb: VarBuilder) -> Result<SvhnDann> {
    require_pytorch_init(cfg, "svhn_dann")?;
    pytorch_initialised(DigitNet::Svhn, cfg, vb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn names(vm: &VarMap) -> Vec<String> {
        let mut n: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        n.sort();
        n
    }

    /// FNV-1a over the bits of every value: a checksum that any changed bit changes.
    fn bits_checksum(t: &Tensor) -> Result<u64> {
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(values
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)))
    }

    /// The paper preset's MNIST net at seed 1, as `ParamStore::new(1)` + `mnist_dann` +
    /// `init::reinitialize(&params, "", Glorot)` built it before `DigitDann::build` applied the
    /// init itself: (name, length, checksum, first value, last value), pinned then.
    const PAPER_MNIST_SEED_1: [(&str, usize, u64, f32, f32); 14] = [
        ("domain.fc0.bias", 100, 0x2c1b93daafb34265, 0.0, 0.0),
        ("domain.fc0.weight", 76800, 0x8a9cf36be88c4b5c, 0.05888372, -0.07828527),
        ("domain.fc1.bias", 2, 0xa8c7f832281a39c5, 0.0, 0.0),
        ("domain.fc1.weight", 200, 0xb8ff1797790e2d8e, 0.06112507, -0.15285923),
        ("features.conv0.bias", 32, 0x8421ae126c7ced25, 0.0, 0.0),
        ("features.conv0.weight", 2400, 0xa5ad8c820061c9f5, 0.049112245, 0.068978),
        ("features.conv1.bias", 48, 0xab0c262759a1d225, 0.0, 0.0),
        ("features.conv1.weight", 38400, 0xdf3948b586e641b7, 0.030194182, -0.0037456192),
        ("label.fc0.bias", 100, 0x2c1b93daafb34265, 0.0, 0.0),
        ("label.fc0.weight", 76800, 0xf4b09e0b6b0f2e0d, -0.06717278, -0.05639694),
        ("label.fc1.bias", 100, 0x2c1b93daafb34265, 0.0, 0.0),
        ("label.fc1.weight", 10000, 0x6b633511b47a8adb, 0.122261256, 0.08006653),
        ("label.fc2.bias", 10, 0x40d69e0cf0f65c45, 0.0, 0.0),
        ("label.fc2.weight", 1000, 0x410859d5e7bdb5ff, -0.035080522, -0.034809574),
    ];

    fn paper_mnist() -> DigitNetConfig {
        DigitNetConfig { init: InitScheme::Glorot, padding: ConvPadding::Valid, ..DigitNetConfig::default() }
    }

    #[test]
    fn build_applies_the_init_bit_identically_to_the_old_two_step_recipe() -> Result<()> {
        let check = |params: &dyn NamedParams, what: &str| -> Result<()> {
            let vars = params.named_vars();
            assert_eq!(vars.len(), PAPER_MNIST_SEED_1.len(), "{what}");
            for ((name, var), (want_name, len, sum, first, last)) in vars.iter().zip(PAPER_MNIST_SEED_1) {
                assert_eq!(name, want_name, "{what}");
                let v = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                assert_eq!((v.len(), v[0], v[v.len() - 1]), (len, first, last), "{what}: {name}");
                assert_eq!(bits_checksum(var.as_tensor())?, sum, "{what}: {name} differs from the pinned weights");
            }
            Ok(())
        };
        let store = crate::ParamStore::new(1);
        DigitDann::build(DigitNet::Mnist, &paper_mnist(), &store, store.seed(), &Device::Cpu)?;
        check(&store, "ParamStore")?;
        // Glorot redraws every weight and zeroes every bias, so a VarMap given the same seed ends
        // with the same net, none of candle's unseeded draw left.
        let vm = VarMap::new();
        DigitDann::build(DigitNet::Mnist, &paper_mnist(), &vm, 1, &Device::Cpu)?;
        check(&vm, "VarMap")?;
        Ok(())
    }

    #[test]
    fn var_builder_constructors_refuse_an_init_they_cannot_apply() -> Result<()> {
        let vb = || VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu);
        let cfg = paper_mnist();
        for err in [
            mnist_dann(&cfg, vb()).err(),
            svhn_dann(&cfg, vb()).err(),
            mnist_features(&cfg, vb()).err(),
            svhn_features(&cfg, vb()).err(),
        ] {
            let err = err.expect("a Glorot config must be refused").to_string();
            assert!(err.contains("init = Glorot") && err.contains("DigitDann::build"), "{err}");
        }
        // PyTorch's init is what they create: accepted, and build agrees with them.
        let pytorch = DigitNetConfig { init: InitScheme::Pytorch, ..cfg };
        let (a, b) = (crate::ParamStore::new(4), crate::ParamStore::new(4));
        mnist_dann(&pytorch, a.var_builder(DType::F32, &Device::Cpu))?;
        DigitDann::build(DigitNet::Mnist, &pytorch, &b, 99, &Device::Cpu)?;
        for ((name, x), (_, y)) in a.named_vars().iter().zip(b.named_vars()) {
            assert_eq!(bits_checksum(x.as_tensor())?, bits_checksum(y.as_tensor())?, "{name}");
        }
        Ok(())
    }

    #[test]
    fn unpadded_mnist_net_is_the_papers_768_features() -> Result<()> {
        let cfg = DigitNetConfig { padding: ConvPadding::Valid, ..DigitNetConfig::default() };
        let vm = VarMap::new();
        let model = mnist_dann(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        assert_eq!(model.feature_extractor.feature_dim(), 48 * 4 * 4);
        let x = Tensor::randn(0f32, 1.0, (3, 3, 28, 28), &Device::Cpu)?;
        let out = model.forward_mixed(&x, 2, 1.0, true)?;
        assert_eq!(out.features.dims(), &[3, 768]);
        assert_eq!(vm.data().lock().unwrap()["label.fc0.weight"].dims(), &[100, 768]);
        // The SVHN net's third convolution has nothing left to convolve without padding.
        let vm = VarMap::new();
        let err = svhn_dann(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).err().expect("must fail");
        assert!(err.to_string().contains("smaller than the 5x5 kernel"), "{err}");
        Ok(())
    }

    #[test]
    fn mnist_shapes_and_parameters() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let model = mnist_dann(&DigitNetConfig::default(), vb)?;
        assert_eq!(model.feature_extractor.feature_dim(), 48 * 7 * 7);
        let x = Tensor::randn(0f32, 1.0, (6, 3, 28, 28), &Device::Cpu)?;
        let out = model.forward_mixed(&x, 4, 0.5, true)?;
        assert_eq!(out.features.dims(), &[6, 2352]);
        assert_eq!(out.class_logits.dims(), &[4, 10]);
        assert_eq!(out.domain_logits.dims(), &[6, 2]);
        let n = names(&vm);
        assert!(n.contains(&"features.conv0.weight".to_string()));
        assert!(n.contains(&"features.conv1.bias".to_string()));
        assert!(!n.iter().any(|s| s.contains("bn")));
        let data = vm.data().lock().unwrap();
        assert_eq!(data["features.conv0.weight"].dims(), &[32, 3, 5, 5]);
        assert_eq!(data["features.conv1.weight"].dims(), &[48, 32, 5, 5]);
        assert_eq!(data["label.fc0.weight"].dims(), &[100, 2352]);
        assert_eq!(data["label.fc2.weight"].dims(), &[10, 100]);
        assert_eq!(data["domain.fc1.weight"].dims(), &[2, 100]);
        // Wrong input size is an error, not a silent reshape.
        assert!(model.classify(&Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?).is_err());
        Ok(())
    }

    #[test]
    fn svhn_shapes_with_batch_norm_and_dropout() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = DigitNetConfig { batch_norm: true, dropout: 0.5, ..Default::default() };
        let model = svhn_dann(&cfg, vb)?;
        assert_eq!(model.feature_extractor.feature_dim(), 128 * 7 * 7);
        let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &Device::Cpu)?;
        let out = model.forward_mixed(&x, 2, 0.5, true)?;
        assert_eq!(out.features.dims(), &[4, 6272]);
        assert_eq!(out.class_logits.dims(), &[2, 10]);
        assert_eq!(out.domain_logits.dims(), &[4, 2]);
        assert_eq!(model.classify(&x)?.dims(), &[4, 10]);
        let n = names(&vm);
        for s in ["features.bn2.running_mean", "label.bn1.weight", "domain.bn1.bias", "features.conv2.weight"] {
            assert!(n.contains(&s.to_string()), "{s} missing from {n:?}");
        }
        let data = vm.data().lock().unwrap();
        assert_eq!(data["features.conv2.weight"].dims(), &[128, 64, 5, 5]);
        assert_eq!(data["label.fc0.weight"].dims(), &[3072, 6272]);
        assert_eq!(data["label.fc1.weight"].dims(), &[2048, 3072]);
        assert_eq!(data["domain.fc1.weight"].dims(), &[1024, 1024]);
        Ok(())
    }

    #[test]
    fn fast_and_candle_backends_agree_on_a_training_step() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let fast = mnist_dann(&DigitNetConfig::default(), vb.clone())?;
        // Same variables (same VarMap), candle's kernels.
        let slow = mnist_dann(&DigitNetConfig { backend: Backend::Candle, ..Default::default() }, vb)?;
        // Fixed inputs: random ones occasionally put two pre-activations within rounding of each
        // other in a pooling window, where the two kernels may legitimately route the gradient
        // to different inputs.
        let vals: Vec<f32> = (0..4 * 3 * 28 * 28).map(|i| ((i as f32) * 0.7311).sin() * 1.3).collect();
        let x = Tensor::from_vec(vals, (4, 3, 28, 28), &Device::Cpu)?;
        let grads = |m: &MnistDann| -> Result<(Vec<f32>, Vec<f32>)> {
            let out = m.forward_mixed(&x, 2, 0.5, true)?;
            let loss = (out.class_logits.sqr()?.sum_all()? + out.domain_logits.sum_all()?)?;
            let g = loss.backward()?;
            let data = vm.data().lock().unwrap();
            let w0 = g.get(data["features.conv0.weight"].as_tensor()).unwrap().flatten_all()?.to_vec1()?;
            let f = out.features.flatten_all()?.to_vec1()?;
            Ok((f, w0))
        };
        let (ff, fw) = grads(&fast)?;
        let (sf, sw) = grads(&slow)?;
        let max_diff = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).map(|(x, y)| (x - y).abs() / scale).fold(0f32, f32::max)
        };
        let (df, dw) = (max_diff(&ff, &sf), max_diff(&fw, &sw));
        assert!(df <= 1e-4, "features differ by {df} (relative)");
        assert!(dw <= 1e-4, "conv0 weight gradients differ by {dw} (relative)");
        Ok(())
    }

    #[test]
    fn config_deserialises_with_defaults() {
        use serde::de::IntoDeserializer;
        use serde::de::value::StrDeserializer;
        use serde::de::value::{Error, MapDeserializer};
        // The backend is kebab-case; missing fields take their defaults.
        let d: StrDeserializer<'_, Error> = "candle".into_deserializer();
        assert_eq!(Backend::deserialize(d).unwrap(), Backend::Candle);
        let empty: MapDeserializer<'_, _, Error> = MapDeserializer::new(Vec::<(&str, bool)>::new().into_iter());
        assert_eq!(DigitNetConfig::deserialize(empty).unwrap(), DigitNetConfig::default());
    }
}
