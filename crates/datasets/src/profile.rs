//! What a domain's images look like before any preprocessing, measured without labels: the facts
//! the recipes decide their input steps and switches from (net size, crop or resize, a digit box,
//! binarisation, colour), so that no decision depends on a dataset's name.
//!
//! **Ground.** An image's ground is its most frequent grey level (the mean over channels,
//! rounded to an 8-bit value); its ground share is the fraction of pixels within
//! [`GROUND_TOLERANCE`] of it. Digits drawn on a plain ground (MNIST, USPS, scans) have a large
//! share; photos and textures (MNIST-M's backgrounds, street numbers) a small one.
//!
//! **Digit box.** On a plain ground, the smallest box holding every pixel that differs from the
//! ground by more than [`GROUND_TOLERANCE`]; its larger side is the image's digit side. A domain's
//! digit side is the median over its images.
use crate::stats::{InkBox, InputStats};
use crate::{DatasetError, ImageDataset, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Images per domain a profile measures (the first ones of the training split).
pub const PROFILE_IMAGES: usize = 2000;

/// Pixels within this many 8-bit levels of an image's ground count as ground.
pub const GROUND_TOLERANCE: f32 = 8.0;

/// A domain is drawn on a plain ground when, on average, at least this fraction of its pixels is
/// ground.
pub const PLAIN_GROUND_SHARE: f64 = 0.5;

/// A domain is in colour when the mean over pixels of (largest - smallest channel) / 255 is at
/// least this: grey images stored as RGB have 0, JPEG noise stays far below it.
pub const COLOUR_SPREAD: f64 = 0.05;

/// A plain-ground domain's digits fill their frame when the digit side is at least this fraction
/// of the shorter image side.
pub const FILLS_FRAME: f64 = 0.9;

/// ... and sit inside a margin when it is at most this fraction.
pub const INSIDE_MARGIN: f64 = 0.8;

/// One image's colour spread, ground share, ground level and digit side.
type ImageFacts = (f64, f64, f64, Option<usize>);

/// Label-free facts about one domain's training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainProfile {
    /// The data's name (a built-in dataset's name or the path given).
    pub name: String,
    /// `[C, H, W]` as loaded.
    pub shape: [usize; 3],
    /// Images measured.
    pub images: usize,
    /// Mean over pixels of (largest - smallest channel value) / 255; 0 for one channel.
    pub colour_spread: f64,
    /// Mean over images of the fraction of pixels that are ground.
    pub ground_share: f64,
    /// Mean ground level, in `[0, 1]` (0: black).
    pub ground_level: f64,
    /// Median digit side in pixels, on a plain ground; `None` on a textured one or when no image
    /// has anything but ground.
    pub digit_side: Option<f64>,
    /// The trimmed mean ink box of [`crate::stats`] (defined on any ground).
    pub ink_box: Option<InkBox>,
}

