//! Headers, the stored size and channel count they decide, and decoding into one buffer.
use super::scan::{ScannedImage, SourceScan, with_line};
use super::{FolderOptions, ImageSource, source_name, split_of};
use crate::raw::format_err;
use crate::{DatasetError, ImageDataset, Result};
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// What an image's header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub colour: bool,
    pub alpha: bool,
    pub deep: bool,
}

fn open(path: &Path) -> std::result::Result<ImageReader<std::io::BufReader<std::fs::File>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // The format from the content alone, not the extension: a JPEG named `.png` loads, and a
    // text file named `.png` is reported as what it is.
    let reader = ImageReader::new(std::io::BufReader::new(file));
    let reader = reader.with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err(format!(
            "not an image of a supported format ({}): unrecognised content",
            super::IMAGE_EXTENSIONS.join(", ")
        ));
    }
    Ok(reader)
}

/// Reads the header of the image file at `path` (a regular file): its size (refused when 0 or
/// over `max_pixels`) and colour type. The problem in words on failure.
pub(crate) fn read_header(path: &Path, max_pixels: u64) -> std::result::Result<Header, String> {
    let decoder = open(path)?.into_decoder().map_err(|e| format!("cannot read the image header: {e}"))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(format!("image of 0 pixels ({width}x{height})"));
    }
    if pixels > max_pixels {
        return Err(format!(
            "image of {width}x{height} = {pixels} pixels, more than the limit of {max_pixels} (FolderOptions::max_pixels)"
        ));
    }
    let ct = decoder.color_type();
    let grey = matches!(ct, ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16);
    Ok(Header {
        width,
        height,
        colour: !grey,
        alpha: ct.has_alpha(),
        deep: ct.bytes_per_pixel() / ct.channel_count() > 1,
    })
}

/// The stored shape of a set of images and what it takes to get there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The most frequent size, before the `max_side` limit.
    pub common: (usize, usize),
    /// Each size found and how many images have it, most frequent first.
    pub sizes: Vec<((usize, usize), usize)>,
}

/// Stored size: the most frequent (height, width), ties to the larger area (then the larger
/// height), scaled down so that its longest side is at most `max_side`. Channels: 3 when any
/// image is colour, else 1.
pub(crate) fn plan<'a>(images: impl Iterator<Item = &'a ScannedImage> + Clone, max_side: usize) -> Plan {
    let mut counts: HashMap<(usize, usize), usize> = HashMap::new();
    let mut colour = false;
    for im in images {
        *counts.entry((im.height as usize, im.width as usize)).or_default() += 1;
        colour |= im.colour;
    }
    let mut sizes: Vec<((usize, usize), usize)> = counts.into_iter().collect();
    sizes.sort_by(|(a, na), (b, nb)| nb.cmp(na).then((b.0 * b.1).cmp(&(a.0 * a.1))).then(b.cmp(a)));
    let common = sizes.first().map_or((1, 1), |s| s.0);
    let (mut height, mut width) = common;
    let longest = height.max(width);
    if longest > max_side {
        let scale =
            |side: usize| ((side as f64 * max_side as f64 / longest as f64).round() as usize).clamp(1, max_side);
        (height, width) = (scale(height), scale(width));
    }
    Plan { channels: if colour { 3 } else { 1 }, height, width, common, sizes }
}

