//! Generate To Adapt (Sankaranarayanan et al., CVPR 2018): the four networks, as in the authors'
//! release (`models.py`: `_netF`, `_netC`, `_netG`, `_netD`) for `3 x 32 x 32` digits.
//!
//! * **F** ([`Embedding`]): conv5x5 `ndf`, ReLU, max-pool 2; conv5x5 `ndf`, ReLU, max-pool 2;
//!   conv5x5 `2 ndf`, ReLU. No padding, so `32 -> 28 -> 14 -> 10 -> 5 -> 1`: a `2 ndf` = 128-d
//!   embedding.
//! * **C** ([`Classifier`]): fc `2 ndf -> 2 ndf`, ReLU, fc `2 ndf -> classes`.
//! * **G** ([`Generator`]): the input `[F(x), z, l]` (embedding, noise `z ~ N(0, 1)` of
//!   `noise_dim`, one-hot `l` over `classes + 1` where the last entry means "target, class
//!   unknown") as a `1 x 1` map, then transposed convolutions without bias: `8 ngf` at `2 x 2`
//!   (kernel 2, stride 1), `4 ngf` at 4, `2 ngf` at 8, `ngf` at 16 (kernel 4, stride 2, padding
//!   1), each with BatchNorm and ReLU, and `3` channels at `32 x 32` with tanh.
//! * **D** ([`Discriminator`]): four blocks conv3x3 (padding 1) -> BatchNorm -> LeakyReLU 0.2 ->
//!   max-pool with `ndf, 2 ndf, 4 ndf, 2 ndf` channels and pools `2, 2, 2, 4` (`32 -> 1`), giving
//!   `2 ndf` features; two heads on them: real/fake (one logit; the authors' sigmoid is folded into
//!   the loss) and the auxiliary classifier (`classes` logits).
//!
//! Initialisation follows the authors' `weights_init`: convolution and transposed-convolution
//! weights `N(0, 0.02)`, BatchNorm weights `N(1, 0.02)` and biases 0; convolution biases and the
//! fully connected layers keep PyTorch's defaults ([`crate::init`]).
//!
//! Every network can be [`frozen`](GtaModel::frozen): a copy whose forward passes do not track
//! gradients for its own parameters (they are detached views of the same storage, so the copy
//! sees every later update). The training loop updates one network at a time; running the others
//! frozen skips their weight gradients, the most expensive part of their backward passes.
use crate::conv::{Conv2d, ConvTranspose2d};
use crate::mlp::Dense;
use adapt_kernels::{self as kernels, Backend, BatchNorm2d, Conv2dParams, ConvTranspose2dParams};
use candle_core::{D, DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Side of the square RGB images the networks take and produce.
pub const IMAGE_SIZE: usize = 32;
/// Channels of those images.
pub const IMAGE_CHANNELS: usize = 3;
/// Standard deviation of the authors' `N(0, 0.02)` convolution initialisation.
const CONV_INIT_STD: f64 = 0.02;
/// Standard deviation of the authors' `N(1, 0.02)` BatchNorm weight initialisation.
const BN_WEIGHT_INIT_STD: f64 = 0.02;
/// Negative slope of D's LeakyReLU.
const LEAKY_SLOPE: f64 = 0.2;

/// Widths of the four networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GtaNetConfig {
    /// Source classes (C's outputs, D's auxiliary head; G's one-hot has one more entry).
    pub classes: usize,
    /// Size of the noise vector `z` (the authors' `nz`).
    pub noise_dim: usize,
    /// Generator filters (`ngf`).
    pub ngf: usize,
    /// Filters of F and D (`ndf`); the embedding and D's features have `2 ndf` entries.
    pub ndf: usize,
    /// Convolution / pooling implementation ([`Backend::Auto`]: fast kernels on the CPU).
    pub backend: Backend,
}

impl Default for GtaNetConfig {
    /// The authors' digit settings: 10 classes, `nz` 512, `ngf` = `ndf` = 64.
    fn default() -> Self {
        Self { classes: 10, noise_dim: 512, ngf: 64, ndf: 64, backend: Backend::Auto }
    }
}

impl GtaNetConfig {
    /// Width of F's embedding (and of D's features).
    pub fn embedding_dim(&self) -> usize {
        2 * self.ndf
    }

    /// Width of G's input `[F(x), z, l]`.
    pub fn generator_input_dim(&self) -> usize {
        self.embedding_dim() + self.noise_dim + self.classes + 1
    }

