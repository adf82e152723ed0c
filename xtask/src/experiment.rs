//! The part every experiment shares: train one method in its run folder (with checkpoints,
//! resume and model selection), evaluate it on both test sets, and write its config, metrics,
//! weights, training curves and `summary.json`.
//!
//! A method's folder holds:
//! * `config.toml`: everything needed to re-run it;
//! * `metrics.jsonl`: one record per logged step;
//! * `checkpoint.safetensors`: the latest checkpoint (weights, momentum, step, sampler position);
//! * `model.safetensors`: the weights after the last step;
//! * `best.safetensors` + `selection.json`: with a source validation split, the weights of the
//!   checkpoint with the best source validation accuracy;
//! * `curves.png`, `summary.json`.
use crate::train::{RunSummary, read_summary};
use adapt_datasets::Rows;
use adapt_eval::plots::{self, Series};
use adapt_eval::{evaluate_dann, predict, proxy_a_distance};
use adapt_models::{Dann, ParamStore};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{self, CHECKPOINT_FILE, CheckpointPolicy, Resume};
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{StepMetrics, TrainConfig, TrainError, TrainHooks, train_dann};
use anyhow::{Context, Result, bail};
use candle_core::{Device, ModuleT};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The splits of a source -> target experiment (target labels: evaluation only).
pub struct DomainData {
    pub source_name: String,
    pub target_name: String,
    pub source_train: Arc<dyn Rows>,
    /// Held out from the source training set, for model selection without target labels.
    pub source_val: Option<Arc<dyn Rows>>,
    pub target_train: Arc<dyn Rows>,
    pub source_test: Arc<dyn Rows>,
    pub target_test: Arc<dyn Rows>,
}

/// Which weights a run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The weights after the last step (the paper's protocol).
    #[default]
    Last,
    /// The checkpoint with the best accuracy on the held-out source validation split.
    SourceVal,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::Last => "last",
            Selection::SourceVal => "source-val",
        }
    }
}

/// How a run is carried out (none of it changes what is learned).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub quiet: bool,
    /// Continue from the folder's checkpoint instead of starting afresh.
    pub resume: bool,
    /// Steps between checkpoints (a multiple of the log interval; 0: the preset's).
    pub checkpoint_every: usize,
    /// Stop right after the checkpoint at this step, as an interrupted run would.
    pub stop_after: Option<usize>,
    pub select: Selection,
}

impl RunOptions {
    /// Steps between checkpoints: `checkpoint_every`, or a tenth of the run when it is 0, rounded
    /// up to a multiple of `log_every` (so a resumed run writes the same metrics records).
    pub fn checkpoint_interval(&self, steps: usize, log_every: usize) -> usize {
        let every = if self.checkpoint_every == 0 { (steps / 10).max(log_every) } else { self.checkpoint_every };
        every.div_ceil(log_every) * log_every
    }
}

/// Images per domain for the feature analyses (A-distance, PCA, t-SNE), as in the paper's plots.
pub const ANALYSIS_POINTS: usize = 500;

/// Best source validation accuracy so far; kept on disk so a resumed run continues the choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelectionRecord {
    pub best_step: usize,
    pub best_source_val_acc: f64,
    /// `(step, source validation accuracy)` at every checkpoint.
    pub history: Vec<(usize, f64)>,
}

pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The records of `path` up to step `up_to`, with their original lines (rewritten verbatim, so
/// a resumed file is byte-identical to an unbroken run's).
pub fn read_metrics<T: serde::de::DeserializeOwned>(path: &Path, up_to: usize) -> Result<(Vec<T>, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Vec::new();
    let mut kept = String::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || format!("{}: line {} is not a metrics record", path.display(), i + 1);
        let value: serde_json::Value = serde_json::from_str(line).with_context(bad)?;
        let step = value.get("step").and_then(|s| s.as_u64()).with_context(bad)? as usize;
        if step <= up_to {
            records.push(serde_json::from_value(value).with_context(bad)?);
            kept.push_str(line);
            kept.push('\n');
        }
    }
    Ok((records, kept))
}

/// Accuracy of the label predictor on `rows`.
fn label_accuracy<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    rows: &dyn Rows,
    device: &Device,
) -> Result<f64> {
    let p = predict(model, rows, None, device, 500, false)?;
    let truth: Vec<u32> = (0..rows.len()).map(|i| rows.label(i)).collect();
    Ok(adapt_eval::accuracy(&p.classes, &truth)?)
}

/// Proxy A-distance of the features of the first [`ANALYSIS_POINTS`] test images per domain.
pub fn feature_a_distance<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    data: &DomainData,
    device: &Device,
    seed: u64,
) -> Result<f64> {
    let s = predict(model, data.source_test.as_ref(), Some(ANALYSIS_POINTS), device, 250, true)?;
    let t = predict(model, data.target_test.as_ref(), Some(ANALYSIS_POINTS), device, 250, true)?;
    Ok(proxy_a_distance(&s.features, &t.features, s.feature_dim, seed)?.a_distance)
}

