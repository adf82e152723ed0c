//! Per-experiment preprocessing of an [`ImageDataset`], applied in a fixed order:
//! binarise -> centre crop -> resize -> pad -> grey to RGB -> scale by 1/255 -> subtract per-channel
//! mean.
//!
//! The order is fixed so that each step sees the values it is defined on: binarisation thresholds
//! raw `[0, 255]` pixels, and the mean is the mean of the final (scaled, 3-channel) images, which is
//! what [`channel_mean`] computes when given already-preprocessed sets.
//!
//! [`Preprocess::plan`] turns the settings into the [`InputStep`]s a dataset of a given shape goes
//! through, and [`Preprocess::apply`] runs exactly that plan, so a plan written into a report or a
//! weights file is what was done, not a second account of it.
use crate::{DatasetError, ImageDataset, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One preprocessing step as it is applied, with every size and offset resolved: enough to redo it
/// in another framework. All values are `f32`; images are `[C, H, W]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum InputStep {
    /// Raw pixels `>= threshold` become 255, the others 0.
    Binarize { threshold: f32 },
    /// Keep rows `top..top + height` and columns `left..left + width` (a centred crop; an odd
    /// extra pixel is dropped from the bottom/right).
    CenterCrop { height: usize, width: usize, top: usize, left: usize },
    /// Bilinear resize to `height x width` with half-pixel centres: output pixel `o` samples the
    /// input at `(o + 0.5) * in / out - 0.5`, clamped to `[0, in - 1]`, no antialiasing. This is
    /// `torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False,
    /// antialias=False)` (up to float rounding); it is not PIL's resize, which treats the borders
    /// differently.
    Resize { height: usize, width: usize, mode: String, align_corners: bool, antialias: bool },
    /// Zero padding to `height x width`: `top`, `bottom`, `left`, `right` pixels of `value`
    /// (`torch.nn.functional.pad(x, (left, right, top, bottom), value=value)`).
    Pad { height: usize, width: usize, top: usize, bottom: usize, left: usize, right: usize, value: f32 },
    /// The single grey channel copied to `channels` channels.
    RepeatChannels { channels: usize },
    /// Every value divided by `divide_by` (`x / 255` maps raw pixels to `[0, 1]`).
    Scale { divide_by: f32 },
    /// Per channel `c`: `(x - mean[c]) * (1 / std[c])`, the reciprocal taken in `f32` (the
    /// multiplication is skipped where `std[c]` is 1). One value per channel.
    Normalize { mean: Vec<f32>, std: Vec<f32> },
    /// Per image and channel: `(x - m) / max(s, epsilon)` with `m` and `s` that channel's mean
    /// and (population) standard deviation in that image: instance normalisation of the input,
    /// as VADA / DIRT-T and self-ensembling standardise digits, so a domain's colour cast and
    /// contrast do not reach the net.
    Standardize { epsilon: f32 },
}

impl InputStep {
    /// The bilinear resize this crate does (see [`InputStep::Resize`]).
    pub fn bilinear(height: usize, width: usize) -> Self {
        InputStep::Resize { height, width, mode: "bilinear".into(), align_corners: false, antialias: false }
    }

