//! Per-experiment preprocessing of an [`ImageDataset`], applied in a fixed order:
//! binarise -> centre crop -> resize -> pad -> grey to RGB -> scale by 1/255 -> subtract per-channel
//! mean.
//!
//! The order is fixed so that each step sees the values it is defined on: binarisation thresholds
//! raw `[0, 255]` pixels, and the mean is the mean of the final (scaled, 3-channel) images, which is
//! what [`channel_mean`] computes when given already-preprocessed sets.
use crate::{DatasetError, ImageDataset, Result};
use serde::{Deserialize, Serialize};

/// Selectable preprocessing steps; `Default` does nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preprocess {
    /// MNIST binarisation: raw pixels `>= threshold` become 255, the others 0.
    pub binarize: Option<f32>,
    /// Centred crop to `size x size`. MNIST-M's 32x32 images are MNIST digits padded by 2 pixels,
    /// so cropping back to 28 keeps the digits at MNIST's scale where a resize would shrink them.
    pub crop_to: Option<usize>,
    /// Bilinear resize to `size x size` (USPS 16 -> 28 or 32).
    pub resize: Option<usize>,
    /// Zero padding, centred, to `size x size` (MNIST 28 -> 32). Must not be smaller than the images.
    pub pad_to: Option<usize>,
    /// Replicate a single grey channel to 3 channels (no-op for RGB images).
    pub to_rgb: bool,
    /// Divide by 255, mapping raw pixels to `[0, 1]`.
    pub scale: bool,
    /// Per-channel value subtracted last; one entry per channel (or one for all channels).
    pub mean: Option<Vec<f32>>,
}

impl Preprocess {
    /// Only `/255`.
    pub fn unit() -> Self {
        Self { scale: true, ..Self::default() }
    }

    /// `/255` and 3 channels, bilinearly resized to `size x size` (USPS 16 -> 28).
    /// For the paper's MNIST 28 -> 32 zero padding instead, add `pad_to: Some(32)`: a pad step to
    /// the same size takes the place of the resize.
    pub fn rgb(size: usize) -> Self {
        Self { scale: true, to_rgb: true, resize: Some(size), ..Self::default() }
    }

    /// The same steps with the mean set.
    pub fn with_mean(mut self, mean: Vec<f32>) -> Self {
        self.mean = Some(mean);
        self
    }

    /// Applies the steps to `ds` in place.
    pub fn apply(&self, ds: &mut ImageDataset) -> Result<()> {
        if let Some(t) = self.binarize {
            for v in &mut ds.images {
                *v = if *v >= t { 255.0 } else { 0.0 };
            }
        }
        if let Some(size) = self.crop_to {
            crop(ds, size, size)?;
        }
        if let Some(size) = self.resize {
            // Padding is the paper's way from 28 to 32 for MNIST; when a pad step is also requested
            // to the same size, leave the size change to it.
            let padded_later = self.pad_to.is_some_and(|p| p == size && ds.height <= p && ds.width <= p);
            if !padded_later {
                resize(ds, size, size)?;
            }
        }
        if let Some(size) = self.pad_to {
            pad(ds, size, size)?;
        }
        if self.to_rgb && ds.channels == 1 {
            to_rgb(ds);
        }
        if self.scale {
            for v in &mut ds.images {
                *v /= 255.0;
            }
        }
        if let Some(mean) = &self.mean {
            subtract_mean(ds, mean)?;
        }
        Ok(())
    }
}

/// Bilinear resize of every image to `h x w`, sampling at pixel centres (`align_corners = false`,
/// as PIL and torch do), clamping at the borders.
pub fn resize(ds: &mut ImageDataset, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 {
        return Err(DatasetError::InvalidParameters(format!("{}: cannot resize to {h}x{w}", ds.name)));
    }
    if (h, w) == (ds.height, ds.width) {
        return Ok(());
    }
    let (sh, sw) = (ds.height, ds.width);
    // Precompute the two source taps and weights per output row and column.
    let taps = |src: usize, dst: usize| -> Vec<(usize, usize, f32)> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f32);
                let x0 = x.floor() as usize;
                let x1 = (x0 + 1).min(src - 1);
                (x0, x1, x - x0 as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(sh, h), taps(sw, w));
    let planes = ds.len() * ds.channels;
    let mut out = vec![0f32; planes * h * w];
    for p in 0..planes {
        let src = &ds.images[p * sh * sw..(p + 1) * sh * sw];
        let dst = &mut out[p * h * w..(p + 1) * h * w];
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let top = src[y0 * sw + x0] * (1.0 - fx) + src[y0 * sw + x1] * fx;
                let bot = src[y1 * sw + x0] * (1.0 - fx) + src[y1 * sw + x1] * fx;
                dst[oy * w + ox] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    ds.images = out;
    ds.height = h;
    ds.width = w;
    Ok(())
}

