//! The DANN loop (Ganin & Lempitsky, 2015), and source-only training as its special case.
//!
//! Each step draws a mixed batch (half source, half target), computes the label loss on the
//! source half and the domain loss on both halves, and takes one momentum-SGD step on their sum.
//! The gradient reversal layer between features and domain classifier turns that sum into the
//! adversarial objective; its factor lambda and the learning rate follow the paper's schedules in
//! the training progress `p = step / steps`.
//!
//! Source-only training runs the same loop with lambda fixed at 0: the features get no domain
//! gradient, but the domain classifier is still trained, so both methods report how well a
//! classifier can tell their features apart.
//!
//! [`DannTrainer::step`] is one update, for a loop of one's own; [`train_dann`] runs it in the
//! shared [`crate::training_loop`] (records, checkpoints, resume, the non-finite-loss stop).
use crate::batches::{MixedBatch, MixedSampler};
use crate::checkpoint::{self, Resume};
use crate::error::{Result, TrainError};
use crate::optim::{MomentumSgd, SgdSettings, lr_schedule};
use crate::training_loop::{self, Hooks, LoopTrainer, MetricWindow, Outcome};
use crate::weight_average::WeightAverage;
use adapt_grl::lambda_schedule;
use adapt_models::params::keeping_values;
use adapt_models::{Dann, DannOutput, NamedParams};
use candle_core::{D, DType, Device, ModuleT, Tensor};
use candle_nn::Optimizer;
use candle_nn::loss::cross_entropy;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which objective to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Label loss only; the features never see the domain classifier's gradient.
    SourceOnly,
    /// Label loss plus domain loss behind the gradient reversal layer.
    Dann,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::SourceOnly => "source-only",
            Method::Dann => "dann",
        }
    }
}

/// Everything that decides a run's optimisation; saved with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub steps: usize,
    /// Rows per domain in each batch (the batch holds twice as many).
    pub batch_size: usize,
    pub seed: u64,
    pub sgd: SgdSettings,
    /// Anneal the learning rate as `lr / (1 + alpha p)^beta` (the paper: alpha 10, beta 0.75).
    pub lr_annealing: bool,
    pub lr_alpha: f64,
    pub lr_beta: f64,
    /// `gamma` of the lambda schedule (the paper: 10).
    pub gamma: f64,
    /// Scale of the lambda schedule's output (1 in the paper).
    pub lambda_max: f64,
    /// Weight of the domain loss in the total loss.
    pub domain_loss_weight: f64,
    /// Write a metrics record every this many steps.
    pub log_every: usize,
    /// Weight of [`crate::losses::information_maximization`] on the target half's class
    /// predictions (0: not computed, the paper's objective).
    #[serde(default)]
    pub target_im_weight: f64,
    /// Source and target go through the feature extractor in separate passes, so BatchNorm
    /// normalises each domain with its own batch statistics, and the BatchNorm running
    /// statistics (used at test time) are updated by the target passes only: the published
    /// recipes that adapt with BatchNorm nets do both (the joint batch let the domain classifier
    /// win). Without BatchNorm it changes nothing but the cost.
    #[serde(default)]
    pub separate_domain_passes: bool,
    /// Decay of a moving average of the weights (see [`crate::weight_average`]) that the run
    /// evaluates at every checkpoint and reports at the end; 0: no average, the last step's
    /// weights are the model.
    #[serde(default)]
    pub weight_average_decay: f64,
    /// Training images (both domains) moved by up to this many pixels each way, a fresh offset
    /// per image and step ([`MixedSampler::with_shift`]; 0: as loaded).
    #[serde(default)]
    pub input_shift: usize,
    /// Source training images recoloured at random, channel by channel
    /// ([`MixedSampler::with_source_colour_jitter`]; false: as loaded).
    #[serde(default)]
    pub source_colour_jitter: bool,
    /// Weight of [`crate::losses::virtual_adversarial_loss`] on the target half (VADA's
    /// smoothness term; 0: not computed). It costs a forward and backward pass of the target
    /// half more per step, and one forward pass.
    #[serde(default)]
    pub target_vat_weight: f64,
    /// L2 radius of the target's virtual adversarial perturbation, per image.
    #[serde(default = "default_vat_radius")]
    pub vat_radius: f64,
    /// Weight of [`crate::losses::confident_pseudo_label_loss`] on the target half, the labels
    /// from the weight average (the teacher, in evaluation mode) wherever its top probability
    /// reaches [`TrainConfig::pseudo_label_threshold`]; ramped up with the lambda schedule's
    /// shape, so it is near 0 while the teacher is still poor (0: not computed). It needs a
    /// weight average ([`TrainConfig::weight_average_decay`] above 0) and costs one forward
    /// pass of the target half more per step.
    #[serde(default)]
    pub target_pseudo_label_weight: f64,
    /// The teacher's confidence a target row needs to get a pseudo-label.
    #[serde(default = "default_pseudo_label_threshold")]
    pub pseudo_label_threshold: f64,
}

