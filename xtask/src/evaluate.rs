//! `cargo xtask eval PATH`: evaluates saved weights again: a run folder (any experiment, one
//! method's or a comparison's) or a bare `*.safetensors` weights file written by adapt.
use crate::device::{self, DeviceChoice};
use crate::train::SelectChoice;
use adapt_experiment::RunSummary;
use adapt_experiment::evaluate::{evaluate_run_folder, evaluate_weights};
use anyhow::{Result, bail};
use std::path::PathBuf;

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
    adapt_experiment::summary::eval_table(&runs).iter().for_each(|l| println!("{l}"));
    Ok(runs)
}
