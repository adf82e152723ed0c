//! What the dataset loader targets share: each case writes a small valid dataset (a few images
//! of a few pixels, written from the format descriptions, not with the loaders' own writers),
//! applies one corruption, and loads it through [`adapt_datasets::registry::load_local`].
//!
//! Corruptions that a format cannot detect by design are not generated: a changed pixel value
//! in an uncompressed file is a different valid file (the compressed containers, gzip, zlib and
//! PNG, carry checksums, and their bytes are flipped anywhere).
use crate::{Rng, dataset_fingerprint};
use adapt_datasets::registry::{DatasetId, load_local};
use adapt_datasets::{ImageDataset, Partial, Split};
use rand::Rng as _;
use std::path::Path;

/// Loads the dataset `id` from its folder under `dir`: the fingerprint of what loaded, or the
/// error's message.
pub(super) fn load_fp(id: DatasetId, dir: &Path) -> Result<u64, String> {
    load_local(id, Split::Train, &dir.join(id.folder())).map(|ds| dataset_fingerprint(&ds)).map_err(|e| e.to_string())
}

/// The fingerprint of the dataset `px` and `labels` make: what a correct load gives.
pub(super) fn expected(name: &str, px: &[u8], labels: &[u32], shape: [usize; 3], partial: Option<Partial>) -> u64 {
    let mut ds = ImageDataset::from_u8(name, Split::Train, px, labels.to_vec(), shape).expect("fixture sizes agree");
    ds.partial = partial;
    dataset_fingerprint(&ds)
}

/// Writes `bytes` to `path`, creating its folder (a failure shows as the load's error).
pub(super) fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = std::fs::write(path, bytes);
}

/// One of `items`, drawn from `rng`.
pub(super) fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Recomputes the CRC of a PNG's IHDR chunk after its fields were edited.
pub(super) fn fix_ihdr_crc(png: &mut [u8]) {
    let mut c = flate2::Crc::new();
    c.update(&png[12..29]);
    png[29..33].copy_from_slice(&c.sum().to_be_bytes());
}
