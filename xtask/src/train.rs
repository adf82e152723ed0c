//! `cargo xtask train`: one method or the source-only vs DANN comparison on a source -> target pair.
use crate::device::{self, DeviceChoice};
use crate::experiment::{RunOptions, Selection};
use crate::toy;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The datasets `train` knows, for error messages and `--help`.
pub const TOY_SOURCE: &str = "moons";
pub const TOY_TARGET: &str = "moons-rotated";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodChoice {
    /// Train on source labels only.
    SourceOnly,
    /// Domain-adversarial training (gradient reversal).
    Dann,
    /// Source-only, then DANN with the same seed, side by side.
    Compare,
    /// Generate To Adapt (Sankaranarayanan et al. 2018), digit pairs only.
    Gta,
}

/// The run's command line; saved as `args.json` in the run folder so `--resume` can rebuild it.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
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
    /// Recipe for digit pairs (the 2D toy has its own).
    #[arg(long, value_enum, default_value_t = crate::digits::Preset::Paper)]
    pub preset: crate::digits::Preset,
    /// Starting weights of the digit nets, instead of the preset's.
    #[arg(long, value_enum)]
    pub init: Option<crate::digits::InitChoice>,
    /// Border handling of the digit nets' 5x5 convolutions, instead of the preset's.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub padding: Option<crate::digits::PaddingChoice>,
    /// Which weights to report: the last step's, or the checkpoint with the best accuracy on a
    /// held-out source validation split (target labels are never used to choose).
    #[arg(long, value_enum, default_value_t = Selection::Last)]
    pub select: Selection,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    #[serde(skip, default = "cpu")]
    pub device: DeviceChoice,
    /// Run folder (default runs/<timestamp>-<method>-<source>-<target>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this folder from its checkpoints, with its saved settings.
    #[arg(long, conflicts_with = "out")]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// Steps between checkpoints (default: a tenth of the run, rounded to the log interval).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Stop right after the checkpoint at this step, as if interrupted (for testing --resume).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub stop_after: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
}

fn cpu() -> DeviceChoice {
    DeviceChoice::Cpu
}

/// File in a method's run folder with its [`RunSummary`], written when the run has finished.
pub const SUMMARY_FILE: &str = "summary.json";

/// The summary in `dir` read as `T` (a [`RunSummary`] or a subset of its fields); `None` when
/// the run has not finished or the file is unreadable.
pub fn read_summary<T: serde::de::DeserializeOwned>(dir: &Path) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(SUMMARY_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

impl RunSummary {
    /// Writes `summary.json` into `dir` (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::experiment::write_atomic(&dir.join(SUMMARY_FILE), &serde_json::to_string_pretty(self)?)
    }
}

/// File in a run folder that records the command line of the run.
pub const ARGS_FILE: &str = "args.json";

impl TrainArgs {
    /// How each method's training is carried out.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            quiet: self.quiet,
            resume: self.resume.is_some(),
            checkpoint_every: self.checkpoint_every,
            stop_after: self.stop_after,
            select: self.select,
        }
    }

    /// The arguments saved in `dir` by an earlier run, set up to continue it there.
    fn resumed(&self, dir: &Path) -> Result<Self> {
        let path = dir.join(ARGS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot resume {}: {} is missing or unreadable", dir.display(), path.display()))?;
        let mut saved: TrainArgs =
            serde_json::from_str(&text).with_context(|| format!("{} is not a saved run", path.display()))?;
        saved.out = Some(dir.to_path_buf());
        saved.resume = Some(dir.to_path_buf());
        saved.device = self.device;
        saved.quiet = self.quiet;
        saved.stop_after = self.stop_after;
        if self.data_dir.is_some() {
            saved.data_dir = self.data_dir.clone();
        }
        Ok(saved)
    }

    /// Records the arguments in the run folder (the data folder is kept: it says what was read).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(ARGS_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// One trained and evaluated run, as printed in the `--json` line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub method: String,
    pub source: String,
    pub target: String,
    pub seed: u64,
    pub source_acc: f64,
    pub target_acc: f64,
    pub domain_acc: f64,
    /// Proxy A-distance of the features (500 test images per domain).
    pub a_distance: f64,
    pub target_ari: f64,
    /// Source validation accuracy of the reported weights (when a split was held out).
    pub source_val_acc: Option<f64>,
    /// Step of the reported weights.
    pub selected_step: usize,
    pub selection: Selection,
    /// Training seconds in the process that finished the run (a resumed run: since the resume).
    pub seconds: f64,
    pub steps: usize,
    /// The step a resumed run continued from.
    pub resumed_at: Option<usize>,
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
    if let Some(dir) = &args.resume {
        let saved = args.resumed(dir)?;
        return run_resolved(&saved);
    }
    run_resolved(args)
}

fn run_resolved(args: &TrainArgs) -> Result<Vec<RunSummary>> {
    let device = device::select(args.device)?;
    match (canonical_toy(&args.source), canonical_toy(&args.target)) {
        (Some(_), Some(_)) if args.method == MethodChoice::Gta => {
            bail!("Generate To Adapt runs on digit pairs (32x32 RGB), not on the 2D toy")
        }
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
            if args.method == MethodChoice::Gta {
                return crate::gta::train(args, &device);
            }
            crate::digits::run(args, ids[0], ids[1], &device)
        }
    }
}
