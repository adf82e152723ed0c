//! Dataset names, the data-directory layout, and where each dataset loads from.
//!
//! A data directory (`--data-dir DIR` or `ADAPT_DATA_DIR`) holds one folder per dataset:
//! `mnist`, `mnist_m`, `svhn`, `usps`, `syn_digits` (and `bsds500`, the photos MNIST-M is made from).
//! Inside a dataset's folder the loader recognises the original file formats by the files present,
//! falling back to Hub-layout parquet files. Without a folder the Hugging Face Hub copy is used.
pub use crate::dataset_id::{DatasetId, HubSource};
use crate::files::{EntryKind, entry_kind};
use crate::raw::first_existing;
use crate::raw::{format_err, io_err};
use crate::{DatasetError, ImageDataset, Result, Split};
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the data directory when no `--data-dir` is given.
pub const DATA_DIR_ENV: &str = "ADAPT_DATA_DIR";

/// The data directory: `arg` if given, else `ADAPT_DATA_DIR` when set and non-empty.
pub fn resolve_data_dir(arg: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = arg {
        return Some(p.to_path_buf());
    }
    std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where a dataset would load from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A folder in the data directory; `format` names the recognised format (or "none recognised").
    Local { folder: PathBuf, format: &'static str },
    /// The Hugging Face Hub repository (through its local cache when present).
    Hub { repo: &'static str },
    /// Neither a local folder nor a Hub copy.
    Unavailable,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local { folder, format } => write!(f, "{} ({format})", folder.display()),
            Origin::Hub { repo } => write!(f, "hf://datasets/{repo}"),
            Origin::Unavailable => f.write_str("unavailable (no local folder, no Hub copy)"),
        }
    }
}

/// The data directory in effect (see [`resolve_data_dir`]), which must be a directory when one is
/// given: a misspelt `--data-dir` is an error, not a silent fall back to the Hub.
pub fn data_dir_checked(data_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(dir) = resolve_data_dir(data_dir) else { return Ok(None) };
    match entry_kind(&dir) {
        EntryKind::Directory => Ok(Some(dir)),
        EntryKind::Missing => {
            Err(io_err(&dir, std::io::Error::new(std::io::ErrorKind::NotFound, "the data directory does not exist")))
        }
        other => Err(io_err(
            &dir,
            std::io::Error::other(format!("the data directory is {}, not a directory", other.describe())),
        )),
    }
}

/// As `{"kind": "local", "path", "format"}`, `{"kind": "hub", "repo"}` or `{"kind": "unavailable"}`.
impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum Json<'a> {
            Local { path: &'a Path, format: &'a str },
            Hub { repo: &'a str },
            Unavailable,
        }
        match self {
            Origin::Local { folder, format } => Json::Local { path: folder, format },
            Origin::Hub { repo } => Json::Hub { repo },
            Origin::Unavailable => Json::Unavailable,
        }
        .serialize(s)
    }
}

/// The local folder of `id` in the data directory, if the directory is known and the folder
/// exists; an error when the data directory does not exist or the dataset's entry in it is not a
/// directory.
pub fn local_folder(id: DatasetId, data_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(dir) = data_dir_checked(data_dir)? else { return Ok(None) };
    let folder = dir.join(id.folder());
    match entry_kind(&folder) {
        EntryKind::Directory => Ok(Some(folder)),
        EntryKind::Missing => Ok(None),
        other => Err(format_err(&folder, format!("{}, not a dataset folder", other.describe()))),
    }
}

/// Where `id` would load from, without reading any data.
pub fn origin(id: DatasetId, data_dir: Option<&Path>) -> Origin {
    if let Ok(Some(folder)) = local_folder(id, data_dir) {
        let format = match local_format(id, &folder, id.splits()[0]) {
            Ok(Some(f)) => f.describe(),
            Ok(None) => "none recognised",
            Err(_) => "unusable files",
        };
        return Origin::Local { folder, format };
    }
    match id.hub() {
        Some(h) => Origin::Hub { repo: h.repo },
        None => Origin::Unavailable,
    }
}