    /// Runs the step on `ds` in place.
    pub fn apply(&self, ds: &mut ImageDataset) -> Result<()> {
        match self {
            InputStep::Binarize { threshold } => {
                for v in &mut ds.images {
                    *v = if *v >= *threshold { 255.0 } else { 0.0 };
                }
            }
            InputStep::CenterCrop { height, width, top, left } => {
                let centred = ds.height.checked_sub(*height).is_some_and(|d| *top == d / 2)
                    && ds.width.checked_sub(*width).is_some_and(|d| *left == d / 2);
                if !centred {
                    return Err(DatasetError::InvalidParameters(format!(
                        "{}: a {height}x{width} crop at ({top}, {left}) is not the centred crop of {}x{} images",
                        ds.name, ds.height, ds.width
                    )));
                }
                crop(ds, *height, *width)?;
            }
            InputStep::Resize { height, width, mode, align_corners, antialias } => {
                if mode != "bilinear" || *align_corners || *antialias {
                    return Err(DatasetError::InvalidParameters(format!(
                        "{}: only bilinear resizing without align_corners or antialiasing is implemented \
                         (asked: {mode}, align_corners {align_corners}, antialias {antialias})",
                        ds.name
                    )));
                }
                resize(ds, *height, *width)?;
            }
            InputStep::Pad { height, width, top, bottom, left, right, value } => {
                let centred = height.checked_sub(ds.height).is_some_and(|d| (*top, *bottom) == (d / 2, d - d / 2))
                    && width.checked_sub(ds.width).is_some_and(|d| (*left, *right) == (d / 2, d - d / 2));
                if !centred || *value != 0.0 {
                    return Err(DatasetError::InvalidParameters(format!(
                        "{}: padding {}x{} images by ({top}, {bottom}, {left}, {right}) with {value} to {height}x{width} \
                         is not the centred zero padding",
                        ds.name, ds.height, ds.width
                    )));
                }
                pad(ds, *height, *width)?;
            }
            InputStep::RepeatChannels { channels } => {
                if ds.channels != 1 || *channels != 3 {
                    return Err(DatasetError::InvalidParameters(format!(
                        "{}: cannot repeat {} channels to {channels}: only grey to 3 channels is implemented",
                        ds.name, ds.channels
                    )));
                }
                to_rgb(ds);
            }
            InputStep::Scale { divide_by } => {
                for v in &mut ds.images {
                    *v /= *divide_by;
                }
            }
            InputStep::Normalize { mean, std } => normalize(ds, mean, std)?,
            InputStep::Standardize { epsilon } => standardize(ds, *epsilon)?,
        }
        Ok(())
    }
}

