//! Fixture writers for the loader tests, written from the format descriptions (not with the
//! crate's own writers), so that a misreading of a format in the crate does not cancel out.
#![allow(dead_code)]
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh, empty temporary folder unique to this test.
pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-ds-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// IDX bytes: 00 00 08 ndims, big-endian u32 dims, data.
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// Deterministic "digit" pixels: image i, pixel p.
pub fn pixel(i: usize, p: usize) -> u8 {
    ((i * 31 + p * 7) % 256) as u8
}

/// Writes MNIST IDX files for `n` train and `n` test images of `side x side`.
pub fn write_mnist(dir: &Path, n: usize, side: usize, gz: bool) -> Vec<u32> {
    std::fs::create_dir_all(dir).unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 3) % 10).collect();
    for prefix in ["train", "t10k"] {
        let px: Vec<u8> = (0..n).flat_map(|i| (0..side * side).map(move |p| pixel(i, p))).collect();
        let img = idx(&[n as u32, side as u32, side as u32], &px);
        let lab = idx(&[n as u32], &labels.iter().map(|&l| l as u8).collect::<Vec<_>>());
        let (ib, lb, ext) = if gz { (gzip(&img), gzip(&lab), ".gz") } else { (img, lab, "") };
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), ib).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lb).unwrap();
    }
    labels
}

/// PNG bytes of an RGB (`c` = 3, interleaved) or grey (`c` = 1) image.
pub fn png(w: u32, h: u32, c: usize, px: Vec<u8>) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if c == 3 {
        image::RgbImage::from_raw(w, h, px).unwrap().write_to(&mut out, image::ImageFormat::Png).unwrap();
    } else {
        image::GrayImage::from_raw(w, h, px).unwrap().write_to(&mut out, image::ImageFormat::Png).unwrap();
    }
    out.into_inner()
}

/// Interleaved RGB pixel (x, y, c) of colour image i.
pub fn rgb(i: usize, x: usize, y: usize, c: usize) -> u8 {
    ((i * 13 + x * 5 + y * 11 + c * 80) % 256) as u8
}

/// A Ganin-layout MNIST-M split with `listed` label lines of which the first `present` PNGs exist.
pub fn write_ganin(dir: &Path, split: &str, listed: usize, present: usize) -> Vec<u32> {
    let img_dir = dir.join(format!("mnist_m_{split}"));
    std::fs::create_dir_all(&img_dir).unwrap();
    let labels: Vec<u32> = (0..listed as u32).map(|i| (i * 7) % 10).collect();
    let mut text = String::new();
    for (i, l) in labels.iter().enumerate() {
        text.push_str(&format!("{i:08}.png {l}\n"));
        if i < present {
            let px: Vec<u8> = (0..32 * 32 * 3).map(|k| rgb(i, (k / 3) % 32, k / 96, k % 3)).collect();
            std::fs::write(img_dir.join(format!("{i:08}.png")), png(32, 32, 3, px)).unwrap();
        }
    }
    std::fs::write(dir.join(format!("mnist_m_{split}_labels.txt")), text).unwrap();
    labels
}

// ---- MATLAB v5, as described by "MAT-File Format" (MathWorks), little-endian ----

fn pad8(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
}

/// A data element: 8-byte tag (type, byte count) + data padded to 8, or the 4-byte small form.
fn element(ty: u32, data: &[u8], small_ok: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if small_ok && data.len() <= 4 {
        b.extend_from_slice(&((data.len() as u32) << 16 | ty).to_le_bytes());
        b.extend_from_slice(data);
    } else {
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
    }
    pad8(&mut b);
    b
}

/// A variable's stored values: the mi type and bytes.
pub enum MatValues {
    U8(Vec<u8>),
    F64(Vec<f64>),
    /// Doubles stored compactly as miUINT8, as MATLAB does when the values fit.
    F64AsU8(Vec<u8>),
}

/// An miMATRIX element for a numeric variable.
pub fn mat_matrix(name: &str, dims: &[u32], values: &MatValues) -> Vec<u8> {
    let (class, ty, data): (u32, u32, Vec<u8>) = match values {
        MatValues::U8(v) => (9, 2, v.clone()),
        MatValues::F64(v) => (6, 9, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        MatValues::F64AsU8(v) => (6, 2, v.clone()),
    };
    let mut body = Vec::new();
    let mut flags = class.to_le_bytes().to_vec();
    flags.extend_from_slice(&[0; 4]);
    body.extend(element(6, &flags, false));
    body.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>(), false));
    body.extend(element(1, name.as_bytes(), true));
    body.extend(element(ty, &data, false));
    let mut m = 14u32.to_le_bytes().to_vec();
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend(body);
    m
}

/// A whole .mat file of the given variables; `compress` wraps each in an miCOMPRESSED element.
pub fn mat_file(vars: &[Vec<u8>], compress: bool) -> Vec<u8> {
    let mut b = b"MATLAB 5.0 MAT-file, Platform: test fixture".to_vec();
    b.resize(116, b' ');
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&0x0100u16.to_le_bytes());
    b.extend_from_slice(b"IM");
    for v in vars {
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(v).unwrap();
            let z = z.finish().unwrap();
            b.extend_from_slice(&15u32.to_le_bytes());
            b.extend_from_slice(&(z.len() as u32).to_le_bytes());
            b.extend(z);
        } else {
            b.extend_from_slice(v);
        }
    }
    b
}

