//! Contact sheets: a PNG grid of samples with their labels, to eyeball a dataset.
use crate::raw::{format_err, io_err};
use crate::{ImageDataset, Result};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use std::path::Path;

/// Indices of `count` samples: a seeded random subset in ascending order (all when fewer).
pub fn pick(ds: &ImageDataset, count: usize, seed: u64) -> Vec<usize> {
    if ds.len() <= count {
        return (0..ds.len()).collect();
    }
    let mut v = sample(&mut StdRng::seed_from_u64(seed), ds.len(), count).into_vec();
    v.sort_unstable();
    v
}

/// Renders `indices` of `ds` as a grid, `cols` wide, each image scaled by an integer factor to
/// at least 64 pixels, with its label printed underneath. Pixel values are taken as `[0, 255]`;
/// preprocessed data (`[0, 1]` or mean-subtracted) is stretched to its own min..max.
pub fn grid(ds: &ImageDataset, indices: &[usize], cols: usize) -> image::RgbImage {
    let cols = cols.max(1);
    let rows = indices.len().div_ceil(cols).max(1);
    let zoom = 64usize.div_ceil(ds.height.max(ds.width).max(1)).max(1);
    let (cw, ch) = (ds.width * zoom, ds.height * zoom);
    let label_h = 16usize;
    let pad = 4usize;
    let (tw, th) = (cols * (cw + pad) + pad, rows * (ch + label_h + pad) + pad);
    let mut img = image::RgbImage::from_pixel(tw as u32, th as u32, image::Rgb([32, 32, 32]));
    let (lo, hi) = ds.pixel_range();
    let (lo, span) = if lo >= 0.0 && hi <= 255.0 && hi > 1.0 { (0.0, 255.0) } else { (lo, (hi - lo).max(1e-6)) };
    let plane = ds.height * ds.width;
    let font = FontRef::try_from_slice(dejavu::sans::bold()).expect("embedded DejaVu font parses");
    let scale = PxScale::from(14.0);
    for (k, &i) in indices.iter().enumerate() {
        let (gx, gy) = (pad + (k % cols) * (cw + pad), pad + (k / cols) * (ch + label_h + pad));
        let src = ds.image(i);
        for y in 0..ch {
            for x in 0..cw {
                let p = (y / zoom) * ds.width + x / zoom;
                let v = |c: usize| {
                    let c = if ds.channels >= 3 { c } else { 0 };
                    (((src[c * plane + p] - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8
                };
                img.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgb([v(0), v(1), v(2)]));
            }
        }
        let text = ds.labels[i].to_string();
        let scaled = font.as_scaled(scale);
        let mut pen = gx as f32 + cw as f32 / 2.0 - 4.0;
        for chr in text.chars() {
            let id = font.glyph_id(chr);
            let g = id.with_scale_and_position(scale, point(pen, (gy + ch) as f32 + scaled.ascent()));
            pen += scaled.h_advance(id);
            if let Some(o) = font.outline_glyph(g) {
                let b = o.px_bounds();
                o.draw(|x, y, c| {
                    let (px, py) = (b.min.x as i64 + x as i64, b.min.y as i64 + y as i64);
                    if px >= 0 && py >= 0 && (px as usize) < tw && (py as usize) < th {
                        let old = img.get_pixel(px as u32, py as u32).0;
                        let mix = |o: u8| (o as f32 * (1.0 - c) + 255.0 * c) as u8;
                        img.put_pixel(px as u32, py as u32, image::Rgb([mix(old[0]), mix(old[1]), mix(old[2])]));
                    }
                });
            }
        }
    }
    img
}

/// Writes a grid of `count` seeded random samples of `ds` (8 per row) to the PNG file `out`.
pub fn save_grid(ds: &ImageDataset, count: usize, seed: u64, out: &Path) -> Result<()> {
    if ds.is_empty() {
        return Err(format_err(out, format!("{} {} has no images to preview", ds.name, ds.split)));
    }
    let idx = pick(ds, count, seed);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    grid(ds, &idx, 8)
        .save_with_format(out, image::ImageFormat::Png)
        .map_err(|e| format_err(out, format!("cannot write PNG: {e}")))
}
