//! Small helpers shared by the loaders: reading files with errors that name them, transparent
//! gunzip, and decoding PNG/JPEG bytes to planar `u8` pixels.
use crate::files::{EntryKind, MAX_DATA_FILE, entry_kind};
use crate::{DatasetError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A format error about `path`.
pub(crate) fn format_err(path: &Path, problem: impl Into<String>) -> DatasetError {
    DatasetError::Format { path: path.to_path_buf(), problem: problem.into() }
}

/// An I/O error about `path`.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io { path: path.to_path_buf(), source }
}

/// Reads the whole file, which must be a regular file (not a FIFO, device or directory) of at most
/// [`MAX_DATA_FILE`] bytes.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    crate::files::read_regular(path, MAX_DATA_FILE).map_err(|e| io_err(path, e))
}

/// Whether `bytes` start with the gzip magic. Detection is by content, not by name, so a `.gz`
/// that was already unpacked by a browser still loads.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Deflate cannot expand its input by more than about 1032:1 (258-byte matches in 2-bit codes):
/// a compressed stream that declares more is corrupt, and is refused before it is inflated.
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads exactly `n` more bytes of `stream` into `out`, growing it as data arrives (never by a
/// declared size up front).
pub(crate) fn read_exactly(path: &Path, stream: &mut impl Read, n: u64, out: &mut Vec<u8>, what: &str) -> Result<()> {
    let before = out.len();
    stream.take(n).read_to_end(out).map_err(|e| format_err(path, format!("corrupt {what}: {e}")))?;
    let got = (out.len() - before) as u64;
    if got < n {
        return Err(format_err(path, format!("{what} ends after {got} of its {n} bytes")));
    }
    Ok(())
}

/// Checks that `stream` holds nothing more (which also lets the decoder verify its checksum).
pub(crate) fn expect_end(path: &Path, stream: &mut impl Read, what: &str, declared: u64) -> Result<()> {
    let mut extra = [0u8; 1];
    match stream.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(format_err(path, format!("{what} holds more than the {declared} bytes its header declares"))),
        Err(e) => Err(format_err(path, format!("corrupt {what}: {e}"))),
    }
}

/// The gunzipped bytes when `bytes` are gzip data, else `bytes` unchanged; more than `max_out`
/// inflated bytes is an error, raised as soon as they are reached.
pub(crate) fn maybe_gunzip(path: &Path, bytes: Vec<u8>, max_out: u64) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        if bytes.len() as u64 > max_out {
            return Err(format_err(
                path,
                format!("{} bytes, more than a file of this kind holds ({max_out})", bytes.len()),
            ));
        }
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(max_out + 1)
        .read_to_end(&mut out)
        .map_err(|e| format_err(path, format!("corrupt gzip data: {e}")))?;
    if out.len() as u64 > max_out {
        return Err(format_err(
            path,
            format!("gzip data inflates past {max_out} bytes, more than a file of this kind holds"),
        ));
    }
    Ok(out)
}

/// Largest width or height of an image in a digit dataset (the digits are 16 to 32 pixels): the
/// header is checked against it before any pixel is decoded.
pub(crate) const MAX_IMAGE_SIDE: u32 = 1024;

/// Decodes an encoded image (PNG or JPEG, guessed from content) into planar `[C, H, W]` u8 pixels
/// with `channels` = 1 (luma) or 3 (RGB). Returns `(pixels, height, width)`. Images wider or taller
/// than [`MAX_IMAGE_SIDE`] are refused from their header, before decoding.
pub(crate) fn decode_image(what: &Path, bytes: &[u8], channels: usize) -> Result<(Vec<u8>, usize, usize)> {
    let bad = |e: image::ImageError| format_err(what, format!("cannot decode image: {e}"));
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| io_err(what, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(4 * u64::from(MAX_IMAGE_SIDE) * u64::from(MAX_IMAGE_SIDE) * 4);
    reader.limits(limits);
    let img = reader.decode().map_err(bad)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    match channels {
        1 => Ok((img.to_luma8().into_raw(), h, w)),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            Ok((hwc_to_chw(&rgb, h, w, 3), h, w))
        }
        c => Err(format_err(what, format!("cannot decode to {c} channels (1 or 3 supported)"))),
    }
}

/// Interleaved `[H, W, C]` to planar `[C, H, W]`.
pub(crate) fn hwc_to_chw(src: &[u8], h: usize, w: usize, c: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                out[ch * h * w + y * w + x] = src[(y * w + x) * c + ch];
            }
        }
    }
    out
}

/// Checks that every label is a digit, naming the first offender.
pub(crate) fn check_labels(path: &Path, labels: &[u32], classes: u32) -> Result<()> {
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(format_err(path, format!("label {l} at index {i} is out of range 0..{}", classes - 1)));
    }
    Ok(())
}

/// The one entry of `names` present in `folder`: `None` when none is, an error when the first
/// present is not a regular file (a directory, a FIFO, a dangling link, a device) or when more
/// than one is present and `unique` (two copies of one split under different names, which may
/// differ: which one is meant is not for the loader to guess).
pub(crate) fn first_existing(folder: &Path, names: &[String], unique: bool) -> Result<Option<PathBuf>> {
    let present: Vec<(PathBuf, EntryKind)> =
        names.iter().map(|n| folder.join(n)).map(|p| (p.clone(), entry_kind(&p))).filter(|(_, k)| k.exists()).collect();
    let Some((path, kind)) = present.first() else { return Ok(None) };
    if unique && present.len() > 1 {
        let all: Vec<String> = present.iter().map(|(p, _)| p.display().to_string()).collect();
        return Err(format_err(folder, format!("one split, several files: {} (keep one of them)", all.join(" and "))));
    }
    if !kind.is_regular() {
        return Err(format_err(path, format!("{}, not a regular file", kind.describe())));
    }
    Ok(Some(path.clone()))
}
