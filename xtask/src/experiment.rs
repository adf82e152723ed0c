//! The part every experiment shares: train one method in its run folder, evaluate it on both
//! test sets, and write its config, metrics, weights and training curves.
use crate::train::RunSummary;
use adapt_datasets::Rows;
use adapt_eval::evaluate_dann;
use adapt_eval::plots::{self, Series};
use adapt_models::{Dann, ParamStore};
use adapt_train::batches::MixedSampler;
use adapt_train::log::{MetricsWriter, Progress};
use adapt_train::{StepMetrics, TrainConfig, train_dann};
use anyhow::{Context, Result};
use candle_core::{Device, ModuleT};
use std::path::Path;
use std::sync::Arc;

/// The four splits of a source -> target experiment (target labels: evaluation only).
pub struct DomainData {
    pub source_name: String,
    pub target_name: String,
    pub source_train: Arc<dyn Rows>,
    pub target_train: Arc<dyn Rows>,
    pub source_test: Arc<dyn Rows>,
    pub target_test: Arc<dyn Rows>,
}

/// Trains `model` with `cfg` in `dir` (which receives `config.toml` = `config_toml`,
/// `metrics.jsonl`, `model.safetensors`, `curves.png`) and evaluates it.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    params: &ParamStore,
    cfg: &TrainConfig,
    config_toml: &str,
    data: &DomainData,
    dir: &Path,
    device: &Device,
    quiet: bool,
) -> Result<(RunSummary, Vec<StepMetrics>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config_toml).with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut sampler =
        MixedSampler::new(data.source_train.clone(), data.target_train.clone(), cfg.batch_size, cfg.seed)?;
    let metrics_path = dir.join("metrics.jsonl");
    if metrics_path.exists() {
        std::fs::remove_file(&metrics_path).with_context(|| format!("cannot replace {}", metrics_path.display()))?;
    }
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let method = cfg.method;
    let progress = Progress::new(cfg.steps as u64, method.as_str(), !quiet);
    let mut curve = Vec::new();
    let outcome =
        train_dann(model, params, &mut sampler, device, cfg, Some(&mut metrics), &progress, &mut |r| curve.push(*r))
            .with_context(|| format!("training {} (run folder {})", method.as_str(), dir.display()))?;
    params.save(&dir.join("model.safetensors"))?;
    let eval = evaluate_dann(model, data.source_test.as_ref(), data.target_test.as_ref(), device)?;
    let series = |name: &str, f: fn(&StepMetrics) -> f64| Series {
        name: name.into(),
        points: curve.iter().map(|r| (r.step as f64, f(r))).collect(),
    };
    plots::curves(
        &dir.join("curves.png"),
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
    let summary = RunSummary {
        method: method.as_str().into(),
        source: data.source_name.clone(),
        target: data.target_name.clone(),
        seed: cfg.seed,
        source_acc: eval.source_acc,
        target_acc: eval.target_acc,
        domain_acc: eval.domain_acc,
        target_ari: eval.target_ari,
        seconds: outcome.seconds,
        steps: outcome.steps,
        run_dir: dir.display().to_string(),
    };
    Ok((summary, curve))
}
