//! Training one DANN-family method (source-only or DANN, any `Dann<F, L, D>`) in its folder, with
//! checkpoints, resume and model selection, then evaluating the reported weights on both test
//! sets.
//!
//! A method's folder holds:
//! * `config.toml`: everything needed to re-run it;
//! * `metrics.jsonl`: one record per logged step;
//! * `checkpoint.safetensors`: the latest checkpoint (weights, momentum, step, sampler position);
//! * `model.safetensors`: the weights after the last step (their moving average when the recipe
//!   keeps one), its metadata describing the model and its input preprocessing
//!   ([`crate::weights`]);
//! * `best.safetensors` + `selection.json`: with a source validation split, the weights of the
//!   checkpoint with the best source validation accuracy;
//! * `curves.png`, `summary.json`.
use crate::error::{Context, ExperimentError, Result, ensure};
use crate::files::{
    BEST_FILE, METRICS_FILE, MODEL_FILE, RecordSchedule, SELECTION_FILE, open_run_folder, read_json, write_json,
};
use crate::recipe::RunOptions;
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{WeightsInfo, WeightsStep, save_weights};
use adapt_datasets::DomainPair;
use adapt_datasets::Rows;
use adapt_eval::plots::{self, Series};
use adapt_eval::{BatchNormStatistics, evaluate_dann_with, predict, predict_with, proxy_a_distance};
use adapt_models::{Dann, ParamStore};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{CHECKPOINT_FILE, CheckpointPolicy, check_resume};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{StepMetrics, TrainConfig, TrainError, TrainHooks, train_dann};
use candle_core::{Device, ModuleT};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Images per domain for the feature analyses (A-distance, PCA, t-SNE), as in the paper's plots.
pub const ANALYSIS_POINTS: usize = 500;

/// Best source validation accuracy so far and every checkpoint's label-free scores; kept on disk
/// (`selection.json`) so a resumed run continues the choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelectionRecord {
    pub best_step: usize,
    pub best_source_val_acc: f64,
    /// `(step, source validation accuracy)` at every checkpoint.
    pub history: Vec<(usize, f64)>,
    /// Every checkpoint's validator scores.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointScores>,
}

impl SelectionRecord {
    /// Records a checkpoint's scores; true when its source validation accuracy is the best so far
    /// (the first checkpoint always is).
    pub fn add(&mut self, scores: CheckpointScores) -> bool {
        let (step, acc) = (scores.step, scores.source_val_acc);
        self.checkpoints.push(scores);
        self.history.push((step, acc));
        let best = acc > self.best_source_val_acc || self.best_step == 0;
        if best {
            self.best_step = step;
            self.best_source_val_acc = acc;
        }
        best
    }
}

/// Target-train images the label-free validators score at each checkpoint (the first ones of
/// the set: the same images at every checkpoint and in every run of a pair).
pub const VALIDATOR_IMAGES: usize = 1000;

/// A checkpoint's scores. The validators see no target labels; `target_test_acc` is recorded for
/// evaluation only (to show what each validator's choice costs against the oracle), never used to
/// choose.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckpointScores {
    pub step: usize,
    pub source_val_acc: f64,
    /// [`adapt_eval::validators::information_maximization_score`] on target-train predictions.
    pub information_maximization: f64,
    /// [`adapt_eval::validators::batch_nuclear_norm`].
    pub batch_nuclear_norm: f64,
    /// [`adapt_eval::validators::soft_neighborhood_density`].
    pub soft_neighborhood_density: f64,
    /// Evaluation only.
    pub target_test_acc: f64,
}

/// The validators' scores of `model` as it stands (see [`CheckpointScores`]), the source
/// validation images normalised as `source` says.
pub fn checkpoint_scores<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    data: &DomainPair,
    step: usize,
    device: &Device,
    source: BatchNormStatistics<'_>,
) -> Result<Option<CheckpointScores>> {
    let Some(val) = &data.source_val else { return Ok(None) };
    let p = predict(model, data.target_train.as_ref(), Some(VALIDATOR_IMAGES), device, 500, false)?;
    let target = (p.probabilities.as_slice(), p.classes.len(), p.num_classes);
    let accuracies = (
        label_accuracy(model, val.as_ref(), device, source)?,
        label_accuracy(model, data.target_test.as_ref(), device, BatchNormStatistics::Running)?,
    );
    Ok(Some(CheckpointScores::new(step, target, accuracies)?))
}

impl CheckpointScores {
    /// The scores of a checkpoint at `step` from its class probabilities on target-train images
    /// (`n` rows of `c`, row-major) and its `(source validation, target test)` accuracies.
    pub fn new(
        step: usize,
        (p, n, c): (&[f32], usize, usize),
        (source_val_acc, target_test_acc): (f64, f64),
    ) -> Result<Self> {
        use adapt_eval::validators as v;
        Ok(Self {
            step,
            source_val_acc,
            information_maximization: v::information_maximization_score(p, n, c)?,
            batch_nuclear_norm: v::batch_nuclear_norm(p, n, c)?,
            soft_neighborhood_density: v::soft_neighborhood_density(p, n, c, v::SND_TEMPERATURE)?,
            target_test_acc,
        })
    }
}

