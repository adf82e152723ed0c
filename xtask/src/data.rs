//! `cargo xtask data ...`: list, verify, preview and generate the digit datasets.
//!
//! Every command prints human-readable lines; with `--json` the last line of stdout is one JSON
//! object (machine-readable summary), so scripts can `tail -n1`.
use adapt_datasets::pair::load_domain;
use adapt_datasets::registry::DatasetId;
use adapt_datasets::{DataRef, Split, catalog, preview, verify};
use anyhow::{Context, bail};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The `data` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// List the datasets, the formats recognised, and where each would load from.
    List,
    /// Load every available dataset: counts per split, label histograms, pixel ranges, and the
    /// checksums the dataset cards know. Hub datasets are checked only when already in the HF cache.
    Verify {
        /// Only these datasets (comma separated; default all); a path verifies that folder or
        /// list file instead: layout, classes, counts per split and class, conversions.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Skip hashing files (faster).
        #[arg(long)]
        no_checksums: bool,
    },
    /// Write a PNG grid of 64 samples with their labels.
    Preview {
        /// Dataset name (mnist, mnist-m, svhn, usps, syn-digits), or a folder / list file.
        name: String,
        /// Output PNG file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        /// Seed choosing the samples.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 64)]
        count: usize,
    },
    /// Write a built-in dataset (its train and test splits) as a class-folder tree
    /// OUT/{train,test}/<class>/<index>.png that `--source OUT` / `--target OUT` read back exactly.
    Export {
        /// Dataset name (mnist, mnist-m, svhn, usps, syn-digits).
        name: String,
        /// Output folder (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Splits to write (default train and test).
        #[arg(long, value_delimiter = ',', default_value = "train,test")]
        splits: Vec<String>,
    },
    /// Generate MNIST-M (Ganin's recipe, from MNIST and photos) or SynDigits (rendered fonts).
    Generate {
        /// mnist-m or syn-digits.
        name: String,
        /// Output folder (written in the dataset's original layout: use DATA_DIR/mnist_m or DATA_DIR/syn_digits).
        #[arg(long)]
        out: PathBuf,
        /// Images to generate.
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "train")]
        split: String,
        /// Folder of JPEG/PNG photos for MNIST-M backgrounds (default DATA_DIR/bsds500).
        #[arg(long)]
        photos: Option<PathBuf>,
        /// Extra fonts (.ttf/.otf) for SynDigits, used with the embedded DejaVu family.
        #[arg(long)]
        fonts: Option<PathBuf>,
    },
}

/// Runs a `data` subcommand; with `json`, the last stdout line is a JSON summary.
pub fn run(cmd: &DataCommand, data_dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let say = &mut |line: &str| println!("{line}");
    let (summary, failure) = match cmd {
        DataCommand::List => (serde_json::to_value(catalog::list(data_dir, say))?, None),
        DataCommand::Verify { only, .. } if only.iter().any(|n| matches!(DataRef::parse(n), DataRef::Path(_))) => {
            (serde_json::to_value(catalog::verify_paths(only, say)?)?, None)
        }
        DataCommand::Verify { only, no_checksums } => {
            let only = only.iter().map(|n| DatasetId::parse(n)).collect::<Result<Vec<_>, _>>()?;
            let report = verify::verify(data_dir, &only, !no_checksums, say)?;
            let failure = (!report.ok).then(|| format!("data verify found {} problem(s)", report.problems.len()));
            (serde_json::to_value(&report)?, failure)
        }
        DataCommand::Preview { name, out, split, seed, count } => {
            let split: Split = split.parse()?;
            let ds = match DataRef::parse(name) {
                DataRef::Builtin(_) => adapt_datasets::load(name, split, data_dir)?,
                data => {
                    let d = load_domain(&data, data_dir, None, split != Split::Train)?;
                    if split == Split::Train {
                        d.train
                    } else {
                        d.test.with_context(|| format!("{name} has no test split"))?
                    }
                }
            };
            preview::save_grid(&ds, *count, *seed, out)?;
            let samples = (*count).min(ds.len());
            println!("wrote {samples} samples of {} {split} ({}) to {}", ds.name, ds.origin, out.display());
            (json!({"preview": ds.name, "split": split, "out": out, "samples": samples}), None)
        }
        DataCommand::Export { name, out, splits } => {
            (serde_json::to_value(catalog::export(name, splits, data_dir, out, say)?)?, None)
        }
        DataCommand::Generate { name, out, count, seed, split, photos, fonts } => {
            let (photos, fonts, count, seed) = (photos.as_deref(), fonts.as_deref(), *count, *seed);
            let req = catalog::GenerateRequest { name, out, count, seed, split, photos, fonts };
            (serde_json::to_value(catalog::generate(&req, data_dir, say)?)?, None)
        }
    };
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    match failure {
        Some(f) => bail!(f),
        None => Ok(()),
    }
}
