//! Corruptions shared by the targets: byte-level edits, containers, file kinds, declared sizes.
use crate::Rng;
use rand::Rng as _;
use std::io::Write;
use std::path::Path;

/// Values a corrupted size or dimension field takes: zero, one, off by one, and sizes no file
/// of a few kilobytes can back (the allocation they would ask for is the point).
pub fn size_values(rng: &mut Rng, original: u64) -> u64 {
    match rng.random_range(0..8) {
        0 => 0,
        1 => 1,
        2 => original.wrapping_add(1),
        3 => original.wrapping_sub(1),
        4 => u32::MAX as u64,
        5 => 0x7fff_ffff,
        6 => 1 << 30,
        _ => rng.random_range(2..100_000),
    }
}

/// `bytes` cut to a random length shorter than it.
pub fn truncate(rng: &mut Rng, bytes: &[u8]) -> (Vec<u8>, usize) {
    let k = rng.random_range(0..bytes.len().max(1));
    (bytes[..k].to_vec(), k)
}

/// One byte in `range` (clamped to the data) xor-ed with a non-zero value; returns the offset.
pub fn flip(rng: &mut Rng, bytes: &mut [u8], range: std::ops::Range<usize>) -> usize {
    let end = range.end.min(bytes.len());
    let start = range.start.min(end.saturating_sub(1));
    let k = rng.random_range(start..end.max(start + 1)).min(bytes.len().saturating_sub(1));
    if !bytes.is_empty() {
        bytes[k] ^= rng.random_range(1..=255u8);
    }
    k
}

/// Random bytes.
pub fn garbage(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random()).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("in memory");
    z.finish().expect("in memory")
}

pub fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("in memory");
    z.finish().expect("in memory")
}

/// A compressed stream of `header` followed by `zeros` zero bytes, written in pieces (a bomb:
/// tiny compressed, huge inflated).
pub fn bomb(header: &[u8], zeros: usize, gz: bool) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let feed = |w: &mut dyn Write| {
        w.write_all(header).expect("in memory");
        let mut left = zeros;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).expect("in memory");
            left -= n;
        }
    };
    if gz {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        feed(&mut z);
        z.finish().expect("in memory")
    } else {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        feed(&mut z);
        z.finish().expect("in memory")
    }
}

/// The kinds of entry a data file can be replaced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    DanglingLink,
    Fifo,
    DevZero,
    Empty,
    Missing,
    /// A symbolic link to a copy of the original file: loads like the original.
    LinkToCopy,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Directory, Kind::DanglingLink, Kind::Fifo, Kind::DevZero, Kind::Empty, Kind::Missing, Kind::LinkToCopy];

    pub fn pick(rng: &mut Rng) -> Kind {
        Kind::ALL[rng.random_range(0..Kind::ALL.len())]
    }
}

/// Replaces the file at `path` (whose valid contents are `original`) by an entry of `kind`;
/// returns a description. Where the platform cannot make the entry, an empty file is used.
pub fn replace_with(path: &Path, kind: Kind, original: &[u8]) -> String {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let made = match kind {
        Kind::Directory => std::fs::create_dir(path).is_ok(),
        Kind::Empty => std::fs::write(path, b"").is_ok(),
        Kind::Missing => true,
        #[cfg(unix)]
        Kind::DanglingLink => std::os::unix::fs::symlink(path.with_extension("gone"), path).is_ok(),
        #[cfg(unix)]
        Kind::DevZero => std::os::unix::fs::symlink("/dev/zero", path).is_ok(),
        #[cfg(unix)]
        Kind::Fifo => std::process::Command::new("mkfifo").arg(path).status().is_ok_and(|s| s.success()),
        #[cfg(unix)]
        Kind::LinkToCopy => {
            let copy = path.with_extension("original-copy");
            std::fs::write(&copy, original).is_ok() && std::os::unix::fs::symlink(&copy, path).is_ok()
        }
        #[cfg(not(unix))]
        _ => false,
    };
    if !made {
        let _ = std::fs::write(path, b"");
        return format!("{name} replaced by an empty file");
    }
    format!("{name} replaced by {kind:?}")
}

/// Text re-encoded in one of the ways editors and tools do: `(bytes, whether the text itself is
/// unchanged for a reader that takes UTF-8 with an optional BOM and either line ending)`.
pub fn reencode(rng: &mut Rng, text: &str) -> (Vec<u8>, &'static str, bool) {
    match rng.random_range(0..6) {
        0 => ([&[0xef, 0xbb, 0xbf][..], text.as_bytes()].concat(), "a UTF-8 byte-order mark", true),
        1 => (text.replace('\n', "\r\n").into_bytes(), "CRLF line endings", true),
        2 => {
            let mut b = vec![0xff, 0xfe];
            b.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
            (b, "UTF-16LE", false)
        }
        3 => {
            let mut b = text.as_bytes().to_vec();
            let k = rng.random_range(0..b.len().max(1)).min(b.len());
            b.insert(k, 0xe9); // Latin-1 'é'
            (b, "a Latin-1 byte", false)
        }
        4 => {
            let mut b = text.as_bytes().to_vec();
            let k = rng.random_range(0..b.len().max(1)).min(b.len());
            b.insert(k, 0);
            (b, "a NUL byte", false)
        }
        _ => ([&[0xef, 0xbb, 0xbf][..], text.replace('\n', "\r\n").as_bytes()].concat(), "a BOM and CRLF", true),
    }
}

/// A sparse file of `len` bytes at `path` (a "huge" input without writing it).
pub fn sparse(path: &Path, len: u64) -> bool {
    std::fs::File::create(path).and_then(|f| f.set_len(len)).is_ok()
}
