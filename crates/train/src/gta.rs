//! The Generate To Adapt loop (Sankaranarayanan et al., CVPR 2018), after the authors'
//! `trainer.py`, with one Adam optimizer per network and the updates of one iteration in the
//! order D, G, C, F:
//!
//! * **D**: `BCE(D(x_s), real) + CE(D_cls(x_s), y_s) + BCE(D(G(s)), fake) + BCE(D(G(t)), fake)`,
//!   where `x_s` are the source images mapped to `[-1, 1]` and `G(s)`, `G(t)` the images generated
//!   from source and target embeddings;
//! * **G**: `CE(D_cls(G(s)), y_s) + BCE(D(G(s)), real)` (D already updated);
//! * **C**: `CE(C(F(x_s)), y_s)`;
//! * **F**: `CE(C(F(x_s)), y_s) + adv_weight * CE(D_cls(G(s)), y_s)
//!   + adv_weight * alpha * BCE(D(G(t)), real)`.
//!
//! G's input is `[F(x), z, l]`: `l` is the one-hot source label, or the extra "target" entry for
//! target images. D and G never see the classifier stream's normalisation: D gets images in
//! `[-1, 1]` (as G's tanh produces), computed from the normalised inputs with
//! [`GtaConfig::input_mean`] and [`GtaConfig::input_std`].
//!
//! Each loss is evaluated with the current parameters of every network, i.e. after the updates
//! that precede it in the iteration (the authors' code reuses some forward passes from before
//! the updates, which PyTorch 1.x refuses as an in-place modification). Networks that a loss does
//! not update run [frozen](adapt_models::gta::GtaModel::frozen), so each backward pass computes
//! gradients only for the parameters its optimizer owns: D's and G's inputs are detached where
//! the loss must not reach F. BatchNorm statistics (G and D) are batch statistics in every
//! training forward pass, and every such pass moves the running statistics, as in PyTorch.
//!
//! The learning rates of D, F and C decay as `lr / (1 + lr_decay * iteration)` after each
//! iteration; G's stays constant (the authors' schedule).
//!
//! [`GtaVariant`] selects the rows of the ablation in Sankaranarayanan et al., "Generate To Adapt:
//! Aligning Domains using Generative Adversarial Networks" (2018): stream 1 only (F + C, source
//! only), stream 2 with only the real/fake classifier (no auxiliary-class terms in any loss), and
//! the full method.
//!
//! [`GtaTrainer::step`] is one iteration, for a loop of one's own; [`train_gta`] runs it in the
//! shared [`crate::training_loop`] (records, checkpoints, resume, the non-finite-loss stop).
use crate::batches::{MixedBatch, MixedSampler};
use crate::checkpoint::Resume;
use crate::error::{Result, TrainError};
use crate::optim::{AdamSettings, inverse_decay};
use crate::training_loop::{self, Hooks, LoopTrainer, MetricWindow, Outcome};
use adapt_models::NamedParams;
use adapt_models::gta::{DiscriminatorOutput, GtaModel, class_code, generator_input, sample_noise, target_code};
use candle_core::{D, DType, Device, ModuleT, Tensor};
use candle_nn::Optimizer;
use candle_nn::loss::cross_entropy;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The optimizer of each GTA network, named here beside the trainer that owns four of them.
pub use crate::optim::Adam;

/// Which rows of the GTA ablation to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GtaVariant {
    /// Stream 1 only: F + C on source labels (source-only); G and D are not trained.
    Stream1,
    /// Stream 1 + stream 2 with only D's real/fake classifier (C1): no auxiliary-class loss.
    C1,
    /// The full method: real/fake (C1) and auxiliary classifier (C2).
    #[default]
    Full,
}

impl GtaVariant {
    pub const ALL: [GtaVariant; 3] = [GtaVariant::Stream1, GtaVariant::C1, GtaVariant::Full];

    /// The `method` name in reports and JSON: `gta-stream1`, `gta-c1`, `gta-full`.
    pub fn method_name(self) -> &'static str {
        match self {
            GtaVariant::Stream1 => "gta-stream1",
            GtaVariant::C1 => "gta-c1",
            GtaVariant::Full => "gta-full",
        }
    }

    /// The ablation table's row label (the wording of A. Bykov's reproduction report of Generate To
    /// Adapt).
    pub fn description(self) -> &'static str {
        match self {
            GtaVariant::Stream1 => "Stream 1 - Source only",
            GtaVariant::C1 => "Stream 1 + Stream 2 (C1 only)",
            GtaVariant::Full => "Stream 1 + Stream 2 (C1 + C2)",
        }
    }

    /// Whether G and D are trained.
    pub fn adversarial(self) -> bool {
        self != GtaVariant::Stream1
    }

    /// Whether the auxiliary-class terms are in the losses.
    pub fn auxiliary(self) -> bool {
        self == GtaVariant::Full
    }
}

