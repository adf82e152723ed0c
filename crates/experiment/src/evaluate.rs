//! Evaluating saved weights again: any run folder (toy, digits, GTA; one method's or a
//! comparison's), or a bare weights file that describes itself ([`crate::weights`]).
use crate::dann_run::label_accuracy;
use crate::error::{Context, ExperimentError, Result};
use crate::files::{CONFIG_FILE, read_config};
use crate::recipe::RunRecord;
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsStep, read_weights_info};
use adapt_datasets::DomainPair;
use adapt_models::Dann;
use adapt_models::ParamStore;
use candle_core::{Device, ModuleT};
use std::path::{Path, PathBuf};

/// The method folders under `dir`: itself if it holds a `config.toml`, else its sub-folders that do.
pub fn method_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join(CONFIG_FILE).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| ExperimentError::io(dir, e))?;
    for e in entries {
        let p = e.map_err(|e| ExperimentError::io(dir, e))?.path();
        if p.join(CONFIG_FILE).is_file() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ExperimentError::file(dir, "not a run folder: no config.toml in it or in its sub-folders"));
    }
    Ok(out)
}

/// The data folder a run recorded in its `recipe.json` (in its folder or the comparison's above).
fn recorded_data_dir(method_dir: &Path) -> Result<Option<PathBuf>> {
    for dir in [Some(method_dir), method_dir.parent()].into_iter().flatten() {
        if let Some(record) = RunRecord::read(dir)? {
            return Ok(record.data_dir);
        }
    }
    Ok(None)
}

/// Re-evaluates every method of the run folder `dir`: `weights` picks the file (default: the
/// run's own choice), `data_dir` the data (default: the folder the run recorded).
pub fn evaluate_run_folder(
    dir: &Path,
    weights: Option<Selection>,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<Vec<RunSummary>> {
    let mut out = Vec::new();
    for method_dir in method_dirs(dir)? {
        let config: RunConfig = read_config(&method_dir.join(CONFIG_FILE))?;
        let selection = match weights {
            Some(s) => s,
            None => RunSummary::read(&method_dir)?.map(|s| s.selection).unwrap_or_default(),
        };
        let file = method_dir.join(selection.weights_file());
        let data = match data_dir {
            Some(d) => Some(d.to_path_buf()),
            None => recorded_data_dir(&method_dir)?,
        };
        let at = match read_weights_info(&file) {
            Ok((_, at)) => at,
            // Weights written before they described themselves: the config says the rest.
            Err(_) => WeightsStep { step: config.steps(), selection },
        };
        out.push(
            evaluate_config(&config, &file, at, data.as_deref(), device)
                .context(|| format!("evaluating {}", method_dir.display()))?,
        );
    }
    Ok(out)
}

/// Evaluates a weights file written by adapt on its own: the model and the preprocessing come
/// from its metadata, the data from `data_dir`.
pub fn evaluate_weights(path: &Path, data_dir: Option<&Path>, device: &Device) -> Result<RunSummary> {
    let (info, at) = read_weights_info(path)?;
    evaluate_config(&info.config, path, at, data_dir, device).context(|| format!("evaluating {}", path.display()))
}

impl RunConfig {
    pub fn kind(&self) -> RunKind {
        match self {
            RunConfig::Toy(_) => RunKind::Toy,
            RunConfig::Digits(_) => RunKind::Digits,
            RunConfig::Gta(_) => RunKind::Gta,
        }
    }

    /// Training steps of the run.
    pub fn steps(&self) -> usize {
        match self {
            RunConfig::Toy(c) => c.train.steps,
            RunConfig::Digits(c) => c.train.steps,
            RunConfig::Gta(c) => c.train.steps,
        }
    }
}

fn evaluate_config(
    config: &RunConfig,
    weights: &Path,
    at: WeightsStep,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<RunSummary> {
    let folder = weights.parent().unwrap_or(Path::new("."));
    let file_name = weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let summary = |method: &str, source: &str, target: &str, seed: u64| RunSummary {
        kind: config.kind(),
        method: method.into(),
        source: source.into(),
        target: target.into(),
        seed,
        source_acc: 0.0,
        target_acc: 0.0,
        domain_acc: 0.0,
        a_distance: 0.0,
        target_ari: 0.0,
        source_val_acc: None,
        selected_step: at.step,
        selection: at.selection,
        weights: file_name.clone(),
        seconds: 0.0,
        steps: config.steps(),
        resumed_at: None,
        run_dir: folder.display().to_string(),
        recommended: false,
        selected: true,
        target_labelled: true,
    };
    match config {
        RunConfig::Toy(cfg) => {
            let params = ParamStore::new(cfg.train.seed);
            let model = cfg.build_model(&params, device)?;
            params.load(weights)?;
            let (_, data) = cfg.data()?;
            crate::pair::check_finite_inputs(&data, &format!("evaluating {}", weights.display()))?;
            let base = summary(cfg.train.method.as_str(), &data.source_name, &data.target_name, cfg.train.seed);
            dann_figures(&model, &data, device, base, crate::dann_run::source_statistics(&cfg.train, &params))
        }
        RunConfig::Digits(cfg) => {
            let params = ParamStore::new(cfg.train.seed);
            let model = cfg.build_model(&params, device)?;
            params.load(weights)?;
            let data = cfg.load_data(data_dir)?;
            crate::pair::check_finite_inputs(&data, &format!("evaluating {}", weights.display()))?;
            dann_figures(
                &model,
                &data,
                device,
                summary(cfg.train.method.as_str(), &cfg.source, &cfg.target, cfg.train.seed),
                crate::dann_run::source_statistics(&cfg.train, &params),
            )
        }
        RunConfig::Gta(cfg) => {
            let params = ParamStore::new(cfg.train.seed);
            let model = cfg.build_model(&params, device)?;
            params.load(weights)?;
            let data = cfg.load_data(data_dir)?;
            crate::pair::check_finite_inputs(&data, &format!("evaluating {}", weights.display()))?;
            let eval = crate::gta::evaluate_model(&model, &data, device, cfg.train.seed)?;
            Ok(RunSummary {
                source_acc: eval.source_acc,
                target_acc: eval.target_acc,
                domain_acc: eval.domain_acc,
                target_ari: eval.target_ari,
                a_distance: eval.a_distance,
                ..summary(cfg.train.variant.method_name(), &cfg.source, &cfg.target, cfg.train.seed)
            })
        }
    }
}

/// `base` with the figures of a DANN-family `model` on `data` (its test sets, and its source
/// validation split where it has one), source images normalised as `source` says.
fn dann_figures<F: ModuleT, L: ModuleT, D: ModuleT>(
    model: &Dann<F, L, D>,
    data: &DomainPair,
    device: &Device,
    base: RunSummary,
    source: adapt_eval::BatchNormStatistics<'_>,
) -> Result<RunSummary> {
    let (eval, a_distance) = crate::dann_run::evaluate_model(model, data, device, base.seed, source)?;
    let source_val_acc = match &data.source_val {
        Some(val) => Some(label_accuracy(model, val.as_ref(), device, source)?),
        None => None,
    };
    Ok(RunSummary {
        source_acc: eval.source_acc,
        target_acc: eval.target_acc,
        domain_acc: eval.domain_acc,
        target_ari: eval.target_ari,
        a_distance,
        source_val_acc,
        target_labelled: data.target_labelled,
        ..base
    })
}
