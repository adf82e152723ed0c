//! `cargo xtask eval PATH`: evaluates saved weights again: a run folder (any experiment, one
//! method's or a comparison's) or a bare `*.safetensors` weights file written by adapt.
use crate::device::{self, DeviceChoice};
use crate::train::SelectChoice;
use adapt_experiment::RunSummary;
use adapt_experiment::evaluate::{evaluate_run_folder, evaluate_weights};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A run folder of `cargo xtask train`, or a weights file (`model.safetensors`, `best.safetensors`).
    pub path: PathBuf,
    /// For a run folder: which saved weights (default: the run's own choice).
    #[arg(long, value_enum)]
    pub weights: Option<SelectChoice>,
    /// Folder with one sub-folder per dataset (default: ADAPT_DATA_DIR, else the folder the run
    /// recorded, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

pub fn run(args: &EvalArgs) -> Result<Vec<RunSummary>> {
    let device = device::select(args.device)?;
    let runs = if args.path.is_file() {
        if args.weights.is_some() {
            bail!("--weights picks a file inside a run folder; {} is a weights file already", args.path.display());
        }
        vec![evaluate_weights(&args.path, args.data_dir.as_deref(), &device)?]
    } else {
        evaluate_run_folder(&args.path, args.weights.map(Into::into), args.data_dir.as_deref(), &device)?
    };
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
    Ok(runs)
}