/// SVHN pixel value of image i at (row, col, channel).
pub fn svhn_px(i: usize, r: usize, c: usize, ch: usize) -> u8 {
    ((i * 17 + r * 3 + c * 29 + ch * 101) % 256) as u8
}

/// An SVHN-layout .mat: X uint8 (H, W, 3, N) column-major, y (N, 1) digits with 10 for 0.
pub fn svhn_mat(n: usize, h: usize, w: usize, labels: &[u32], compress: bool, y_as_u8: bool) -> Vec<u8> {
    let mut x = vec![0u8; h * w * 3 * n];
    for i in 0..n {
        for ch in 0..3 {
            for c in 0..w {
                for r in 0..h {
                    x[r + h * (c + w * (ch + 3 * i))] = svhn_px(i, r, c, ch);
                }
            }
        }
    }
    let y: Vec<u32> = labels.iter().map(|&l| if l == 0 { 10 } else { l }).collect();
    let yv = if y_as_u8 {
        MatValues::F64AsU8(y.iter().map(|&v| v as u8).collect())
    } else {
        MatValues::F64(y.iter().map(|&v| v as f64).collect())
    };
    let vars =
        [mat_matrix("X", &[h as u32, w as u32, 3, n as u32], &MatValues::U8(x)), mat_matrix("y", &[n as u32, 1], &yv)];
    mat_file(&vars, compress)
}

/// ESL USPS text: `label v1 ... v256` per line, labels written as floats.
pub fn esl_text(n: usize) -> (String, Vec<u32>) {
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 3 + 1) % 10).collect();
    let mut s = String::new();
    for (i, l) in labels.iter().enumerate() {
        s.push_str(&format!("{l}.0000"));
        for p in 0..256 {
            s.push_str(&format!(" {:.4}", esl_value(i, p)));
        }
        s.push_str(" \n");
    }
    (s, labels)
}

/// Grey value in [-1, 1] of USPS image i, pixel p (exact in 4 decimals).
pub fn esl_value(i: usize, p: usize) -> f32 {
    [-1.0, -0.5, 0.0, 0.5, 1.0][(i + p) % 5]
}

// ---- parquet in the Hub layout: image {bytes, path}, label int64 ----

/// Writes a Hub-layout parquet file with the given encoded images and labels.
#[cfg(feature = "hub")]
pub fn write_hub_parquet(path: &Path, images: &[Vec<u8>], labels: &[i64]) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message schema {
            optional group image { optional binary bytes; optional binary path (STRING); }
            optional int64 label;
        }",
    )
    .unwrap();
    let props = WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, std::sync::Arc::new(schema), std::sync::Arc::new(props)).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let n = images.len();
    // Leaf columns in schema order: image.bytes, image.path, label. Both levels optional: def 2 = set.
    let bytes: Vec<ByteArray> = images.iter().map(|b| ByteArray::from(b.clone())).collect();
    let paths: Vec<ByteArray> = (0..n).map(|i| ByteArray::from(format!("{i}.png").as_str())).collect();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>().write_batch(&bytes, Some(&vec![2; n]), None).unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>().write_batch(&paths, Some(&vec![2; n]), None).unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<Int64Type>().write_batch(labels, Some(&vec![1; n]), None).unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
}

/// Grey 28x28 PNG digits for a parquet fixture.
pub fn grey_pngs(n: usize, side: u32) -> Vec<Vec<u8>> {
    (0..n).map(|i| png(side, side, 1, (0..(side * side) as usize).map(|p| pixel(i, p)).collect())).collect()
}

/// The real data folder of `ADAPT_DATA_DIR` when it holds every dataset folder named in
/// `datasets` (`mnist`, `mnist_m`, `usps`, `bsds500`, ...). Otherwise the test has nothing to run
/// on: it prints "skipped: ..." and gets `None`, or, with `ADAPT_REQUIRE_DATA=1` (as CI sets it),
/// panics naming the folder it looked in, so that a broken data path cannot pass as a skip.
pub fn real_data(datasets: &[&str]) -> Option<PathBuf> {
    match find_real_data(std::env::var_os("ADAPT_DATA_DIR"), datasets) {
        Ok(dir) => Some(dir),
        Err(why) if data_required() => panic!("ADAPT_REQUIRE_DATA is set, but {why}"),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// The decision of [`real_data`] for a given `ADAPT_DATA_DIR` value: the folder, or why there is
/// no data, naming the folder looked in.
pub fn find_real_data(dir: Option<std::ffi::OsString>, datasets: &[&str]) -> Result<PathBuf, String> {
    let Some(dir) = dir.filter(|d| !d.is_empty()).map(PathBuf::from) else {
        return Err("no data: ADAPT_DATA_DIR is not set".into());
    };
    if !dir.is_dir() {
        return Err(format!("no data: ADAPT_DATA_DIR {} is not a folder", dir.display()));
    }
    match datasets.iter().map(|name| dir.join(name)).find(|folder| !folder.is_dir()) {
        Some(folder) => Err(format!("no data: {} is not a folder", folder.display())),
        None => Ok(dir),
    }
}

/// Whether `ADAPT_REQUIRE_DATA` asks for missing data to fail (any value but empty and `0`).
fn data_required() -> bool {
    std::env::var_os("ADAPT_REQUIRE_DATA").is_some_and(|v| !v.is_empty() && v != "0")
}
