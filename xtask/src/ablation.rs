//! `cargo xtask ablation`: experiments that train many runs and print one table.
//!
//! Every run gets its own folder under `--out`; a folder that already holds a finished run is
//! read instead of trained again, and an interrupted one is resumed from its checkpoint, so an
//! ablation can be stopped and started again. The sweep flags (`--list-tasks`, `--task`,
//! `--slurm`) train its units apart, as jobs of a cluster (see docs/cluster.md).
use adapt_datasets::DatasetId;
use adapt_datasets::pair::PairProfile;
use adapt_experiment::aggregate::DigitMatrix;
use adapt_experiment::gta::GtaAblation;
use adapt_experiment::recipe::{GTA_DEFAULT_STEPS, GtaPreset, RunOptions, parse_pair_item};
use adapt_experiment::sweep::{SlurmOptions, Sweep, SweepMode, TaskIndex};
use adapt_train::GtaVariant;
use anyhow::{Context, Result};
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
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// How the sweep is carried out: whole (the default), one unit, listed, or as a Slurm job array.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Print the sweep's units, one a line with its index (each one run folder), and exit.
    #[arg(long, conflicts_with_all = ["task", "slurm"])]
    pub list_tasks: bool,
    /// Train only unit N into --out and exit; `env`: N from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX. A unit that another process trains is refused, naming its host and pid.
    #[arg(long, value_name = "N|env", conflicts_with = "slurm")]
    pub task: Option<TaskIndex>,
    /// Write a Slurm array job (one task per unit), a report job and submit.sh into --out.
    #[arg(long)]
    pub slurm: bool,
    /// Submit them with sbatch (the report job after every task succeeded) and print the job ids.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// At most K tasks at once (--array=0-(N-1)%K).
    #[arg(long, value_name = "K", requires = "slurm")]
    pub max_parallel: Option<usize>,
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Time limit per task, in Slurm's notation (MM, HH:MM:SS, D-HH:MM).
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// CPUs per task, also each task's training thread count.
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<usize>,
    #[arg(long, requires = "slurm")]
    pub gpus_per_task: Option<usize>,
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
    #[command(flatten)]
    pub sweep: SweepArgs,
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

pub fn run(command: &AblationCommand) -> Result<serde_json::Value> {
    let (mut sweep, opts, args) = match command {
        AblationCommand::Matrix(a) => {
            let datasets = match &a.datasets {
                Some(names) => Some(names.iter().map(|n| DatasetId::parse(n)).collect::<Result<Vec<_>, _>>()?),
                None => None,
            };
            let pairs = match &a.pairs {
                Some(pairs) => Some(pairs.iter().map(|p| parse_pair_item(p)).collect::<Result<Vec<_>, _>>()?),
                None => None,
            };
            let spec = DigitMatrix { datasets, pairs, seeds: a.seeds, steps: a.steps, out: a.out.clone() };
            (
                Sweep::Matrix(spec),
                RunOptions { data_dir: a.data_dir.clone(), quiet: a.quiet, ..RunOptions::default() },
                &a.sweep,
            )
        }
        AblationCommand::Gta(a) => {
            let (source, target) = adapt_experiment::recipe::parse_pair(&a.source, &a.target)?;
            let profile = PairProfile::measure(&source, &target, a.data_dir.as_deref())?;
            let spec = GtaAblation {
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
            (
                Sweep::Gta(Box::new(spec)),
                RunOptions { data_dir: a.data_dir.clone(), quiet: a.quiet, ..RunOptions::default() },
                &a.sweep,
            )
        }
    };
    let mode = if args.list_tasks {
        SweepMode::List
    } else if let Some(task) = args.task {
        SweepMode::Task(task.resolve().context("--task")?)
    } else if args.slurm {
        let options = SlurmOptions {
            max_parallel: args.max_parallel,
            partition: args.partition.clone(),
            time: args.time.clone(),
            cpus_per_task: args.cpus_per_task,
            gpus_per_task: args.gpus_per_task,
        };
        let binary = std::env::current_exe().context("finding this binary for the jobs to run")?;
        SweepMode::Slurm { binary, argv: std::env::args().skip(1).collect(), options, submit: args.submit }
    } else {
        SweepMode::Whole
    };
    let done = sweep.carry_out(mode, &opts, &Device::Cpu, &mut |line| println!("{line}"))?;
    Ok(serde_json::to_value(done)?)
}
