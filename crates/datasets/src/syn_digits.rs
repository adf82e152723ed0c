//! SynDigits: the loader reads SVHN-layout `.mat` files (`synth_train_32x32.mat`, see [`crate::svhn`]);
//! the generator renders house-number-like 32x32 RGB images the way Ganin & Lempitsky describe
//! SynNumbers: a centre digit (the label) with up to two neighbours, varying font, position,
//! scale, rotation, stroke and background colours, and blur.
//!
//! Fonts are the embedded DejaVu family (so generation works offline) plus any `.ttf`/`.otf` in an
//! optional fonts directory; glyphs are rasterised with `ab_glyph`. Image `i` uses a generator
//! seeded from `(seed, i)` alone: deterministic and parallel.
use crate::mat::{CLASS_DOUBLE, CLASS_UINT8, MatArray, MatData, write_mat};
use crate::raw::{format_err, io_err};
use crate::{DatasetError, ImageDataset, Result, Split};
use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Output side.
pub const SIZE: usize = 32;
/// Side of the canvas the digit string is rasterised on before rotation and sampling.
const CANVAS: usize = 64;

/// The embedded DejaVu faces used for rendering.
pub fn dejavu_fonts() -> Vec<FontVec> {
    [
        dejavu::sans::regular(),
        dejavu::sans::bold(),
        dejavu::sans::oblique(),
        dejavu::sans::bold_oblique(),
        dejavu::sans_condensed::regular(),
        dejavu::sans_condensed::bold(),
        dejavu::sans_mono::regular(),
        dejavu::sans_mono::bold(),
        dejavu::serif::regular(),
        dejavu::serif::bold(),
        dejavu::serif_condensed::regular(),
        dejavu::serif_condensed::bold(),
    ]
    .into_iter()
    .map(|b| FontVec::try_from_vec(b.to_vec()).expect("embedded DejaVu fonts parse"))
    .collect()
}

/// The `.ttf`/`.otf` fonts in `dir` (sorted by name); every unreadable font is an error naming it.
pub fn load_font_dir(dir: &Path) -> Result<Vec<FontVec>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "ttf" | "otf"))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| io_err(p, e))?;
            FontVec::try_from_vec(bytes).map_err(|_| format_err(p, "not a TrueType/OpenType font"))
        })
        .collect()
}

/// SynDigits generation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynDigitsConfig {
    pub count: usize,
    pub seed: u64,
}

/// Renders `cfg.count` images with the given fonts (use [`dejavu_fonts`] when in doubt).
pub fn generate(fonts: &[FontVec], cfg: &SynDigitsConfig, split: Split) -> Result<ImageDataset> {
    if fonts.is_empty() {
        return Err(DatasetError::InvalidParameters("no fonts to render SynDigits with".into()));
    }
    if cfg.count == 0 {
        return Err(DatasetError::InvalidParameters("count must be at least 1".into()));
    }
    let rendered: Vec<(Vec<u8>, u32)> = (0..cfg.count)
        .into_par_iter()
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ i as u64);
            render(fonts, &mut rng)
        })
        .collect();
    let mut px = Vec::with_capacity(cfg.count * 3 * SIZE * SIZE);
    let mut labels = Vec::with_capacity(cfg.count);
    for (img, l) in rendered {
        px.extend_from_slice(&img);
        labels.push(l);
    }
    let mut ds = ImageDataset::from_u8("syn-digits", split, &px, labels, [3, SIZE, SIZE])?;
    ds.origin = format!("generated (seed {})", cfg.seed);
    Ok(ds)
}

fn random_colour(rng: &mut StdRng) -> [f32; 3] {
    [rng.random_range(0.0..255.0), rng.random_range(0.0..255.0), rng.random_range(0.0..255.0)]
}

fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// One image, planar `[3, 32, 32]`, and its label.
fn render(fonts: &[FontVec], rng: &mut StdRng) -> (Vec<u8>, u32) {
    let font = &fonts[rng.random_range(0..fonts.len())];
    let label: u32 = rng.random_range(0..10);
    // House numbers: the centre digit, sometimes with neighbours left and/or right that are cut
    // off by the crop, as in SVHN.
    let left = rng.random_bool(0.5);
    let right = rng.random_bool(0.5);
    let mut text: Vec<char> = Vec::new();
    if left {
        text.push(char::from_digit(rng.random_range(0..10), 10).expect("digit"));
    }
    let centre = text.len();
    text.push(char::from_digit(label, 10).expect("digit"));
    if right {
        text.push(char::from_digit(rng.random_range(0..10), 10).expect("digit"));
    }
    let px = rng.random_range(18.0..30.0f32);
    let spacing = rng.random_range(-1.0..3.0f32);
    let coverage = layout(font, &text, centre, px, spacing);

    // Rotate about the centre, scale jitter, translate; sample bilinearly into 32x32.
    let angle = rng.random_range(-15.0f32..15.0).to_radians();
    let zoom = rng.random_range(0.85..1.15f32);
    let (dx, dy) = (rng.random_range(-1.5..1.5f32), rng.random_range(-1.5..1.5f32));
    let (sin, cos) = angle.sin_cos();
    let mut alpha = vec![0f32; SIZE * SIZE];
    let half = SIZE as f32 / 2.0;
    let cc = CANVAS as f32 / 2.0;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let (u, v) = ((x as f32 + 0.5 - half - dx) / zoom, (y as f32 + 0.5 - half - dy) / zoom);
            let (su, sv) = (cos * u + sin * v + cc - 0.5, -sin * u + cos * v + cc - 0.5);
            alpha[y * SIZE + x] = sample(&coverage, su, sv);
        }
    }
    let sigma = rng.random_range(0.0..1.2f32);
    if sigma > 0.3 {
        alpha = blur(&alpha, sigma);
    }

    // Colours with enough contrast to be legible, like real house numbers.
    let bg = random_colour(rng);
    let mut fg = random_colour(rng);
    for _ in 0..20 {
        if (luma(fg) - luma(bg)).abs() > 60.0 {
            break;
        }
        fg = random_colour(rng);
    }
    if (luma(fg) - luma(bg)).abs() <= 60.0 {
        fg = if luma(bg) > 127.0 { [0.0; 3] } else { [255.0; 3] };
    }
    let noise = rng.random_range(0.0..8.0f32);
    let mut img = vec![0u8; 3 * SIZE * SIZE];
    for (p, &a) in alpha.iter().enumerate() {
        for c in 0..3 {
            let v = bg[c] * (1.0 - a) + fg[c] * a + rng.random_range(-1.0..1.0f32) * noise;
            img[c * SIZE * SIZE + p] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    (img, label)
}

/// Rasterises `text` on a `CANVAS x CANVAS` coverage map with the box of glyph `centre` centred.
fn layout(font: &FontVec, text: &[char], centre: usize, px: f32, spacing: f32) -> Vec<f32> {
    let scaled = font.as_scaled(PxScale::from(px));
    // Lay out at the origin, then shift so the centre glyph's box centre is at the canvas centre.
    let mut x = 0.0;
    let mut glyphs = Vec::new();
    for &ch in text {
        let id = font.glyph_id(ch);
        glyphs.push(id.with_scale_and_position(px, point(x, scaled.ascent())));
        x += scaled.h_advance(id) + spacing;
    }
    let outlines: Vec<_> = glyphs.into_iter().map(|g| font.outline_glyph(g)).collect();
    let mut coverage = vec![0f32; CANVAS * CANVAS];
    let Some(Some(c)) = outlines.get(centre) else {
        return coverage; // DejaVu has every digit; a font directory's font may not: a blank image.
    };
    let b = c.px_bounds();
    let ox = CANVAS as f32 / 2.0 - (b.min.x + b.max.x) / 2.0;
    let oy = CANVAS as f32 / 2.0 - (b.min.y + b.max.y) / 2.0;
    for o in outlines.iter().flatten() {
        let b = o.px_bounds();
        let (bx, by) = ((b.min.x + ox).round() as i64, (b.min.y + oy).round() as i64);
        o.draw(|gx, gy, v| {
            let (cx, cy) = (bx + gx as i64, by + gy as i64);
            if (0..CANVAS as i64).contains(&cx) && (0..CANVAS as i64).contains(&cy) {
                let cell = &mut coverage[cy as usize * CANVAS + cx as usize];
                *cell = cell.max(v);
            }
        });
    }

    coverage
}

fn sample(img: &[f32], x: f32, y: f32) -> f32 {
    if x < -1.0 || y < -1.0 || x >= CANVAS as f32 || y >= CANVAS as f32 {
        return 0.0;
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| {
        if xi < 0.0 || yi < 0.0 || xi >= CANVAS as f32 || yi >= CANVAS as f32 {
            0.0
        } else {
            img[yi as usize * CANVAS + xi as usize]
        }
    };
    (at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx) * (1.0 - fy)
        + (at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx) * fy
}

/// Separable Gaussian blur of a `SIZE x SIZE` map, edges clamped.
fn blur(a: &[f32], sigma: f32) -> Vec<f32> {
    let r = (sigma * 3.0).ceil() as i64;
    let k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f32 = k.iter().sum();
    let s = SIZE as i64;
    let pass = |src: &[f32], horizontal: bool| {
        let mut out = vec![0f32; src.len()];
        for y in 0..s {
            for x in 0..s {
                let mut acc = 0.0;
                for (j, w) in k.iter().enumerate() {
                    let o = j as i64 - r;
                    let (xx, yy) = if horizontal { ((x + o).clamp(0, s - 1), y) } else { (x, (y + o).clamp(0, s - 1)) };
                    acc += w * src[(yy * s + xx) as usize];
                }
                out[(y * s + x) as usize] = acc / norm;
            }
        }
        out
    };
    pass(&pass(a, true), false)
}

/// Writes `ds` as an SVHN-layout `.mat` file (`X` uint8 `(H, W, 3, N)` column-major, `y` double
/// `(N, 1)` with 10 for the digit 0), zlib-compressed per variable as MATLAB does.
pub fn write_svhn_mat(ds: &ImageDataset, path: &Path) -> Result<()> {
    if ds.channels != 3 {
        return Err(DatasetError::InvalidParameters(format!("{}: SVHN layout holds RGB images", ds.name)));
    }
    let (h, w, n) = (ds.height, ds.width, ds.len());
    let plane = h * w;
    let mut x = vec![0u8; n * 3 * plane];
    for p in 0..n * 3 {
        for row in 0..h {
            for col in 0..w {
                x[p * plane + col * h + row] = ds.images[p * plane + row * w + col].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let y: Vec<f64> = ds.labels.iter().map(|&l| if l == 0 { 10.0 } else { l as f64 }).collect();
    let arrays = [
        MatArray { name: "X".into(), class: CLASS_UINT8, dims: vec![h, w, 3, n], data: MatData::U8(x) },
        MatArray { name: "y".into(), class: CLASS_DOUBLE, dims: vec![n, 1], data: MatData::F64(y) },
    ];
    write_mat(path, &arrays, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_digit_is_centred() {
        let fonts = dejavu_fonts();
        for (f, font) in fonts.iter().enumerate() {
            for d in ['1', '4', '7'] {
                let text = ['8', d, '8'];
                let solo = layout(font, &text[1..2], 0, 24.0, 1.0);
                let trio = layout(font, &text, 1, 24.0, 1.0);
                let centroid = |m: &[f32]| {
                    let (mut sx, mut sy, mut w) = (0.0, 0.0, 0.0);
                    for (i, v) in m.iter().enumerate() {
                        sx += (i % CANVAS) as f32 * v;
                        sy += (i / CANVAS) as f32 * v;
                        w += v;
                    }
                    (sx / w, sy / w)
                };
                let (cx, cy) = centroid(&solo);
                // The box is centred; ink centroids of top-heavy glyphs (7) sit a little higher.
                assert!(
                    (cx - 31.5).abs() < 2.5 && (cy - 31.5).abs() < 4.0,
                    "font {f} digit {d}: centroid ({cx}, {cy})"
                );
                // With neighbours, the middle columns hold the same glyph.
                let band =
                    |m: &[f32]| (0..CANVAS).map(|y| (26..38).map(|x| m[y * CANVAS + x]).sum::<f32>()).sum::<f32>();
                assert!(band(&trio) >= band(&solo) * 0.95, "font {f} digit {d}");
            }
        }
    }

    #[test]
    fn deterministic_varied_and_loadable() {
        let fonts = dejavu_fonts();
        let cfg = SynDigitsConfig { count: 40, seed: 5 };
        let a = generate(&fonts, &cfg, Split::Train).unwrap();
        assert_eq!(a, generate(&fonts, &cfg, Split::Train).unwrap());
        assert_ne!(a.images, generate(&fonts, &SynDigitsConfig { seed: 6, ..cfg }, Split::Train).unwrap().images);
        assert_eq!(a.shape(), [40, 3, 32, 32]);
        assert!(a.label_histogram(10).iter().filter(|c| **c > 0).count() >= 8, "labels vary");
        // Every image has visible structure: the digit differs from the background.
        for i in 0..a.len() {
            let img = a.image(i);
            let (lo, hi) = img.iter().fold((255f32, 0f32), |(l, h), v| (l.min(*v), h.max(*v)));
            assert!(hi - lo > 40.0, "image {i} is flat");
        }
        let dir = std::env::temp_dir().join(format!("adapt-syn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("synth_train_32x32.mat");
        write_svhn_mat(&a, &p).unwrap();
        let back = crate::svhn::load_mat(&p, Split::Train).unwrap();
        assert_eq!(back.images, a.images);
        assert_eq!(back.labels, a.labels);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
