//! `cargo xtask ablation`: experiments that train many runs and print one table.
//!
//! * `matrix`: source-only and DANN for every source -> target pair of the digit datasets that
//!   can be loaded, over several seeds; seed 000's table (rows: target, columns: source).
//! * `gta`: the three rows of the Generate To Adapt ablation (seed 001).
//!
//! Every run gets its own folder under `--out`; a folder that already holds a finished run is
//! read instead of trained again, and an interrupted one is resumed from its checkpoint, so an
//! ablation can be stopped and started again.
use crate::report::{SavedRun, mean_std};
use crate::train::{MethodChoice, TrainArgs, read_summary};
use adapt_datasets::{DatasetId, Split};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum AblationCommand {
    /// Source-only and DANN on every pair of available digit datasets.
    Matrix(MatrixArgs),
    /// Generate To Adapt: stream 1 only, + real/fake classifier C1, + auxiliary classifier C2.
    Gta(crate::gta::GtaAblationArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Seeds per cell (0, 1, ...).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Datasets to pair (default: every digit dataset that loads).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Option<Vec<String>>,
    /// Training steps per run (default: the preset's).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, value_enum, default_value_t = crate::digits::Preset::Paper)]
    pub preset: crate::digits::Preset,
    /// Folder for the runs and `matrix.md`.
    #[arg(long, default_value = "runs/matrix")]
    pub out: PathBuf,
    /// Folder with one sub-folder per dataset (else ADAPT_DATA_DIR, else the Hugging Face cache).
    #[arg(long, env = "ADAPT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub quiet: bool,
}

const DIGITS: [DatasetId; 5] =
    [DatasetId::Mnist, DatasetId::MnistM, DatasetId::Svhn, DatasetId::SynDigits, DatasetId::Usps];

/// The digit datasets whose test split loads from `data_dir`.
fn available(data_dir: Option<&Path>) -> Vec<DatasetId> {
    DIGITS.into_iter().filter(|id| adapt_datasets::load(id.name(), Split::Test, data_dir).is_ok()).collect()
}

/// Runs (or reads, or resumes) the source-only vs DANN comparison of one pair and seed.
fn pair_runs(args: &MatrixArgs, source: DatasetId, target: DatasetId, seed: u64) -> Result<Vec<SavedRun>> {
    let dir = args.out.join(format!("{}-{}", source.name(), target.name())).join(format!("seed{seed}"));
    let finished: Vec<SavedRun> =
        ["source-only", "dann"].iter().filter_map(|m| read_summary::<SavedRun>(&dir.join(m))).collect();
    if finished.len() == 2 {
        return Ok(finished);
    }
    let mut train = TrainArgs::parse_default();
    train.method = MethodChoice::Compare;
    train.source = source.name().into();
    train.target = target.name().into();
    train.seed = seed;
    train.steps = args.steps;
    train.preset = args.preset;
    train.data_dir = args.data_dir.clone();
    train.quiet = args.quiet;
    if dir.join(crate::train::ARGS_FILE).is_file() {
        train.resume = Some(dir.clone());
    } else {
        train.out = Some(dir.clone());
    }
    crate::train::run(&train).with_context(|| format!("{} -> {} seed {seed}", source.name(), target.name()))?;
    ["source-only", "dann"]
        .iter()
        .map(|m| {
            read_summary::<SavedRun>(&dir.join(m)).with_context(|| format!("{} has no summary", dir.join(m).display()))
        })
        .collect()
}

fn cell(runs: &[SavedRun], source: &str, target: &str, method: &str) -> Option<String> {
    let acc: Vec<f64> = runs
        .iter()
        .filter(|r| r.source == source && r.target == target && r.method == method)
        .map(|r| 100.0 * r.target_acc)
        .collect();
    if acc.is_empty() {
        return None;
    }
    let (m, s) = mean_std(&acc);
    Some(format!("{m:.1} ± {s:.1}"))
}

pub fn matrix(args: &MatrixArgs) -> Result<serde_json::Value> {
    let ids = match &args.datasets {
        Some(names) => {
            names.iter().map(|n| DatasetId::parse(n).map_err(anyhow::Error::from)).collect::<Result<Vec<_>>>()?
        }
        None => available(args.data_dir.as_deref()),
    };
    if ids.len() < 2 {
        bail!(
            "the matrix needs at least two loadable digit datasets, found {:?} (set --data-dir or ADAPT_DATA_DIR)",
            ids.iter().map(|i| i.name()).collect::<Vec<_>>()
        );
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let mut runs = Vec::new();
    for &source in &ids {
        for &target in &ids {
            if source == target {
                continue;
            }
            for seed in 0..args.seeds {
                runs.extend(pair_runs(args, source, target, seed)?);
            }
        }
    }
    let names: Vec<&str> = ids.iter().map(|i| i.name()).collect();
    let mut md = format!(
        "# Source-only vs DANN: target test accuracy (%), mean ± std over {} seed(s)\n\n\
         Rows: target; columns: source. Each cell: source-only -> DANN. Preset `{}`.\n\n",
        args.seeds,
        args.preset.as_str()
    );
    md.push_str(&format!("| target \\ source | {} |\n|---|{}\n", names.join(" | "), "---|".repeat(names.len())));
    for t in &names {
        let cells: Vec<String> = names
            .iter()
            .map(|s| {
                if s == t {
                    return "—".to_string();
                }
                match (cell(&runs, s, t, "source-only"), cell(&runs, s, t, "dann")) {
                    (Some(a), Some(b)) => format!("{a} -> {b}"),
                    _ => "-".into(),
                }
            })
            .collect();
        md.push_str(&format!("| {t} | {} |\n", cells.join(" | ")));
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("matrix.md");
    std::fs::write(&path, &md).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{md}");
    println!("written: {}", path.display());
    Ok(serde_json::json!({ "runs": runs }))
}
