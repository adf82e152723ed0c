//! Small helpers shared by the loaders: reading files with errors that name them, transparent
//! gunzip, and decoding PNG/JPEG bytes to planar `u8` pixels.
use crate::{DatasetError, Result};
use std::io::Read;
use std::path::Path;

/// A format error about `path`.
pub(crate) fn format_err(path: &Path, problem: impl Into<String>) -> DatasetError {
    DatasetError::Format { path: path.to_path_buf(), problem: problem.into() }
}

/// An I/O error about `path`.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io { path: path.to_path_buf(), source }
}

/// Reads the whole file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Returns the gunzipped bytes when `bytes` start with the gzip magic, else `bytes` unchanged.
/// Detection is by content, not by name, so a `.gz` that was already unpacked by a browser still loads.
pub(crate) fn maybe_gunzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Decodes an encoded image (PNG or JPEG, guessed from content) into planar `[C, H, W]` u8 pixels
/// with `channels` = 1 (luma) or 3 (RGB). Returns `(pixels, height, width)`.
pub(crate) fn decode_image(what: &Path, bytes: &[u8], channels: usize) -> Result<(Vec<u8>, usize, usize)> {
    let img = image::load_from_memory(bytes).map_err(|e| format_err(what, format!("cannot decode image: {e}")))?;
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