    fn validate(&self) -> Result<()> {
        if self.classes == 0 || self.noise_dim == 0 || self.ngf == 0 || self.ndf == 0 {
            candle_core::bail!("GTA networks need positive widths, got {self:?}");
        }
        Ok(())
    }
}

/// The authors' `N(0, 0.02)` initialisation of convolution and transposed-convolution weights.
const CONV_WEIGHT_INIT: Init = Init::Randn { mean: 0.0, stdev: CONV_INIT_STD };

/// BatchNorm with the authors' `N(1, 0.02)` weights.
fn batch_norm(channels: usize, backend: Backend, vb: VarBuilder) -> Result<BatchNorm2d> {
    BatchNorm2d::new(channels, Init::Randn { mean: 1.0, stdev: BN_WEIGHT_INIT_STD }, backend, vb)
}

/// A convolution with bias: `N(0, 0.02)` weights, PyTorch's default bias.
fn conv(
    in_ch: usize,
    out_ch: usize,
    k: usize,
    params: Conv2dParams,
    backend: Backend,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Ok(Conv2d::with_weight_init(in_ch, out_ch, k, params, CONV_WEIGHT_INIT, vb)?.with_backend(backend))
}

/// A transposed convolution without bias (the authors' netG uses `bias=False`: BatchNorm
/// follows), `N(0, 0.02)` weights.
fn conv_transpose(
    in_ch: usize,
    out_ch: usize,
    k: usize,
    params: ConvTranspose2dParams,
    backend: Backend,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    Ok(ConvTranspose2d::new(in_ch, out_ch, k, params, CONV_WEIGHT_INIT, vb)?.with_backend(backend))
}

/// A fully connected layer with PyTorch's default initialisation.
fn dense(in_dim: usize, out_dim: usize, backend: Backend, vb: VarBuilder) -> Result<Dense> {
    Ok(Dense::new(in_dim, out_dim, vb)?.with_backend(backend))
}

/// F: the embedding network.
#[derive(Debug, Clone)]
pub struct Embedding {
    convs: [Conv2d; 3],
}

impl Embedding {
    /// Parameters `conv{0,1,2}.{weight,bias}` under `vb`.
    pub fn new(cfg: &GtaNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let p = Conv2dParams { stride: 1, padding: 0, relu: true };
        let (ndf, be) = (cfg.ndf, cfg.backend);
        Ok(Self {
            convs: [
                conv(IMAGE_CHANNELS, ndf, 5, p, be, vb.pp("conv0"))?,
                conv(ndf, ndf, 5, p, be, vb.pp("conv1"))?,
                conv(ndf, 2 * ndf, 5, p, be, vb.pp("conv2"))?,
            ],
        })
    }

    pub fn frozen(&self) -> Self {
        Self { convs: self.convs.clone().map(|c| c.frozen()) }
    }
}

/// Checks an image batch is `[N, 3, 32, 32]`.
fn check_images(xs: &Tensor, who: &str) -> Result<()> {
    let (_, c, h, w) = xs.dims4()?;
    if (c, h, w) != (IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE) {
        candle_core::bail!(
            "{who} expects images [N, {IMAGE_CHANNELS}, {IMAGE_SIZE}, {IMAGE_SIZE}], got {:?}",
            xs.dims()
        );
    }
    Ok(())
}

impl ModuleT for Embedding {
    /// `[N, 3, 32, 32]` images to `[N, 2 ndf]` embeddings (F has no train-time behaviour).
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        check_images(xs, "F")?;
        let xs = self.convs[0].forward_max_pool(xs, 2, 2)?;
        let xs = self.convs[1].forward_max_pool(&xs, 2, 2)?;
        self.convs[2].forward(&xs)?.flatten_from(1)
    }
}

/// C: the label classifier on F's embedding.
#[derive(Debug, Clone)]
pub struct Classifier {
    fc0: Dense,
    fc1: Dense,
}

impl Classifier {
    /// Parameters `fc{0,1}.{weight,bias}` under `vb`.
    pub fn new(cfg: &GtaNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let e = cfg.embedding_dim();
        Ok(Self {
            fc0: dense(e, e, cfg.backend, vb.pp("fc0"))?,
            fc1: dense(e, cfg.classes, cfg.backend, vb.pp("fc1"))?,
        })
    }

    pub fn frozen(&self) -> Self {
        Self { fc0: self.fc0.frozen(), fc1: self.fc1.frozen() }
    }
}