impl fmt::Display for InputStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[f32]| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
        match self {
            InputStep::Binarize { threshold } => write!(f, "binarise (raw pixel >= {threshold} -> 255, else 0)"),
            InputStep::CenterCrop { height, width, top, left } => {
                write!(f, "centre crop to {height}x{width} (rows from {top}, columns from {left})")
            }
            InputStep::Resize { height, width, .. } => {
                write!(
                    f,
                    "bilinear resize to {height}x{width} (half-pixel centres, align_corners=False, no antialiasing)"
                )
            }
            InputStep::Pad { height, width, top, bottom, left, right, value } => {
                write!(
                    f,
                    "pad with {value} to {height}x{width} (top {top}, bottom {bottom}, left {left}, right {right})"
                )
            }
            InputStep::RepeatChannels { channels } => write!(f, "grey copied to {channels} channels"),
            InputStep::Scale { divide_by } => write!(f, "divide by {divide_by}"),
            InputStep::Normalize { mean, std } => {
                write!(f, "(x - mean) / std per channel, mean [{}], std [{}]", list(mean), list(std))
            }
            InputStep::Standardize { epsilon } => {
                write!(f, "per image and channel (x - mean) / max(std, {epsilon})")
            }
        }
    }
}

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

    /// The steps a dataset of `name` with `[C, H, W]` images goes through, in order, with no-ops
    /// (a resize or pad to the size the images already have, grey to RGB on RGB images) left out.
    /// Errors are the ones applying the steps would raise.
    pub fn plan(&self, name: &str, [mut c, mut h, mut w]: [usize; 3]) -> Result<Vec<InputStep>> {
        let bad = |what: String| Err(DatasetError::InvalidParameters(format!("{name}: {what}")));
        let mut steps = Vec::new();
        if let Some(threshold) = self.binarize {
            steps.push(InputStep::Binarize { threshold });
        }
        if let Some(size) = self.crop_to {
            if size > h || size > w || size == 0 {
                return bad(format!("cannot crop {h}x{w} images to {size}x{size}"));
            }
            if (size, size) != (h, w) {
                steps.push(InputStep::CenterCrop {
                    height: size,
                    width: size,
                    top: (h - size) / 2,
                    left: (w - size) / 2,
                });
                (h, w) = (size, size);
            }
        }
        if let Some(size) = self.resize {
            if size == 0 {
                return bad(format!("cannot resize to {size}x{size}"));
            }
            // Padding is the paper's way from 28 to 32 for MNIST; when a pad step is also requested
            // to the same size, leave the size change to it.
            let padded_later = self.pad_to.is_some_and(|p| p == size && h <= p && w <= p);
            if !padded_later && (size, size) != (h, w) {
                steps.push(InputStep::bilinear(size, size));
                (h, w) = (size, size);
            }
        }
        if let Some(size) = self.pad_to {
            if size < h || size < w {
                return bad(format!("cannot pad {h}x{w} images to the smaller {size}x{size}"));
            }
            if (size, size) != (h, w) {
                let (dh, dw) = (size - h, size - w);
                steps.push(InputStep::Pad {
                    height: size,
                    width: size,
                    top: dh / 2,
                    bottom: dh - dh / 2,
                    left: dw / 2,
                    right: dw - dw / 2,
                    value: 0.0,
                });
            }
        }
        if self.to_rgb && c == 1 {
            steps.push(InputStep::RepeatChannels { channels: 3 });
            c = 3;
        }
        if self.scale {
            steps.push(InputStep::Scale { divide_by: 255.0 });
        }
        if let Some(mean) = &self.mean {
            if mean.len() != c && mean.len() != 1 {
                return bad(format!("mean has {} values for {c} channels", mean.len()));
            }
            let per_channel = (0..c).map(|ch| if mean.len() == 1 { mean[0] } else { mean[ch] }).collect();
            steps.push(InputStep::Normalize { mean: per_channel, std: vec![1.0; c] });
        }
        Ok(steps)
    }

    /// Applies the steps to `ds` in place: runs [`Preprocess::plan`] for its shape.
    pub fn apply(&self, ds: &mut ImageDataset) -> Result<()> {
        for step in self.plan(&ds.name, [ds.channels, ds.height, ds.width])? {
            step.apply(ds)?;
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

/// `(x - mean[c]) * (1 / std[c])` on channel `c` (a single value applies to all channels), the
/// reciprocal taken in `f32`: bit for bit what subtracting the mean and then multiplying by
/// `1.0 / std` gives. Where `std[c]` is 1 only the mean is subtracted.
pub fn normalize(ds: &mut ImageDataset, mean: &[f32], std: &[f32]) -> Result<()> {
    let c = ds.channels;
    if std.len() != c && std.len() != 1 {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: std has {} values for {c} channels",
            ds.name,
            std.len()
        )));
    }
    if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(DatasetError::InvalidParameters(format!("{}: std {bad} is not a positive number", ds.name)));
    }
    subtract_mean(ds, mean)?;
    let plane = ds.height * ds.width;
    for img in ds.images.chunks_exact_mut(c * plane) {
        for ch in 0..c {
            let s = if std.len() == 1 { std[0] } else { std[ch] };
            if s != 1.0 {
                let factor = 1.0 / s;
                img[ch * plane..(ch + 1) * plane].iter_mut().for_each(|v| *v *= factor);
            }
        }
    }
    Ok(())
}

