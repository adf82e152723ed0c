//! The IDX format of MNIST: a big-endian header (two zero bytes, an element-type byte, a
//! dimension count, then one u32 per dimension) followed by the elements, row-major. Files may be
//! gzipped; only unsigned-byte elements (type 0x08), which is all MNIST uses, are accepted.
use crate::Result;
use crate::raw::{format_err, maybe_gunzip, read_file};
use std::path::Path;

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxU8 {
    /// Dimensions, outermost first (`[N, rows, cols]` for images, `[N]` for labels).
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file (gzipped or not) from disk.
pub fn read_idx(path: &Path) -> Result<IdxU8> {
    let bytes = maybe_gunzip(path, read_file(path)?)?;
    parse_idx(path, &bytes)
}

/// Parses IDX bytes; `path` is only used in error messages.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxU8> {
    if bytes.len() < 4 {
        return Err(format_err(path, format!("IDX file too short for its 4-byte magic ({} bytes)", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "bad IDX magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 0N)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(
            path,
            format!("IDX element type 0x{:02x} unsupported (only 0x08, unsigned byte)", bytes[2]),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(format_err(path, "IDX file declares 0 dimensions"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format_err(
            path,
            format!("truncated IDX header: {ndims} dimensions need {header} bytes, file has {}", bytes.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("IDX dimensions {dims:?} overflow")))?;
    let body = &bytes[header..];
    if body.len() < count {
        return Err(format_err(
            path,
            format!("truncated IDX data: dimensions {dims:?} need {count} bytes, file has {}", body.len()),
        ));
    }
    if body.len() > count {
        return Err(format_err(
            path,
            format!(
                "IDX data has {} trailing bytes after the {count} that dimensions {dims:?} describe",
                body.len() - count
            ),
        ));
    }
    Ok(IdxU8 { dims, data: body.to_vec() })
}