impl ModuleT for Classifier {
    /// `[N, 2 ndf]` embeddings to `[N, classes]` logits.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        self.fc1.forward(&kernels::relu_with(&self.fc0.forward(xs)?, self.fc0.backend())?)
    }
}

/// G: the generator.
#[derive(Debug, Clone)]
pub struct Generator {
    convs: [ConvTranspose2d; 5],
    norms: [BatchNorm2d; 4],
    input_dim: usize,
}

impl Generator {
    /// Parameters `convt{0..4}.weight` and `bn{0..3}.*` under `vb`.
    pub fn new(cfg: &GtaNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (ngf, be) = (cfg.ngf, cfg.backend);
        let first = ConvTranspose2dParams { stride: 1, padding: 0 };
        let up = ConvTranspose2dParams { stride: 2, padding: 1 };
        let input_dim = cfg.generator_input_dim();
        let widths = [input_dim, 8 * ngf, 4 * ngf, 2 * ngf, ngf, IMAGE_CHANNELS];
        let convt = |i: usize| {
            let (k, p) = if i == 0 { (2, first) } else { (4, up) };
            conv_transpose(widths[i], widths[i + 1], k, p, be, vb.pp(format!("convt{i}")))
        };
        let norm = |i: usize| batch_norm(widths[i + 1], be, vb.pp(format!("bn{i}")));
        Ok(Self {
            convs: [convt(0)?, convt(1)?, convt(2)?, convt(3)?, convt(4)?],
            norms: [norm(0)?, norm(1)?, norm(2)?, norm(3)?],
            input_dim,
        })
    }

    pub fn frozen(&self) -> Self {
        Self {
            convs: self.convs.clone().map(|c| c.frozen()),
            norms: self.norms.clone().map(|n| n.frozen()),
            input_dim: self.input_dim,
        }
    }

    /// Width of the input `[F(x), z, l]`.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// The BatchNorm layers (for inspecting running statistics).
    pub fn batch_norms(&self) -> &[BatchNorm2d] {
        &self.norms
    }
}

impl ModuleT for Generator {
    /// `[N, input_dim]` (see [`generator_input`]) to `[N, 3, 32, 32]` images in `[-1, 1]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (n, d) = xs.dims2()?;
        if d != self.input_dim {
            candle_core::bail!("G expects inputs [N, {}], got {:?}", self.input_dim, xs.dims());
        }
        let mut xs = xs.reshape((n, d, 1, 1))?;
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            xs = kernels::relu_with(&norm.forward_t(&conv.forward(&xs)?, train)?, conv.backend())?;
        }
        self.convs[4].forward(&xs)?.tanh()
    }
}

/// What D says about a batch of images.
#[derive(Debug, Clone)]
pub struct DiscriminatorOutput {
    /// Real/fake logits `[N]` (positive: real).
    pub real_fake: Tensor,
    /// Auxiliary class logits `[N, classes]`.
    pub class_logits: Tensor,
}

/// D: the discriminator with its real/fake and auxiliary-class heads.
#[derive(Debug, Clone)]
pub struct Discriminator {
    convs: [Conv2d; 4],
    norms: [BatchNorm2d; 4],
    real_fake: Dense,
    class: Dense,
}

/// Max-pool after each of D's blocks: `32 -> 16 -> 8 -> 4 -> 1`.
const D_POOLS: [usize; 4] = [2, 2, 2, 4];

impl Discriminator {
    /// Parameters `conv{0..3}.*`, `bn{0..3}.*`, `real_fake.*` and `class.*` under `vb`.
    pub fn new(cfg: &GtaNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (ndf, be) = (cfg.ndf, cfg.backend);
        let widths = [IMAGE_CHANNELS, ndf, 2 * ndf, 4 * ndf, 2 * ndf];
        let p = Conv2dParams { stride: 1, padding: 1, relu: false };
        let block = |i: usize| conv(widths[i], widths[i + 1], 3, p, be, vb.pp(format!("conv{i}")));
        let norm = |i: usize| batch_norm(widths[i + 1], be, vb.pp(format!("bn{i}")));
        Ok(Self {
            convs: [block(0)?, block(1)?, block(2)?, block(3)?],
            norms: [norm(0)?, norm(1)?, norm(2)?, norm(3)?],
            real_fake: dense(2 * ndf, 1, be, vb.pp("real_fake"))?,
            class: dense(2 * ndf, cfg.classes, be, vb.pp("class"))?,
        })
    }

    pub fn frozen(&self) -> Self {
        Self {
            convs: self.convs.clone().map(|c| c.frozen()),
            norms: self.norms.clone().map(|n| n.frozen()),
            real_fake: self.real_fake.frozen(),
            class: self.class.frozen(),
        }
    }