/// The conversions `plan` implies for these images, in words with counts.
fn describe<'a>(plan: &Plan, images: impl Iterator<Item = &'a ScannedImage>, max_side: usize) -> Vec<String> {
    let (mut n, mut grey, mut alpha, mut deep) = (0, 0, 0, 0);
    for im in images {
        n += 1;
        grey += usize::from(!im.colour);
        alpha += usize::from(im.alpha);
        deep += usize::from(im.deep);
    }
    let mut out = Vec::new();
    let (ch, cw) = plan.common;
    let others: usize = plan.sizes.iter().skip(1).map(|s| s.1).sum();
    if others > 0 {
        let mut found: Vec<String> = plan.sizes.iter().take(5).map(|((h, w), k)| format!("{h}x{w}: {k}")).collect();
        if plan.sizes.len() > 5 {
            found.push(format!("{} more sizes", plan.sizes.len() - 5));
        }
        out.push(format!(
            "{others} of {n} images resized bilinearly to {ch}x{cw} (height x width), the most frequent size \
             (sizes found: {})",
            found.join(", ")
        ));
    }
    if (plan.height, plan.width) != plan.common {
        out.push(format!(
            "all {n} images resized bilinearly (antialiased) from {ch}x{cw} down to {}x{} (longest side limited to {max_side})",
            plan.height, plan.width
        ));
    }
    if plan.channels == 3 && grey > 0 {
        out.push(format!("{grey} grey images replicated to 3 channels (the other {} are colour)", n - grey));
    }
    if alpha > 0 {
        out.push(format!("alpha channel dropped from {alpha} images"));
    }
    if deep > 0 {
        out.push(format!("{deep} images of more than 8 bits per sample scaled to 8 bits"));
    }
    out
}

/// Decodes every scanned image into one preallocated buffer per split.
pub(crate) fn load_scanned(scan: SourceScan, opts: &FolderOptions) -> Result<ImageSource> {
    let plan = plan(scan.images(), opts.max_side);
    let mut conversions = scan.notes.clone();
    conversions.extend(describe(&plan, scan.images(), opts.max_side));
    let is_file = scan.root != scan.base;
    let name = source_name(&scan.root, is_file);
    let origin = scan.root.display().to_string();
    let decode_split = |images: &[ScannedImage], test: bool| -> Result<ImageDataset> {
        let per = plan.channels * plan.height * plan.width;
        let total = per.checked_mul(images.len()).filter(|t| t.checked_mul(4).is_some()).ok_or_else(|| {
            format_err(&scan.root, format!("{} images of {per} values do not fit in memory", images.len()))
        })?;
        // Refused as an error, not an abort, when the memory cannot be had.
        let mut pixels: Vec<f32> = Vec::new();
        pixels.try_reserve_exact(total).map_err(|_| {
            format_err(
                &scan.root,
                format!(
                    "{} images of {}x{}x{} need {:.1} GB as f32, more than can be allocated",
                    images.len(),
                    plan.channels,
                    plan.height,
                    plan.width,
                    total as f64 * 4e-9
                ),
            )
        })?;
        pixels.resize(total, 0.0);
        // The first failure in load order, so the error does not depend on scheduling.
        let failure = pixels
            .par_chunks_mut(per.max(1))
            .zip(images.par_iter())
            .enumerate()
            .filter_map(|(i, (out, im))| decode_into(&scan, im, &plan, opts.max_pixels, out).err().map(|e| (i, e)))
            .min_by_key(|(i, _)| *i);
        if let Some((_, e)) = failure {
            return Err(e);
        }
        Ok(ImageDataset {
            name: name.clone(),
            split: split_of(test),
            images: pixels,
            labels: images.iter().map(|im| im.label).collect(),
            channels: plan.channels,
            height: plan.height,
            width: plan.width,
            origin: origin.clone(),
            partial: None,
        })
    };
    let train = decode_split(&scan.train, false)?;
    let test = scan.test.as_deref().map(|t| decode_split(t, true)).transpose()?;
    Ok(ImageSource {
        train_paths: scan.train.iter().map(|im| im.path.clone()).collect(),
        test_paths: scan.test.iter().flatten().map(|im| im.path.clone()).collect(),
        root: scan.root,
        layout: scan.layout,
        classes: scan.classes,
        labelled: scan.labelled,
        train,
        test,
        conversions,
    })
}

