//! `cargo xtask train`: one method or the source-only vs DANN comparison on a source -> target pair.
use crate::device::{self, DeviceChoice};
use crate::toy;
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::PathBuf;

/// The datasets `train` knows, for error messages and `--help`.
pub const TOY_SOURCE: &str = "moons";
pub const TOY_TARGET: &str = "moons-rotated";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodChoice {
    /// Train on source labels only.
    SourceOnly,
    /// Domain-adversarial training (gradient reversal).
    Dann,
    /// Source-only, then DANN with the same seed, side by side.
    Compare,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Method to train; without it, both source-only and DANN are trained and compared.
    #[arg(long, value_enum, default_value_t = MethodChoice::Compare)]
    pub method: MethodChoice,
    /// Labelled source dataset.
    #[arg(long, default_value = TOY_SOURCE)]
    pub source: String,
    /// Unlabelled target dataset.
    #[arg(long, default_value = TOY_TARGET)]
    pub target: String,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training steps (default: the experiment's preset).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Examples per domain in each batch (default: the experiment's preset).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate before annealing (default: the experiment's preset).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Run folder (default runs/<timestamp>-<method>-<source>-<target>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// One trained and evaluated run, as printed in the `--json` line.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub method: String,
    pub source: String,
    pub target: String,
    pub seed: u64,
    pub source_acc: f64,
    pub target_acc: f64,
    pub domain_acc: f64,
    pub target_ari: f64,
    pub seconds: f64,
    pub steps: usize,
    pub run_dir: String,
}

fn canonical_toy(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "moons" | "toy" => Some(TOY_SOURCE),
        "moons-rotated" | "rotated-moons" => Some(TOY_TARGET),
        _ => None,
    }
}

fn known_names() -> String {
    format!("{TOY_SOURCE}, {TOY_TARGET} (2D toy); mnist, mnist-m, svhn, usps, syn-digits (digits)")
}

/// Runs `train` and returns the summaries of its runs.
pub fn run(args: &TrainArgs) -> Result<Vec<RunSummary>> {
    let device = device::select(args.device)?;
    match (canonical_toy(&args.source), canonical_toy(&args.target)) {
        (Some(TOY_SOURCE), Some(TOY_TARGET)) => toy::run(args, &device),
        (Some(_), Some(_)) => bail!("the toy experiment adapts from '{TOY_SOURCE}' to '{TOY_TARGET}'"),
        _ => {
            let mut ids = Vec::new();
            for name in [&args.source, &args.target] {
                match adapt_datasets::DatasetId::parse(name) {
                    Ok(id) => ids.push(id),
                    Err(_) => bail!("unknown dataset '{name}'; known datasets: {}", known_names()),
                }
            }
            if ids[0] == ids[1] {
                bail!("source and target are both '{}': adaptation needs two domains", ids[0].name());
            }
            crate::digits::run(args, ids[0], ids[1], &device)
        }
    }
}