    /// `[N, 2 ndf]` features of `[N, 3, 32, 32]` images in `[-1, 1]`.
    pub fn features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_images(xs, "D")?;
        let mut xs = xs.clone();
        for ((conv, norm), &k) in self.convs.iter().zip(&self.norms).zip(&D_POOLS) {
            // Pooling before the LeakyReLU gives the same values and gradients (it is strictly
            // increasing) on a quarter (or a sixteenth) of the elements. In training on the CPU
            // the three are one op, bit-identical to them.
            xs = norm.forward_max_pool_leaky(&conv.forward(&xs)?, k, LEAKY_SLOPE, train)?;
        }
        xs.flatten_from(1)
    }

    /// Both heads on `[N, 3, 32, 32]` images in `[-1, 1]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<DiscriminatorOutput> {
        let f = self.features(xs, train)?;
        Ok(DiscriminatorOutput {
            real_fake: self.real_fake.forward(&f)?.squeeze(D::Minus1)?,
            class_logits: self.class.forward(&f)?,
        })
    }
}

/// G's one-hot code for labelled source images: `[N, classes + 1]` with `labels` (u32, `[N]`) set.
pub fn class_code(labels: &Tensor, classes: usize) -> Result<Tensor> {
    let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let mut code = vec![0f32; labels.len() * (classes + 1)];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= classes {
            candle_core::bail!("label {l} out of range for {classes} classes");
        }
        code[i * (classes + 1) + l as usize] = 1.0;
    }
    Tensor::from_vec(code, (labels.len(), classes + 1), &Device::Cpu)
}

/// G's code for target images (class unknown): the one-hot of the extra entry `classes`.
pub fn target_code(n: usize, classes: usize) -> Result<Tensor> {
    let mut code = vec![0f32; n * (classes + 1)];
    for row in code.chunks_exact_mut(classes + 1) {
        row[classes] = 1.0;
    }
    Tensor::from_vec(code, (n, classes + 1), &Device::Cpu)
}

/// `n` noise vectors `z ~ N(0, 1)` of size `dim` from `rng` (candle's own generator cannot be
/// seeded, so runs would not be reproducible with it).
pub fn sample_noise(n: usize, dim: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let z: Vec<f32> = (0..n * dim).map(|_| rng.sample(StandardNormal)).collect();
    Tensor::from_vec(z, (n, dim), device)
}

/// G's input `[F(x), z, l]`: `[N, embedding_dim + noise_dim + classes + 1]`.
pub fn generator_input(embedding: &Tensor, noise: &Tensor, code: &Tensor) -> Result<Tensor> {
    let device = embedding.device();
    Tensor::cat(&[embedding, &noise.to_device(device)?, &code.to_device(device)?], 1)
}

/// The four GTA networks: parameters under `F.*`, `C.*`, `G.*` and `D.*`, so one optimizer per
/// network can take [`crate::ParamStore::trainable_vars`]`("F.")` and so on.
#[derive(Debug, Clone)]
pub struct GtaModel {
    pub f: Embedding,
    pub c: Classifier,
    pub g: Generator,
    pub d: Discriminator,
    cfg: GtaNetConfig,
}

/// The variable prefixes of the four networks, in the order D, G, C, F of their updates.
pub const NETWORK_PREFIXES: [&str; 4] = ["D.", "G.", "C.", "F."];

