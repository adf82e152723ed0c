//! `cargo xtask data ...`: list, verify, preview and generate the digit datasets.
//!
//! Every command prints human-readable lines; with `--json` the last line of stdout is one JSON
//! object (machine-readable summary), so scripts can `tail -n1`.
use adapt_datasets::image_folder::{FolderOptions, export_class_folders, load_image_source};
use adapt_datasets::pair::{digit_classes, load_domain};
use adapt_datasets::registry::{self, DatasetId};
use adapt_datasets::{DataRef, Split, hub, mnist_m_gen, preview, syn_digits, verify};
use anyhow::{Context, bail};
use serde_json::{Value, json};
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
    let (summary, failure) = match cmd {
        DataCommand::List => (list(data_dir), None),
        DataCommand::Verify { only, .. } if only.iter().any(|n| matches!(DataRef::parse(n), DataRef::Path(_))) => {
            (verify_paths(only)?, None)
        }
        DataCommand::Verify { only, no_checksums } => {
            let only = only.iter().map(|n| DatasetId::parse(n)).collect::<Result<Vec<_>, _>>()?;
            let report = verify::verify(data_dir, &only, !no_checksums, &mut |line| println!("{line}"))?;
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
            println!(
                "wrote {} samples of {} {split} ({}) to {}",
                count.min(&ds.len()),
                ds.name,
                ds.origin,
                out.display()
            );
            (json!({"preview": ds.name, "split": split, "out": out, "samples": count.min(&ds.len())}), None)
        }
        DataCommand::Export { name, out, splits } => {
            let id = DatasetId::parse(name)?;
            let splits = splits.iter().map(|s| s.parse::<Split>()).collect::<Result<Vec<_>, _>>()?;
            let sets = splits.iter().map(|&s| registry::load_id(id, s, data_dir)).collect::<Result<Vec<_>, _>>()?;
            let summary = export_class_folders(&sets.iter().collect::<Vec<_>>(), &digit_classes(), out)?;
            for (split, n) in &summary.splits {
                println!("{name} {split}: {n} images -> {}", out.join(split.as_str()).display());
            }
            (serde_json::to_value(&summary)?, None)
        }
        DataCommand::Generate { name, out, count, seed, split, photos, fonts } => {
            (generate(name, out, *count, *seed, split, photos.as_deref(), fonts.as_deref(), data_dir)?, None)
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

/// `data verify PATH...`: each folder or list file loaded, its layout, classes and counts printed.
fn verify_paths(paths: &[String]) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for p in paths {
        let src = load_image_source(Path::new(p), &FolderOptions::default())?;
        println!("{p}: {} ({}), {} classes", src.layout.as_str(), src.root.display(), src.classes.len());
        let mut splits = Vec::new();
        for ds in std::iter::once(&src.train).chain(src.test.as_ref()) {
            let hist = if src.labelled { ds.label_histogram(src.classes.len()) } else { Vec::new() };
            let [c, h, w] = [ds.channels, ds.height, ds.width];
            println!(
                "  {}: {} images stored {c}x{h}x{w}{}",
                ds.split,
                ds.len(),
                if src.labelled { format!(", per class {hist:?}") } else { ", unlabelled".into() }
            );
            splits.push(json!({"split": ds.split, "images": ds.len(), "shape": [c, h, w], "per_class": hist}));
        }
        for c in &src.conversions {
            println!("  {c}");
        }
        out.push(json!({"path": p, "layout": src.layout.as_str(), "classes": src.classes, "labelled": src.labelled, "splits": splits, "conversions": src.conversions}));
    }
    Ok(json!({"ok": true, "paths": out}))
}

fn list(data_dir: Option<&Path>) -> Value {
    let dir = registry::resolve_data_dir(data_dir);
    match &dir {
        Some(d) => println!("data directory: {}", d.display()),
        None => println!("data directory: none (--data-dir or {} unset)", registry::DATA_DIR_ENV),
    }
    println!("HF cache: {}{}", hub::cache_dir().display(), if hub::offline() { " (HF_HUB_OFFLINE)" } else { "" });
    let mut rows = Vec::new();
    for id in DatasetId::ALL {
        let origin = registry::origin(id, data_dir);
        let splits: Vec<&str> = id.splits().iter().map(|s| s.as_str()).collect();
        println!("{:<11} splits {:<17} loads from {origin}", id.name(), splits.join(","));
        println!("{:<11} formats: {}", "", id.formats());
        rows.push(json!({
            "name": id.name(),
            "folder": id.folder(),
            "splits": splits,
            "formats": id.formats(),
            "hub": id.hub().map(|h| h.repo),
            "origin": origin,
        }));
    }
    let photos = dir.as_ref().map(|d| d.join("bsds500")).filter(|d| d.is_dir());
    let photo_count = photos.as_ref().and_then(|d| mnist_m_gen::list_photos(d).ok()).map(|p| p.len());
    match (&photos, photo_count) {
        (Some(d), Some(n)) => println!("{:<11} {n} photos in {} (MNIST-M backgrounds)", "bsds500", d.display()),
        _ => println!("{:<11} not present (MNIST-M generation needs --photos)", "bsds500"),
    }
    json!({"datasets": rows, "bsds500": {"photos": photo_count}, "data_dir": dir})
}

#[allow(clippy::too_many_arguments)]
fn generate(
    name: &str,
    out: &Path,
    count: usize,
    seed: u64,
    split: &str,
    photos: Option<&Path>,
    fonts: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<Value> {
    let split: Split = split.parse()?;
    let id = DatasetId::parse(name)?;
    let t = std::time::Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = match id {
        DatasetId::MnistM => {
            let photo_dir = match photos {
                Some(p) => p.to_path_buf(),
                None => registry::resolve_data_dir(data_dir)
                    .map(|d| d.join("bsds500"))
                    .filter(|d| d.is_dir())
                    .context("MNIST-M needs photos: pass --photos DIR or put them in DATA_DIR/bsds500")?,
            };
            let paths = mnist_m_gen::list_photos(&photo_dir)?;
            if paths.is_empty() {
                bail!("{}: no JPEG or PNG photos found", photo_dir.display());
            }
            let photos = mnist_m_gen::load_photos(&paths)?;
            let digits = adapt_datasets::load("mnist", split, data_dir)?;
            let cfg = mnist_m_gen::MnistMConfig { count, seed, ..Default::default() };
            let ds = mnist_m_gen::generate(&digits, &photos, &cfg)?;
            mnist_m_gen::write_ganin(&ds, out, split)?;
            println!(
                "blended {count} MNIST {split} digits with crops of {} photos from {}",
                photos.len(),
                photo_dir.display()
            );
            out.join(format!("mnist_m_{split}_labels.txt"))
        }
        DatasetId::SynDigits => {
            let mut all = syn_digits::dejavu_fonts();
            if let Some(dir) = fonts {
                all.extend(syn_digits::load_font_dir(dir)?);
            }
            let cfg = syn_digits::SynDigitsConfig { count, seed };
            let ds = syn_digits::generate(&all, &cfg, split)?;
            let path = out.join(format!("synth_{split}_32x32.mat"));
            syn_digits::write_svhn_mat(&ds, &path)?;
            println!("rendered {count} digits with {} fonts", all.len());
            path
        }
        other => bail!("{other} is not generated; only mnist-m and syn-digits are"),
    };
    println!("wrote {} ({:.1}s)", written.display(), t.elapsed().as_secs_f64());
    Ok(json!({"generated": id.name(), "split": split, "count": count, "seed": seed, "out": out}))
}
