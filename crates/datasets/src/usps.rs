//! USPS from the ESL book's text files (`zip.train.gz`, 7291 digits; `zip.test.gz`, 2007 digits):
//! one digit per line, the label (sometimes written as a float, `6.0000`) then 256 grey values in
//! `[-1, 1]`, row-major 16x16, where 1 is ink. Values map to `[0, 255]` with ink = 255, the MNIST
//! convention, so that the digit datasets share one polarity.
use crate::raw::{format_err, maybe_gunzip, read_file};
use crate::{ImageDataset, Result, Split};
use std::path::Path;

/// Side of a USPS image.
pub const SIDE: usize = 16;

/// The most text an ESL file may inflate to: the full training set is 7291 lines of about 1 kB
/// (7.4 MB), so more than this is not USPS (or is a gzip bomb), and inflating stops there.
pub const MAX_ESL_TEXT: u64 = 32 << 20;

/// Loads an ESL USPS file (gzipped or not).
pub fn load_esl(path: &Path, split: Split) -> Result<ImageDataset> {
    let bytes = maybe_gunzip(path, read_file(path)?, MAX_ESL_TEXT)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| format_err(path, "not a text file (invalid UTF-8)"))?;
    // A byte-order mark (an editor's) would otherwise make the first label unreadable.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    parse_esl(path, text, split)
}

/// Parses the text of an ESL USPS file; `path` is only used in error messages.
pub fn parse_esl(path: &Path, text: &str, split: Split) -> Result<ImageDataset> {
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        let ln = i + 1;
        let l: f64 =
            label.parse().map_err(|_| format_err(path, format!("line {ln}: label '{label}' is not a number")))?;
        if l.fract() != 0.0 || !(0.0..=9.0).contains(&l) {
            return Err(format_err(path, format!("line {ln}: label {label} is not a digit 0..9")));
        }
        labels.push(l as u32);
        let mut count = 0;
        for f in fields {
            let v: f32 = f.parse().map_err(|_| format_err(path, format!("line {ln}: value '{f}' is not a number")))?;
            // Allow rounding noise just outside [-1, 1], reject anything that is clearly another scale.
            if !(-1.001..=1.001).contains(&v) {
                return Err(format_err(path, format!("line {ln}: grey value {v} is outside [-1, 1]")));
            }
            count += 1;
            if count > SIDE * SIDE {
                break;
            }
            px.push(((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8);
        }
        if count != SIDE * SIDE {
            return Err(format_err(path, format!("line {ln}: {count} grey values, expected {}", SIDE * SIDE)));
        }
    }
    if labels.is_empty() {
        return Err(format_err(path, "no digits in file"));
    }
    let mut ds = ImageDataset::from_u8("usps", split, &px, labels, [1, SIDE, SIDE])?;
    ds.origin = path.display().to_string();
    Ok(ds)
}