/// FixMatch's confidence threshold.
pub const DEFAULT_PSEUDO_LABEL_THRESHOLD: f64 = 0.95;

fn default_pseudo_label_threshold() -> f64 {
    DEFAULT_PSEUDO_LABEL_THRESHOLD
}

fn default_vat_radius() -> f64 {
    crate::losses::VatSettings::default().radius
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Dann,
            steps: 8600,
            batch_size: 32,
            seed: 0,
            sgd: SgdSettings::default(),
            lr_annealing: true,
            lr_alpha: 10.0,
            lr_beta: 0.75,
            gamma: adapt_grl::PAPER_GAMMA,
            lambda_max: 1.0,
            domain_loss_weight: 1.0,
            log_every: 50,
            target_im_weight: 0.0,
            separate_domain_passes: false,
            weight_average_decay: 0.0,
            input_shift: 0,
            source_colour_jitter: false,
            target_vat_weight: 0.0,
            vat_radius: default_vat_radius(),
            target_pseudo_label_weight: 0.0,
            pseudo_label_threshold: DEFAULT_PSEUDO_LABEL_THRESHOLD,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        TrainError::check_loop_sizes(self.steps, self.batch_size, self.log_every)?;
        for (name, v) in [
            ("gamma", self.gamma),
            ("lambda_max", self.lambda_max),
            ("domain_loss_weight", self.domain_loss_weight),
            ("target_im_weight", self.target_im_weight),
            ("target_vat_weight", self.target_vat_weight),
            ("target_pseudo_label_weight", self.target_pseudo_label_weight),
        ] {
            if !v.is_finite() {
                return Err(TrainError::Config(format!("{name} must be finite, got {v}")));
            }
        }
        let d = self.weight_average_decay;
        if !(d == 0.0 || (d > 0.0 && d < 1.0)) {
            return Err(TrainError::Config(format!("weight_average_decay must be 0 (off) or in (0, 1), got {d}")));
        }
        if !(self.vat_radius.is_finite() && self.vat_radius > 0.0) {
            return Err(TrainError::Config(format!("vat_radius must be a positive number, got {}", self.vat_radius)));
        }
        if self.target_pseudo_label_weight != 0.0 && d == 0.0 {
            return Err(TrainError::Config(
                "target pseudo-labels come from the weight average: set weight_average_decay above 0".into(),
            ));
        }
        let t = self.pseudo_label_threshold;
        if !(t.is_finite() && t > 0.0 && t <= 1.0) {
            return Err(TrainError::Config(format!("pseudo_label_threshold must be in (0, 1], got {t}")));
        }
        Ok(())
    }

    /// Lambda at progress `p` (0 for source-only).
    pub fn lambda_at(&self, p: f64) -> f64 {
        match self.method {
            Method::SourceOnly => 0.0,
            Method::Dann => self.lambda_max * lambda_schedule(p, self.gamma),
        }
    }

    /// Weight of the target pseudo-label loss at progress `p`: the configured weight times the
    /// lambda schedule's ramp (0 for source-only).
    pub fn pseudo_label_weight_at(&self, p: f64) -> f64 {
        match self.method {
            Method::SourceOnly => 0.0,
            Method::Dann => self.target_pseudo_label_weight * lambda_schedule(p, self.gamma),
        }
    }

    /// Whether a step needs the label predictor's output on the target half.
    fn needs_target_logits(&self) -> bool {
        self.target_im_weight != 0.0 || self.target_vat_weight != 0.0 || self.target_pseudo_label_weight != 0.0
    }

    /// Learning rate at progress `p`.
    pub fn lr_at(&self, p: f64) -> f64 {
        if self.lr_annealing { lr_schedule(p, self.sgd.lr, self.lr_alpha, self.lr_beta) } else { self.sgd.lr }
    }
}