/// [`InputStep::Standardize`]: every image's every channel to mean 0 and standard deviation 1
/// (a flat channel, whose deviation is below `epsilon`, only loses its mean). The sums are
/// taken in `f64` so a 32x32 plane's statistics do not depend on summation order.
pub fn standardize(ds: &mut ImageDataset, epsilon: f32) -> Result<()> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(DatasetError::InvalidParameters(format!(
            "{}: the standardisation epsilon must be a positive number, got {epsilon}",
            ds.name
        )));
    }
    let plane = ds.height * ds.width;
    if plane == 0 {
        return Ok(());
    }
    for channel in ds.images.chunks_exact_mut(plane) {
        let n = plane as f64;
        let mean = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = channel.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / var.sqrt().max(f64::from(epsilon));
        for v in channel.iter_mut() {
            *v = ((f64::from(*v) - mean) * scale) as f32;
        }
    }
    Ok(())
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
    fn standardize_gives_each_image_channel_mean_zero_and_std_one() {
        // Two 3x3 images, one a gradient and one with a bright centre, copied to 3 channels and
        // then given different colour casts per channel.
        let mut ds = grey(2, 3, 3, |i, y, x| {
            if i == 0 {
                (10 * (3 * y + x)) as u8
            } else if (y, x) == (1, 1) {
                200
            } else {
                20
            }
        });
        to_rgb(&mut ds);
        for (k, v) in ds.images.iter_mut().enumerate() {
            *v = *v * (1.0 + (k / 9 % 3) as f32) + 7.0 * (k / 9 % 3) as f32;
        }
        let before = ds.images.clone();
        standardize(&mut ds, 1e-3).unwrap();
        for (plane, raw) in ds.images.chunks(9).zip(before.chunks(9)) {
            let mean: f64 = plane.iter().map(|&v| f64::from(v)).sum::<f64>() / 9.0;
            let var: f64 = plane.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / 9.0;
            assert!(mean.abs() < 1e-6, "mean {mean}");
            assert!((var - 1.0).abs() < 1e-5, "variance {var}");
            // The order of the pixels within the plane is kept (a positive affine map).
            for a in 0..9 {
                for b in 0..9 {
                    assert_eq!(raw[a] < raw[b], plane[a] < plane[b]);
                }
            }
        }
        // The colour casts are gone: the three channels of an image are now equal.
        for img in ds.images.chunks(27) {
            for ch in 1..3 {
                for p in 0..9 {
                    assert!((img[p] - img[ch * 9 + p]).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn standardize_keeps_a_flat_channel_finite_and_rejects_a_bad_epsilon() {
        let mut ds = grey(1, 4, 4, |_, _, _| 90);
        standardize(&mut ds, 1e-3).unwrap();
        assert!(ds.images.iter().all(|&v| v == 0.0));
        let mut ds = grey(1, 4, 4, |_, y, _| y as u8);
        for eps in [0.0, -1.0, f32::NAN] {
            let err = standardize(&mut ds, eps).unwrap_err().to_string();
            assert!(err.contains("epsilon"), "{err}");
        }
        let step = InputStep::Standardize { epsilon: 0.01 };
        assert_eq!(step.to_string(), "per image and channel (x - mean) / max(std, 0.01)");
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

    #[test]
    fn plans_resolve_sizes_and_offsets_and_leave_out_no_ops() {
        let pad = Preprocess { pad_to: Some(32), ..Preprocess::rgb(32) };
        assert_eq!(
            pad.plan("mnist", [1, 28, 28]).unwrap(),
            [
                InputStep::Pad { height: 32, width: 32, top: 2, bottom: 2, left: 2, right: 2, value: 0.0 },
                InputStep::RepeatChannels { channels: 3 },
                InputStep::Scale { divide_by: 255.0 },
            ]
        );
        // An odd difference puts the extra pixel bottom/right, as `pad` does.
        let odd = Preprocess { pad_to: Some(5), ..Default::default() }.plan("t", [1, 2, 4]).unwrap();
        assert_eq!(odd, [InputStep::Pad { height: 5, width: 5, top: 1, bottom: 2, left: 0, right: 1, value: 0.0 }]);
        assert_eq!(
            Preprocess::rgb(28).plan("usps", [1, 16, 16]).unwrap(),
            [
                InputStep::bilinear(28, 28),
                InputStep::RepeatChannels { channels: 3 },
                InputStep::Scale { divide_by: 255.0 }
            ]
        );
        // RGB images already at size: only the scaling is left; one mean value becomes one per channel.
        let crop = Preprocess { crop_to: Some(28), ..Preprocess::rgb(28) }.with_mean(vec![0.5]);
        assert_eq!(
            crop.plan("mnist-m", [3, 32, 32]).unwrap(),
            [
                InputStep::CenterCrop { height: 28, width: 28, top: 2, left: 2 },
                InputStep::Scale { divide_by: 255.0 },
                InputStep::Normalize { mean: vec![0.5; 3], std: vec![1.0; 3] },
            ]
        );
        assert_eq!(Preprocess::rgb(28).plan("t", [3, 28, 28]).unwrap(), [InputStep::Scale { divide_by: 255.0 }]);
        let bin = Preprocess { binarize: Some(1.0), ..Default::default() };
        assert_eq!(bin.plan("t", [1, 28, 28]).unwrap(), [InputStep::Binarize { threshold: 1.0 }]);
        // Impossible plans fail with apply's errors, naming the dataset.
        for (pre, shape) in [
            (Preprocess { crop_to: Some(30), ..Default::default() }, [1, 28, 28]),
            (Preprocess { pad_to: Some(16), ..Default::default() }, [1, 28, 28]),
            (Preprocess { resize: Some(0), ..Default::default() }, [1, 28, 28]),
            (Preprocess { to_rgb: true, mean: Some(vec![1.0, 2.0]), ..Default::default() }, [1, 28, 28]),
        ] {
            let e = pre.plan("usps", shape).unwrap_err().to_string();
            assert!(e.contains("usps"), "{e}");
            let mut ds = grey(1, 28, 28, |_, _, _| 0);
            ds.name = "usps".into();
            assert_eq!(pre.apply(&mut ds).unwrap_err().to_string(), e);
        }
    }

    #[test]
    fn steps_reject_what_they_cannot_do_and_round_trip_through_json() {
        let mut ds = grey(1, 28, 28, |_, y, x| (y + x) as u8);
        let off_centre = InputStep::CenterCrop { height: 24, width: 24, top: 0, left: 2 };
        assert!(off_centre.apply(&mut ds).unwrap_err().to_string().contains("centred"));
        let too_big = InputStep::CenterCrop { height: 30, width: 30, top: 0, left: 0 };
        assert!(too_big.apply(&mut ds).is_err());
        let nearest =
            InputStep::Resize { height: 8, width: 8, mode: "nearest".into(), align_corners: false, antialias: false };
        assert!(nearest.apply(&mut ds).unwrap_err().to_string().contains("nearest"));
        let lopsided = InputStep::Pad { height: 32, width: 32, top: 4, bottom: 0, left: 2, right: 2, value: 0.0 };
        assert!(lopsided.apply(&mut ds).is_err());
        assert_eq!(ds.shape(), [1, 1, 28, 28], "rejected steps leave the data alone");
        let steps = vec![
            InputStep::Binarize { threshold: 1.0 },
            InputStep::CenterCrop { height: 28, width: 28, top: 2, left: 2 },
            InputStep::bilinear(28, 28),
            InputStep::Pad { height: 32, width: 32, top: 2, bottom: 2, left: 2, right: 2, value: 0.0 },
            InputStep::RepeatChannels { channels: 3 },
            InputStep::Scale { divide_by: 255.0 },
            InputStep::Normalize { mean: vec![0.5, 0.25, 0.125], std: vec![0.5, 1.0, 2.0] },
        ];
        let json = serde_json::to_string(&steps).unwrap();
        assert!(json.contains(r#"{"op":"pad","height":32"#) && json.contains(r#""align_corners":false"#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<InputStep>>(&json).unwrap(), steps);
        assert!(steps[6].to_string().contains("0.5000, 0.2500, 0.1250"), "{}", steps[6]);
    }

    #[test]
    fn normalize_is_subtract_then_multiply_by_the_reciprocal() {
        let src = grey(2, 5, 5, |i, y, x| (i * 40 + y * 9 + x * 3) as u8);
        let mut a = src.clone();
        Preprocess::unit().apply(&mut a).unwrap();
        let mut b = a.clone();
        normalize(&mut a, &[0.5], &[0.5]).unwrap();
        subtract_mean(&mut b, &[0.5]).unwrap();
        b.images.iter_mut().for_each(|v| *v *= 1.0 / 0.5f32);
        assert!(a.images.iter().zip(&b.images).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a.pixel_range().0 >= -1.0 && a.pixel_range().1 <= 1.0);
        // Per channel, and std 1 subtracts only.
        let mut rgb = src.clone();
        Preprocess { to_rgb: true, scale: true, ..Default::default() }.apply(&mut rgb).unwrap();
        let before = rgb.clone();
        normalize(&mut rgb, &[0.1, 0.2, 0.3], &[1.0, 2.0, 4.0]).unwrap();
        let plane = 25;
        for (ch, (m, s)) in [(0.1f32, 1.0f32), (0.2, 2.0), (0.3, 4.0)].into_iter().enumerate() {
            let (x, y) = (before.images[ch * plane + 7], rgb.images[ch * plane + 7]);
            assert_eq!(y.to_bits(), if s == 1.0 { x - m } else { (x - m) * (1.0 / s) }.to_bits());
        }
        for bad in [&[0.0f32][..], &[-1.0], &[f32::NAN], &[1.0, 1.0]] {
            assert!(normalize(&mut rgb.clone(), &[0.0], bad).is_err(), "{bad:?}");
        }
    }
}
