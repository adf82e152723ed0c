//! Dataset cards: one TOML file per dataset in this crate's `cards/` folder (hub id, revision,
//! files with their known sha256, counts, licence, citation), embedded at build time so that
//! `verify` can check a data directory against them. The cards live inside the crate so that it
//! packages on its own; the repository's top-level `datasets/` is a symlink to them.
use crate::raw::{format_err, io_err};
use crate::{DatasetError, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The card TOML texts, keyed by the card's file stem.
pub const CARD_SOURCES: [(&str, &str); 6] = [
    ("mnist", include_str!("../cards/mnist.toml")),
    ("mnist_m", include_str!("../cards/mnist_m.toml")),
    ("svhn", include_str!("../cards/svhn.toml")),
    ("usps", include_str!("../cards/usps.toml")),
    ("syn_digits", include_str!("../cards/syn_digits.toml")),
    ("bsds500", include_str!("../cards/bsds500.toml")),
];

/// A file a card knows about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CardFile {
    /// Path relative to the dataset's folder.
    pub path: String,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
}

/// One dataset card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Card {
    /// Canonical name (`mnist-m`), or the folder name for non-digit sets (`bsds500`).
    pub name: String,
    pub title: String,
    /// Folder inside the data directory.
    pub folder: String,
    pub hub_id: Option<String>,
    pub hub_config: Option<String>,
    pub revision: String,
    pub license: String,
    pub citation: String,
    #[serde(default)]
    pub image_shape: Vec<usize>,
    /// Images per split in the complete, official dataset.
    pub counts: BTreeMap<String, usize>,
    /// Images per label `0..9` per split, where known.
    #[serde(default)]
    pub label_histograms: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    pub files: Vec<CardFile>,
    /// Per-file checksum lists shipped with the data (`sha256sum -c` format).
    #[serde(default)]
    pub sums: Vec<SumsList>,
}

/// A `sha256sum -c` list inside a dataset folder and the folder its names are relative to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SumsList {
    pub list: String,
    pub dir: String,
}

/// All cards, parsed.
pub fn all() -> Result<Vec<Card>> {
    CARD_SOURCES
        .iter()
        .map(|(stem, text)| {
            toml::from_str(text).map_err(|e| DatasetError::Format {
                path: PathBuf::from(format!("crates/datasets/cards/{stem}.toml")),
                problem: format!("bad dataset card: {e}"),
            })
        })
        .collect()
}

/// The card of a dataset by name (`mnist-m`, `mnist_m`, `bsds500`, ...).
pub fn card(name: &str) -> Result<Card> {
    let norm = name.trim().to_ascii_lowercase().replace('-', "_");
    all()?.into_iter().find(|c| c.folder == norm).ok_or_else(|| DatasetError::UnknownDataset {
        name: name.into(),
        known: CARD_SOURCES.map(|(s, _)| s).join(", "),
    })
}

/// The sha256 of a file, in lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The outcome of checking one card file that is present in a folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileCheck {
    pub path: String,
    pub sha256: String,
    /// `Some(true)` matches the card, `Some(false)` differs, `None` when the card has no checksum.
    pub matches: Option<bool>,
}

/// Checks the card's files present in `folder` (absent files are skipped: cards list alternatives,
/// such as gzipped and unpacked IDX files).
pub fn check_files(card: &Card, folder: &Path) -> Result<Vec<FileCheck>> {
    let mut out = Vec::new();
    for f in &card.files {
        let p = folder.join(&f.path);
        if !p.is_file() {
            continue;
        }
        if f.sha256.is_none() {
            // Without a known checksum, hashing a multi-gigabyte .mat file tells nothing.
            continue;
        }
        let sha = sha256_file(&p)?;
        let matches = f.sha256.as_ref().map(|s| s.eq_ignore_ascii_case(&sha));
        out.push(FileCheck { path: f.path.clone(), sha256: sha, matches });
    }
    Ok(out)
}

/// Checks a `sha256sum -c` list (`HASH  NAME` lines) against the files in `folder`; returns
/// `(checked, mismatched names)`. Missing files are not checked (partial copies are expected).
pub fn check_sums_file(list: &Path, folder: &Path) -> Result<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(list).map_err(|e| io_err(list, e))?;
    let mut checked = 0;
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (hash, name) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format_err(list, format!("line {}: expected 'HASH  NAME'", i + 1)))?;
        let name = name.trim().trim_start_matches('*');
        let p = folder.join(name);
        if !p.is_file() {
            continue;
        }
        checked += 1;
        if !sha256_file(&p)?.eq_ignore_ascii_case(hash) {
            bad.push(name.to_string());
        }
    }
    Ok((checked, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_parses_and_names_its_dataset() {
        let cards = all().unwrap();
        assert_eq!(cards.len(), 6);
        for id in crate::DatasetId::ALL {
            let c = card(id.name()).unwrap();
            assert_eq!(c.folder, id.folder());
            assert_eq!(c.hub_id.as_deref(), id.hub().map(|h| h.repo));
            assert!(!c.citation.is_empty() && !c.license.is_empty());
        }
        assert_eq!(card("mnist").unwrap().counts["train"], 60000);
        assert_eq!(card("bsds500").unwrap().counts["train"], 200);
        let h = &card("mnist_m").unwrap().label_histograms["train"];
        assert_eq!(h.iter().sum::<usize>(), 59001);
        assert!(card("cifar").is_err());
    }
}