/// Decodes one image into `out` (`[C, H, W]` of the plan), converting channels and bit depth
/// and resizing as the plan says.
fn decode_into(scan: &SourceScan, im: &ScannedImage, plan: &Plan, max_pixels: u64, out: &mut [f32]) -> Result<()> {
    let path = scan.base.join(&im.path);
    let fail = |problem: String| -> DatasetError { format_err(&path, with_line(problem, im.line, &scan.root)) };
    let mut reader = open(&path).map_err(fail)?;
    let mut limits = image::Limits::default();
    // Decoders allocate the image at up to 16 bytes a pixel (RGBA 32-bit float) plus their own
    // buffers; the header check already bounds the pixel count.
    limits.max_alloc =
        Some(max_pixels.min(u64::from(im.width) * u64::from(im.height)).saturating_mul(32).max(64 << 20));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| fail(format!("cannot decode the image: {e}")))?;
    if (img.width(), img.height()) != (im.width, im.height) {
        return Err(fail(format!(
            "image is {}x{} now, its header said {}x{} when scanned (the file changed)",
            img.width(),
            img.height(),
            im.width,
            im.height
        )));
    }
    let (h, w) = (im.height as usize, im.width as usize);
    let planar = planar_u8(img, plan.channels);
    if (h, w) == (plan.height, plan.width) {
        for (o, &p) in out.iter_mut().zip(&planar) {
            *o = f32::from(p);
        }
        return Ok(());
    }
    let src: Vec<f32> = planar.iter().map(|&p| f32::from(p)).collect();
    let (rows, cols) = (weights(h, plan.height), weights(w, plan.width));
    let mut tmp = vec![0f32; h * plan.width];
    for c in 0..plan.channels {
        resize_plane(
            &src[c * h * w..(c + 1) * h * w],
            w,
            &rows,
            &cols,
            &mut tmp,
            &mut out[c * plan.height * plan.width..][..plan.height * plan.width],
        );
    }
    Ok(())
}

/// `[C, H, W]` 8-bit samples: grey (alpha dropped, deeper samples scaled) for `channels` 1, RGB
/// (grey replicated) for 3.
fn planar_u8(img: DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        return img.into_luma8().into_raw();
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgb = img.into_rgb8().into_raw();
    crate::raw::hwc_to_chw(&rgb, h, w, 3)
}

/// For each output index of a `src` -> `dst` resize: the first source index and the normalised
/// weights of the source samples from there on. A triangle (bilinear) filter at pixel centres:
/// exactly bilinear interpolation when enlarging; when shrinking the filter is widened by the
/// factor so that every source pixel contributes (antialiasing, as PIL's bilinear resize does).
fn weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(src);
            let mut ws: Vec<f64> =
                (lo..hi).map(|i| (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0)).collect();
            let sum: f64 = ws.iter().sum();
            if sum <= 0.0 {
                // Cannot happen for a positive support (the nearest sample is within half a pixel),
                // but a sample must never be lost to rounding: take the nearest one.
                return ((centre.floor() as usize).min(src - 1), vec![1.0]);
            }
            ws.iter_mut().for_each(|v| *v /= sum);
            (lo, ws.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Resizes one plane `src` (`rows.len()` source rows of `sw` samples) separably: each row to the
/// output width into `tmp`, then each output column over the rows into `out`.
fn resize_plane(
    src: &[f32],
    sw: usize,
    rows: &[(usize, Vec<f32>)],
    cols: &[(usize, Vec<f32>)],
    tmp: &mut [f32],
    out: &mut [f32],
) {
    let (dh, dw) = (rows.len(), cols.len());
    let sh = src.len() / sw;
    for y in 0..sh {
        let row = &src[y * sw..(y + 1) * sw];
        for (x, (start, ws)) in cols.iter().enumerate() {
            tmp[y * dw + x] = ws.iter().zip(&row[*start..]).map(|(w, v)| w * v).sum();
        }
    }
    for (y, (start, ws)) in rows.iter().enumerate() {
        for x in 0..dw {
            out[y * dw + x] = ws.iter().enumerate().map(|(k, w)| w * tmp[(start + k) * dw + x]).sum();
        }
    }
    debug_assert_eq!(out.len(), dh * dw);
}