/// Starts a run folder (`config.toml`, `metrics.jsonl`, the checkpoint) afresh, or continues it.
///
/// Afresh: writes `config_toml` and removes what an earlier run left (metrics, checkpoint and
/// `stale`). With `resume` and a checkpoint present: checks that the saved configuration is this
/// one, restores the parameters, and cuts the metrics back to the checkpoint's step (the records
/// after it belong to steps that will run again); returns the checkpoint's state and the kept
/// records.
pub fn open_run_folder<T: serde::de::DeserializeOwned>(
    dir: &Path,
    config_toml: &str,
    params: &ParamStore,
    device: &Device,
    resume: bool,
    stale: &[&Path],
) -> Result<(Option<Resume>, Vec<T>)> {
    let (config_path, metrics_path, ckpt_path) =
        (dir.join("config.toml"), dir.join("metrics.jsonl"), dir.join(CHECKPOINT_FILE));
    if resume && ckpt_path.exists() {
        let saved = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {} to resume", config_path.display()))?;
        if saved != config_toml {
            bail!("{} differs from this run's configuration; resume with the same settings", config_path.display());
        }
        let r = checkpoint::load(&ckpt_path, params, device)?;
        let (records, kept) = read_metrics(&metrics_path, r.step)?;
        write_atomic(&metrics_path, &kept)?;
        return Ok((Some(r), records));
    }
    write_atomic(&config_path, config_toml)?;
    for old in [metrics_path.as_path(), ckpt_path.as_path()].into_iter().chain(stale.iter().copied()) {
        if old.exists() {
            std::fs::remove_file(old).with_context(|| format!("cannot replace {}", old.display()))?;
        }
    }
    Ok((None, Vec::new()))
}

/// Trains `model` with `cfg` in `dir` and evaluates the selected weights.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    params: &ParamStore,
    cfg: &TrainConfig,
    config_toml: &str,
    data: &DomainData,
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<(RunSummary, Vec<StepMetrics>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let method = cfg.method;
    let metrics_path = dir.join("metrics.jsonl");
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let selection_path = dir.join("selection.json");
    let best_path = dir.join("best.safetensors");
    if opts.select == Selection::SourceVal && data.source_val.is_none() {
        bail!("--select source-val needs a source validation split, and this experiment has none");
    }

    let mut selection = SelectionRecord::default();
    let (resume, mut curve) =
        open_run_folder::<StepMetrics>(dir, config_toml, params, device, opts.resume, &[&selection_path, &best_path])?;
    if let Some(r) = &resume
        && selection_path.exists()
    {
        let s = std::fs::read_to_string(&selection_path)?;
        selection = serde_json::from_str(&s).with_context(|| format!("{} is unreadable", selection_path.display()))?;
        selection.history.retain(|(step, _)| *step <= r.step);
    }
    let done_before = resume.as_ref().map_or(0, |r| r.step);

    let mut sampler =
        MixedSampler::new(data.source_train.clone(), data.target_train.clone(), cfg.batch_size, cfg.seed)?;
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let progress = Progress::new(cfg.steps as u64, method.as_str(), !opts.quiet);
    let every = opts.checkpoint_interval(cfg.steps, cfg.log_every);
    let mut on_record = |r: &StepMetrics| curve.push(*r);
    let mut on_checkpoint = |step: usize| -> adapt_train::Result<()> {
        if let Some(val) = &data.source_val {
            let acc = label_accuracy(model, val.as_ref(), device).map_err(|e| TrainError::Config(format!("{e:#}")))?;
            selection.history.push((step, acc));
            if acc > selection.best_source_val_acc || selection.best_step == 0 {
                selection.best_step = step;
                selection.best_source_val_acc = acc;
                params.save(&best_path)?;
            }
            let text = serde_json::to_string_pretty(&selection).map_err(|e| TrainError::Config(e.to_string()))?;
            write_atomic(&selection_path, &text).map_err(|e| TrainError::Config(format!("{e:#}")))?;
        }
        if opts.stop_after == Some(step) {
            return Err(TrainError::Config(format!("stopped after step {step} as asked (--stop-after)")));
        }
        Ok(())
    };
    let finished = done_before == cfg.steps;
    let seconds = if finished {
        // A finished run asked to resume: nothing left to train, report it again.
        previous_seconds(dir)
    } else {
        let hooks = TrainHooks {
            metrics: Some(&mut metrics),
            progress: Some(&progress),
            checkpoint: Some(CheckpointPolicy { path: ckpt_path.clone(), every }),
            resume,
            on_record: Some(&mut on_record),
            on_checkpoint: Some(&mut on_checkpoint),
        };
        let outcome = train_dann(model, params, &mut sampler, device, cfg, hooks).with_context(|| {
            format!(
                "training {} (run folder {}; the last good checkpoint is {}, continue with --resume)",
                method.as_str(),
                dir.display(),
                ckpt_path.display()
            )
        })?;
        outcome.seconds
    };
    params.save(&dir.join("model.safetensors"))?;
    let selected_step = match opts.select {
        Selection::Last => cfg.steps,
        Selection::SourceVal => {
            params.load(&best_path)?;
            selection.best_step
        }
    };
    let eval = evaluate_dann(model, data.source_test.as_ref(), data.target_test.as_ref(), device)?;
    let a_distance = feature_a_distance(model, data, device, cfg.seed)?;
    write_curves(&dir.join("curves.png"), &curve)?;
    let summary = RunSummary {
        method: method.as_str().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed: cfg.seed,
        source_acc: eval.source_acc,
        target_acc: eval.target_acc,
        domain_acc: eval.domain_acc,
        a_distance,
        target_ari: eval.target_ari,
        source_val_acc: selection.history.iter().find(|(s, _)| *s == selected_step).map(|(_, a)| *a),
        selected_step,
        selection: opts.select,
        seconds,
        steps: cfg.steps,
        resumed_at: (done_before > 0).then_some(done_before),
        run_dir: dir.display().to_string(),
    };
    summary.write(dir)?;
    Ok((summary, curve))
}

/// Training seconds of a finished run, from its `summary.json` (0 if unreadable).
pub fn previous_seconds(dir: &Path) -> f64 {
    read_summary::<RunSummary>(dir).map_or(0.0, |s| s.seconds)
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
