//! Label-free statistics of a domain's network inputs, and a check that two domains were brought
//! to comparable inputs.
//!
//! Source and target are supposed to differ in appearance (that is the domain shift), but not in
//! the things the preprocessing controls: the value range, and where and how large the digits are
//! in the frame. A digit scale mismatch (MNIST-M resized instead of cropped, USPS digits filling
//! the frame where MNIST's sit in a 20-pixel box) or a forgotten scaling step trains without any
//! error and costs accuracy silently; [`compare_inputs`] turns them into warnings.
//!
//! **Ink.** Each image's background is, per channel, its median value (digits cover less than
//! half of the frame). A pixel's contrast is the mean over channels of its distance from that
//! background, and a pixel is ink when its contrast is above [`INK_PEAK_FRACTION`] of the image's
//! largest contrast. The definition ignores polarity (dark digits on light backgrounds count too)
//! and any shift or scale of the values, so it reads the same on raw pixels and on normalised
//! inputs. An image whose pixels all equal its background has no ink.
//!
//! **Ink box.** An image's ink box spans the rows from the [`INK_BOX_TRIM`] to the
//! `1 - INK_BOX_TRIM` quantile of its ink pixels' row indices (nearest rank), and the same for
//! columns: the trim keeps a few bright texture pixels of a photo background (MNIST-M) from
//! stretching the box to the frame.
//!
//! **Limits**, measured on the shared copies of MNIST, MNIST-M and USPS (training sets, the DANN
//! recipes at 28 pixels and GTA's at 32): correctly shaped pairs differ in mean ink box height by at
//! most 7 %; USPS's frame-filling digits are 32-56 % taller than MNIST's. Widths are noisier:
//! MNIST-M's textured backgrounds widen its boxes by up to 30 % over MNIST's same digits. A digit
//! scale error of about 10 % (MNIST-M resized 32 -> 28 instead of cropped makes its boxes 9 % lower)
//! is within that noise and is not caught. The means of those pairs are at most 1.4 pooled standard
//! deviations apart, their standard deviations within a factor of 1.6.
use crate::{DatasetError, Result, Rows};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A pixel is ink when its contrast exceeds this fraction of the largest contrast in its image.
pub const INK_PEAK_FRACTION: f32 = 0.7;

/// The fraction of an image's ink rows (and columns) left out at each end of its ink box.
pub const INK_BOX_TRIM: f64 = 0.05;

/// Per-channel standard deviations of the two domains may differ by at most this factor: a larger
/// ratio means one domain's values are on another scale (a missing `/255`, a missing `/std`).
pub const STD_RATIO_LIMIT: f64 = 3.0;

/// Per-channel means may differ by at most this many pooled standard deviations
/// (`sqrt((std_s^2 + std_t^2) / 2)`). Domain shift moves the means by about one; beyond two the
/// domains' value distributions barely overlap (inverted polarity, a mean subtracted from one
/// domain only).
pub const MEAN_SHIFT_LIMIT: f64 = 2.0;

/// The mean ink box heights may differ by at most this factor between the domains: the digits
/// should be drawn at one scale.
pub const INK_BOX_HEIGHT_RATIO_LIMIT: f64 = 1.2;

/// The mean ink box widths may differ by at most this factor; looser than the height's, as photo
/// backgrounds widen the boxes (see the module notes).
pub const INK_BOX_WIDTH_RATIO_LIMIT: f64 = 1.5;

/// The mean ink box centres may be at most this fraction of the image side apart.
pub const INK_CENTRE_SHIFT_LIMIT: f64 = 0.1;

/// The mean ink box of a set of images (see the module notes), in pixels (rows from the top,
/// columns from the left), averaged over the images that have ink. A box of one pixel has
/// `height` and `width` 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InkBox {
    pub top: f64,
    pub left: f64,
    pub height: f64,
    pub width: f64,
}

impl InkBox {
    /// `(row, column)` of the box centre, in pixel coordinates (pixel `i` spans `i..i + 1`).
    pub fn centre(&self) -> (f64, f64) {
        (self.top + self.height / 2.0, self.left + self.width / 2.0)
    }
}