/// A local file format recognised in a dataset folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalFormat {
    Idx,
    GaninFolder,
    Mat(PathBuf),
    EslText(PathBuf),
    Parquet(Vec<PathBuf>),
}

impl LocalFormat {
    fn describe(&self) -> &'static str {
        match self {
            LocalFormat::Idx => "IDX",
            LocalFormat::GaninFolder => "Ganin PNG folder",
            LocalFormat::Mat(_) => "MATLAB v5 .mat",
            LocalFormat::EslText(_) => "ESL text",
            LocalFormat::Parquet(_) => "parquet",
        }
    }
}

/// Recognises the format of `split` in `folder` by the files present; an error when a file it
/// would use is not a regular file or only half of a set is there.
pub(crate) fn local_format(id: DatasetId, folder: &Path, split: Split) -> Result<Option<LocalFormat>> {
    let s = split.as_str();
    let native = match id {
        DatasetId::Mnist => crate::mnist::find_files(folder, split)?.map(|_| LocalFormat::Idx),
        DatasetId::MnistM => {
            let (list, images) = crate::mnist_m::split_paths(folder, split);
            match (entry_kind(&list).exists(), entry_kind(&images).exists()) {
                (true, _) => Some(LocalFormat::GaninFolder),
                (false, true) => {
                    return Err(format_err(&list, format!("missing: {} has no label list", images.display())));
                }
                (false, false) => None,
            }
        }
        DatasetId::Svhn => first_existing(folder, &[format!("{s}_32x32.mat")], true)?.map(LocalFormat::Mat),
        // The full set is preferred to the `_small` debug subset when both are there.
        DatasetId::SynDigits => {
            first_existing(folder, &[format!("synth_{s}_32x32.mat"), format!("synth_{s}_32x32_small.mat")], false)?
                .map(LocalFormat::Mat)
        }
        DatasetId::Usps => {
            first_existing(folder, &[format!("zip.{s}.gz"), format!("zip.{s}")], true)?.map(LocalFormat::EslText)
        }
    };
    if native.is_some() {
        return Ok(native);
    }
    // A copied Hub snapshot may hold other configurations (SVHN's full_numbers): prefer the one we load.
    let config = id.hub().map(|h| h.config_dir).unwrap_or("");
    let files = crate::parquet_hub::split_files_in(folder, config, split);
    Ok((!files.is_empty()).then_some(LocalFormat::Parquet(files)))
}

fn expected_files(id: DatasetId, split: Split) -> String {
    let s = split.as_str();
    match id {
        DatasetId::Mnist => {
            let p = if split == Split::Test { "t10k" } else { s };
            format!("{p}-images-idx3-ubyte[.gz] + {p}-labels-idx1-ubyte[.gz]")
        }
        DatasetId::MnistM => format!("mnist_m_{s}_labels.txt + mnist_m_{s}/*.png"),
        DatasetId::Svhn => format!("{s}_32x32.mat"),
        DatasetId::SynDigits => format!("synth_{s}_32x32.mat"),
        DatasetId::Usps => format!("zip.{s}.gz"),
    }
}

