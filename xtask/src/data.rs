//! `cargo xtask data ...`: list, verify, preview and generate the digit datasets.
//!
//! Every command prints human-readable lines; with `--json` the last line of stdout is one JSON
//! object (machine-readable summary), so scripts can `tail -n1`.
use adapt_datasets::cards::{self, Card};
use adapt_datasets::registry::{self, DatasetId, Origin};
use adapt_datasets::{ImageDataset, Split, hub, mnist_m_gen, preview, syn_digits};
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
        /// Only these datasets (comma separated; default all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Skip hashing files (faster).
        #[arg(long)]
        no_checksums: bool,
    },
    /// Write a PNG grid of 64 samples with their labels.
    Preview {
        /// Dataset name (mnist, mnist-m, svhn, usps, syn-digits).
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
        DataCommand::Verify { only, no_checksums } => verify(data_dir, only, !no_checksums)?,
        DataCommand::Preview { name, out, split, seed, count } => {
            let split: Split = split.parse()?;
            let ds = adapt_datasets::load(name, split, data_dir)?;
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
            "origin": origin_json(&origin),
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

fn origin_json(o: &Origin) -> Value {
    match o {
        Origin::Local { folder, format } => json!({"kind": "local", "path": folder, "format": format}),
        Origin::Hub { repo } => json!({"kind": "hub", "repo": repo}),
        Origin::Unavailable => json!({"kind": "unavailable"}),
    }
}

/// Loads one split for verification: local folder, else the HF cache only (never downloads).
fn load_for_verify(
    id: DatasetId,
    split: Split,
    data_dir: Option<&Path>,
) -> Option<adapt_datasets::Result<ImageDataset>> {
    if let Some(folder) = registry::local_folder(id, data_dir) {
        return Some(registry::load_local(id, split, &folder));
    }
    let h = id.hub()?;
    let files = hub::cached_split_files(h, split)?;
    Some(adapt_datasets::parquet_hub::load_parquet(id, split, &files))
}

fn verify(data_dir: Option<&Path>, only: &[String], checksums: bool) -> anyhow::Result<(Value, Option<String>)> {
    let wanted: Vec<DatasetId> = if only.is_empty() {
        DatasetId::ALL.to_vec()
    } else {
        only.iter().map(|n| DatasetId::parse(n)).collect::<Result<_, _>>()?
    };
    let mut counts = serde_json::Map::new();
    let mut details = serde_json::Map::new();
    let mut partial = serde_json::Map::new();
    let mut problems: Vec<String> = Vec::new();
    for id in wanted {
        let card = cards::card(id.name())?;
        let mut split_counts = serde_json::Map::new();
        let mut split_details = serde_json::Map::new();
        for &split in id.splits() {
            let t = std::time::Instant::now();
            let Some(res) = load_for_verify(id, split, data_dir) else { continue };
            match res {
                Ok(ds) => {
                    let d = describe(&ds, &card, split, &mut problems);
                    println!(
                        "{:<11} {:<5} {:>6} images {:?}  pixels {:?}  labels {:?}{}  ({:.1}s, {})",
                        id.name(),
                        split.as_str(),
                        ds.len(),
                        ds.shape(),
                        ds.pixel_range(),
                        ds.label_histogram(10),
                        ds.partial.map(|p| format!("  PARTIAL {} of {}", p.loaded, p.listed)).unwrap_or_default(),
                        t.elapsed().as_secs_f64(),
                        ds.origin
                    );
                    if let Some(p) = ds.partial {
                        partial
                            .entry(id.name())
                            .or_insert_with(|| json!({}))
                            .as_object_mut()
                            .expect("object")
                            .insert(split.as_str().into(), json!({"loaded": p.loaded, "listed": p.listed}));
                    }
                    split_counts.insert(split.as_str().into(), json!(ds.len()));
                    split_details.insert(split.as_str().into(), d);
                }
                // A folder holding only some splits (e.g. a generated train set) is not an error.
                Err(e @ adapt_datasets::DatasetError::NotFound { .. }) => {
                    println!("{:<11} {:<5} absent: {e}", id.name(), split.as_str());
                    split_details.insert(split.as_str().into(), json!({"absent": e.to_string()}));
                }
                Err(e) => {
                    println!("{:<11} {:<5} ERROR {e}", id.name(), split.as_str());
                    problems.push(format!("{id} {split}: {e}"));
                    split_details.insert(split.as_str().into(), json!({"error": e.to_string()}));
                }
            }
        }
        if split_counts.is_empty() && split_details.is_empty() {
            match registry::origin(id, data_dir) {
                Origin::Hub { repo } => println!(
                    "{:<11} not in the data directory nor the HF cache (`data preview` or a load would download hf://datasets/{repo})",
                    id.name()
                ),
                _ => println!("{:<11} not present: no local folder and no Hub copy", id.name()),
            }
            continue;
        }
        let mut entry = json!({"splits": split_details, "origin": origin_json(&registry::origin(id, data_dir))});
        if let Some(folder) = registry::local_folder(id, data_dir).filter(|_| checksums) {
            entry["checksums"] = check_card(&card, &folder, &mut problems)?;
        }
        counts.insert(id.name().into(), Value::Object(split_counts));
        details.insert(id.name().into(), entry);
    }
    // The photos MNIST-M generation uses.
    let mut bsds = json!(null);
    if let Some(dir) = registry::resolve_data_dir(data_dir).map(|d| d.join("bsds500")).filter(|d| d.is_dir()) {
        let photos = mnist_m_gen::list_photos(&dir)?;
        let card = cards::card("bsds500")?;
        println!("{:<11} {} photos in {}", "bsds500", photos.len(), dir.display());
        if photos.len() != card.counts["train"] {
            println!("{:<11} note: the card lists {} training photos", "", card.counts["train"]);
        }
        bsds = json!({"photos": photos.len()});
        if checksums {
            bsds["checksums"] = check_card(&card, &dir, &mut problems)?;
        }
    }
    let ok = problems.is_empty();
    println!("{}", if ok { "verify: OK".to_string() } else { format!("verify: {} problem(s)", problems.len()) });
    for p in &problems {
        println!("  - {p}");
    }
    let summary = json!({
        "datasets": counts,
        "partial": partial,
        "bsds500": bsds,
        "details": details,
        "ok": ok,
        "problems": problems,
    });
    let failure = (!ok).then(|| format!("data verify found {} problem(s)", problems.len()));
    Ok((summary, failure))
}

fn describe(ds: &ImageDataset, card: &Card, split: Split, problems: &mut Vec<String>) -> Value {
    let hist = ds.label_histogram(10);
    let (lo, hi) = ds.pixel_range();
    let expected = card.counts.get(split.as_str()).copied();
    let known_hist = card.label_histograms.get(split.as_str());
    // A partial copy is a prefix of the official order: its histogram cannot match the card's.
    let hist_ok = known_hist.filter(|_| ds.partial.is_none()).map(|h| *h == hist);
    // Only a set of the official size claims to be the official one; others (generated, subsets)
    // are reported but are not failures.
    if hist_ok == Some(false) && expected == Some(ds.len()) {
        problems
            .push(format!("{} {split}: label histogram {hist:?} differs from the card's {:?}", ds.name, known_hist));
    }
    let count_ok = expected.map(|e| e == ds.len() || ds.partial.is_some_and(|p| p.listed == e));
    if count_ok == Some(false) && ds.partial.is_none() {
        println!(
            "{:<11} {:<5} note: {} images, the official set has {}",
            ds.name,
            split.as_str(),
            ds.len(),
            expected.unwrap_or(0)
        );
    }
    json!({
        "count": ds.len(),
        "expected": expected,
        "count_matches_card": count_ok,
        "shape": ds.shape(),
        "label_histogram": hist,
        "histogram_matches_card": hist_ok,
        "pixel_min": lo,
        "pixel_max": hi,
        "origin": ds.origin,
        "partial": ds.partial,
    })
}

fn check_card(card: &Card, folder: &Path, problems: &mut Vec<String>) -> anyhow::Result<Value> {
    let files = cards::check_files(card, folder)?;
    for f in &files {
        let mark = match f.matches {
            Some(true) => "ok",
            Some(false) => "MISMATCH",
            None => "(no reference)",
        };
        println!("{:<11} sha256 {} {mark}", card.name, f.path);
        if f.matches == Some(false) {
            problems.push(format!("{}: sha256 of {} differs from the card", card.name, folder.join(&f.path).display()));
        }
    }
    let mut lists = Vec::new();
    for s in &card.sums {
        let list = folder.join(&s.list);
        if !list.is_file() {
            continue;
        }
        let (checked, bad) = cards::check_sums_file(&list, &folder.join(&s.dir))?;
        println!("{:<11} {}: {checked} files checked, {} mismatched", card.name, s.list, bad.len());
        if !bad.is_empty() {
            problems.push(format!(
                "{}: {} files differ from {} (first: {})",
                card.name,
                bad.len(),
                list.display(),
                bad[0]
            ));
        }
        lists.push(json!({"list": s.list, "checked": checked, "mismatched": bad.len()}));
    }
    Ok(json!({"files": files, "lists": lists}))
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
