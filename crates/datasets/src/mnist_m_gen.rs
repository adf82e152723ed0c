//! Generating MNIST-M by Ganin & Lempitsky's recipe: each MNIST digit is blended with a random
//! crop of a colour photo (BSDS500 in the original) as `out = |crop - digit|` per channel, so the
//! digit shows as the photo's colours inverted where the ink is.
//!
//! Image `i` uses a generator seeded from `(seed, i)` alone, so the output is deterministic for a
//! seed, independent of thread scheduling, and image `i` does not depend on `count`.
use crate::preprocess;
use crate::raw::{format_err, hwc_to_chw, io_err};
use crate::{DatasetError, ImageDataset, Result, Split};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// A decoded colour photo, interleaved RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    /// `[H, W, 3]` bytes.
    pub rgb: Vec<u8>,
}

/// JPEG and PNG files in `dir` and its direct sub-folders (BSDS500 keeps them in `train/`), sorted.
pub fn list_photos(dir: &Path) -> Result<Vec<PathBuf>> {
    let is_photo = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?.flatten() {
        let p = e.path();
        if p.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| io_err(&p, e))?.flatten() {
                if e.path().is_file() && is_photo(&e.path()) {
                    out.push(e.path());
                }
            }
        } else if p.is_file() && is_photo(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes photos (in parallel); every error names its file.
pub fn load_photos(paths: &[PathBuf]) -> Result<Vec<Photo>> {
    paths
        .par_iter()
        .map(|p| {
            let img = image::open(p).map_err(|e| format_err(p, format!("cannot decode photo: {e}")))?.to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            Ok(Photo { path: p.clone(), width: w, height: h, rgb: img.into_raw() })
        })
        .collect()
}

/// MNIST-M generation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MnistMConfig {
    /// Images to generate: image `i` is made from digit `i`.
    pub count: usize,
    pub seed: u64,
    /// Output side. The official release is 32: MNIST's 28x28 digits zero-padded by 2 pixels
    /// (matching its images against MNIST's at the same index puts the digit at offset (2, 2),
    /// unscaled). Sides from 28 up are padded that way; smaller ones are resized bilinearly.
    pub size: usize,
    /// Binarise digits (`> 0` becomes 255) first. The official images are: every non-zero MNIST
    /// pixel shows as a fully inverted background pixel.
    pub binarize: bool,
}

impl Default for MnistMConfig {
    fn default() -> Self {
        Self { count: 59001, seed: 0, size: 32, binarize: true }
    }
}

/// Blends digit `i` of `digits` with a random crop of one of `photos`: `|crop - digit|`.
pub fn generate(digits: &ImageDataset, photos: &[Photo], cfg: &MnistMConfig) -> Result<ImageDataset> {
    if digits.channels != 1 {
        return Err(DatasetError::InvalidParameters(format!("{}: MNIST-M needs grey digits", digits.name)));
    }
    if cfg.count > digits.len() || cfg.count == 0 {
        return Err(DatasetError::InvalidParameters(format!(
            "count {} must be in 1..={} (the digits available in {} {})",
            cfg.count,
            digits.len(),
            digits.name,
            digits.split
        )));
    }
    if photos.is_empty() {
        return Err(DatasetError::InvalidParameters("no photos to crop backgrounds from".into()));
    }
    let s = cfg.size;
    if let Some(p) = photos.iter().find(|p| p.width < s || p.height < s) {
        return Err(format_err(&p.path, format!("photo is {}x{}, smaller than the {s}x{s} crop", p.width, p.height)));
    }
    let mut src = ImageDataset {
        images: digits.images[..cfg.count * digits.image_len()].to_vec(),
        labels: digits.labels[..cfg.count].to_vec(),
        ..digits.clone()
    };
    if cfg.binarize {
        for v in &mut src.images {
            *v = if *v > 0.0 { 255.0 } else { 0.0 };
        }
    }
    if src.height <= s && src.width <= s {
        preprocess::pad(&mut src, s, s)?;
    } else {
        preprocess::resize(&mut src, s, s)?;
    }
    let plane = s * s;
    let out: Vec<u8> = (0..cfg.count)
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64);
            let photo = &photos[rng.random_range(0..photos.len())];
            let x0 = rng.random_range(0..=photo.width - s);
            let y0 = rng.random_range(0..=photo.height - s);
            let digit = &src.images[i * plane..(i + 1) * plane];
            let mut img = vec![0u8; 3 * plane];
            for c in 0..3 {
                for y in 0..s {
                    for x in 0..s {
                        let bg = photo.rgb[((y0 + y) * photo.width + x0 + x) * 3 + c] as f32;
                        let d = digit[y * s + x].round().clamp(0.0, 255.0);
                        img[c * plane + y * s + x] = (bg - d).abs() as u8;
                    }
                }
            }
            img
        })
        .collect();
    let mut ds = ImageDataset::from_u8("mnist-m", digits.split, &out, src.labels, [3, s, s])?;
    ds.origin = format!("generated from {} {} (seed {})", digits.name, digits.split, cfg.seed);
    Ok(ds)
}

