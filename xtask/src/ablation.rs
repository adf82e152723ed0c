//! `cargo xtask ablation`: experiments that train many runs and print one table.
//!
//! Every run gets its own folder under `--out`; a folder that already holds a finished run is
//! read instead of trained again, and an interrupted one is resumed from its checkpoint, so an
//! ablation can be stopped and started again.
use adapt_datasets::pair::PairProfile;
use adapt_datasets::{DataRef, DatasetId};
use adapt_experiment::aggregate::{DigitMatrix, digit_matrix};
use adapt_experiment::gta::GtaAblation;
use adapt_experiment::recipe::{GTA_DEFAULT_STEPS, GtaPreset, RunOptions};
use adapt_train::GtaVariant;
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
    #[arg(long, value_delimiter = ',', conflicts_with = "pairs")]
    pub datasets: Option<Vec<String>>,
    /// Only these pairs, as SOURCE:TARGET separated by commas (e.g. `mnist:usps,usps:mnist`).
    #[arg(long, value_delimiter = ',')]
    pub pairs: Option<Vec<String>>,
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
    /// Seeds per row (--first-seed, then the next ones).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// The first seed: to train some seeds in another process into the same --out (a later
    /// call from seed 0 reads the finished runs back and tabulates them all).
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Iterations per run.
    #[arg(long, default_value_t = GTA_DEFAULT_STEPS, conflicts_with = "epochs")]
    pub steps: usize,
    /// Epochs of the source training set per run (the authors' unit), instead of --steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Input normalisation: the authors' (p - 0.44) / 0.19 (default), or unit (p - 0.5) / 0.5.
    #[arg(long, value_enum, default_value_t = GtaPresetChoice::Authors)]
    pub preset: GtaPresetChoice,
    /// The frame-filling domain's digits resized into a box of this side and zero-padded to
    /// 32x32 (default: decided from the data, the other domain's digit scale).
    #[arg(long, alias = "digit-box")]
    pub usps_box: Option<usize>,
    /// Move training images of both domains by up to N pixels each way (ours; the authors: 0).
    #[arg(long, default_value_t = adapt_experiment::recipe::GTA_DEFAULT_SHIFT)]
    pub shift: usize,
    /// Rows to train (default all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub rows: Option<Vec<RowChoice>>,
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

/// GTA's input normalisation (see `GtaPreset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GtaPresetChoice {
    /// (p - 0.5) / 0.5: adapt's GTA default.
    Unit,
    /// The authors' code: (p - 0.44) / 0.19.
    Authors,
}

impl From<GtaPresetChoice> for GtaPreset {
    fn from(c: GtaPresetChoice) -> Self {
        match c {
            GtaPresetChoice::Unit => GtaPreset::Unit,
            GtaPresetChoice::Authors => GtaPreset::Authors,
        }
    }
}

/// One row of the GTA ablation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowChoice {
    Stream1,
    C1,
    Full,
}

impl From<RowChoice> for GtaVariant {
    fn from(c: RowChoice) -> Self {
        match c {
            RowChoice::Stream1 => GtaVariant::Stream1,
            RowChoice::C1 => GtaVariant::C1,
            RowChoice::Full => GtaVariant::Full,
        }
    }
}

/// `SOURCE:TARGET`, each a built-in dataset's name or a path (split at the last `:`, so a path
/// may hold colons).
fn parse_pair(text: &str) -> Result<(DataRef, DataRef)> {
    let Some((source, target)) = text.rsplit_once(':') else {
        anyhow::bail!("--pairs takes SOURCE:TARGET items (e.g. mnist:usps), got '{text}'");
    };
    Ok((DataRef::parse(source.trim()), DataRef::parse(target.trim())))
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
            let pairs = match &a.pairs {
                Some(pairs) => Some(pairs.iter().map(|p| parse_pair(p)).collect::<Result<Vec<_>>>()?),
                None => None,
            };
            let spec = DigitMatrix { datasets, pairs, seeds: a.seeds, steps: a.steps, out: a.out.clone() };
            let (rows, md) = digit_matrix(&spec, &options(&a.data_dir, a.quiet), &Device::Cpu)?;
            let runs = rows.into_iter().flat_map(|r| r.columns.into_iter().flat_map(|(_, runs)| runs)).collect();
            (runs, md, a.out.join("matrix.md"))
        }
        AblationCommand::Gta(a) => {
            let (source, target) = adapt_experiment::recipe::parse_pair(&a.source, &a.target)?;
            let profile = PairProfile::measure(&source, &target, a.data_dir.as_deref())?;
            let mut spec = GtaAblation {
                source: a.source.clone(),
                target: a.target.clone(),
                seeds: a.seeds,
                first_seed: a.first_seed,
                steps: a.steps,
                epochs: a.epochs,
                batch_size: a.batch_size,
                preset: a.preset.into(),
                digit_box: a.usps_box,
                profile,
                input_shift: a.shift,
                variants: a.rows.as_ref().map_or(GtaVariant::ALL.to_vec(), |r| r.iter().map(|&v| v.into()).collect()),
                out: a.out.clone(),
            };
            let (runs, md) = adapt_experiment::gta::ablation(&mut spec, &options(&a.data_dir, a.quiet), &Device::Cpu)?;
            (runs, md, a.out.join("ablation.md"))
        }
    };
    println!("{table}");
    println!("written: {}", path.display());
    Ok(serde_json::json!({ "runs": runs }))
}
