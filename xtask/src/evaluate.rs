//! `cargo xtask eval RUN_DIR`: rebuilds the model of a finished digit run from its `config.toml`,
//! loads its saved weights and evaluates them again on the test sets (accuracies, domain
//! accuracy, proxy A-distance).
use crate::device::{self, DeviceChoice};
use crate::digits::{DigitRunConfig, build_model, load_data};
use crate::experiment::{Selection, feature_a_distance};
use crate::train::RunSummary;
use adapt_datasets::DatasetId;
use adapt_eval::evaluate_dann;
use adapt_models::ParamStore;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A run folder of `cargo xtask train` (one method's, or a comparison holding several).
    pub run_dir: PathBuf,
    /// Which saved weights: the run's own choice (default), the last step's, or the source
    /// validation choice.
    #[arg(long, value_enum)]
    pub weights: Option<Selection>,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

/// One re-evaluated method folder, as printed in the `--json` line.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub method: String,
    pub source: String,
    pub target: String,
    pub seed: u64,
    pub source_acc: f64,
    pub target_acc: f64,
    pub domain_acc: f64,
    pub a_distance: f64,
    pub weights: String,
    pub run_dir: String,
}

/// The method folders under `dir`: itself if it holds a `config.toml`, else its sub-folders that do.
pub fn method_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("config.toml").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read run folder {}", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.join("config.toml").is_file() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{} is not a run folder: no config.toml in it or in its sub-folders", dir.display());
    }
    Ok(out)
}

fn saved_selection(dir: &Path) -> Selection {
    crate::train::read_summary::<RunSummary>(dir).map(|s| s.selection).unwrap_or_default()
}

fn eval_one(dir: &Path, args: &EvalArgs, device: &candle_core::Device) -> Result<EvalSummary> {
    let config_path = dir.join("config.toml");
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let cfg: DigitRunConfig = toml::from_str(&text).with_context(|| {
        format!("{} is not a digit run's configuration (eval re-evaluates digit runs)", config_path.display())
    })?;
    let source = DatasetId::parse(&cfg.source).with_context(|| format!("{}: source", config_path.display()))?;
    let target = DatasetId::parse(&cfg.target).with_context(|| format!("{}: target", config_path.display()))?;
    let (data, _) = load_data(
        source,
        target,
        cfg.image_size,
        cfg.binarize_mnist,
        Some(cfg.pixel_mean.clone()),
        args.data_dir.as_deref(),
    )?;
    let params = ParamStore::new(cfg.train.seed);
    let model = build_model(&cfg, &params, device)?;
    let selection = args.weights.unwrap_or_else(|| saved_selection(dir));
    let file = match selection {
        Selection::Last => "model.safetensors",
        Selection::SourceVal => "best.safetensors",
    };
    params.load(&dir.join(file)).with_context(|| format!("loading the weights of {}", dir.display()))?;
    let eval = evaluate_dann(&model, data.source_test.as_ref(), data.target_test.as_ref(), device)?;
    Ok(EvalSummary {
        method: cfg.train.method.as_str().into(),
        source: cfg.source,
        target: cfg.target,
        seed: cfg.train.seed,
        source_acc: eval.source_acc,
        target_acc: eval.target_acc,
        domain_acc: eval.domain_acc,
        a_distance: feature_a_distance(&model, &data, device, cfg.train.seed)?,
        weights: file.into(),
        run_dir: dir.display().to_string(),
    })
}

pub fn run(args: &EvalArgs) -> Result<serde_json::Value> {
    let device = device::select(args.device)?;
    let mut runs = Vec::new();
    for dir in method_dirs(&args.run_dir)? {
        runs.push(eval_one(&dir, args, &device)?);
    }
    println!(
        "{:<12} {:<8} {:<14} {:>10} {:>10} {:>10} {:>6}  weights",
        "method", "source", "target", "source acc", "target acc", "domain acc", "A-dist"
    );
    for r in &runs {
        println!(
            "{:<12} {:<8} {:<14} {:>9.1}% {:>9.1}% {:>9.1}% {:>6.2}  {}",
            r.method,
            r.source,
            r.target,
            100.0 * r.source_acc,
            100.0 * r.target_acc,
            100.0 * r.domain_acc,
            r.a_distance,
            Path::new(&r.run_dir).join(&r.weights).display()
        );
    }
    Ok(serde_json::json!({ "runs": runs }))
}