/// Writes `ds` in Ganin's release layout under `out`: `mnist_m_{split}/%08d.png` and
/// `mnist_m_{split}_labels.txt` with `name label` lines.
pub fn write_ganin(ds: &ImageDataset, out: &Path, split: Split) -> Result<()> {
    if ds.channels != 3 {
        return Err(DatasetError::InvalidParameters(format!("{}: Ganin layout holds RGB images", ds.name)));
    }
    let dir = out.join(format!("mnist_m_{split}"));
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let (h, w) = (ds.height, ds.width);
    (0..ds.len()).into_par_iter().try_for_each(|i| {
        let chw: Vec<u8> = ds.image(i).iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
        // planar -> interleaved is the inverse of hwc_to_chw with the roles of the axes swapped.
        let hwc = hwc_to_chw(&chw, 3, 1, h * w);
        let p = dir.join(format!("{i:08}.png"));
        image::RgbImage::from_raw(w as u32, h as u32, hwc)
            .ok_or_else(|| format_err(&p, "image buffer has the wrong size"))?
            .save(&p)
            .map_err(|e| format_err(&p, format!("cannot write PNG: {e}")))
    })?;
    let labels: String = ds.labels.iter().enumerate().map(|(i, l)| format!("{i:08}.png {l}\n")).collect();
    let lp = out.join(format!("mnist_m_{split}_labels.txt"));
    std::fs::write(&lp, labels).map_err(|e| io_err(&lp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> u8) -> Photo {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    rgb.push(f(x, y, c));
                }
            }
        }
        Photo { path: "tiny.png".into(), width: w, height: h, rgb }
    }

    #[test]
    fn output_is_abs_crop_minus_digit_exactly() {
        // A 4x4 digit and a 4x4 photo: the only crop is the whole photo, so every pixel is known.
        let digit: Vec<u8> = (0..16).map(|i| (i * 16) as u8).collect();
        let digits = ImageDataset::from_u8("mnist", Split::Train, &digit, vec![7], [1, 4, 4]).unwrap();
        let p = photo(4, 4, |x, y, c| (x * 40 + y * 10 + c * 70) as u8);
        let cfg = MnistMConfig { count: 1, seed: 3, size: 4, binarize: false };
        let out = generate(&digits, std::slice::from_ref(&p), &cfg).unwrap();
        assert_eq!(out.shape(), [1, 3, 4, 4]);
        assert_eq!(out.labels, vec![7]);
        for c in 0..3 {
            for y in 0..4 {
                for x in 0..4 {
                    let bg = p.rgb[(y * 4 + x) * 3 + c] as i32;
                    let d = digit[y * 4 + x] as i32;
                    assert_eq!(out.images[c * 16 + y * 4 + x], (bg - d).abs() as f32, "c{c} y{y} x{x}");
                }
            }
        }
    }

    #[test]
    fn deterministic_for_a_seed_and_crops_vary() {
        let digits = ImageDataset::from_u8("mnist", Split::Train, &[0u8; 5 * 16], vec![1; 5], [1, 4, 4]).unwrap();
        let p = photo(20, 10, |x, y, c| (x * 13 + y * 7 + c) as u8);
        let cfg = MnistMConfig { count: 5, seed: 1, size: 4, binarize: true };
        let a = generate(&digits, std::slice::from_ref(&p), &cfg).unwrap();
        let b = generate(&digits, std::slice::from_ref(&p), &cfg).unwrap();
        assert_eq!(a, b);
        let c = generate(&digits, std::slice::from_ref(&p), &MnistMConfig { seed: 2, ..cfg }).unwrap();
        assert_ne!(a.images, c.images);
        // Blank digits leave the crop itself; different images got different crops.
        assert_ne!(a.image(0), a.image(1));
        assert!(generate(&digits, &[photo(3, 3, |_, _, _| 0)], &cfg).unwrap_err().to_string().contains("tiny.png"));
    }
}