/// Everything that decides a GTA run's optimisation; saved with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GtaConfig {
    pub variant: GtaVariant,
    pub steps: usize,
    /// Images per domain in each iteration.
    pub batch_size: usize,
    /// Seeds the noise `z` (the parameters are drawn by their store: a `ParamStore` has its own seed).
    pub seed: u64,
    /// Adam for all four networks (the paper: lr 5e-4, beta1 0.8).
    pub adam: AdamSettings,
    /// Weight of F's adversarial terms.
    pub adv_weight: f64,
    /// Extra weight of F's target term (`adv_weight * alpha`).
    pub alpha: f64,
    /// `lr / (1 + lr_decay * iteration)` on D, F and C (0 disables the decay).
    pub lr_decay: f64,
    /// Per-channel mean and standard deviation of the inputs' normalisation, `x = (p - mean) /
    /// std` for pixels `p` in `[0, 1]` (one value applies to every channel). D sees `2p - 1`.
    pub input_mean: Vec<f32>,
    pub input_std: Vec<f32>,
    /// Training images of both domains moved by up to this many pixels each way
    /// ([`MixedSampler::with_shift`]); 0, the authors' recipe, leaves them as they are.
    pub input_shift: usize,
    /// Write a metrics record every this many steps.
    pub log_every: usize,
}

impl Default for GtaConfig {
    /// The authors' hyper-parameters, on inputs that are plain `[0, 1]` pixels.
    fn default() -> Self {
        Self {
            variant: GtaVariant::Full,
            steps: 10_000,
            batch_size: 100,
            seed: 0,
            adam: AdamSettings::gta(),
            adv_weight: 0.1,
            alpha: 0.3,
            lr_decay: 1e-4,
            input_mean: vec![0.0],
            input_std: vec![1.0],
            input_shift: 0,
            log_every: 50,
        }
    }
}

impl GtaConfig {
    pub fn validate(&self) -> Result<()> {
        TrainError::check_loop_sizes(self.steps, self.batch_size, self.log_every)?;
        for (name, v) in
            [("lr", self.adam.lr), ("adv_weight", self.adv_weight), ("alpha", self.alpha), ("lr_decay", self.lr_decay)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(TrainError::Config(format!("{name} must be finite and >= 0, got {v}")));
            }
        }
        if !(0.0..1.0).contains(&self.adam.beta1) || !(0.0..1.0).contains(&self.adam.beta2) {
            return Err(TrainError::Config(format!(
                "Adam betas must be in [0, 1), got {} and {}",
                self.adam.beta1, self.adam.beta2
            )));
        }
        let (m, s) = (&self.input_mean, &self.input_std);
        if m.is_empty()
            || s.is_empty()
            || s.iter().any(|v| !(v.is_finite() && *v > 0.0))
            || m.iter().any(|v| !v.is_finite())
        {
            return Err(TrainError::Config(format!(
                "input normalisation needs finite means and positive stds, got {m:?} / {s:?}"
            )));
        }
        Ok(())
    }

    /// Learning rate of D, F and C after `iteration` iterations.
    pub fn decayed_lr(&self, iteration: usize) -> f64 {
        inverse_decay(self.adam.lr, iteration, self.lr_decay)
    }

    /// `[1, channels, 1, 1]` scale and shift taking normalised inputs to `[-1, 1]`:
    /// `2 (x std + mean) - 1`.
    fn unit_range_affine(&self, channels: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let per_channel = |v: &[f32], what: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; channels]),
                n if n == channels => Ok(v.to_vec()),
                n => Err(TrainError::Config(format!("{n} values of input {what} for {channels} channels"))),
            }
        };
        let mean = per_channel(&self.input_mean, "mean")?;
        let std = per_channel(&self.input_std, "std")?;
        let scale: Vec<f32> = std.iter().map(|s| 2.0 * s).collect();
        let shift: Vec<f32> = mean.iter().map(|m| 2.0 * m - 1.0).collect();
        Ok((
            Tensor::from_vec(scale, (1, channels, 1, 1), device)?,
            Tensor::from_vec(shift, (1, channels, 1, 1), device)?,
        ))
    }
}

