//! `data list`, `data verify PATH...`, `data export` and `data generate`: each returns the
//! summary that `--json` prints and hands its human-readable lines to a `say` callback as it
//! goes, so a command line only parses arguments and prints.
use crate::image_folder::{ExportSummary, FolderOptions, export_class_folders, load_image_source};
use crate::pair::digit_classes;
use crate::registry::{self, DatasetId, Origin};
use crate::{Result, Split, hub};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One dataset of `data list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListedDataset {
    pub name: &'static str,
    /// The sub-folder of the data directory it is read from.
    pub folder: &'static str,
    pub splits: Vec<&'static str>,
    pub formats: &'static str,
    /// The Hugging Face dataset repository, for datasets on the Hub.
    pub hub: Option<&'static str>,
    /// Where it would load from now.
    pub origin: Origin,
}

/// The MNIST-M background photos of `data list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListedPhotos {
    /// Photos in `DATA_DIR/bsds500`; `None` when that folder is absent or unreadable.
    pub photos: Option<usize>,
}

/// What `data list` found, as its `--json` summary prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub datasets: Vec<ListedDataset>,
    pub bsds500: ListedPhotos,
    /// The data directory in effect, if any.
    pub data_dir: Option<PathBuf>,
}

/// Every dataset, its formats and where it would load from, and the MNIST-M photos; reads no data.
pub fn list(data_dir: Option<&Path>, say: &mut dyn FnMut(&str)) -> Listing {
    let dir = registry::resolve_data_dir(data_dir);
    match &dir {
        Some(d) => say(&format!("data directory: {}", d.display())),
        None => say(&format!("data directory: none (--data-dir or {} unset)", registry::DATA_DIR_ENV)),
    }
    say(&format!("HF cache: {}{}", hub::cache_dir().display(), if hub::offline() { " (HF_HUB_OFFLINE)" } else { "" }));
    let mut datasets = Vec::new();
    for id in DatasetId::ALL {
        let origin = registry::origin(id, data_dir);
        let splits: Vec<&str> = id.splits().iter().map(|s| s.as_str()).collect();
        say(&format!("{:<11} splits {:<17} loads from {origin}", id.name(), splits.join(",")));
        say(&format!("{:<11} formats: {}", "", id.formats()));
        let hub = id.hub().map(|h| h.repo);
        datasets.push(ListedDataset {
            name: id.name(),
            folder: id.folder(),
            splits,
            formats: id.formats(),
            hub,
            origin,
        });
    }
    let photos = dir.as_ref().map(|d| d.join("bsds500")).filter(|d| d.is_dir());
    let photo_count = photos.as_deref().and_then(count_photos);
    match (&photos, photo_count) {
        (Some(d), Some(n)) => say(&format!("{:<11} {n} photos in {} (MNIST-M backgrounds)", "bsds500", d.display())),
        _ => say(&format!("{:<11} not present (MNIST-M generation needs --photos)", "bsds500")),
    }
    Listing { datasets, bsds500: ListedPhotos { photos: photo_count }, data_dir: dir }
}

#[cfg(feature = "generators")]
fn count_photos(dir: &Path) -> Option<usize> {
    crate::mnist_m_gen::list_photos(dir).ok().map(|p| p.len())
}

/// Without the generators the photos are not listed: nothing in this build could use them.
#[cfg(not(feature = "generators"))]
fn count_photos(_: &Path) -> Option<usize> {
    None
}

/// One split of a folder or list file that `data verify PATH` loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathSplit {
    pub split: Split,
    pub images: usize,
    /// Channels, height and width as stored.
    pub shape: [usize; 3],
    /// Images per class (empty when unlabelled).
    pub per_class: Vec<usize>,
}

/// One folder or list file that `data verify PATH` loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathReport {
    pub path: String,
    pub layout: &'static str,
    pub classes: Vec<String>,
    pub labelled: bool,
    pub splits: Vec<PathSplit>,
    /// The conversions applied on loading (resizing, channel changes), one sentence each.
    pub conversions: Vec<String>,
}

/// What `data verify PATH...` found; `ok` is always true (a path that does not load is an error).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathsReport {
    pub ok: bool,
    pub paths: Vec<PathReport>,
}