/// Averages over the steps since the previous record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps done (1-based: the record after the first step has `step = 1`).
    pub step: usize,
    pub label_loss: f64,
    pub domain_loss: f64,
    /// Accuracy of the label predictor on the source half of the training batches.
    pub label_acc: f64,
    /// Accuracy of the domain classifier on the training batches.
    pub domain_acc: f64,
    /// Share of the target rows that got a pseudo-label (0 without the pseudo-label loss).
    #[serde(default)]
    pub pseudo_label_rate: f64,
    pub lambda: f64,
    pub lr: f64,
}

/// What a finished run reports.
pub type TrainOutcome = Outcome<StepMetrics>;

/// Where a DANN run reports and saves, and where it starts from (see [`Hooks`]).
pub type TrainHooks<'a> = Hooks<'a, StepMetrics>;

/// What one DANN update reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DannStepLosses {
    pub label_loss: f32,
    pub domain_loss: f32,
    /// Source rows the label predictor got right, of `labelled` (before the update).
    pub label_correct: usize,
    pub labelled: usize,
    /// Rows whose domain the domain classifier got right, of `rows` (before the update).
    pub domain_correct: usize,
    pub rows: usize,
    /// Target rows the teacher was confident enough on to give a pseudo-label (0 without the
    /// pseudo-label loss).
    #[serde(default)]
    pub pseudo_labelled: usize,
    pub lambda: f64,
    pub lr: f64,
}

impl DannStepLosses {
    pub fn label_acc(&self) -> f64 {
        self.label_correct as f64 / self.labelled.max(1) as f64
    }

    pub fn domain_acc(&self) -> f64 {
        self.domain_correct as f64 / self.rows.max(1) as f64
    }
}

fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize)
}

/// Runs DANN (or source-only) updates on a [`Dann`]: one momentum SGD over every trainable
/// parameter, the paper's lambda and learning-rate schedules.
pub struct DannTrainer<'m, F, L, Dm> {
    model: &'m Dann<F, L, Dm>,
    cfg: TrainConfig,
    opt: MomentumSgd,
    /// The optimizer's variables' names, in its order (checkpoints name the momentum by them).
    names: Vec<String>,
    /// BatchNorm running statistics (see [`TrainConfig::separate_domain_passes`]).
    buffers: Vec<candle_core::Var>,
    /// The evaluated weights, when [`TrainConfig::weight_average_decay`] asks for an average.
    average: Option<WeightAverage>,
    done: usize,
}