/// Loads `split` of `id` from the data directory or, without a local folder, from the Hub.
pub fn load_id(id: DatasetId, split: Split, data_dir: Option<&Path>) -> Result<ImageDataset> {
    if !id.splits().contains(&split) {
        return Err(DatasetError::InvalidParameters(format!(
            "{id} has no '{split}' split; it has {}",
            id.splits().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(folder) = local_folder(id, data_dir)? {
        return load_local(id, split, &folder);
    }
    match id.hub() {
        #[cfg(not(feature = "hub"))]
        Some(hub) => Err(DatasetError::FeatureDisabled {
            feature: "hub",
            what: format!(
                "{id} {split} has no local folder ({}), and loading its Hub copy {}",
                where_local(id, data_dir),
                hub.repo
            ),
        }),
        #[cfg(feature = "hub")]
        Some(hub) => {
            let files = crate::hub::split_files(hub, split).map_err(|detail| DatasetError::NotFound {
                name: id.name().into(),
                detail: format!(
                    "no local folder ({}) and the Hub copy {} could not be used: {detail}",
                    where_local(id, data_dir),
                    hub.repo
                ),
            })?;
            let mut ds = crate::parquet_hub::load_parquet(id, split, &files)?;
            ds.origin = format!("hf://datasets/{}", hub.repo);
            Ok(ds)
        }
        None => Err(DatasetError::NotFound {
            name: id.name().into(),
            detail: format!(
                "no local folder ({}) and no Hub copy; generate it with `cargo xtask data generate {id} --out DIR/{}`",
                where_local(id, data_dir),
                id.folder()
            ),
        }),
    }
}

fn where_local(id: DatasetId, data_dir: Option<&Path>) -> String {
    match resolve_data_dir(data_dir) {
        Some(d) => format!("{} does not exist", d.join(id.folder()).display()),
        None => format!("no --data-dir and {DATA_DIR_ENV} is unset"),
    }
}

/// Loads `split` of `id` from its dataset folder `folder` (e.g. `DATA/mnist`).
pub fn load_local(id: DatasetId, split: Split, folder: &Path) -> Result<ImageDataset> {
    let format = local_format(id, folder, split)?.ok_or_else(|| DatasetError::NotFound {
        name: id.name().into(),
        detail: format!(
            "{}: no recognised files for split '{split}' (expected {}, or Hub-layout parquet files)",
            folder.display(),
            expected_files(id, split)
        ),
    })?;
    let mut ds = match format {
        LocalFormat::Idx => crate::mnist::load_idx(folder, split)?,
        LocalFormat::GaninFolder => crate::mnist_m::load_folder(folder, split)?,
        LocalFormat::Mat(path) => {
            let mut ds = crate::svhn::load_mat(&path, split)?;
            ds.name = id.name().into();
            ds
        }
        LocalFormat::EslText(path) => crate::usps::load_esl(&path, split)?,
        #[cfg(feature = "hub")]
        LocalFormat::Parquet(files) => crate::parquet_hub::load_parquet(id, split, &files)?,
        #[cfg(not(feature = "hub"))]
        LocalFormat::Parquet(files) => {
            return Err(DatasetError::FeatureDisabled {
                feature: "hub",
                what: format!(
                    "{id} {split} in {} is Hub-layout parquet ({}), and reading parquet",
                    folder.display(),
                    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    };
    ds.name = id.name().into();
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_either_spelling() {
        assert_eq!(DatasetId::parse("mnist-m").unwrap(), DatasetId::MnistM);
        assert_eq!(DatasetId::parse("MNIST_M").unwrap(), DatasetId::MnistM);
        assert_eq!(DatasetId::parse("syn_digits").unwrap(), DatasetId::SynDigits);
        assert_eq!(DatasetId::parse("syn-digits").unwrap(), DatasetId::SynDigits);
        for id in DatasetId::ALL {
            assert_eq!(DatasetId::parse(id.name()).unwrap(), id);
            assert_eq!(DatasetId::parse(id.folder()).unwrap(), id);
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = DatasetId::parse("cifar").unwrap_err().to_string();
        assert!(e.contains("cifar"), "{e}");
        for id in DatasetId::ALL {
            assert!(e.contains(id.name()), "{e}");
        }
        assert!(crate::load("cifar", Split::Train, None).is_err());
    }

    #[test]
    fn missing_split_and_empty_folder_are_errors_naming_the_folder() {
        let dir = std::env::temp_dir().join(format!("adapt-reg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("usps")).unwrap();
        let e = crate::load("usps", Split::Train, Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("usps") && e.contains("zip.train.gz"), "{e}");
        let e = crate::load("mnist", Split::Extra, Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
        assert!(matches!(origin(DatasetId::Usps, Some(&dir)), Origin::Local { .. }));
        assert!(matches!(origin(DatasetId::SynDigits, Some(&dir)), Origin::Unavailable));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