/// Statistics of a set of `[C, H, W]` images that need no labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    /// Images measured.
    pub images: usize,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Per-channel mean over all pixels of all images.
    pub mean: Vec<f64>,
    /// Per-channel (population) standard deviation over all pixels of all images.
    pub std: Vec<f64>,
    /// Mean over the images of the fraction of their pixels that are ink.
    pub ink_fraction: f64,
    /// The mean ink box; `None` when no image has ink.
    pub ink_box: Option<InkBox>,
    /// Images without ink (every pixel equal to the background).
    pub blank_images: usize,
}

/// Sums over a run of images, added up in a fixed order so the result does not depend on threads.
#[derive(Clone)]
struct Sums {
    images: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    ink_fraction: f64,
    boxes: usize,
    top: f64,
    left: f64,
    height: f64,
    width: f64,
}

impl Sums {
    fn new(c: usize) -> Self {
        Self {
            images: 0,
            sum: vec![0.0; c],
            sum_sq: vec![0.0; c],
            ink_fraction: 0.0,
            boxes: 0,
            top: 0.0,
            left: 0.0,
            height: 0.0,
            width: 0.0,
        }
    }

    fn add(&mut self, o: &Sums) {
        self.images += o.images;
        for (a, b) in self.sum.iter_mut().zip(&o.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&o.sum_sq) {
            *a += b;
        }
        self.ink_fraction += o.ink_fraction;
        self.boxes += o.boxes;
        self.top += o.top;
        self.left += o.left;
        self.height += o.height;
        self.width += o.width;
    }

    /// Adds one `[C, H, W]` image; the other arguments are work space.
    fn image(&mut self, img: &[f32], [c, h, w]: [usize; 3], work: &mut Work) {
        let Work { scratch, contrast, rows, cols } = work;
        let plane = h * w;
        contrast.fill(0.0);
        for ch in 0..c {
            let values = &img[ch * plane..(ch + 1) * plane];
            let (mut s, mut sq) = (0f64, 0f64);
            for &v in values {
                s += v as f64;
                sq += v as f64 * v as f64;
            }
            self.sum[ch] += s;
            self.sum_sq[ch] += sq;
            scratch.clear();
            scratch.extend_from_slice(values);
            let (_, median, _) = scratch.select_nth_unstable_by(plane / 2, f32::total_cmp);
            let median = *median;
            for (d, &v) in contrast.iter_mut().zip(values) {
                *d += (v - median).abs() / c as f32;
            }
        }
        self.images += 1;
        let peak = contrast.iter().copied().fold(0f32, f32::max);
        if peak <= 0.0 {
            return;
        }
        let threshold = INK_PEAK_FRACTION * peak;
        rows.fill(0);
        cols.fill(0);
        let mut ink = 0usize;
        for (p, &d) in contrast.iter().enumerate() {
            if d > threshold {
                rows[p / w] += 1;
                cols[p % w] += 1;
                ink += 1;
            }
        }
        let (top, bottom) = trimmed_span(rows, ink);
        let (left, right) = trimmed_span(cols, ink);
        self.ink_fraction += ink as f64 / plane as f64;
        self.boxes += 1;
        self.top += top as f64;
        self.left += left as f64;
        self.height += (bottom - top + 1) as f64;
        self.width += (right - left + 1) as f64;
    }
}

/// Buffers reused from image to image.
struct Work {
    scratch: Vec<f32>,
    contrast: Vec<f32>,
    rows: Vec<usize>,
    cols: Vec<usize>,
}

/// First and last index of the trimmed span of `total` items counted per index in `counts`: the
/// items at sorted positions `round((total - 1) * INK_BOX_TRIM)` and
/// `round((total - 1) * (1 - INK_BOX_TRIM))`.
fn trimmed_span(counts: &[usize], total: usize) -> (usize, usize) {
    let last = (total - 1) as f64;
    let at = |pos: usize| {
        let mut seen = 0;
        counts.iter().position(|&n| {
            seen += n;
            seen > pos
        })
    };
    let lo = at((last * INK_BOX_TRIM).round() as usize).unwrap_or(0);
    let hi = at((last * (1.0 - INK_BOX_TRIM)).round() as usize).unwrap_or(counts.len() - 1);
    (lo, hi)
}

impl InputStats {
    /// Statistics of every row of `rows`, which must be `[C, H, W]` images.
    pub fn of(rows: &dyn Rows) -> Result<Self> {
        Self::of_first(rows, rows.len())
    }