/// Centred crop of every image to `h x w` (an odd extra pixel is dropped from the bottom/right).
pub fn crop(ds: &mut ImageDataset, h: usize, w: usize) -> Result<()> {
    if h > ds.height || w > ds.width || h == 0 || w == 0 {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: cannot crop {}x{} images to {h}x{w}",
            ds.name, ds.height, ds.width
        )));
    }
    if (h, w) == (ds.height, ds.width) {
        return Ok(());
    }
    let (sh, sw) = (ds.height, ds.width);
    let (top, left) = ((sh - h) / 2, (sw - w) / 2);
    let planes = ds.len() * ds.channels;
    let mut out = Vec::with_capacity(planes * h * w);
    for p in 0..planes {
        for y in top..top + h {
            let row = p * sh * sw + y * sw + left;
            out.extend_from_slice(&ds.images[row..row + w]);
        }
    }
    ds.images = out;
    ds.height = h;
    ds.width = w;
    Ok(())
}

/// Centred zero padding of every image to `h x w` (extra odd pixel on the bottom/right).
pub fn pad(ds: &mut ImageDataset, h: usize, w: usize) -> Result<()> {
    if h < ds.height || w < ds.width {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: cannot pad {}x{} images to the smaller {h}x{w}",
            ds.name, ds.height, ds.width
        )));
    }
    if (h, w) == (ds.height, ds.width) {
        return Ok(());
    }
    let (sh, sw) = (ds.height, ds.width);
    let (top, left) = ((h - sh) / 2, (w - sw) / 2);
    let planes = ds.len() * ds.channels;
    let mut out = vec![0f32; planes * h * w];
    for p in 0..planes {
        for y in 0..sh {
            let s = &ds.images[p * sh * sw + y * sw..p * sh * sw + (y + 1) * sw];
            let d = p * h * w + (y + top) * w + left;
            out[d..d + sw].copy_from_slice(s);
        }
    }
    ds.images = out;
    ds.height = h;
    ds.width = w;
    Ok(())
}

/// Replicates the grey channel of 1-channel images to 3 channels.
pub fn to_rgb(ds: &mut ImageDataset) {
    if ds.channels != 1 {
        return;
    }
    let plane = ds.height * ds.width;
    let mut out = Vec::with_capacity(ds.images.len() * 3);
    for img in ds.images.chunks_exact(plane) {
        for _ in 0..3 {
            out.extend_from_slice(img);
        }
    }
    ds.images = out;
    ds.channels = 3;
}

/// Per-channel pixel mean over all images of all `sets` (e.g. the source and target training
/// sets, after the other preprocessing steps). All sets must have the same channel count.
pub fn channel_mean(sets: &[&ImageDataset]) -> Result<Vec<f32>> {
    let Some(first) = sets.first() else {
        return Err(DatasetError::InvalidParameters("channel mean of no datasets".into()));
    };
    let c = first.channels;
    let mut sum = vec![0f64; c];
    let mut count = 0usize;
    for ds in sets {
        if ds.channels != c {
            return Err(DatasetError::InvalidParameters(format!(
                "channel mean over {} ({} channels) and {} ({c} channels): convert to RGB first",
                ds.name, ds.channels, first.name
            )));
        }
        let plane = ds.height * ds.width;
        for img in ds.images.chunks_exact(c * plane) {
            for (ch, s) in sum.iter_mut().enumerate() {
                // f32 partial sums per plane keep this fast; f64 across planes keeps it exact enough.
                *s += img[ch * plane..(ch + 1) * plane].iter().sum::<f32>() as f64;
            }
        }
        count += ds.len() * plane;
    }
    if count == 0 {
        return Err(DatasetError::InvalidParameters("channel mean of empty datasets".into()));
    }
    Ok(sum.iter().map(|s| (s / count as f64) as f32).collect())
}