impl DomainProfile {
    /// Measures the first [`PROFILE_IMAGES`] images of `ds` (raw pixels in `[0, 255]`).
    pub fn measure(name: &str, ds: &ImageDataset) -> Result<Self> {
        let n = ds.len().min(PROFILE_IMAGES);
        if n == 0 {
            return Err(DatasetError::InvalidParameters(format!("{name}: no images to measure")));
        }
        let [c, h, w] = [ds.channels, ds.height, ds.width];
        let per: Vec<ImageFacts> = (0..n)
            .into_par_iter()
            .map(|i| {
                let img = ds.image(i);
                let plane = h * w;
                let grey: Vec<f32> =
                    (0..plane).map(|p| (0..c).map(|k| img[k * plane + p]).sum::<f32>() / c as f32).collect();
                let mut spread = 0.0f64;
                if c > 1 {
                    for p in 0..plane {
                        let (lo, hi) = (0..c).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), k| {
                            (lo.min(img[k * plane + p]), hi.max(img[k * plane + p]))
                        });
                        spread += f64::from(hi - lo) / 255.0;
                    }
                    spread /= plane as f64;
                }
                let mut hist = [0usize; 256];
                for &v in &grey {
                    hist[v.round().clamp(0.0, 255.0) as usize] += 1;
                }
                // The most frequent level; ties go to the darker one, so the result is deterministic.
                let ground = (0..256).max_by_key(|&l| (hist[l], std::cmp::Reverse(l))).unwrap_or(0) as f32;
                let is_ink = |v: f32| (v - ground).abs() > GROUND_TOLERANCE;
                let share = grey.iter().filter(|&&v| !is_ink(v)).count() as f64 / plane as f64;
                let (mut top, mut bottom, mut left, mut right) = (h, 0, w, 0);
                for y in 0..h {
                    for x in 0..w {
                        if is_ink(grey[y * w + x]) {
                            (top, bottom, left, right) = (top.min(y), bottom.max(y), left.min(x), right.max(x));
                        }
                    }
                }
                let side = (top <= bottom).then(|| (bottom - top + 1).max(right - left + 1));
                (spread, share, f64::from(ground) / 255.0, side)
            })
            .collect();
        let mean = |f: fn(&ImageFacts) -> f64| per.iter().map(f).sum::<f64>() / n as f64;
        let ground_share = mean(|p| p.1);
        let mut sides: Vec<usize> = per.iter().filter_map(|p| p.3).collect();
        sides.sort_unstable();
        let digit_side = (ground_share >= PLAIN_GROUND_SHARE && !sides.is_empty()).then(|| {
            let m = sides.len() / 2;
            if sides.len() % 2 == 1 { sides[m] as f64 } else { (sides[m - 1] + sides[m]) as f64 / 2.0 }
        });
        let stats = InputStats::of_first(ds, n)?;
        Ok(Self {
            name: name.to_string(),
            shape: [c, h, w],
            images: n,
            colour_spread: mean(|p| p.0),
            ground_share,
            ground_level: mean(|p| p.2),
            digit_side,
            ink_box: stats.ink_box,
        })
    }

    /// In colour: see [`COLOUR_SPREAD`].
    pub fn colour(&self) -> bool {
        self.colour_spread >= COLOUR_SPREAD
    }

    /// Drawn on a plain ground: see [`PLAIN_GROUND_SHARE`].
    pub fn plain_ground(&self) -> bool {
        self.ground_share >= PLAIN_GROUND_SHARE
    }

    /// The shorter side of the images.
    pub fn side(&self) -> usize {
        self.shape[1].min(self.shape[2])
    }

    /// The digit side as a fraction of the shorter image side (plain grounds only).
    pub fn digit_fraction(&self) -> Option<f64> {
        self.digit_side.map(|s| s / self.side() as f64)
    }

    /// Digits filling their frame on a plain ground ([`FILLS_FRAME`]).
    pub fn fills_frame(&self) -> bool {
        self.digit_fraction().is_some_and(|f| f >= FILLS_FRAME)
    }

    /// Digits inside a margin of a plain ground ([`INSIDE_MARGIN`]).
    pub fn inside_margin(&self) -> bool {
        self.digit_fraction().is_some_and(|f| f <= INSIDE_MARGIN)
    }

    /// Whether a centred crop to `size` keeps the whole mean ink box.
    pub fn crop_keeps_ink(&self, size: usize) -> bool {
        let [_, h, w] = self.shape;
        if size > h || size > w {
            return false;
        }
        let (top, left) = ((h - size) / 2, (w - size) / 2);
        self.ink_box.is_some_and(|b| {
            b.top >= top as f64
                && b.left >= left as f64
                && b.top + b.height <= (top + size) as f64
                && b.left + b.width <= (left + size) as f64
        })
    }

    /// One line for reports: "grey 1x28x28, plain ground 81 % (level 0.00), digit side 20 px".
    pub fn describe(&self) -> String {
        let [c, h, w] = self.shape;
        let mut s = format!(
            "{} {c}x{h}x{w} (channel spread {:.3}), ground share {:.2} at level {:.2}",
            if self.colour() { "colour" } else { "grey" },
            self.colour_spread,
            self.ground_share,
            self.ground_level
        );
        match self.digit_side {
            Some(d) => s.push_str(&format!(", digit side {d} px ({:.2} of the frame)", d / self.side() as f64)),
            None => s.push_str(", textured ground (no digit box)"),
        }
        if let Some(b) = self.ink_box {
            s.push_str(&format!(", ink box {:.1}x{:.1} at ({:.1}, {:.1})", b.height, b.width, b.top, b.left));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Split;

    /// `n` images of `c x side x side` with a `box_side` square of ink `ink` on ground `ground`.
    fn squares(n: usize, c: usize, side: usize, box_side: usize, ground: u8, ink: [u8; 3]) -> ImageDataset {
        let mut px = vec![ground; n * c * side * side];
        let off = (side - box_side) / 2;
        for i in 0..n {
            for k in 0..c {
                for y in off..off + box_side {
                    for x in off..off + box_side {
                        px[((i * c + k) * side + y) * side + x] = ink[k.min(2)];
                    }
                }
            }
        }
        ImageDataset::from_u8("squares", Split::Train, &px, vec![0; n], [c, side, side]).unwrap()
    }

    #[test]
    fn grey_digits_in_a_margin_and_filling_the_frame() {
        let mnist_like = DomainProfile::measure("a", &squares(20, 1, 28, 16, 0, [255; 3])).unwrap();
        assert!(!mnist_like.colour() && mnist_like.plain_ground());
        assert_eq!(mnist_like.digit_side, Some(16.0));
        assert!(mnist_like.inside_margin() && !mnist_like.fills_frame());
        assert!(mnist_like.crop_keeps_ink(24) && !mnist_like.crop_keeps_ink(14));
        let usps_like = DomainProfile::measure("b", &squares(20, 1, 16, 16, 0, [255; 3])).unwrap();
        // All ink: the ground is the ink's level, nothing differs from it.
        assert_eq!(usps_like.digit_side, None);
        // A ring of ink as wide as the frame: a thin "0" filling it.
        let mut ring = squares(20, 1, 16, 15, 0, [255; 3]);
        ring.images.chunks_exact_mut(256).for_each(|img| {
            for y in 2..13 {
                for x in 2..13 {
                    img[y * 16 + x] = 0.0;
                }
            }
        });
        let usps_like = DomainProfile::measure("b", &ring).unwrap();
        assert_eq!(usps_like.digit_side, Some(15.0));
        assert!(usps_like.fills_frame());
    }

    #[test]
    fn colour_and_texture() {
        let grey_rgb = DomainProfile::measure("g", &squares(5, 3, 32, 20, 10, [200, 200, 200])).unwrap();
        assert!(!grey_rgb.colour(), "grey stored as RGB is grey");
        let coloured = DomainProfile::measure("c", &squares(5, 3, 32, 20, 10, [250, 20, 20])).unwrap();
        assert!(coloured.colour(), "{}", coloured.describe());
        // A texture: every pixel a different level.
        let px: Vec<u8> = (0..4 * 32 * 32).map(|i| ((i * 37) % 251) as u8).collect();
        let tex = ImageDataset::from_u8("t", Split::Train, &px, vec![0; 4], [1, 32, 32]).unwrap();
        let t = DomainProfile::measure("t", &tex).unwrap();
        assert!(!t.plain_ground() && t.digit_side.is_none(), "{}", t.describe());
    }
}
