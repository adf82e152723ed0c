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
use crate::batches::MixedSampler;
use crate::checkpoint::{CheckpointPolicy, Resume};
use crate::error::{Result, TrainError};
use crate::log::{MetricsWriter, Progress};
use crate::optim::{MomentumSgd, SgdSettings, lr_schedule};
use adapt_grl::lambda_schedule;
use adapt_models::{Dann, ParamStore};
use candle_core::{D, DType, Device, ModuleT, Tensor};
use candle_nn::Optimizer;
use candle_nn::loss::cross_entropy;
use serde::{Deserialize, Serialize};
use std::time::Instant;

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
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        TrainError::check_loop_sizes(self.steps, self.batch_size, self.log_every)?;
        for (name, v) in
            [("gamma", self.gamma), ("lambda_max", self.lambda_max), ("domain_loss_weight", self.domain_loss_weight)]
        {
            if !v.is_finite() {
                return Err(TrainError::Config(format!("{name} must be finite, got {v}")));
            }
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
    pub lambda: f64,
    pub lr: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainOutcome {
    pub steps: usize,
    pub seconds: f64,
    /// The last metrics record.
    pub last: StepMetrics,
}

/// Running sums between two metrics records.
#[derive(Default)]
struct Window {
    steps: usize,
    label_loss: f64,
    domain_loss: f64,
    label_correct: f64,
    label_total: f64,
    domain_correct: f64,
    domain_total: f64,
}

fn correct(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    Ok(logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// Where a run reports and saves, and where it starts from.
pub struct TrainHooks<'a> {
    /// Every metrics record is appended here.
    pub metrics: Option<&'a mut MetricsWriter>,
    pub progress: &'a Progress,
    /// Periodic checkpoints (their interval must be a multiple of `log_every`, so a resumed run
    /// writes the same metrics records as an unbroken one).
    pub checkpoint: Option<CheckpointPolicy>,
    /// State from [`crate::checkpoint::load`] (which has already restored the parameters).
    pub resume: Option<Resume>,
    /// Sees every metrics record.
    pub on_record: &'a mut dyn FnMut(&StepMetrics),
    /// Called after each checkpoint is written, with the step count (e.g. for model selection).
    pub on_checkpoint: Option<&'a mut dyn FnMut(usize) -> Result<()>>,
}

impl<'a> TrainHooks<'a> {
    /// No metrics file, no checkpoints, fresh start.
    pub fn quiet(progress: &'a Progress, on_record: &'a mut dyn FnMut(&StepMetrics)) -> Self {
        Self { metrics: None, progress, checkpoint: None, resume: None, on_record, on_checkpoint: None }
    }
}

/// Trains `model` (parameters in `params`) for `cfg.steps` steps on batches from `sampler`.
///
/// A loss that is NaN or infinite stops the run with [`TrainError::NonFiniteLoss`] before the bad
/// update is applied; the last checkpoint on disk stays the last good one. With `hooks.resume`
/// the loop continues from the saved step with the saved sampler position and momentum buffers,
/// and on the CPU ends with the same weights as an unbroken run.
pub fn train_dann<F: ModuleT, L: ModuleT, Dm: ModuleT>(
    model: &Dann<F, L, Dm>,
    params: &ParamStore,
    sampler: &mut MixedSampler,
    device: &Device,
    cfg: &TrainConfig,
    hooks: TrainHooks<'_>,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    if sampler.per_domain() != cfg.batch_size {
        return Err(TrainError::Config(format!(
            "sampler draws {} rows per domain, the configuration says {}",
            sampler.per_domain(),
            cfg.batch_size
        )));
    }
    let TrainHooks { mut metrics, progress, checkpoint, resume, on_record, mut on_checkpoint } = hooks;
    if let Some(c) = &checkpoint
        && (c.every == 0 || c.every % cfg.log_every != 0)
    {
        return Err(TrainError::Config(format!(
            "checkpoint interval {} must be a positive multiple of the log interval {}",
            c.every, cfg.log_every
        )));
    }
    let mut opt = MomentumSgd::new(params.trainable_vars(""), cfg.sgd)?;
    let mut first_step = 0;
    if let Some(r) = &resume {
        if r.steps != cfg.steps {
            return Err(TrainError::Config(format!(
                "the checkpoint belongs to a run of {} steps, the configuration says {}",
                r.steps, cfg.steps
            )));
        }
        let origin = checkpoint.as_ref().map(|c| c.path.clone()).unwrap_or_default();
        crate::checkpoint::restore_velocity(&origin, params, &mut opt, r)?;
        sampler.restore(r.sampler);
        first_step = r.step;
    }
    let n = cfg.batch_size;
    let domain_labels = Tensor::cat(&[Tensor::zeros(n, DType::U32, device)?, Tensor::ones(n, DType::U32, device)?], 0)?;
    let start = Instant::now();
    let mut window = Window::default();
    let mut last = None;
    for step in first_step..cfg.steps {
        let p = step as f64 / cfg.steps as f64;
        let lambda = cfg.lambda_at(p);
        let lr = cfg.lr_at(p);
        opt.set_learning_rate(lr);

        let batch = sampler.next_batch(device)?;
        let out = model.forward_mixed(&batch.inputs, batch.n_source, lambda, true)?;
        let label_loss = cross_entropy(&out.class_logits, &batch.source_labels)?;
        let domain_loss = cross_entropy(&out.domain_logits, &domain_labels)?;
        let (ll, dl) = (label_loss.to_scalar::<f32>()?, domain_loss.to_scalar::<f32>()?);
        if !ll.is_finite() || !dl.is_finite() {
            progress.finish();
            if let Some(m) = metrics.as_deref_mut() {
                m.flush()?;
            }
            return Err(TrainError::NonFiniteLoss { step: step + 1, label_loss: ll, domain_loss: dl });
        }
        let loss = (&label_loss + (domain_loss * cfg.domain_loss_weight)?)?;
        opt.backward_step(&loss)?;

        window.steps += 1;
        window.label_loss += ll as f64;
        window.domain_loss += dl as f64;
        window.label_correct += correct(&out.class_logits, &batch.source_labels)?;
        window.label_total += n as f64;
        window.domain_correct += correct(&out.domain_logits, &domain_labels)?;
        window.domain_total += 2.0 * n as f64;

        let done = step + 1;
        if done % cfg.log_every == 0 || done == cfg.steps {
            let k = window.steps as f64;
            let record = StepMetrics {
                step: done,
                label_loss: window.label_loss / k,
                domain_loss: window.domain_loss / k,
                label_acc: window.label_correct / window.label_total,
                domain_acc: window.domain_correct / window.domain_total,
                lambda,
                lr,
            };
            window = Window::default();
            if let Some(m) = metrics.as_deref_mut() {
                m.write(&record)?;
            }
            progress.update(
                done as u64,
                format!(
                    "loss {:.3}/{:.3} acc {:.3} dom {:.3} lambda {:.3} lr {:.4}",
                    record.label_loss, record.domain_loss, record.label_acc, record.domain_acc, lambda, lr
                ),
            );
            on_record(&record);
            last = Some(record);
        }
        if let Some(c) = &checkpoint
            && (done % c.every == 0 || done == cfg.steps)
        {
            // Metrics first: a checkpoint must never be ahead of the records on disk.
            if let Some(m) = metrics.as_deref_mut() {
                m.flush()?;
            }
            crate::checkpoint::save(&c.path, params, &opt, done, cfg.steps, sampler.state())?;
            if let Some(f) = on_checkpoint.as_deref_mut() {
                f(done)?;
            }
        }
    }
    if let Some(m) = metrics {
        m.flush()?;
    }
    progress.finish();
    let last =
        last.ok_or_else(|| TrainError::Config("no step was run: the checkpoint is already at the end".into()))?;
    Ok(TrainOutcome { steps: cfg.steps, seconds: start.elapsed().as_secs_f64(), last })
}