/// Binary cross-entropy of `logits` against the constant label `target` (1 real, 0 fake), from
/// the logits: `mean(softplus(x) - target x)`, with the stable `softplus(x) = max(x, 0) +
/// log(1 + exp(-|x|))` (the authors' sigmoid + BCELoss, without its overflow).
pub fn bce_with_logits(logits: &Tensor, target: f64) -> Result<Tensor> {
    let softplus = (logits.relu()? + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
    Ok((softplus - (logits * target)?)?.mean_all()?)
}

/// Label of real images for D's real/fake head.
pub const REAL: f64 = 1.0;
/// Label of generated images.
pub const FAKE: f64 = 0.0;

/// D's loss: real source images are real (and, with `auxiliary`, of their class); images
/// generated from source and from target embeddings are fake.
pub fn discriminator_loss(
    real_source: &DiscriminatorOutput,
    fake_source: &DiscriminatorOutput,
    fake_target: &DiscriminatorOutput,
    labels: &Tensor,
    auxiliary: bool,
) -> Result<Tensor> {
    let mut loss = ((bce_with_logits(&real_source.real_fake, REAL)?
        + bce_with_logits(&fake_source.real_fake, FAKE)?)?
        + bce_with_logits(&fake_target.real_fake, FAKE)?)?;
    if auxiliary {
        loss = (loss + cross_entropy(&real_source.class_logits, labels)?)?;
    }
    Ok(loss)
}

/// G's loss: its images from source embeddings should pass as real (and, with `auxiliary`, as
/// their class).
pub fn generator_loss(fake_source: &DiscriminatorOutput, labels: &Tensor, auxiliary: bool) -> Result<Tensor> {
    let mut loss = bce_with_logits(&fake_source.real_fake, REAL)?;
    if auxiliary {
        loss = (loss + cross_entropy(&fake_source.class_logits, labels)?)?;
    }
    Ok(loss)
}

/// F's loss: the classification loss, plus (with stream 2) `adv_weight * CE(D_cls(G(s)), y_s)`
/// (when `fake_source` is given: the auxiliary term) and `adv_weight * alpha * BCE(D(G(t)),
/// real)` (when `fake_target` is given): target embeddings should generate images D takes for
/// real.
pub fn embedding_loss(
    class_logits: &Tensor,
    labels: &Tensor,
    fake_source: Option<&DiscriminatorOutput>,
    fake_target: Option<&DiscriminatorOutput>,
    adv_weight: f64,
    alpha: f64,
) -> Result<Tensor> {
    let mut loss = cross_entropy(class_logits, labels)?;
    if let Some(fs) = fake_source {
        loss = (loss + (cross_entropy(&fs.class_logits, labels)? * adv_weight)?)?;
    }
    if let Some(ft) = fake_target {
        loss = (loss + (bce_with_logits(&ft.real_fake, REAL)? * (adv_weight * alpha))?)?;
    }
    Ok(loss)
}

/// The four losses of one iteration (each as its network was updated on), with D's and G's
/// absent for [`GtaVariant::Stream1`], and accuracies on the iteration's batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GtaStepLosses {
    pub d: Option<f32>,
    pub g: Option<f32>,
    pub c: f32,
    pub f: f32,
    /// C's accuracy on the source batch (before C's update).
    pub label_acc: f32,
    /// Share of the real source images D called real (before D's update).
    pub d_real_acc: Option<f32>,
    /// Share of the generated images (source and target) D called fake (before D's update).
    pub d_fake_acc: Option<f32>,
}

/// Averages over the steps since the previous record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GtaStepMetrics {
    /// Steps done (1-based).
    pub step: usize,
    pub d_loss: Option<f64>,
    pub g_loss: Option<f64>,
    pub c_loss: f64,
    pub f_loss: f64,
    pub label_acc: f64,
    pub d_real_acc: Option<f64>,
    pub d_fake_acc: Option<f64>,
    /// Learning rate of D, F and C at the last step of the window (G's is `adam.lr`).
    pub lr: f64,
}

/// What a finished run reports.
pub type GtaOutcome = Outcome<GtaStepMetrics>;

fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32> {
    let n = labels.dim(0)?.max(1) as f32;
    Ok(logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? / n)
}

