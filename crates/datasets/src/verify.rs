//! `data verify`: load every available split, count it, compare it with its dataset card and
//! check the card's checksums, and say what is wrong.
//!
//! What fails verification (each is a [`Report::problems`] entry naming the file or folder):
//!
//! * a data directory that does not exist (or is not a directory);
//! * a split whose files exist but cannot be loaded: corrupt data, a data file that is a
//!   directory, a FIFO, a dangling link or a device, half of an images/labels pair, a label list
//!   without its image folder;
//! * a dataset folder in which no split is recognised (an empty folder, say);
//! * a label histogram that differs from the card's for a set of the official size, a checksum
//!   that differs from the card's;
//! * nothing to verify at all (no dataset folder and nothing in the Hugging Face cache).
//!
//! A folder holding only some splits (a generated training set, say) is not a failure: the other
//! splits are reported absent.
use crate::cards::{self, Card};
use crate::registry::{self, DatasetId, Origin};
use crate::{DatasetError, ImageDataset, Partial, Result, Split};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `data verify` found, as its `--json` summary prints it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Images per split of every dataset that loaded.
    pub datasets: BTreeMap<String, BTreeMap<String, usize>>,
    /// Splits that were only partly present.
    pub partial: BTreeMap<String, BTreeMap<String, Partial>>,
    /// The MNIST-M background photos, when the data directory has them.
    pub bsds500: Option<PhotoReport>,
    pub details: BTreeMap<String, DatasetReport>,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhotoReport {
    pub photos: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksums: Option<ChecksumReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub splits: BTreeMap<String, SplitReport>,
    pub origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksums: Option<ChecksumReport>,
}