impl<'m, F: ModuleT, L: ModuleT, Dm: ModuleT> DannTrainer<'m, F, L, Dm> {
    /// A trainer for `model`, whose parameters live in `params` (a `ParamStore` or a `VarMap`:
    /// the store the model was built from). The model is shared, not copied: updates show in it.
    pub fn new(model: &'m Dann<F, L, Dm>, params: &dyn NamedParams, cfg: &TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let vars = params.trainable_vars("");
        if vars.is_empty() {
            return Err(TrainError::Config(
                "the parameter store has no trainable variables: build the model from this store's var_builder".into(),
            ));
        }
        let opt = MomentumSgd::new(vars, cfg.sgd)?;
        let buffers = params.buffer_vars();
        let decay = cfg.weight_average_decay;
        let average = if decay > 0.0 { Some(WeightAverage::new(params, decay)?) } else { None };
        Ok(Self { model, cfg: cfg.clone(), opt, names: checkpoint::momentum_names(params), buffers, average, done: 0 })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn optimizer(&self) -> &MomentumSgd {
        &self.opt
    }

    /// The moving average of the weights, if the configuration keeps one: [`WeightAverage::swap`]
    /// puts it into the model for evaluation (and back).
    pub fn weight_average(&mut self) -> Option<&mut WeightAverage> {
        self.average.as_mut()
    }

    /// Updates done (the `step` of the last [`DannTrainer::step`] plus one, or a checkpoint's).
    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// One update on `batch` at 0-based `step` of `cfg.steps`, which sets lambda and the learning
    /// rate. A NaN or infinite loss stops with [`TrainError::NonFiniteLoss`] (1-based step)
    /// before the update.
    pub fn step(&mut self, batch: &MixedBatch, step: usize) -> Result<DannStepLosses> {
        let p = step as f64 / self.cfg.steps as f64;
        let (lambda, lr) = (self.cfg.lambda_at(p), self.cfg.lr_at(p));
        self.opt.set_learning_rate(lr);
        let (rows, n) = (batch.inputs.dim(0)?, batch.n_source);
        let device = batch.inputs.device();
        let domain_labels =
            Tensor::cat(&[Tensor::zeros(n, DType::U32, device)?, Tensor::ones(rows - n, DType::U32, device)?], 0)?;
        let pseudo_label_weight = self.cfg.pseudo_label_weight_at(p);
        // Before the student's pass: the swap in and out of the averaged weights must not touch
        // tensors that the student's graph holds.
        let teacher_logits = if pseudo_label_weight != 0.0 {
            Some(self.teacher_logits(&batch.inputs.narrow(0, n, rows - n)?)?)
        } else {
            None
        };
        let (out, separate_target_logits) = if self.cfg.separate_domain_passes {
            self.forward_per_domain(&batch.inputs, n, lambda)?
        } else {
            (self.model.forward_mixed(&batch.inputs, n, lambda, true)?, None)
        };
        let label_loss = cross_entropy(&out.class_logits, &batch.source_labels)?;
        let domain_loss = cross_entropy(&out.domain_logits, &domain_labels)?;
        let (ll, dl) = (label_loss.to_scalar::<f32>()?, domain_loss.to_scalar::<f32>()?);
        TrainError::check_finite(step + 1, &[("label", ll), ("domain", dl)])?;
        let mut loss = (&label_loss + (domain_loss * self.cfg.domain_loss_weight)?)?;
        let mut pseudo_labelled = 0;
        if self.cfg.needs_target_logits() {
            // The target half's class predictions: the label predictor on its features, in
            // training mode like the source half's.
            let target_logits = match separate_target_logits {
                Some(logits) => logits,
                None => self.model.label_predictor.forward_t(&out.features.narrow(0, n, rows - n)?, true)?,
            };
            if self.cfg.target_im_weight != 0.0 {
                let im = crate::losses::information_maximization(&target_logits)?;
                TrainError::check_finite(step + 1, &[("target information maximisation", im.to_scalar::<f32>()?)])?;
                loss = (loss + (im * self.cfg.target_im_weight)?)?;
            }
            if self.cfg.target_vat_weight != 0.0 {
                let vat = self.target_vat(&batch.inputs.narrow(0, n, rows - n)?, &target_logits, step)?;
                TrainError::check_finite(step + 1, &[("target virtual adversarial", vat.to_scalar::<f32>()?)])?;
                loss = (loss + (vat * self.cfg.target_vat_weight)?)?;
            }
            if let Some(teacher) = &teacher_logits {
                let threshold = self.cfg.pseudo_label_threshold;
                let (pl, kept) = crate::losses::confident_pseudo_label_loss(&target_logits, teacher, threshold)?;
                TrainError::check_finite(step + 1, &[("target pseudo-label", pl.to_scalar::<f32>()?)])?;
                loss = (loss + (pl * pseudo_label_weight)?)?;
                pseudo_labelled = kept;
            }
        }
        self.opt.backward_step(&loss)?;
        if let Some(average) = &mut self.average {
            average.update()?;
        }
        self.done = step + 1;
        Ok(DannStepLosses {
            label_loss: ll,
            domain_loss: dl,
            label_correct: correct(&out.class_logits, &batch.source_labels)?,
            labelled: n,
            domain_correct: correct(&out.domain_logits, &domain_labels)?,
            rows,
            pseudo_labelled,
            lambda,
            lr,
        })
    }

    /// The weight average's class logits on target inputs `xs`, in evaluation mode (BatchNorm
    /// with its averaged running statistics), detached: the teacher of the pseudo-label loss.
    fn teacher_logits(&mut self, xs: &Tensor) -> Result<Tensor> {
        let Some(average) = self.average.as_mut() else {
            return Err(TrainError::Config("target pseudo-labels need a weight average".into()));
        };
        average.swap()?;
        let logits = self.model.features(xs, false).and_then(|f| self.model.label_predictor.forward_t(&f, false));
        // Back to the trained weights whatever the pass did.
        average.swap()?;
        Ok(logits?.detach())
    }

    /// The training forward pass with source and target in separate passes (see
    /// [`TrainConfig::separate_domain_passes`]); also returns the target's class logits when
    /// information maximisation needs them. The target passes run first; the running statistics
    /// as they stand after them are put back once the source passes have run, so only target
    /// batches move them.
    fn forward_per_domain(&self, xs: &Tensor, n: usize, lambda: f64) -> Result<(DannOutput, Option<Tensor>)> {
        let rows = xs.dim(0)?;
        let target_features = self.model.features(&xs.narrow(0, n, rows - n)?, true)?;
        let target_logits = if self.cfg.needs_target_logits() {
            Some(self.model.label_predictor.forward_t(&target_features, true)?)
        } else {
            None
        };
        keeping_values(&self.buffers, || {
            let source_features = self.model.features(&xs.narrow(0, 0, n)?, true)?;
            let class_logits = self.model.label_predictor.forward_t(&source_features, true)?;
            let features = Tensor::cat(&[&source_features, &target_features], 0)?;
            let domain_logits =
                self.model.domain_classifier.forward_t(&adapt_grl::grad_reverse(&features, lambda)?, true)?;
            Ok((DannOutput { features, class_logits, domain_logits }, target_logits))
        })
    }

    /// The virtual adversarial loss on the target inputs `xs` (logits `logits`) at `step`. Its
    /// probe noise depends on the seed and the step only, so a resumed run draws the same; its
    /// training-mode passes leave the BatchNorm running statistics as they found them (the
    /// perturbed images are not target data).
    fn target_vat(&self, xs: &Tensor, logits: &Tensor, step: usize) -> Result<Tensor> {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.cfg.seed ^ 0x5641_545f_6e6f_6973 ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let values: Vec<f32> = rand_distr::StandardNormal.sample_iter(&mut rng).take(xs.elem_count()).collect();
        let noise = Tensor::from_vec(values, xs.shape(), xs.device())?;
        let classify = |x: &Tensor| -> candle_core::Result<Tensor> {
            self.model.label_predictor.forward_t(&self.model.features(x, true)?, true)
        };
        let settings = crate::losses::VatSettings { radius: self.cfg.vat_radius, ..Default::default() };
        keeping_values(&self.buffers, || {
            Ok(crate::losses::virtual_adversarial_loss(&classify, xs, logits, &noise, settings)?)
        })
    }

    /// The momentum buffers, named for [`crate::checkpoint::save_state`].
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut state = checkpoint::velocity_state(&self.names, &self.opt)?;
        if let Some(average) = &self.average {
            state.extend(average.state());
        }
        Ok(state)
    }