/// Subtracts `mean[c]` from channel `c` (a single value applies to all channels).
pub fn subtract_mean(ds: &mut ImageDataset, mean: &[f32]) -> Result<()> {
    let c = ds.channels;
    if mean.len() != c && mean.len() != 1 {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: mean has {} values for {c} channels",
            ds.name,
            mean.len()
        )));
    }
    let plane = ds.height * ds.width;
    for img in ds.images.chunks_exact_mut(c * plane) {
        for ch in 0..c {
            let m = if mean.len() == 1 { mean[0] } else { mean[ch] };
            for v in &mut img[ch * plane..(ch + 1) * plane] {
                *v -= m;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Split;

    fn grey(n: usize, h: usize, w: usize, f: impl Fn(usize, usize, usize) -> u8) -> ImageDataset {
        let mut px = Vec::new();
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    px.push(f(i, y, x));
                }
            }
        }
        ImageDataset::from_u8("t", Split::Train, &px, vec![0; n], [1, h, w]).unwrap()
    }

    #[test]
    fn pad_centres_28_in_32() {
        let mut ds = grey(2, 28, 28, |_, _, _| 200);
        pad(&mut ds, 32, 32).unwrap();
        assert_eq!(ds.shape(), [2, 1, 32, 32]);
        let img = ds.image(1);
        assert_eq!(img[0], 0.0);
        assert_eq!(img[2 * 32 + 2], 200.0);
        assert_eq!(img[29 * 32 + 29], 200.0);
        assert_eq!(img[30 * 32 + 30], 0.0);
        assert_eq!(img.iter().filter(|v| **v == 200.0).count(), 28 * 28);
        assert!(pad(&mut ds, 16, 16).is_err());
    }

    #[test]
    fn crop_undoes_pad() {
        let orig = grey(2, 28, 28, |i, y, x| (i * 7 + y * 3 + x) as u8);
        let mut ds = orig.clone();
        pad(&mut ds, 32, 32).unwrap();
        crop(&mut ds, 28, 28).unwrap();
        assert_eq!(ds.shape(), orig.shape());
        assert_eq!(ds.images, orig.images);
        let mut ds = orig.clone();
        Preprocess { crop_to: Some(24), ..Default::default() }.apply(&mut ds).unwrap();
        assert_eq!(ds.image(1)[0], orig.image(1)[2 * 28 + 2]);
        assert!(crop(&mut ds, 30, 30).is_err(), "a crop cannot grow the image");
    }

    #[test]
    fn bilinear_resize_keeps_constants_and_interpolates() {
        let mut ds = grey(1, 16, 16, |_, _, _| 100);
        resize(&mut ds, 28, 28).unwrap();
        assert!(ds.images.iter().all(|v| (*v - 100.0).abs() < 1e-4));
        // A horizontal ramp stays monotone and within range after upscaling.
        let mut ramp = grey(1, 4, 4, |_, _, x| (x * 60) as u8);
        resize(&mut ramp, 8, 8).unwrap();
        let row = &ramp.images[0..8];
        assert_eq!(row[0], 0.0);
        assert_eq!(row[7], 180.0);
        assert!(row.windows(2).all(|p| p[1] >= p[0]), "{row:?}");
        // 2x upscale at pixel centres: output 1 samples source x = 0.25.
        assert!((row[1] - 15.0).abs() < 1e-4, "{row:?}");
    }

    #[test]
    fn full_pipeline_with_mean() {
        let src = grey(3, 28, 28, |i, y, x| ((i + y + x) % 256) as u8);
        let mut a = src.clone();
        let p = Preprocess { pad_to: Some(32), to_rgb: true, scale: true, ..Default::default() };
        p.apply(&mut a).unwrap();
        assert_eq!(a.shape(), [3, 3, 32, 32]);
        assert!(a.pixel_range().1 <= 1.0);
        let m = channel_mean(&[&a]).unwrap();
        assert_eq!(m.len(), 3);
        subtract_mean(&mut a, &m).unwrap();
        let m2 = channel_mean(&[&a]).unwrap();
        assert!(m2.iter().all(|v| v.abs() < 1e-5), "{m2:?}");
        let mut b = src.clone();
        Preprocess { binarize: Some(128.0), ..Default::default() }.apply(&mut b).unwrap();
        assert!(b.images.iter().all(|v| *v == 0.0 || *v == 255.0));
        assert!(subtract_mean(&mut b, &[1.0, 2.0]).is_err());
    }

    #[test]
    fn rgb_preset_pads_when_asked_and_resizes_otherwise() {
        let mut usps = grey(1, 16, 16, |_, _, _| 255);
        Preprocess::rgb(28).apply(&mut usps).unwrap();
        assert_eq!(usps.shape(), [1, 3, 28, 28]);
        let mut mnist = grey(1, 28, 28, |_, _, _| 255);
        Preprocess { pad_to: Some(32), ..Preprocess::rgb(32) }.apply(&mut mnist).unwrap();
        assert_eq!(mnist.shape(), [1, 3, 32, 32]);
        assert_eq!(mnist.images[0], 0.0, "padded, not resized");
    }
}