/// One split: loaded (with its figures), absent (no files for it), or an error.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SplitReport {
    Loaded(Box<SplitDetail>),
    Absent { absent: String },
    Error { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitDetail {
    pub count: usize,
    /// The card's count of the official split.
    pub expected: Option<usize>,
    pub count_matches_card: Option<bool>,
    pub shape: [usize; 4],
    pub label_histogram: Vec<usize>,
    pub histogram_matches_card: Option<bool>,
    pub pixel_min: f32,
    pub pixel_max: f32,
    pub origin: String,
    pub partial: Option<Partial>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChecksumReport {
    pub files: Vec<cards::FileCheck>,
    pub lists: Vec<ListCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListCheck {
    pub list: String,
    pub checked: usize,
    pub mismatched: usize,
}

/// Loads one split for verification: the local folder, else the HF cache only (never downloads);
/// `None` when neither has it.
fn load_for_verify(id: DatasetId, split: Split, folder: Option<&Path>) -> Option<Result<ImageDataset>> {
    if let Some(folder) = folder {
        return Some(registry::load_local(id, split, folder));
    }
    #[cfg(feature = "hub")]
    {
        let files = crate::hub::cached_split_files(id.hub()?, split)?;
        Some(crate::parquet_hub::load_parquet(id, split, &files))
    }
    #[cfg(not(feature = "hub"))]
    None
}

/// Verifies the datasets `only` (all when empty) in `data_dir` (else `ADAPT_DATA_DIR`, else the
/// HF cache); `checksums` hashes the files the cards know. Every line of the human report goes
/// to `print` as it is found. Errors are reserved for a card that cannot be read; everything
/// wrong with the data is in [`Report::problems`].
pub fn verify(
    data_dir: Option<&Path>,
    only: &[DatasetId],
    checksums: bool,
    print: &mut dyn FnMut(&str),
) -> Result<Report> {
    let mut r = Report::default();
    let wanted = if only.is_empty() { DatasetId::ALL.to_vec() } else { only.to_vec() };
    if let Err(e) = registry::data_dir_checked(data_dir) {
        print(&format!("ERROR {e}"));
        r.problems.push(e.to_string());
        return Ok(finish(r, print));
    }
    let mut verified = 0;
    for id in wanted {
        let card = cards::card(id.name())?;
        let name = id.name();
        let folder = match registry::local_folder(id, data_dir) {
            Ok(f) => f,
            Err(e) => {
                print(&format!("{name:<11} ERROR {e}"));
                r.problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        let mut splits = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for &split in id.splits() {
            let t = std::time::Instant::now();
            let Some(res) = load_for_verify(id, split, folder.as_deref()) else { continue };
            let s = split.as_str();
            match res {
                Ok(ds) => {
                    let d = describe(&ds, &card, split, &mut r.problems, print);
                    print(&format!(
                        "{name:<11} {s:<5} {:>6} images {:?}  pixels {:?}  labels {:?}{}  ({:.1}s, {})",
                        ds.len(),
                        ds.shape(),
                        ds.pixel_range(),
                        ds.label_histogram(10),
                        ds.partial.map(|p| format!("  PARTIAL {} of {}", p.loaded, p.listed)).unwrap_or_default(),
                        t.elapsed().as_secs_f64(),
                        ds.origin
                    ));
                    if let Some(p) = ds.partial {
                        r.partial.entry(name.into()).or_default().insert(s.into(), p);
                    }
                    counts.insert(s.to_string(), ds.len());
                    splits.insert(s.to_string(), SplitReport::Loaded(Box::new(d)));
                }
                // A folder holding only some splits (e.g. a generated train set) is not an error.
                Err(e @ DatasetError::NotFound { .. }) => {
                    print(&format!("{name:<11} {s:<5} absent: {e}"));
                    splits.insert(s.to_string(), SplitReport::Absent { absent: e.to_string() });
                }
                Err(e) => {
                    print(&format!("{name:<11} {s:<5} ERROR {e}"));
                    r.problems.push(format!("{id} {split}: {e}"));
                    splits.insert(s.to_string(), SplitReport::Error { error: e.to_string() });
                }
            }
        }
        if let Some(folder) = &folder
            && !splits.values().any(|s| !matches!(s, SplitReport::Absent { .. }))
        {
            // The dataset's folder is there, so something was meant to be in it.
            let problem =
                format!("{}: no split of {id} recognised in this folder ({})", folder.display(), id.formats());
            print(&format!("{name:<11} ERROR {problem}"));
            r.problems.push(problem);
        }
        if splits.is_empty() {
            match registry::origin(id, data_dir) {
                Origin::Hub { repo } => print(&format!(
                    "{name:<11} not in the data directory nor the HF cache (`data preview` or a load would download hf://datasets/{repo})"
                )),
                _ => print(&format!("{name:<11} not present: no local folder and no Hub copy")),
            }
            continue;
        }
        verified += counts.len();
        let mut entry = DatasetReport { splits, origin: registry::origin(id, data_dir), checksums: None };
        if let Some(folder) = folder.filter(|_| checksums) {
            entry.checksums = Some(check_card(&card, &folder, &mut r.problems, print)?);
        }
        r.datasets.insert(name.into(), counts);
        r.details.insert(name.into(), entry);
    }
    r.bsds500 = photos(data_dir, checksums, &mut r.problems, print)?;
    if verified == 0 && r.problems.is_empty() {
        let where_ = registry::resolve_data_dir(data_dir)
            .map_or("no data directory".to_string(), |d| format!("nothing loadable in {}", d.display()));
        r.problems.push(format!("nothing to verify: {where_}, and nothing in the Hugging Face cache"));
    }
    Ok(finish(r, print))
}

fn finish(mut r: Report, print: &mut dyn FnMut(&str)) -> Report {
    r.ok = r.problems.is_empty();
    print(&if r.ok { "verify: OK".to_string() } else { format!("verify: {} problem(s)", r.problems.len()) });
    for p in &r.problems {
        print(&format!("  - {p}"));
    }
    r
}

/// The photos MNIST-M generation uses, when the data directory has them.
#[cfg(feature = "generators")]
fn photos(
    data_dir: Option<&Path>,
    checksums: bool,
    problems: &mut Vec<String>,
    print: &mut dyn FnMut(&str),
) -> Result<Option<PhotoReport>> {
    let Some(dir) = registry::resolve_data_dir(data_dir).map(|d| d.join("bsds500")).filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    let photos = crate::mnist_m_gen::list_photos(&dir)?;
    let card = cards::card("bsds500")?;
    print(&format!("{:<11} {} photos in {}", "bsds500", photos.len(), dir.display()));
    if photos.len() != card.counts["train"] {
        print(&format!("{:<11} note: the card lists {} training photos", "", card.counts["train"]));
    }
    let checksums = if checksums { Some(check_card(&card, &dir, problems, print)?) } else { None };
    Ok(Some(PhotoReport { photos: photos.len(), checksums }))
}

#[cfg(not(feature = "generators"))]
fn photos(_: Option<&Path>, _: bool, _: &mut Vec<String>, _: &mut dyn FnMut(&str)) -> Result<Option<PhotoReport>> {
    Ok(None)
}

fn describe(
    ds: &ImageDataset,
    card: &Card,
    split: Split,
    problems: &mut Vec<String>,
    print: &mut dyn FnMut(&str),
) -> SplitDetail {
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
        print(&format!(
            "{:<11} {:<5} note: {} images, the official set has {}",
            ds.name,
            split.as_str(),
            ds.len(),
            expected.unwrap_or(0)
        ));
    }
    SplitDetail {
        count: ds.len(),
        expected,
        count_matches_card: count_ok,
        shape: ds.shape(),
        label_histogram: hist,
        histogram_matches_card: hist_ok,
        pixel_min: lo,
        pixel_max: hi,
        origin: ds.origin.clone(),
        partial: ds.partial,
    }
}

fn check_card(
    card: &Card,
    folder: &Path,
    problems: &mut Vec<String>,
    print: &mut dyn FnMut(&str),
) -> Result<ChecksumReport> {
    let files = cards::check_files(card, folder)?;
    for f in &files {
        let mark = match f.matches {
            Some(true) => "ok",
            Some(false) => "MISMATCH",
            None => "(no reference)",
        };
        print(&format!("{:<11} sha256 {} {mark}", card.name, f.path));
        if f.matches == Some(false) {
            problems.push(format!("{}: sha256 of {} differs from the card", card.name, folder.join(&f.path).display()));
        }
    }
    let mut lists = Vec::new();
    for s in &card.sums {
        let list: PathBuf = folder.join(&s.list);
        if !list.is_file() {
            continue;
        }
        let (checked, bad) = cards::check_sums_file(&list, &folder.join(&s.dir))?;
        print(&format!("{:<11} {}: {checked} files checked, {} mismatched", card.name, s.list, bad.len()));
        if !bad.is_empty() {
            problems.push(format!(
                "{}: {} files differ from {} (first: {})",
                card.name,
                bad.len(),
                list.display(),
                bad[0]
            ));
        }
        lists.push(ListCheck { list: s.list.clone(), checked, mismatched: bad.len() });
    }
    Ok(ChecksumReport { files, lists })
}