/// `data verify PATH...`: each folder or list file loaded, its layout, classes and counts said.
pub fn verify_paths(paths: &[String], say: &mut dyn FnMut(&str)) -> Result<PathsReport> {
    let mut out = Vec::new();
    for p in paths {
        let src = load_image_source(Path::new(p), &FolderOptions::default())?;
        say(&format!("{p}: {} ({}), {} classes", src.layout.as_str(), src.root.display(), src.classes.len()));
        let mut splits = Vec::new();
        for ds in std::iter::once(&src.train).chain(src.test.as_ref()) {
            let per_class = if src.labelled { ds.label_histogram(src.classes.len()) } else { Vec::new() };
            let [c, h, w] = [ds.channels, ds.height, ds.width];
            say(&format!(
                "  {}: {} images stored {c}x{h}x{w}{}",
                ds.split,
                ds.len(),
                if src.labelled { format!(", per class {per_class:?}") } else { ", unlabelled".into() }
            ));
            splits.push(PathSplit { split: ds.split, images: ds.len(), shape: [c, h, w], per_class });
        }
        for c in &src.conversions {
            say(&format!("  {c}"));
        }
        let layout = src.layout.as_str();
        let (classes, labelled, conversions) = (src.classes, src.labelled, src.conversions);
        out.push(PathReport { path: p.clone(), layout, classes, labelled, splits, conversions });
    }
    Ok(PathsReport { ok: true, paths: out })
}

/// `data export`: the splits (`train`, `test`) of built-in dataset `name` written as a
/// class-folder tree `out/<split>/<class>/<index>.png`; every split is loaded before anything is
/// written.
pub fn export(
    name: &str,
    splits: &[String],
    data_dir: Option<&Path>,
    out: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<ExportSummary> {
    let id = DatasetId::parse(name)?;
    let splits = splits.iter().map(|s| s.parse::<Split>()).collect::<Result<Vec<_>>>()?;
    let sets = splits.iter().map(|&s| registry::load_id(id, s, data_dir)).collect::<Result<Vec<_>>>()?;
    let summary = export_class_folders(&sets.iter().collect::<Vec<_>>(), &digit_classes(), out)?;
    for (split, n) in &summary.splits {
        say(&format!("{name} {split}: {n} images -> {}", out.join(split.as_str()).display()));
    }
    Ok(summary)
}

/// What `data generate` is asked for.
#[derive(Debug, Clone)]
pub struct GenerateRequest<'a> {
    /// `mnist-m` or `syn-digits`.
    pub name: &'a str,
    /// The folder written, in the dataset's original layout.
    pub out: &'a Path,
    pub count: usize,
    pub seed: u64,
    pub split: &'a str,
    /// Photos for MNIST-M's backgrounds (default `DATA_DIR/bsds500`).
    pub photos: Option<&'a Path>,
    /// Extra fonts for SynDigits, beside the embedded DejaVu family.
    pub fonts: Option<&'a Path>,
}

/// What `data generate` wrote, as its `--json` summary prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    pub generated: &'static str,
    pub split: Split,
    pub count: usize,
    pub seed: u64,
    pub out: PathBuf,
}

