//! `cargo xtask ablation`: experiments that train many runs and print one table.
//!
//! Every run gets its own folder under `--out`; a folder that already holds a finished run is
//! read instead of trained again, and an interrupted one is resumed from its checkpoint, so an
//! ablation can be stopped and started again.
use adapt_datasets::DatasetId;
use adapt_experiment::aggregate::{DigitMatrix, digit_matrix};
use adapt_experiment::gta::GtaAblation;
use adapt_experiment::recipe::{GTA_DEFAULT_STEPS, RunOptions};
use anyhow::Result;
use candle_core::Device;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum AblationCommand {
    /// Source-only, DANN (paper) and the recommended recipe on every pair of available digit datasets.
    Matrix(MatrixArgs),
    /// Generate To Adapt: stream 1 only, + real/fake classifier C1, + auxiliary classifier C2.
    Gta(GtaAblationArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Seeds per cell (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Datasets to pair (default: every digit dataset that loads).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Option<Vec<String>>,
    /// Training steps per run (default: each preset's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Folder for the runs and `matrix.md`.
    #[arg(long, default_value = "runs/matrix")]
    pub out: PathBuf,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GtaAblationArgs {
    #[arg(long, default_value = "mnist")]
    pub source: String,
    #[arg(long, default_value = "mnist-m")]
    pub target: String,
    /// Seeds per row (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Iterations per run.
    #[arg(long, default_value_t = GTA_DEFAULT_STEPS)]
    pub steps: usize,
    /// Images per domain in each iteration (the authors: 100).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Folder for the runs and `ablation.md`.
    #[arg(long, default_value = "runs/ablation-gta")]
    pub out: PathBuf,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

fn options(data_dir: &Option<PathBuf>, quiet: bool) -> RunOptions {
    RunOptions { data_dir: data_dir.clone(), quiet, ..RunOptions::default() }
}

pub fn run(command: &AblationCommand) -> Result<serde_json::Value> {
    let (runs, table, path) = match command {
        AblationCommand::Matrix(a) => {
            let datasets = match &a.datasets {
                Some(names) => Some(names.iter().map(|n| DatasetId::parse(n)).collect::<Result<Vec<_>, _>>()?),
                None => None,
            };
            let spec = DigitMatrix { datasets, seeds: a.seeds, steps: a.steps, out: a.out.clone() };
            let (rows, md) = digit_matrix(&spec, &options(&a.data_dir, a.quiet), &Device::Cpu)?;
            let runs = rows.into_iter().flat_map(|r| r.columns.into_iter().flat_map(|(_, runs)| runs)).collect();
            (runs, md, a.out.join("matrix.md"))
        }
        AblationCommand::Gta(a) => {
            let spec = GtaAblation {
                source: a.source.clone(),
                target: a.target.clone(),
                seeds: a.seeds,
                steps: a.steps,
                batch_size: a.batch_size,
                out: a.out.clone(),
            };
            let (runs, md) = adapt_experiment::gta::ablation(&spec, &options(&a.data_dir, a.quiet), &Device::Cpu)?;
            (runs, md, a.out.join("ablation.md"))
        }
    };
    println!("{table}");
    println!("written: {}", path.display());
    Ok(serde_json::json!({ "runs": runs }))
}