/// Accuracy of the label predictor on `rows`, normalised as `statistics` says.
pub fn label_accuracy<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    rows: &dyn Rows,
    device: &Device,
    statistics: BatchNormStatistics<'_>,
) -> Result<f64> {
    let p = predict_with(model, rows, None, device, 500, false, statistics)?;
    let truth: Vec<u32> = (0..rows.len()).map(|i| rows.label(i)).collect();
    Ok(adapt_eval::accuracy(&p.classes, &truth)?)
}

/// Proxy A-distance of the features of the first [`ANALYSIS_POINTS`] test images per domain,
/// the source's normalised as `source` says.
pub fn feature_a_distance<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    data: &DomainPair,
    device: &Device,
    seed: u64,
    source: BatchNormStatistics<'_>,
) -> Result<f64> {
    let s = predict_with(model, data.source_test.as_ref(), Some(ANALYSIS_POINTS), device, 250, true, source)?;
    let t = predict(model, data.target_test.as_ref(), Some(ANALYSIS_POINTS), device, 250, true)?;
    Ok(proxy_a_distance(&s.features, &t.features, s.feature_dim, seed)?.a_distance)
}

/// Accuracies, domain accuracy and A-distance of `model` as it stands, as a [`RunSummary`]
/// whose run fields (`method`, `steps`, ...) the caller fills in; source images normalised as
/// `source` says.
pub fn evaluate_model<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    data: &DomainPair,
    device: &Device,
    seed: u64,
    source: BatchNormStatistics<'_>,
) -> Result<(adapt_eval::DomainEval, f64)> {
    let eval = evaluate_dann_with(model, data.source_test.as_ref(), data.target_test.as_ref(), device, source)?;
    let a_distance = feature_a_distance(model, data, device, seed, source)?;
    Ok((eval, a_distance))
}

/// How a run's source images are normalised at evaluation: with per-domain BatchNorm the net's
/// running statistics are the target's, so source images get their own (batch) statistics, as
/// they had in training; otherwise the running statistics.
pub fn source_statistics<'a>(cfg: &TrainConfig, params: &'a ParamStore) -> BatchNormStatistics<'a> {
    if cfg.separate_domain_passes { BatchNormStatistics::OwnBatches(params) } else { BatchNormStatistics::Running }
}

/// A library error inside a training hook, carried through the training loop's error type.
fn in_hook(e: ExperimentError) -> TrainError {
    TrainError::Config(e.to_string())
}

/// Training seconds of a finished run, from its `summary.json` (0 if it has none).
pub fn previous_seconds(dir: &Path) -> Result<f64> {
    Ok(RunSummary::read(dir)?.map_or(0.0, |s| s.seconds))
}

/// What one method's run trains and reports.
pub struct MethodRun<'a, C> {
    pub kind: RunKind,
    pub train: &'a TrainConfig,
    pub select: Selection,
    /// The run's whole configuration, saved as `config.toml` (compared on resume).
    pub config: &'a C,
    /// What the saved weights files say about themselves.
    pub info: &'a WeightsInfo,
}

