//! The IDX format of MNIST: a big-endian header (two zero bytes, an element-type byte, a
//! dimension count, then one u32 per dimension) followed by the elements, row-major. Files may be
//! gzipped; only unsigned-byte elements (type 0x08), which is all MNIST uses, are accepted.
use crate::Result;
use crate::raw::{MAX_DEFLATE_RATIO, expect_end, format_err, is_gzip, read_exactly, read_file};
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
    let bytes = read_file(path)?;
    if is_gzip(&bytes) { parse_idx(path, &gunzip_idx(path, &bytes)?) } else { parse_idx(path, &bytes) }
}

/// Inflates a gzipped IDX file: the header first, then exactly the bytes its dimensions declare,
/// so a stream that inflates to more (a gzip bomb) stops there, and dimensions that the compressed
/// size could not hold are refused before anything is inflated.
fn gunzip_idx(path: &Path, gz: &[u8]) -> Result<Vec<u8>> {
    let mut stream = flate2::read::MultiGzDecoder::new(gz);
    let mut out = Vec::new();
    read_exactly(path, &mut stream, 4, &mut out, "gzip data (IDX magic)")?;
    if out[..3] != [0, 0, 0x08] || out[3] == 0 {
        return Ok(out); // `parse_idx` names what is wrong with the magic
    }
    read_exactly(path, &mut stream, 4 * u64::from(out[3]), &mut out, "gzip data (IDX dimensions)")?;
    let dims: Vec<u64> =
        out[4..].chunks_exact(4).map(|d| u64::from(u32::from_be_bytes(d.try_into().expect("4 bytes")))).collect();
    let limit = (gz.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    let count = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= limit).ok_or_else(|| {
        format_err(path, format!("IDX dimensions {dims:?} declare more data than {} bytes of gzip can hold", gz.len()))
    })?;
    read_exactly(path, &mut stream, count, &mut out, "gzip data (IDX elements)")?;
    expect_end(path, &mut stream, "gzip data", count)?;
    Ok(out)
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