    /// Continues from a checkpoint (whose parameters [`crate::checkpoint::load`] has already
    /// restored): momentum buffers, steps done and the sampler's position. `path` names the file
    /// in errors.
    pub fn restore(&mut self, path: &Path, resume: &Resume, sampler: &mut MixedSampler) -> Result<()> {
        training_loop::restore(self, path, resume, sampler)
    }

    /// Runs the remaining steps up to `cfg.steps` in the shared loop (see [`train_dann`]).
    pub fn train(
        &mut self,
        params: &dyn NamedParams,
        sampler: &mut MixedSampler,
        device: &Device,
        hooks: TrainHooks<'_>,
    ) -> Result<TrainOutcome> {
        training_loop::run(self, params, sampler, device, hooks)
    }
}

/// Slots of a DANN step in the metrics window.
const LABEL_LOSS: usize = 0;
const DOMAIN_LOSS: usize = 1;
const LABEL_CORRECT: usize = 2;
const LABELLED: usize = 3;
const DOMAIN_CORRECT: usize = 4;
const ROWS: usize = 5;
const PSEUDO_LABELLED: usize = 6;

impl<F: ModuleT, L: ModuleT, Dm: ModuleT> LoopTrainer for DannTrainer<'_, F, L, Dm> {
    type Losses = DannStepLosses;
    type Record = StepMetrics;

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
        self.done
    }

    fn train_step(&mut self, batch: &MixedBatch) -> Result<DannStepLosses> {
        self.step(batch, self.done)
    }

    fn window_values(l: &DannStepLosses) -> Vec<Option<f64>> {
        let mut values = vec![None; PSEUDO_LABELLED + 1];
        values[LABEL_LOSS] = Some(l.label_loss as f64);
        values[DOMAIN_LOSS] = Some(l.domain_loss as f64);
        values[LABEL_CORRECT] = Some(l.label_correct as f64);
        values[LABELLED] = Some(l.labelled as f64);
        values[DOMAIN_CORRECT] = Some(l.domain_correct as f64);
        values[ROWS] = Some(l.rows as f64);
        values[PSEUDO_LABELLED] = Some(l.pseudo_labelled as f64);
        values
    }

    fn record(&self, w: &MetricWindow, done: usize) -> StepMetrics {
        // The schedules' values at the window's last step.
        let p = (done - 1) as f64 / self.cfg.steps as f64;
        StepMetrics {
            step: done,
            label_loss: w.mean(LABEL_LOSS),
            domain_loss: w.mean(DOMAIN_LOSS),
            label_acc: w.sum(LABEL_CORRECT) / w.sum(LABELLED),
            domain_acc: w.sum(DOMAIN_CORRECT) / w.sum(ROWS),
            pseudo_label_rate: w.sum(PSEUDO_LABELLED) / (w.sum(ROWS) - w.sum(LABELLED)),
            lambda: self.cfg.lambda_at(p),
            lr: self.cfg.lr_at(p),
        }
    }

    fn progress_message(r: &StepMetrics) -> String {
        format!(
            "loss {:.3}/{:.3} acc {:.3} dom {:.3} lambda {:.3} lr {:.4}",
            r.label_loss, r.domain_loss, r.label_acc, r.domain_acc, r.lambda, r.lr
        )
    }

    fn checkpoint_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.optimizer_state()
    }

    fn restore_state(&mut self, path: &Path, resume: &Resume) -> Result<()> {
        let buffers = checkpoint::velocity_buffers(path, &self.names, resume)?;
        // In DANN every trainable parameter is in the loss (the domain classifier through the
        // gradient reversal), so each has been updated once a step is done: a missing momentum
        // buffer is a damaged checkpoint, not a parameter still waiting for its first update.
        if self.cfg.method == Method::Dann
            && let Some(i) = buffers.iter().position(Option::is_none)
        {
            return Err(TrainError::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("no momentum buffer for '{}' after {} DANN steps", self.names[i], resume.step),
            });
        }
        self.opt
            .set_velocity(buffers)
            .map_err(|e| TrainError::Checkpoint { path: path.to_path_buf(), reason: e.to_string() })?;
        if let Some(average) = &mut self.average {
            average.restore(path, &resume.optimizer_state, resume.step)?;
        }
        self.done = resume.step;
        Ok(())
    }

    fn swap_evaluation_weights(&mut self) -> Result<()> {
        match &mut self.average {
            Some(average) => average.swap(),
            None => Ok(()),
        }
    }
}

/// Trains `model` (parameters in `params`, a `ParamStore` or a `VarMap`) for `cfg.steps` steps on
/// batches from `sampler`: a [`DannTrainer`] in the shared [`crate::training_loop`].
///
/// A loss that is NaN or infinite stops the run with [`TrainError::NonFiniteLoss`] before the bad
/// update is applied; the last checkpoint on disk stays the last good one. With `hooks.resume`
/// the loop continues from the saved step with the saved sampler position and momentum buffers,
/// and on the CPU ends with the same weights as an unbroken run. [`TrainHooks::default`] trains
/// quietly: no progress bar, no metrics file, no checkpoints.
pub fn train_dann<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    params: &dyn NamedParams,
    sampler: &mut MixedSampler,
    device: &Device,
    cfg: &TrainConfig,
    hooks: TrainHooks<'_>,
) -> Result<TrainOutcome> {
    DannTrainer::new(model, params, cfg)?.train(params, sampler, device, hooks)
}