/// `data generate`: MNIST-M (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
/// Backpropagation", 2015: MNIST digits blended with photo crops) or SynDigits (rendered fonts),
/// written in the original layout. The name, split and photos are checked before `out` is created.
#[cfg(feature = "generators")]
pub fn generate(req: &GenerateRequest<'_>, data_dir: Option<&Path>, say: &mut dyn FnMut(&str)) -> Result<Generated> {
    use crate::{DatasetError, mnist_m_gen, syn_digits};
    let (split, id, out) = (req.split.parse::<Split>()?, DatasetId::parse(req.name)?, req.out);
    let t = std::time::Instant::now();
    let create = || std::fs::create_dir_all(out).map_err(|source| DatasetError::Io { path: out.to_path_buf(), source });
    let (count, seed) = (req.count, req.seed);
    let written = match id {
        DatasetId::MnistM => {
            let photo_dir = match req.photos {
                Some(p) => p.to_path_buf(),
                None => registry::resolve_data_dir(data_dir)
                    .map(|d| d.join("bsds500"))
                    .filter(|d| d.is_dir())
                    .ok_or_else(|| DatasetError::NotFound {
                        name: "bsds500".into(),
                        detail: "MNIST-M needs photos: pass --photos DIR or put them in DATA_DIR/bsds500".into(),
                    })?,
            };
            let paths = mnist_m_gen::list_photos(&photo_dir)?;
            if paths.is_empty() {
                return Err(DatasetError::Format { path: photo_dir, problem: "no JPEG or PNG photos found".into() });
            }
            let photos = mnist_m_gen::load_photos(&paths)?;
            let digits = crate::load("mnist", split, data_dir)?;
            let cfg = mnist_m_gen::MnistMConfig { count, seed, ..Default::default() };
            let ds = mnist_m_gen::generate(&digits, &photos, &cfg)?;
            create()?;
            mnist_m_gen::write_ganin(&ds, out, split)?;
            say(&format!(
                "blended {count} MNIST {split} digits with crops of {} photos from {}",
                photos.len(),
                photo_dir.display()
            ));
            out.join(format!("mnist_m_{split}_labels.txt"))
        }
        DatasetId::SynDigits => {
            let mut all = syn_digits::dejavu_fonts();
            if let Some(dir) = req.fonts {
                all.extend(syn_digits::load_font_dir(dir)?);
            }
            let ds = syn_digits::generate(&all, &syn_digits::SynDigitsConfig { count, seed }, split)?;
            create()?;
            let path = out.join(format!("synth_{split}_32x32.mat"));
            syn_digits::write_svhn_mat(&ds, &path)?;
            say(&format!("rendered {count} digits with {} fonts", all.len()));
            path
        }
        other => {
            return Err(DatasetError::InvalidParameters(format!(
                "{other} is not generated; only mnist-m and syn-digits are"
            )));
        }
    };
    say(&format!("wrote {} ({:.1}s)", written.display(), t.elapsed().as_secs_f64()));
    Ok(Generated { generated: id.name(), split, count, seed, out: out.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_says_every_dataset_and_names_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("adapt-catalog-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lines = Vec::new();
        let listing = list(Some(&dir), &mut |l| lines.push(l.to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(listing.datasets.len(), DatasetId::ALL.len());
        assert_eq!(listing.data_dir.as_deref(), Some(dir.as_path()));
        assert_eq!(lines[0], format!("data directory: {}", dir.display()));
        // Two lines per dataset between the two header lines and the photos line.
        assert_eq!(lines.len(), 3 + 2 * DatasetId::ALL.len());
        assert!(lines.last().unwrap().contains("not present"), "{lines:?}");
        assert_eq!(listing.bsds500.photos, None);
        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["datasets"][0]["name"], DatasetId::ALL[0].name());
    }

    #[test]
    fn verify_paths_names_a_missing_path() {
        let err = verify_paths(&["/nonexistent/adapt-catalog".into()], &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/adapt-catalog"), "{err}");
    }

    #[test]
    fn export_refuses_a_bad_split_before_writing() {
        let out = std::env::temp_dir().join(format!("adapt-catalog-export-{}", std::process::id()));
        let err = export("usps", &["validation-ish".into()], None, &out, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("validation-ish"), "{err}");
        assert!(!out.exists());
    }

    #[cfg(feature = "generators")]
    #[test]
    fn generate_refuses_what_it_cannot_make_before_creating_the_folder() {
        let out = std::env::temp_dir().join(format!("adapt-catalog-gen-{}", std::process::id()));
        let req =
            GenerateRequest { name: "usps", out: &out, count: 4, seed: 0, split: "train", photos: None, fonts: None };
        let err = generate(&req, None, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("usps is not generated"), "{err}");
        let empty = out.join("photos");
        std::fs::create_dir_all(&empty).unwrap();
        let req = GenerateRequest { name: "mnist-m", photos: Some(&empty), out: &out.join("mnist_m"), ..req };
        let err = generate(&req, None, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("no JPEG or PNG photos found"), "{err}");
        assert!(!out.join("mnist_m").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[cfg(feature = "generators")]
    #[test]
    fn generate_writes_syn_digits_and_says_so() {
        let out = std::env::temp_dir().join(format!("adapt-catalog-syn-{}", std::process::id()));
        let req = GenerateRequest {
            name: "syn-digits",
            out: &out,
            count: 3,
            seed: 1,
            split: "test",
            photos: None,
            fonts: None,
        };
        let mut lines = Vec::new();
        let g = generate(&req, None, &mut |l| lines.push(l.to_string())).unwrap();
        assert!(out.join("synth_test_32x32.mat").is_file());
        std::fs::remove_dir_all(&out).unwrap();
        assert_eq!((g.generated, g.split, g.count, g.seed), ("syn-digits", Split::Test, 3, 1));
        assert!(lines[0].starts_with("rendered 3 digits with "), "{lines:?}");
        assert!(lines[1].starts_with("wrote "), "{lines:?}");
    }
}