/// Trains `model` as `run` says in `dir` and evaluates the selected weights.
pub fn train_and_evaluate<F, L, D, C>(
    run: &MethodRun<'_, C>,
    model: &Dann<F, L, D>,
    params: &ParamStore,
    data: &DomainPair,
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<(RunSummary, Vec<StepMetrics>)>
where
    F: ModuleT,
    L: ModuleT,
    D: ModuleT,
    C: Serialize + DeserializeOwned + PartialEq,
{
    let &MethodRun { kind, train: cfg, select, config, info } = run;
    crate::files::create_dir(dir)?;
    let method = cfg.method;
    let metrics_path = dir.join(METRICS_FILE);
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let selection_path = dir.join(SELECTION_FILE);
    let best_path = dir.join(BEST_FILE);
    ensure(select != Selection::SourceVal || data.source_val.is_some(), || {
        "source-validation selection needs a source validation split, and this experiment has none".into()
    })?;

    let schedule = RecordSchedule { every: cfg.log_every, steps: cfg.steps };
    let source_statistics = source_statistics(cfg, params);
    let mut selection = SelectionRecord::default();
    let (resume, mut curve) = open_run_folder::<C, StepMetrics>(
        dir,
        config,
        schedule,
        params,
        device,
        opts.resume,
        &[&selection_path, &best_path],
    )?;
    if let Some(r) = &resume
        && let Some(saved) = read_json::<SelectionRecord>(&selection_path)?
    {
        selection = saved;
        selection.history.retain(|(step, _)| *step <= r.step);
        selection.checkpoints.retain(|c| c.step <= r.step);
    }
    let done_before = resume.as_ref().map_or(0, |r| r.step);

    let mut sampler =
        MixedSampler::new(data.source_train.clone(), data.target_train.clone(), cfg.batch_size, cfg.seed)?
            .with_shift(cfg.input_shift)?
            .with_source_colour_jitter(cfg.source_colour_jitter);
    // Also when nothing is left to train: a finished run's checkpoint must fit the run too.
    if let Some(r) = &resume {
        check_resume(&ckpt_path, r, cfg.steps, &sampler)?;
    }
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let progress = Progress::new(cfg.steps as u64, method.as_str(), !opts.quiet);
    let every = opts.checkpoint_interval(cfg.steps, cfg.log_every);
    let mut on_record = |r: &StepMetrics| curve.push(*r);
    let mut on_checkpoint = |step: usize| -> adapt_train::Result<()> {
        if let Some(scores) = checkpoint_scores(model, data, step, device, source_statistics).map_err(in_hook)? {
            if selection.add(scores) {
                let at = WeightsStep { step, selection: Selection::SourceVal };
                save_weights(params, &best_path, info, at).map_err(in_hook)?;
            }
            write_json(&selection_path, &selection).map_err(in_hook)?;
        }
        if opts.stop_after == Some(step) {
            return Err(TrainError::Config(format!("stopped after step {step} as asked (--stop-after)")));
        }
        Ok(())
    };
    let finished = done_before == cfg.steps;
    let seconds = if finished {
        // A finished run asked to resume: nothing left to train, report it again (the
        // checkpoint holds the trained weights; an averaging run reports its average).
        if let Some(r) = &resume
            && cfg.weight_average_decay > 0.0
        {
            adapt_train::weight_average::load_averaged(&ckpt_path, params, &r.optimizer_state)?;
        }
        previous_seconds(dir)?
    } else {
        let hooks = TrainHooks {
            metrics: Some(&mut metrics),
            progress: Some(&progress),
            checkpoint: Some(CheckpointPolicy { path: ckpt_path.clone(), every }),
            resume,
            on_record: Some(&mut on_record),
            on_checkpoint: Some(&mut on_checkpoint),
        };
        let outcome = train_dann(model, params, &mut sampler, device, cfg, hooks).context(|| {
            format!(
                "training {} (run folder {}; the last good checkpoint is {}, continue with --resume)",
                method.as_str(),
                dir.display(),
                ckpt_path.display()
            )
        })?;
        outcome.seconds
    };
    save_weights(params, &dir.join(MODEL_FILE), info, WeightsStep { step: cfg.steps, selection: Selection::Last })?;
    let selected_step = match select {
        Selection::Last => cfg.steps,
        Selection::SourceVal => {
            params.load(&best_path)?;
            selection.best_step
        }
    };
    let (eval, a_distance) = evaluate_model(model, data, device, cfg.seed, source_statistics)?;
    write_curves(&dir.join("curves.png"), &curve)?;
    let summary = RunSummary {
        kind,
        method: method.as_str().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed: cfg.seed,
        source_acc: eval.source_acc,
        target_acc: if data.target_labelled { eval.target_acc } else { 0.0 },
        domain_acc: eval.domain_acc,
        a_distance,
        target_ari: if data.target_labelled { eval.target_ari } else { 0.0 },
        source_val_acc: selection.history.iter().find(|(s, _)| *s == selected_step).map(|(_, a)| *a),
        selected_step,
        selection: select,
        weights: select.weights_file().into(),
        seconds,
        steps: cfg.steps,
        resumed_at: (done_before > 0).then_some(done_before),
        run_dir: dir.display().to_string(),
        recommended: false,
        selected: true,
        target_labelled: data.target_labelled,
    };
    summary.write(dir)?;
    Ok((summary, curve))
}

/// Losses; training accuracies and lambda; learning rate; all against the step.
pub fn write_curves(path: &Path, curve: &[StepMetrics]) -> Result<()> {
    let series = |name: &str, f: fn(&StepMetrics) -> f64| Series {
        name: name.into(),
        points: curve.iter().map(|r| (r.step as f64, f(r))).collect(),
    };
    plots::curves(
        path,
        &[
            ("losses".into(), vec![series("label loss", |r| r.label_loss), series("domain loss", |r| r.domain_loss)]),
            (
                "training accuracy, lambda".into(),
                vec![
                    series("label acc", |r| r.label_acc),
                    series("domain acc", |r| r.domain_acc),
                    series("lambda", |r| r.lambda),
                ],
            ),
            ("learning rate".into(), vec![series("lr", |r| r.lr)]),
        ],
    )?;
    Ok(())
}