impl GtaModel {
    pub fn new(cfg: &GtaNetConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            f: Embedding::new(cfg, vb.pp("F"))?,
            c: Classifier::new(cfg, vb.pp("C"))?,
            g: Generator::new(cfg, vb.pp("G"))?,
            d: Discriminator::new(cfg, vb.pp("D"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &GtaNetConfig {
        &self.cfg
    }

    /// A copy whose forward passes track no parameter gradients (it still sees later updates, and
    /// BatchNorm in training mode still moves the shared running statistics).
    pub fn frozen(&self) -> Self {
        Self { f: self.f.frozen(), c: self.c.frozen(), g: self.g.frozen(), d: self.d.frozen(), cfg: self.cfg.clone() }
    }

    /// F's embeddings of `xs` (`[N, 3, 32, 32]`, normalised as in training), detached: for t-SNE.
    pub fn embed(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.f.frozen().forward_t(xs, false)?.detach())
    }

    /// Class logits of `xs` through F and C (inference), detached.
    pub fn classify(&self, xs: &Tensor) -> Result<Tensor> {
        let frozen = self.frozen();
        Ok(frozen.c.forward_t(&frozen.f.forward_t(xs, false)?, false)?.detach())
    }

    /// G's images (`[N, 3, 32, 32]` in `[-1, 1]`, detached) from F's embeddings of `xs`, with the
    /// source code of `labels` or, for `None`, the target code. `batch_stats` runs G's BatchNorm
    /// on the batch's statistics as in training; otherwise it uses the running statistics (which
    /// also leaves them unchanged).
    pub fn generate(&self, xs: &Tensor, labels: Option<&Tensor>, noise: &Tensor, batch_stats: bool) -> Result<Tensor> {
        let frozen = self.frozen();
        let emb = frozen.f.forward_t(xs, false)?;
        let code = match labels {
            Some(l) => class_code(l, self.cfg.classes)?,
            None => target_code(xs.dim(0)?, self.cfg.classes)?,
        };
        Ok(frozen.g.forward_t(&generator_input(&emb, noise, &code)?, batch_stats)?.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParamStore, init};
    use candle_core::Var;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn small() -> GtaNetConfig {
        GtaNetConfig { classes: 10, noise_dim: 16, ngf: 8, ndf: 8, backend: Backend::Auto }
    }

    fn images(n: usize, seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * 3 * 32 * 32).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, (n, 3, 32, 32), &Device::Cpu).unwrap()
    }

    #[test]
    fn output_shapes_at_the_paper_widths() -> Result<()> {
        let store = ParamStore::new(0);
        let cfg = GtaNetConfig::default();
        let m = GtaModel::new(&cfg, store.var_builder(DType::F32, &Device::Cpu))?;
        let x = images(2, 1);
        let e = m.f.forward_t(&x, true)?;
        assert_eq!(e.dims(), &[2, 128]);
        assert_eq!(m.c.forward_t(&e, true)?.dims(), &[2, 10]);
        assert_eq!(m.g.input_dim(), 128 + 512 + 11);
        let z = sample_noise(2, 512, &mut StdRng::seed_from_u64(0), &Device::Cpu)?;
        let code = class_code(&Tensor::new(&[3u32, 9], &Device::Cpu)?, 10)?;
        let img = m.g.forward_t(&generator_input(&e, &z, &code)?, true)?;
        assert_eq!(img.dims(), &[2, 3, 32, 32]);
        let v = img.flatten_all()?.to_vec1::<f32>()?;
        assert!(v.iter().all(|v| v.abs() <= 1.0), "tanh output outside [-1, 1]");
        let out = m.d.forward_t(&img, true)?;
        assert_eq!(out.real_fake.dims(), &[2]);
        assert_eq!(out.class_logits.dims(), &[2, 10]);
        assert_eq!(m.d.features(&x, false)?.dims(), &[2, 128]);
        // The authors' shapes, parameter by parameter.
        let t = store.tensors();
        for (name, dims) in [
            ("F.conv0.weight", &[64, 3, 5, 5][..]),
            ("F.conv2.weight", &[128, 64, 5, 5]),
            ("C.fc0.weight", &[128, 128]),
            ("C.fc1.weight", &[10, 128]),
            ("G.convt0.weight", &[651, 512, 2, 2]),
            ("G.convt1.weight", &[512, 256, 4, 4]),
            ("G.convt4.weight", &[64, 3, 4, 4]),
            ("G.bn3.running_var", &[64]),
            ("D.conv0.weight", &[64, 3, 3, 3]),
            ("D.conv2.weight", &[256, 128, 3, 3]),
            ("D.conv3.weight", &[128, 256, 3, 3]),
            ("D.real_fake.weight", &[1, 128]),
            ("D.class.weight", &[10, 128]),
        ] {
            assert_eq!(t[name].dims(), dims, "{name}");
        }
        assert!(!t.contains_key("G.convt0.bias"), "netG's transposed convolutions have no bias");
        // Batch of one (inference) and a wrong image size.
        assert_eq!(m.classify(&images(1, 2))?.dims(), &[1, 10]);
        assert!(m.f.forward_t(&Tensor::zeros((1, 3, 28, 28), DType::F32, &Device::Cpu)?, false).is_err());
        Ok(())
    }

    #[test]
    fn initialisation_follows_the_authors() -> Result<()> {
        let store = ParamStore::new(3);
        GtaModel::new(&GtaNetConfig::default(), store.var_builder(DType::F32, &Device::Cpu))?;
        let t = store.tensors();
        let stats = |name: &str| -> (f32, f32) {
            let v = t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32).sqrt();
            (mean, std)
        };
        for name in ["F.conv1.weight", "G.convt1.weight", "D.conv2.weight"] {
            let (m, s) = stats(name);
            assert!(m.abs() < 2e-3 && (s - 0.02).abs() < 2e-3, "{name}: mean {m} std {s}");
        }
        let (m, s) = stats("G.bn1.weight");
        assert!((m - 1.0).abs() < 1e-2 && (s - 0.02).abs() < 1e-2, "BN weight mean {m} std {s}");
        assert!(t["D.bn0.bias"].flatten_all()?.to_vec1::<f32>()?.iter().all(|&v| v == 0.0));
        let bound = init::pytorch_bound(128) as f32;
        assert!(t["C.fc0.weight"].flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.abs() <= bound));
        Ok(())
    }

    #[test]
    fn class_and_target_codes() -> Result<()> {
        let code = class_code(&Tensor::new(&[2u32, 0], &Device::Cpu)?, 3)?.to_vec2::<f32>()?;
        assert_eq!(code, vec![vec![0.0, 0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0, 0.0]]);
        assert_eq!(target_code(1, 3)?.to_vec2::<f32>()?, vec![vec![0.0, 0.0, 0.0, 1.0]]);
        assert!(class_code(&Tensor::new(&[3u32], &Device::Cpu)?, 3).is_err());
        Ok(())
    }

    #[test]
    fn frozen_networks_track_no_parameter_gradients_but_see_updates() -> Result<()> {
        let store = ParamStore::new(1);
        let m = GtaModel::new(&small(), store.var_builder(DType::F32, &Device::Cpu))?;
        let frozen = m.frozen();
        let x = images(3, 4);
        let out = frozen.d.forward_t(&x, true)?;
        assert!(!out.real_fake.track_op(), "a frozen D on constant input builds no graph");
        // Gradients still flow through a frozen network to its input.
        let xv = Var::from_tensor(&x)?;
        let grads = frozen.d.forward_t(xv.as_tensor(), true)?.real_fake.sum_all()?.backward()?;
        assert!(grads.get(xv.as_tensor()).is_some());
        assert!(store.trainable_vars("D.").iter().all(|v| grads.get(v.as_tensor()).is_none()));
        // An update of the store shows in the frozen copy.
        let before = frozen.classify(&x)?.to_vec2::<f32>()?;
        let w = store.get("C.fc1.bias").unwrap();
        w.set(&(w.as_tensor() + 1.0)?)?;
        let after = frozen.classify(&x)?.to_vec2::<f32>()?;
        assert!((after[0][0] - before[0][0] - 1.0).abs() < 1e-5);
        // Generation from target embeddings, with running statistics: images in [-1, 1].
        let z = sample_noise(3, 16, &mut StdRng::seed_from_u64(0), &Device::Cpu)?;
        let img = m.generate(&x, None, &z, false)?;
        assert_eq!(img.dims(), &[3, 3, 32, 32]);
        assert!(!img.track_op());
        Ok(())
    }

    #[test]
    fn candle_backend_agrees_with_the_fast_kernels() -> Result<()> {
        let store = ParamStore::new(2);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let fast = GtaModel::new(&small(), vb.clone())?;
        let slow = GtaModel::new(&GtaNetConfig { backend: Backend::Candle, ..small() }, vb)?;
        let x = images(4, 6);
        let z = sample_noise(4, 16, &mut StdRng::seed_from_u64(1), &Device::Cpu)?;
        let run = |m: &GtaModel| -> Result<(Vec<f32>, Vec<f32>)> {
            let e = m.f.forward_t(&x, true)?;
            let img = m.g.forward_t(&generator_input(&e, &z, &target_code(4, 10)?)?, false)?;
            let out = m.d.forward_t(&img, false)?;
            let loss = (out.real_fake.sum_all()? + out.class_logits.sqr()?.sum_all()?)?;
            let grads = loss.backward()?;
            let g = grads.get(store.get("G.convt2.weight").unwrap().as_tensor()).unwrap();
            Ok((out.class_logits.flatten_all()?.to_vec1()?, g.flatten_all()?.to_vec1()?))
        };
        let (fo, fg) = run(&fast)?;
        let (so, sg) = run(&slow)?;
        let close = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale)
        };
        assert!(close(&fo, &so), "D outputs differ");
        assert!(close(&fg, &sg), "G weight gradients differ");
        Ok(())
    }
}