/// Share of `logits` on the `real` side of 0.
fn share_called(logits: &Tensor, real: bool) -> Result<f32> {
    let hits = if real { logits.gt(0.0)? } else { logits.le(0.0)? };
    Ok(hits.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?)
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// One optimizer per network, built from the store's variables under the network's prefix.
fn adam_for(params: &dyn NamedParams, prefix: &str, settings: AdamSettings) -> Result<Adam> {
    let vars = params.trainable_vars(prefix);
    if vars.is_empty() {
        return Err(TrainError::Config(format!(
            "the parameter store has no variables under '{prefix}': build the GtaModel from this store's var_builder"
        )));
    }
    Ok(Adam::new(vars, settings)?)
}

/// Names of the Adam state in GTA checkpoints: `optim.adam.D.0.m` and so on.
const ADAM_STATE_PREFIX: &str = "optim.adam.";

/// Where a GTA run reports and saves, and where it starts from (see [`Hooks`]); checkpoints hold
/// the parameters, the four optimizers' state, the iteration and the sampler position.
pub type GtaHooks<'a> = Hooks<'a, GtaStepMetrics>;

/// Runs GTA iterations on a [`GtaModel`].
pub struct GtaTrainer {
    model: GtaModel,
    frozen: GtaModel,
    cfg: GtaConfig,
    opt_d: Option<Adam>,
    opt_g: Option<Adam>,
    opt_c: Adam,
    opt_f: Adam,
    iteration: usize,
}

impl GtaTrainer {
    /// A trainer for `model`, whose parameters live in `params` under `F.`, `C.`, `G.`, `D.`
    /// (as [`GtaModel::new`] names them; a `ParamStore` or a `VarMap`). The model is shared, not
    /// copied: updates show in it.
    pub fn new(model: &GtaModel, params: &dyn NamedParams, cfg: &GtaConfig) -> Result<Self> {
        cfg.validate()?;
        let adv = cfg.variant.adversarial();
        Ok(Self {
            model: model.clone(),
            frozen: model.frozen(),
            cfg: cfg.clone(),
            opt_d: adv.then(|| adam_for(params, "D.", cfg.adam)).transpose()?,
            opt_g: adv.then(|| adam_for(params, "G.", cfg.adam)).transpose()?,
            opt_c: adam_for(params, "C.", cfg.adam)?,
            opt_f: adam_for(params, "F.", cfg.adam)?,
            iteration: 0,
        })
    }

    pub fn config(&self) -> &GtaConfig {
        &self.cfg
    }

    /// Iterations done.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Continues from `iteration` (after restoring parameters and optimizer state): sets the
    /// decayed learning rates, and the noise of later steps is the same as in an uninterrupted run.
    pub fn set_iteration(&mut self, iteration: usize) {
        self.iteration = iteration;
        self.apply_lr_decay();
    }

    /// The optimizers with their network's prefix, in update order D, G, C, F (D and G are
    /// `None` for stream 1 only).
    pub fn optimizers(&self) -> [(&'static str, Option<&Adam>); 4] {
        [("D.", self.opt_d.as_ref()), ("G.", self.opt_g.as_ref()), ("C.", Some(&self.opt_c)), ("F.", Some(&self.opt_f))]
    }

    /// Mutable access, e.g. to restore state with [`Adam::load_state_tensors`].
    pub fn optimizers_mut(&mut self) -> [(&'static str, Option<&mut Adam>); 4] {
        [
            ("D.", self.opt_d.as_mut()),
            ("G.", self.opt_g.as_mut()),
            ("C.", Some(&mut self.opt_c)),
            ("F.", Some(&mut self.opt_f)),
        ]
    }

    /// The four optimizers' state, named for [`crate::checkpoint::save_state`].
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (prefix, opt) in self.optimizers() {
            if let Some(opt) = opt {
                out.extend(opt.state_tensors(&format!("{ADAM_STATE_PREFIX}{prefix}"))?);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Continues from a checkpoint written by [`GtaTrainer::train`] (whose parameters
    /// [`crate::checkpoint::load`] has already restored): optimizer state, iteration and the
    /// sampler's position. `path` names the file in errors.
    pub fn restore(&mut self, path: &Path, resume: &Resume, sampler: &mut MixedSampler) -> Result<()> {
        training_loop::restore(self, path, resume, sampler)
    }

    fn apply_lr_decay(&mut self) {
        let lr = self.cfg.decayed_lr(self.iteration);
        if let Some(o) = self.opt_d.as_mut() {
            o.set_learning_rate(lr);
        }
        self.opt_c.set_learning_rate(lr);
        self.opt_f.set_learning_rate(lr);
    }

    /// The noise generator of the current iteration: seeded from the run's seed and the
    /// iteration alone, so a resumed run draws the same noise.
    fn noise_rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.cfg.seed ^ (self.iteration as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Normalised source images mapped to `[-1, 1]` for D.
    pub fn to_unit_range(&self, xs: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.cfg.unit_range_affine(xs.dim(1)?, xs.device())?;
        Ok(xs.broadcast_mul(&scale)?.broadcast_add(&shift)?)
    }

    /// One iteration on `source_x` (`[N, 3, 32, 32]`, normalised), its labels `source_y` (u32
    /// `[N]`) and `target_x` (`[M, 3, 32, 32]`). A non-finite loss stops with
    /// [`TrainError::NonFiniteLoss`] before its own network is updated (networks earlier in the
    /// order keep this iteration's update).
    pub fn step(&mut self, source_x: &Tensor, source_y: &Tensor, target_x: &Tensor) -> Result<GtaStepLosses> {
        self.step_observed(source_x, source_y, target_x, &mut |_| {})
    }

    /// [`GtaTrainer::step`], calling `after_update` with the network's prefix (`"D."`, `"G."`,
    /// `"C."`, `"F."`) right after each optimizer step (e.g. to check what each step changed).
    pub fn step_observed(
        &mut self,
        source_x: &Tensor,
        source_y: &Tensor,
        target_x: &Tensor,
        after_update: &mut dyn FnMut(&'static str),
    ) -> Result<GtaStepLosses> {
        let (n_s, n_t) = (source_x.dim(0)?, target_x.dim(0)?);
        if source_y.dims() != [n_s] {
            return Err(TrainError::Config(format!("{n_s} source images but labels of shape {:?}", source_y.dims())));
        }
        let labels = source_y.to_dtype(DType::U32)?;
        let mut rng = self.noise_rng();
        let step_no = self.iteration + 1;
        let (model, frozen) = (&self.model, &self.frozen);
        let classes = model.config().classes;
        let aux = self.cfg.variant.auxiliary();

        let e_s = model.f.forward_t(source_x, true)?;
        // C's forward does not depend on the D and G updates: its loss is known up front.
        let c_logits = model.c.forward_t(&e_s.detach(), true)?;
        let loss_c = cross_entropy(&c_logits, &labels)?;
        let c_value = scalar(&loss_c)?;
        let label_acc = accuracy(&c_logits, &labels)?;

        let mut out =
            GtaStepLosses { d: None, g: None, c: c_value, f: f32::NAN, label_acc, d_real_acc: None, d_fake_acc: None };
        let mut adversarial = None;
        if let (Some(opt_d), Some(opt_g)) = (self.opt_d.as_mut(), self.opt_g.as_mut()) {
            let e_t = model.f.forward_t(target_x, true)?;
            let device = source_x.device();
            let z_s = sample_noise(n_s, model.config().noise_dim, &mut rng, device)?;
            let z_t = sample_noise(n_t, model.config().noise_dim, &mut rng, device)?;
            let code_s = class_code(&labels, classes)?;
            let code_t = target_code(n_t, classes)?;

            // D: real source images against images generated from both domains. G's source
            // images keep G's graph for its own update; D sees them detached.
            let gen_s = model.g.forward_t(&generator_input(&e_s.detach(), &z_s, &code_s)?, true)?;
            let gen_t = frozen.g.forward_t(&generator_input(&e_t.detach(), &z_t, &code_t)?, true)?;
            let (scale, shift) = self.cfg.unit_range_affine(source_x.dim(1)?, device)?;
            let real = source_x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
            let d_real = model.d.forward_t(&real, true)?;
            let d_fake_s = model.d.forward_t(&gen_s.detach(), true)?;
            let d_fake_t = model.d.forward_t(&gen_t, true)?;
            let loss_d = discriminator_loss(&d_real, &d_fake_s, &d_fake_t, &labels, aux)?;
            let d_value = scalar(&loss_d)?;
            TrainError::check_finite(step_no, &[("D", d_value)])?;
            out.d = Some(d_value);
            out.d_real_acc = Some(share_called(&d_real.real_fake, true)?);
            let fake_called = share_called(&d_fake_s.real_fake, false)? * n_s as f32
                + share_called(&d_fake_t.real_fake, false)? * n_t as f32;
            out.d_fake_acc = Some(fake_called / (n_s + n_t) as f32);
            opt_d.backward_step(&loss_d)?;
            after_update("D.");

            // G: the updated D judges the source images again.
            let loss_g = generator_loss(&frozen.d.forward_t(&gen_s, true)?, &labels, aux)?;
            let g_value = scalar(&loss_g)?;
            TrainError::check_finite(step_no, &[("G", g_value)])?;
            out.g = Some(g_value);
            opt_g.backward_step(&loss_g)?;
            after_update("G.");
            adversarial = Some((e_t, z_s, z_t, code_s, code_t));
        }

        // C.
        TrainError::check_finite(step_no, &[("C", c_value)])?;
        self.opt_c.backward_step(&loss_c)?;
        after_update("C.");

        // F: through the updated C, G and D, which stay frozen.
        let f_logits = frozen.c.forward_t(&e_s, true)?;
        let loss_f = match adversarial {
            None => cross_entropy(&f_logits, &labels)?,
            Some((e_t, z_s, z_t, code_s, code_t)) => {
                let fake_t =
                    frozen.d.forward_t(&frozen.g.forward_t(&generator_input(&e_t, &z_t, &code_t)?, true)?, true)?;
                let fake_s = if aux {
                    Some(frozen.d.forward_t(&frozen.g.forward_t(&generator_input(&e_s, &z_s, &code_s)?, true)?, true)?)
                } else {
                    None
                };
                embedding_loss(&f_logits, &labels, fake_s.as_ref(), Some(&fake_t), self.cfg.adv_weight, self.cfg.alpha)?
            }
        };
        let f_value = scalar(&loss_f)?;
        TrainError::check_finite(step_no, &[("F", f_value)])?;
        out.f = f_value;
        self.opt_f.backward_step(&loss_f)?;
        after_update("F.");

        self.iteration += 1;
        self.apply_lr_decay();
        Ok(out)
    }

    /// G's images from F's embeddings of source images (with their labels' code) and of target
    /// images (with the target code), `[N, 3, 32, 32]` in `[-1, 1]`, for image grids. The noise is
    /// drawn from `seed`; G's BatchNorm uses batch statistics, as during training.
    pub fn generate(
        &self,
        source_x: &Tensor,
        source_y: &Tensor,
        target_x: &Tensor,
        seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let nz = self.model.config().noise_dim;
        let z_s = sample_noise(source_x.dim(0)?, nz, &mut rng, source_x.device())?;
        let z_t = sample_noise(target_x.dim(0)?, nz, &mut rng, target_x.device())?;
        Ok((
            self.model.generate(source_x, Some(source_y), &z_s, true)?,
            self.model.generate(target_x, None, &z_t, true)?,
        ))
    }

    /// Runs the remaining iterations up to `cfg.steps` on batches from `sampler` in the shared
    /// loop, writing a metrics record every `cfg.log_every` steps (and at the last).
    ///
    /// With `hooks.checkpoint`, saves `params` and the optimizers after every `every` iterations
    /// and after the last; with `hooks.resume`, continues from that checkpoint (see
    /// [`GtaTrainer::restore`]) and on the CPU ends with the parameters of an unbroken run.
    pub fn train(
        &mut self,
        params: &dyn NamedParams,
        sampler: &mut MixedSampler,
        device: &Device,
        hooks: GtaHooks<'_>,
    ) -> Result<GtaOutcome> {
        training_loop::run(self, params, sampler, device, hooks)
    }
}

/// Slots of a GTA iteration in the metrics window.
const D_LOSS: usize = 0;
const G_LOSS: usize = 1;
const C_LOSS: usize = 2;
const F_LOSS: usize = 3;
const LABEL_ACC: usize = 4;
const D_REAL_ACC: usize = 5;
const D_FAKE_ACC: usize = 6;

impl LoopTrainer for GtaTrainer {
    type Losses = GtaStepLosses;
    type Record = GtaStepMetrics;

    fn total_steps(&self) -> usize {
        self.cfg.steps
    }

    fn log_every(&self) -> usize {
        self.cfg.log_every
    }

    fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    fn steps_done(&self) -> usize {
        self.iteration
    }

    fn train_step(&mut self, batch: &MixedBatch) -> Result<GtaStepLosses> {
        let n = batch.n_source;
        let source = batch.inputs.narrow(0, 0, n)?;
        let target = batch.inputs.narrow(0, n, batch.inputs.dim(0)? - n)?;
        self.step(&source, &batch.source_labels, &target)
    }

    fn window_values(l: &GtaStepLosses) -> Vec<Option<f64>> {
        let mut values = vec![None; D_FAKE_ACC + 1];
        values[D_LOSS] = l.d.map(f64::from);
        values[G_LOSS] = l.g.map(f64::from);
        values[C_LOSS] = Some(l.c as f64);
        values[F_LOSS] = Some(l.f as f64);
        values[LABEL_ACC] = Some(l.label_acc as f64);
        values[D_REAL_ACC] = l.d_real_acc.map(f64::from);
        values[D_FAKE_ACC] = l.d_fake_acc.map(f64::from);
        values
    }

    fn record(&self, w: &MetricWindow, done: usize) -> GtaStepMetrics {
        GtaStepMetrics {
            step: done,
            d_loss: w.optional_mean(D_LOSS),
            g_loss: w.optional_mean(G_LOSS),
            c_loss: w.mean(C_LOSS),
            f_loss: w.mean(F_LOSS),
            label_acc: w.mean(LABEL_ACC),
            d_real_acc: w.optional_mean(D_REAL_ACC),
            d_fake_acc: w.optional_mean(D_FAKE_ACC),
            // The rate of the window's last iteration.
            lr: self.cfg.decayed_lr(done - 1),
        }
    }

    fn progress_message(r: &GtaStepMetrics) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        format!("D {} G {} C {:.3} F {:.3} acc {:.3}", opt(r.d_loss), opt(r.g_loss), r.c_loss, r.f_loss, r.label_acc)
    }

    fn checkpoint_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.optimizer_state()
    }

    fn restore_state(&mut self, path: &Path, resume: &Resume) -> Result<()> {
        let bad = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
        let mut known = 0;
        for (prefix, opt) in self.optimizers_mut() {
            if let Some(opt) = opt {
                let prefix = format!("{ADAM_STATE_PREFIX}{prefix}");
                known += resume.optimizer_state.keys().filter(|k| k.starts_with(&prefix)).count();
                opt.load_state_tensors(&resume.optimizer_state, &prefix).map_err(|e| bad(e.to_string()))?;
            }
        }
        if known != resume.optimizer_state.len() {
            return Err(bad(format!(
                "{} optimizer tensors do not belong to this variant's optimizers (a checkpoint of another method?)",
                resume.optimizer_state.len() - known
            )));
        }
        // Each Adam counts the updates of its variables; none can be ahead of the iterations done.
        for (name, opt) in self.optimizers() {
            if let Some(ahead) = opt.and_then(|o| o.steps().iter().copied().find(|&s| s > resume.step as u64)) {
                return Err(bad(format!("{name}'s optimizer counts {ahead} updates after {} iterations", resume.step)));
            }
        }
        self.set_iteration(resume.step);
        Ok(())
    }
}

/// Trains `model` (parameters in `params`, a `ParamStore` or a `VarMap`) for `cfg.steps`
/// iterations on batches from `sampler` (`cfg.batch_size` source and target images each,
/// `[3, 32, 32]` rows normalised as `cfg.input_mean` / `cfg.input_std` say): a [`GtaTrainer`] in
/// the shared [`crate::training_loop`].
///
/// `hooks.on_record` sees every metrics record (it is also appended to `hooks.metrics` when
/// given); it may read the model (e.g. F's embeddings for a t-SNE at some step) through the
/// caller's own reference, which shares the parameters.
pub fn train_gta(
    model: &GtaModel,
    params: &dyn NamedParams,
    sampler: &mut MixedSampler,
    device: &Device,
    cfg: &GtaConfig,
    hooks: GtaHooks<'_>,
) -> Result<GtaOutcome> {
    GtaTrainer::new(model, params, cfg)?.train(params, sampler, device, hooks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapt_models::ParamStore;
    use adapt_models::gta::GtaModel;

    fn d_out(real_fake: &[f32], class_logits: Vec<Vec<f32>>) -> DiscriminatorOutput {
        DiscriminatorOutput {
            real_fake: Tensor::new(real_fake, &Device::Cpu).unwrap(),
            class_logits: Tensor::new(class_logits, &Device::Cpu).unwrap(),
        }
    }

    fn v(t: &Tensor) -> f32 {
        t.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn bce_is_stable_and_matches_the_formula() -> Result<()> {
        let x = Tensor::new(&[-200f32, -1.0, 0.0, 2.0, 300.0], &Device::Cpu)?;
        let sig = |z: f32| 1.0 / (1.0 + (-z).exp());
        let real = v(&bce_with_logits(&x, REAL)?);
        let fake = v(&bce_with_logits(&x, FAKE)?);
        assert!(real.is_finite() && fake.is_finite());
        // The middle three by the textbook formula; the extremes contribute 200 and 300.
        let want_real = (200.0 - sig(-1.0).ln() - sig(0.0).ln() - sig(2.0).ln() + 0.0) / 5.0;
        let want_fake = (0.0 - (1.0 - sig(-1.0)).ln() - (1.0 - sig(0.0)).ln() - (1.0 - sig(2.0)).ln() + 300.0) / 5.0;
        assert!((real - want_real).abs() < 1e-4, "{real} vs {want_real}");
        assert!((fake - want_fake).abs() < 1e-4, "{fake} vs {want_fake}");
        Ok(())
    }

    /// The labels of every term, checked with a D that is confidently right or wrong.
    #[test]
    fn loss_labels_follow_the_paper() -> Result<()> {
        let y = Tensor::new(&[1u32, 0], &Device::Cpu)?;
        let right_class = vec![vec![-9.0, 9.0], vec![9.0, -9.0]];
        let wrong_class = vec![vec![9.0, -9.0], vec![-9.0, 9.0]];
        let says_real = |c: Vec<Vec<f32>>| d_out(&[20.0, 20.0], c);
        let says_fake = |c: Vec<Vec<f32>>| d_out(&[-20.0, -20.0], c);

        // D: real images called real, both kinds of generated images called fake: near 0.
        let good = discriminator_loss(
            &says_real(right_class.clone()),
            &says_fake(right_class.clone()),
            &says_fake(right_class.clone()),
            &y,
            true,
        )?;
        assert!(v(&good) < 1e-3, "D right everywhere: {}", v(&good));
        // Each term alone, flipped, costs about 20.
        for (r, fs, ft) in [
            (says_fake(right_class.clone()), says_fake(right_class.clone()), says_fake(right_class.clone())),
            (says_real(right_class.clone()), says_real(right_class.clone()), says_fake(right_class.clone())),
            (says_real(right_class.clone()), says_fake(right_class.clone()), says_real(right_class.clone())),
        ] {
            let l = v(&discriminator_loss(&r, &fs, &ft, &y, true)?);
            assert!((l - 20.0).abs() < 0.1, "one flipped real/fake term: {l}");
        }
        // The auxiliary class term is on the real images, and only with `auxiliary`.
        let wrong = says_real(wrong_class.clone());
        let fake = says_fake(right_class.clone());
        assert!((v(&discriminator_loss(&wrong, &fake, &fake, &y, true)?) - 18.0).abs() < 0.1);
        assert!(v(&discriminator_loss(&wrong, &fake, &fake, &y, false)?) < 1e-3);
        // D's class head on generated images does not enter D's loss.
        assert!(
            v(&discriminator_loss(&says_real(right_class.clone()), &says_fake(wrong_class.clone()), &fake, &y, true)?)
                < 1e-3
        );

        // G wants its source images called real and of their class.
        assert!(v(&generator_loss(&says_real(right_class.clone()), &y, true)?) < 1e-3);
        assert!((v(&generator_loss(&says_fake(right_class.clone()), &y, true)?) - 20.0).abs() < 0.1);
        assert!((v(&generator_loss(&says_real(wrong_class.clone()), &y, true)?) - 18.0).abs() < 0.1);
        assert!(v(&generator_loss(&says_real(wrong_class.clone()), &y, false)?) < 1e-3);

        // F: classification, + adv * class term on G(source), + adv * alpha * BCE(D(G(target)), real).
        let logits = Tensor::new(right_class.clone(), &Device::Cpu)?;
        let (adv, alpha) = (0.1, 0.3);
        let base = v(&embedding_loss(&logits, &y, None, None, adv, alpha)?);
        assert!(base < 1e-3);
        let t_fake = v(&embedding_loss(&logits, &y, None, Some(&says_fake(right_class.clone())), adv, alpha)?);
        assert!((t_fake - 20.0 * 0.03).abs() < 1e-2, "target called fake costs adv*alpha*20: {t_fake}");
        let t_real = v(&embedding_loss(&logits, &y, None, Some(&says_real(right_class.clone())), adv, alpha)?);
        assert!(t_real < 1e-3, "target called real is what F wants (label 1): {t_real}");
        let s_wrong = v(&embedding_loss(&logits, &y, Some(&says_fake(wrong_class)), None, adv, alpha)?);
        assert!((s_wrong - 1.8).abs() < 1e-2, "wrong class on G(source) costs adv*18: {s_wrong}");
        Ok(())
    }

    #[test]
    fn config_defaults_validation_and_range_mapping() -> Result<()> {
        let cfg = GtaConfig::default();
        assert_eq!(
            (cfg.batch_size, cfg.adam.lr, cfg.adam.beta1, cfg.adv_weight, cfg.alpha),
            (100, 5e-4, 0.8, 0.1, 0.3)
        );
        assert!((cfg.decayed_lr(10_000) - 2.5e-4).abs() < 1e-12);
        let json = serde_json::to_string(&GtaConfig { variant: GtaVariant::C1, ..cfg.clone() }).unwrap();
        assert!(json.contains("\"variant\":\"c1\""), "{json}");
        let partial: GtaConfig = serde_json::from_str(r#"{"variant":"stream1","steps":7}"#).unwrap();
        assert_eq!((partial.variant, partial.steps, partial.batch_size), (GtaVariant::Stream1, 7, 100));
        assert!(GtaConfig { input_std: vec![0.0], ..cfg.clone() }.validate().is_err());
        assert!(GtaConfig { steps: 0, ..cfg.clone() }.validate().is_err());
        assert_eq!(GtaVariant::ALL.map(GtaVariant::method_name), ["gta-stream1", "gta-c1", "gta-full"]);

        // Inputs normalised as (p - 0.44) / 0.19 map back to 2p - 1 for D.
        let store = ParamStore::new(0);
        let model = GtaModel::new(
            &adapt_models::gta::GtaNetConfig { noise_dim: 4, ngf: 2, ndf: 2, ..Default::default() },
            store.var_builder(DType::F32, &Device::Cpu),
        )?;
        let cfg = GtaConfig { input_mean: vec![0.44], input_std: vec![0.19], ..cfg };
        let trainer = GtaTrainer::new(&model, &store, &cfg)?;
        let p = Tensor::new(&[0.0f32, 0.5, 1.0], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
        let x = ((p - 0.44)? / 0.19)?;
        let d = trainer.to_unit_range(&x)?.flatten_all()?.to_vec1::<f32>()?;
        for (got, want) in d.iter().zip([-1.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-5, "{d:?}");
        }
        let bad = GtaConfig { input_mean: vec![0.0, 0.0], ..GtaConfig::default() };
        assert!(GtaTrainer::new(&model, &store, &bad)?.to_unit_range(&x).is_err());
        Ok(())
    }
}