    /// Statistics of the first `n` rows of `rows` (all of them when there are fewer).
    pub fn of_first(rows: &dyn Rows, n: usize) -> Result<Self> {
        let shape: [usize; 3] = rows.row_shape().try_into().map_err(|s: Vec<usize>| {
            DatasetError::InvalidParameters(format!("input statistics need [C, H, W] images, not rows of shape {s:?}"))
        })?;
        let n = n.min(rows.len());
        if n == 0 || shape.contains(&0) {
            return Err(DatasetError::InvalidParameters(format!(
                "input statistics of {n} images of shape {shape:?}: nothing to measure"
            )));
        }
        let [c, h, w] = shape;
        const CHUNK: usize = 256;
        let parts: Vec<Sums> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|k| {
                let mut sums = Sums::new(c);
                let mut img = vec![0f32; c * h * w];
                let mut work =
                    Work { scratch: Vec::new(), contrast: vec![0f32; h * w], rows: vec![0; h], cols: vec![0; w] };
                for i in k * CHUNK..((k + 1) * CHUNK).min(n) {
                    rows.copy_row(i, &mut img);
                    sums.image(&img, shape, &mut work);
                }
                sums
            })
            .collect();
        let mut total = Sums::new(c);
        for p in &parts {
            total.add(p);
        }
        let count = (n * h * w) as f64;
        let mean: Vec<f64> = total.sum.iter().map(|s| s / count).collect();
        let std = total.sum_sq.iter().zip(&mean).map(|(sq, m)| (sq / count - m * m).max(0.0).sqrt()).collect();
        let b = total.boxes as f64;
        Ok(Self {
            images: n,
            shape,
            mean,
            std,
            ink_fraction: total.ink_fraction / n as f64,
            ink_box: (total.boxes > 0).then(|| InkBox {
                top: total.top / b,
                left: total.left / b,
                height: total.height / b,
                width: total.width / b,
            }),
            blank_images: n - total.boxes,
        })
    }
}

/// One way in which two domains' inputs disagree beyond the module's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputWarning {
    /// What disagrees: `shape`, `std`, `mean`, `ink_box_height`, `ink_box_width`, `ink_centre` or
    /// `ink`.
    pub quantity: String,
    /// The values and the limit, in words.
    pub message: String,
}

impl fmt::Display for InputWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where `source` and `target` disagree beyond [`STD_RATIO_LIMIT`], [`MEAN_SHIFT_LIMIT`],
/// [`INK_BOX_HEIGHT_RATIO_LIMIT`], [`INK_BOX_WIDTH_RATIO_LIMIT`] and [`INK_CENTRE_SHIFT_LIMIT`];
/// also when the shapes differ, or when one domain has ink and the other none. Empty when they
/// agree.
pub fn compare_inputs(source: &InputStats, target: &InputStats) -> Vec<InputWarning> {
    let warn = |quantity: &str, message: String| InputWarning { quantity: quantity.into(), message };
    if source.shape != target.shape {
        return vec![warn(
            "shape",
            format!("source inputs are {:?} but target inputs {:?}", source.shape, target.shape),
        )];
    }
    let mut out = Vec::new();
    for ch in 0..source.shape[0] {
        let (ss, st) = (source.std[ch], target.std[ch]);
        let ratio = ss.max(st) / ss.min(st).max(f64::MIN_POSITIVE);
        if ratio > STD_RATIO_LIMIT {
            out.push(warn(
                "std",
                format!(
                    "channel {ch}: source std {ss:.4} vs target std {st:.4}, a ratio of {ratio:.2} (limit \
                     {STD_RATIO_LIMIT}): the domains' values are on different scales"
                ),
            ));
        }
        let pooled = ((ss * ss + st * st) / 2.0).sqrt();
        let (ms, mt) = (source.mean[ch], target.mean[ch]);
        let shift = (ms - mt).abs() / pooled.max(f64::MIN_POSITIVE);
        if shift > MEAN_SHIFT_LIMIT {
            out.push(warn(
                "mean",
                format!(
                    "channel {ch}: source mean {ms:.4} vs target mean {mt:.4}, {shift:.2} pooled standard deviations \
                     apart (limit {MEAN_SHIFT_LIMIT})"
                ),
            ));
        }
    }
    match (&source.ink_box, &target.ink_box) {
        (Some(s), Some(t)) => {
            for (what, a, b, limit) in [
                ("height", s.height, t.height, INK_BOX_HEIGHT_RATIO_LIMIT),
                ("width", s.width, t.width, INK_BOX_WIDTH_RATIO_LIMIT),
            ] {
                let ratio = a.max(b) / a.min(b);
                if ratio > limit {
                    out.push(warn(
                        &format!("ink_box_{what}"),
                        format!(
                            "mean ink box {what}: source {a:.1} px vs target {b:.1} px, a ratio of {ratio:.2} (limit \
                             {limit}): the digits are drawn at different scales"
                        ),
                    ));
                }
            }
            let ((sy, sx), (ty, tx)) = (s.centre(), t.centre());
            let side = source.shape[1].max(source.shape[2]) as f64;
            let shift = (sy - ty).hypot(sx - tx) / side;
            if shift > INK_CENTRE_SHIFT_LIMIT {
                out.push(warn(
                    "ink_centre",
                    format!(
                        "mean ink box centre: source ({sy:.1}, {sx:.1}) vs target ({ty:.1}, {tx:.1}) (row, column), \
                         {shift:.2} of the image side apart (limit {INK_CENTRE_SHIFT_LIMIT})"
                    ),
                ));
            }
        }
        (None, None) => {}
        (s, _) => out.push(warn(
            "ink",
            format!("the {} images have no ink at all", if s.is_none() { "source" } else { "target" }),
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageDataset, Split};

    /// `n` grey `h x w` images of `bg` with a rectangle of `ink` at rows `y0..y1`, columns `x0..x1`.
    fn boxes(n: usize, [h, w]: [usize; 2], bg: u8, ink: u8, [y0, y1, x0, x1]: [usize; 4]) -> ImageDataset {
        let mut px = vec![bg; n * h * w];
        for i in 0..n {
            for y in y0..y1 {
                for x in x0..x1 {
                    px[i * h * w + y * w + x] = ink;
                }
            }
        }
        ImageDataset::from_u8("t", Split::Train, &px, vec![0; n], [1, h, w]).unwrap()
    }

    #[test]
    fn known_images_give_known_statistics() {
        // 10x10 images, a 4x2 block of 200 on 0: 8 ink pixels of 100.
        let ds = boxes(3, [10, 10], 0, 200, [2, 6, 3, 5]);
        let s = InputStats::of(&ds).unwrap();
        assert_eq!((s.images, s.shape, s.blank_images), (3, [1, 10, 10], 0));
        assert!((s.mean[0] - 16.0).abs() < 1e-9, "{:?}", s.mean);
        // E[x^2] = 0.08 * 40000 = 3200, E[x]^2 = 256.
        assert!((s.std[0] - (3200f64 - 256.0).sqrt()).abs() < 1e-9, "{:?}", s.std);
        assert!((s.ink_fraction - 0.08).abs() < 1e-12);
        assert_eq!(s.ink_box, Some(InkBox { top: 2.0, left: 3.0, height: 4.0, width: 2.0 }));
        assert_eq!(s.ink_box.unwrap().centre(), (4.0, 4.0));
        // Polarity, shift and scale do not change the ink: dark digits on white, and normalised.
        let dark = boxes(3, [10, 10], 255, 30, [2, 6, 3, 5]);
        assert_eq!(InputStats::of(&dark).unwrap().ink_box, s.ink_box);
        let mut normalised = ds.clone();
        crate::preprocess::normalize(&mut normalised, &[100.0], &[50.0]).unwrap();
        let n = InputStats::of(&normalised).unwrap();
        assert_eq!((n.ink_box, n.ink_fraction), (s.ink_box, s.ink_fraction));
        assert!((n.mean[0] - (16.0 - 100.0) / 50.0).abs() < 1e-6 && (n.std[0] - s.std[0] / 50.0).abs() < 1e-6);
        // Faint pixels (under half the peak contrast) are not ink; flat images have none.
        let mut faint = ds.clone();
        faint.images[0] = 90.0;
        assert_eq!(InputStats::of_first(&faint, 1).unwrap().ink_box, s.ink_box);
        let flat = boxes(2, [10, 10], 7, 7, [0, 0, 0, 0]);
        let f = InputStats::of(&flat).unwrap();
        assert_eq!((f.ink_box, f.blank_images, f.ink_fraction), (None, 2, 0.0));
        assert_eq!(f.std, vec![0.0]);
    }

    #[test]
    fn boxes_average_over_images_with_ink_and_channels_are_separate() {
        let mut ds = boxes(2, [8, 8], 0, 255, [0, 2, 0, 2]);
        // Image 1: the block at rows 4..8, columns 2..8.
        let img = &mut ds.images[64..128];
        img.fill(0.0);
        for y in 4..8 {
            for x in 2..8 {
                img[y * 8 + x] = 255.0;
            }
        }
        let s = InputStats::of(&ds).unwrap();
        assert_eq!(s.ink_box, Some(InkBox { top: 2.0, left: 1.0, height: 3.0, width: 4.0 }));
        assert!((s.ink_fraction - (4.0 / 64.0 + 24.0 / 64.0) / 2.0).abs() < 1e-12);
        let first = InputStats::of_first(&ds, 1).unwrap();
        assert_eq!((first.images, first.ink_box.unwrap().height), (1, 2.0));
        // RGB: channel means are per channel.
        let px: Vec<u8> = (0..3 * 16).map(|k| (k / 16 * 10) as u8).collect();
        let rgb = ImageDataset::from_u8("t", Split::Train, &px, vec![0], [3, 4, 4]).unwrap();
        assert_eq!(InputStats::of(&rgb).unwrap().mean, vec![0.0, 10.0, 20.0]);
        let points = crate::toy::make_moons(10, 0.1, 0).unwrap();
        assert!(InputStats::of(&points).unwrap_err().to_string().contains("[C, H, W]"));
    }

    fn stats(mean: f64, std: f64, ink_box: Option<InkBox>) -> InputStats {
        InputStats {
            images: 10,
            shape: [1, 28, 28],
            mean: vec![mean],
            std: vec![std],
            ink_fraction: 0.2,
            ink_box,
            blank_images: 0,
        }
    }

    #[test]
    fn comparison_warns_beyond_each_limit_only() {
        let digit = InkBox { top: 4.0, left: 6.0, height: 20.0, width: 16.0 };
        let base = stats(0.1, 0.3, Some(digit));
        assert!(compare_inputs(&base, &base).is_empty());
        let quantities = |t: &InputStats| compare_inputs(&base, t).into_iter().map(|w| w.quantity).collect::<Vec<_>>();
        // Domain shift within the limits: another mean (1 std), another std (x2), a 15 % taller and
        // 40 % wider digit, centred on the same point.
        let shifted = InkBox { height: 23.0, width: 22.4, top: 2.5, left: 2.8 };
        assert!(quantities(&stats(0.4, 0.6, Some(shifted))).is_empty());
        assert_eq!(quantities(&stats(0.1, 0.3 * 255.0, Some(digit))), ["std"]);
        assert_eq!(quantities(&stats(0.1 + 2.1 * 0.3, 0.3, Some(digit))), ["mean"]);
        // USPS-like digits filling the frame: 30 % taller.
        let full = InkBox { top: 1.0, left: 3.0, height: 26.0, width: 21.0 };
        assert_eq!(quantities(&stats(0.1, 0.3, Some(full))), ["ink_box_height"]);
        let wide = InkBox { left: 2.0, width: 24.5, ..digit };
        assert_eq!(quantities(&stats(0.1, 0.3, Some(wide))), ["ink_box_width"]);
        let moved = InkBox { top: 7.0, left: 9.0, ..digit };
        assert_eq!(quantities(&stats(0.1, 0.3, Some(moved))), ["ink_centre"]);
        assert_eq!(quantities(&stats(0.1, 0.3, None)), ["ink"]);
        let mut rgb = stats(0.1, 0.3, Some(digit));
        rgb.shape = [3, 28, 28];
        let w = compare_inputs(&base, &rgb);
        assert_eq!(w[0].quantity, "shape");
        assert!(w[0].to_string().contains("[3, 28, 28]"), "{}", w[0]);
        let m = &compare_inputs(&base, &stats(0.1, 0.3, Some(full)))[0].message;
        assert!(m.contains("20.0 px") && m.contains("26.0 px") && m.contains("limit 1.2)"), "{m}");
    }
}
