//! The loader targets: MNIST's IDX files, SVHN/SynDigits `.mat`, MNIST-M's PNG folder and label
//! list, USPS's ESL text and Hub-layout parquet. Each case writes a small valid dataset (a few
//! images of a few pixels, written here from the format descriptions, not with the crate's own
//! writers), applies one corruption, and loads it through [`crate::registry::load_local`].
//!
//! Corruptions that a format cannot detect by design are not generated: a changed pixel value
//! in an uncompressed file is a different valid file (the compressed containers, gzip, zlib and
//! PNG, carry checksums, and their bytes are flipped anywhere).
use super::mutate::{self, Kind};
use super::{Case, Rng, Target, dataset_fingerprint};
use crate::registry::{DatasetId, load_local};
use crate::{ImageDataset, Partial, Split};
use rand::Rng as _;
use std::path::Path;
use std::sync::OnceLock;

fn load_fp(id: DatasetId, dir: &Path) -> Result<u64, String> {
    load_local(id, Split::Train, &dir.join(id.folder())).map(|ds| dataset_fingerprint(&ds)).map_err(|e| e.to_string())
}

fn expected(name: &str, px: &[u8], labels: &[u32], shape: [usize; 3], partial: Option<Partial>) -> u64 {
    let mut ds = ImageDataset::from_u8(name, Split::Train, px, labels.to_vec(), shape).expect("fixture sizes agree");
    ds.partial = partial;
    dataset_fingerprint(&ds)
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = std::fs::write(path, bytes);
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

// ---------------------------------------------------------------------------------------------
// IDX

/// MNIST's IDX image and label files, plain or gzipped.
pub struct Idx;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

impl Target for Idx {
    fn name(&self) -> &'static str {
        "idx"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let folder = dir.join("mnist");
        let (n, h, w) = (rng.random_range(1..=4usize), rng.random_range(1..=6usize), rng.random_range(1..=6usize));
        let px = mutate::garbage(rng, n * h * w);
        let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let mut expect = Some(expected("mnist", &px, &labels32, [1, h, w], None));
        let mut img = idx_bytes(&[n as u32, h as u32, w as u32], &px);
        let mut lab = idx_bytes(&[n as u32], &labels);
        let (gz_img, gz_lab) = (rng.random_bool(0.5), rng.random_bool(0.5));
        let file = |kind: &str, gz: bool| {
            format!("train-{kind}-idx{}-ubyte{}", if kind == "images" { 3 } else { 1 }, if gz { ".gz" } else { "" })
        };
        let (img_name, lab_name) = (file("images", gz_img), file("labels", gz_lab));
        let names = vec![img_name.clone(), lab_name.clone()];
        let on_images = rng.random_bool(0.5);
        let (chosen, gz) = if on_images { (img_name.clone(), gz_img) } else { (lab_name.clone(), gz_lab) };
        let op = rng.random_range(0..13);
        let mut what = String::new();
        {
            let plain = if on_images { &mut img } else { &mut lab };
            let header = 4 + 4 * plain[3] as usize;
            match op {
                2 => {
                    let k = mutate::flip(rng, plain, 0..header);
                    what = format!("{chosen}: header byte {k} changed");
                }
                3 => {
                    let d = rng.random_range(0..plain[3] as usize);
                    let at = 4 + 4 * d;
                    let old = u32::from_be_bytes(plain[at..at + 4].try_into().expect("4 bytes")) as u64;
                    let mut v = mutate::size_values(rng, old) as u32;
                    if v as u64 == old {
                        v = v.wrapping_add(7);
                    }
                    plain[at..at + 4].copy_from_slice(&v.to_be_bytes());
                    what = format!("{chosen}: dimension {d} set to {v}");
                }
                4 => {
                    plain[2] = pick(rng, &[0x00, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0xff]);
                    what = format!("{chosen}: element type 0x{:02x}", plain[2]);
                }
                _ => {}
            }
        }
        if op == 5 {
            let i = rng.random_range(0..n);
            lab[8 + i] = rng.random_range(10..=255);
            what = format!("{lab_name}: label {i} set to {}", lab[8 + i]);
        }
        if op == 6 {
            let m = if n > 1 && rng.random_bool(0.5) { n - 1 } else { n + 1 };
            let more: Vec<u8> = (0..m).map(|i| labels.get(i).copied().unwrap_or(3)).collect();
            lab = idx_bytes(&[m as u32], &more);
            what = format!("{lab_name}: {m} labels for {n} images");
        }
        if op == 11 {
            std::mem::swap(&mut img, &mut lab);
            what = "images and labels files swapped".into();
        }
        let encode = |b: &[u8], gz: bool| if gz { mutate::gzip(b) } else { b.to_vec() };
        let mut img_file = encode(&img, gz_img);
        let mut lab_file = encode(&lab, gz_lab);
        let raw = if on_images { &mut img_file } else { &mut lab_file };
        match op {
            0 => {
                let (t, k) = mutate::truncate(rng, raw);
                *raw = t;
                what = format!("{chosen} truncated at byte {k}");
            }
            1 => {
                let len = rng.random_range(1..=16);
                let extra = mutate::garbage(rng, len);
                raw.extend(extra);
                what = format!("{chosen}: trailing garbage");
            }
            // Any byte of gzip data (its CRC covers the content); only the header of a plain file,
            // where a changed pixel would be another valid file.
            7 => {
                let end = if gz { usize::MAX } else { 4 + 4 * raw[3] as usize };
                let k = mutate::flip(rng, raw, 0..end);
                what = format!("{chosen}: byte {k} of the file flipped");
            }
            8 => {
                *raw = mutate::gzip(raw);
                what = format!("{chosen}: gzipped {}", if gz { "twice" } else { "(content-detected)" });
            }
            _ => {}
        }
        write(&folder.join(&img_name), &img_file);
        write(&folder.join(&lab_name), &lab_file);
        let path = folder.join(&chosen);
        match op {
            9 => {
                let kind = Kind::pick(rng);
                let original = std::fs::read(&path).unwrap_or_default();
                what = mutate::replace_with(&path, kind, &original);
                if kind != Kind::LinkToCopy {
                    expect = None;
                }
            }
            10 => {
                let twin = if gz { chosen.trim_end_matches(".gz").to_string() } else { format!("{chosen}.gz") };
                let same = std::fs::read(&path).unwrap_or_default();
                let bytes = if rng.random_bool(0.5) { same } else { encode(&idx_bytes(&[1, 1, 1], &[0]), !gz) };
                write(&folder.join(&twin), &bytes);
                what = format!("{chosen} also present as {twin}");
                expect = None;
            }
            12 => what = "valid files".into(),
            _ => {}
        }
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        load_fp(DatasetId::Mnist, dir)
    }
}

// ---------------------------------------------------------------------------------------------
// MATLAB v5

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_DOUBLE: u32 = 9;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

#[derive(Clone)]
struct MatVar {
    name: String,
    class: u32,
    dims: Vec<u32>,
    ty: u32,
    data: Vec<u8>,
}

fn u32_of(v: u32, be: bool) -> [u8; 4] {
    if be { v.to_be_bytes() } else { v.to_le_bytes() }
}

/// An miMATRIX element and the offsets at which its tags start: matrix, flags, dimensions, name,
/// data (each sub-element's data follows its tag, 8 bytes on, or 4 for the name's small form).
fn matrix(v: &MatVar, be: bool) -> (Vec<u8>, [usize; 5]) {
    let mut body = Vec::new();
    let mut tags = [0usize; 5];
    let sub = |body: &mut Vec<u8>, ty: u32, data: &[u8], small_ok: bool| -> usize {
        let at = body.len() + 8;
        if small_ok && data.len() <= 4 {
            body.extend_from_slice(&u32_of((data.len() as u32) << 16 | ty, be));
            body.extend_from_slice(data);
            body.resize(body.len().div_ceil(8) * 8, 0);
        } else {
            body.extend_from_slice(&u32_of(ty, be));
            body.extend_from_slice(&u32_of(data.len() as u32, be));
            body.extend_from_slice(data);
            body.resize(body.len().div_ceil(8) * 8, 0);
        }
        at
    };
    let mut flags = u32_of(v.class, be).to_vec();
    flags.extend_from_slice(&[0; 4]);
    tags[1] = sub(&mut body, MI_UINT32, &flags, false);
    let dims: Vec<u8> = v.dims.iter().flat_map(|&d| u32_of(d, be)).collect();
    tags[2] = sub(&mut body, MI_INT32, &dims, false);
    tags[3] = sub(&mut body, MI_INT8, v.name.as_bytes(), true);
    tags[4] = sub(&mut body, v.ty, &v.data, false);
    let mut m = u32_of(MI_MATRIX, be).to_vec();
    m.extend_from_slice(&u32_of(body.len() as u32, be));
    m.extend(body);
    (m, tags)
}

fn mat_header(be: bool, text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.resize(116, b' ');
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&if be { 0x0100u16.to_be_bytes() } else { 0x0100u16.to_le_bytes() });
    b.extend_from_slice(if be { b"MI" } else { b"IM" });
    b
}

fn mat_file(elements: &[Vec<u8>], compress: bool, be: bool) -> Vec<u8> {
    let mut b = mat_header(be, "MATLAB 5.0 MAT-file, Platform: fuzz fixture");
    for e in elements {
        if compress {
            let z = mutate::zlib(e);
            b.extend_from_slice(&u32_of(MI_COMPRESSED, be));
            b.extend_from_slice(&u32_of(z.len() as u32, be));
            b.extend(z);
        } else {
            b.extend_from_slice(e);
        }
    }
    b
}

/// SVHN's `.mat` layout: `X` uint8 (H, W, 3, N) column-major, `y` (N, 1) with 10 for the digit 0.
#[derive(Default)]
pub struct Mat {
    bombs: OnceLock<[Vec<u8>; 2]>,
}

impl Mat {
    /// Two zlib bombs, made once: a 2x2x3x1 matrix whose element claims (and inflates to) 64 MB,
    /// and an element claiming 4 GB in a few bytes.
    fn bombs(&self) -> &[Vec<u8>; 2] {
        self.bombs.get_or_init(|| {
            let x = MatVar { name: "X".into(), class: 9, dims: vec![2, 2, 3, 1], ty: MI_UINT8, data: vec![1; 12] };
            let (m, _) = matrix(&x, false);
            let mut header = m[..m.len() - 16].to_vec();
            header[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
            let wrap = |z: Vec<u8>| {
                let mut b = mat_header(false, "MATLAB 5.0 MAT-file, Platform: bomb");
                b.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
                b.extend_from_slice(&(z.len() as u32).to_le_bytes());
                b.extend(z);
                b
            };
            let mut claim = MI_MATRIX.to_le_bytes().to_vec();
            claim.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
            [wrap(mutate::bomb(&header, 64 << 20, false)), wrap(mutate::zlib(&claim))]
        })
    }
}

impl Target for Mat {
    fn name(&self) -> &'static str {
        "mat"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let file = "train_32x32.mat";
        let path = dir.join("svhn").join(file);
        let names = vec![file.to_string()];
        let (n, h, w) = (rng.random_range(1..=3usize), rng.random_range(1..=4usize), rng.random_range(1..=4usize));
        let planar = mutate::garbage(rng, n * 3 * h * w);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let mut x = vec![0u8; planar.len()];
        for i in 0..n {
            for ch in 0..3 {
                for r in 0..h {
                    for c in 0..w {
                        x[r + h * (c + w * (ch + 3 * i))] = planar[((i * 3 + ch) * h + r) * w + c];
                    }
                }
            }
        }
        let mut expect = Some(expected("svhn", &planar, &labels, [3, h, w], None));
        let y: Vec<f64> = labels.iter().map(|&l| if l == 0 { 10.0 } else { l as f64 }).collect();
        let y_u8 = rng.random_bool(0.5);
        let y_var = |y: &[f64]| MatVar {
            name: "y".into(),
            class: 6,
            dims: vec![y.len() as u32, 1],
            ty: if y_u8 { MI_UINT8 } else { MI_DOUBLE },
            data: if y_u8 {
                y.iter().map(|&v| v as u8).collect()
            } else {
                y.iter().flat_map(|v| v.to_le_bytes()).collect()
            },
        };
        let mut xv =
            MatVar { name: "X".into(), class: 9, dims: vec![h as u32, w as u32, 3, n as u32], ty: MI_UINT8, data: x };
        let mut yv = y_var(&y);
        let op = rng.random_range(0..18);
        // Flipped bytes anywhere are detectable in the zlib streams only.
        let compress = op == 14 || rng.random_bool(0.5);
        let mut what;
        let on_x = rng.random_bool(0.5);
        match op {
            7 => {
                let to = pick(rng, &["Y", "x", "", "X\0", "XX"]);
                what = format!("variable {} renamed {to:?}", if on_x { "X" } else { "y" });
                if on_x { xv.name = to.into() } else { yv.name = to.into() }
            }
            9 => {
                let mut bad = y.clone();
                let i = rng.random_range(0..n);
                bad[i] = pick(rng, &[0.0, 11.0, -1.0, 1.5, f64::NAN, f64::INFINITY, 1e300]);
                what = format!("label y[{i}] = {}", bad[i]);
                yv = MatVar { ty: MI_DOUBLE, data: bad.iter().flat_map(|v| v.to_le_bytes()).collect(), ..y_var(&bad) };
            }
            10 => {
                let m = if n > 1 && rng.random_bool(0.5) { n - 1 } else { n + 1 };
                yv = y_var(&(0..m).map(|i| y.get(i).copied().unwrap_or(3.0)).collect::<Vec<_>>());
                what = format!("{m} labels for {n} images");
            }
            _ => what = String::new(),
        }
        let mut mats: Vec<(Vec<u8>, [usize; 5])> = vec![matrix(&xv, false), matrix(&yv, false)];
        {
            let (m, tags) = &mut mats[if on_x { 0 } else { 1 }];
            let var = if on_x { "X" } else { "y" };
            match op {
                4 => {
                    let t = rng.random_range(0..5);
                    let at = tags[t];
                    if rng.random_bool(0.5) || t == 3 {
                        // The type (for the name's small form: the whole packed tag word's type half).
                        let v = rng.random_range(0..20u32);
                        let word = u32::from_le_bytes(m[at..at + 4].try_into().expect("4 bytes"));
                        let packed = if t == 3 { (word & 0xffff_0000) | v } else { v };
                        m[at..at + 4].copy_from_slice(&packed.to_le_bytes());
                        what = format!("{var}: tag {t} type set to {v}");
                    } else {
                        let old = u32::from_le_bytes(m[at + 4..at + 8].try_into().expect("4 bytes")) as u64;
                        let v = mutate::size_values(rng, old) as u32;
                        m[at + 4..at + 8].copy_from_slice(&v.to_le_bytes());
                        what = format!("{var}: tag {t} size set to {v}");
                    }
                }
                5 => {
                    let d = rng.random_range(0..if on_x { 4 } else { 2 });
                    let at = tags[2] + 8 + 4 * d;
                    let old = u32::from_le_bytes(m[at..at + 4].try_into().expect("4 bytes")) as u64;
                    let mut v = if rng.random_bool(0.2) {
                        0x8000_0000 | old as u32
                    } else {
                        mutate::size_values(rng, old) as u32
                    };
                    if v as u64 == old {
                        v ^= 0x10;
                    }
                    m[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    what = format!("{var}: dimension {d} set to {v}");
                }
                6 => {
                    let at = tags[1] + 8;
                    if rng.random_bool(0.5) {
                        let class = pick(rng, &[0u32, 1, 2, 3, 4, 5, 16, 17, 255]);
                        m[at] = class as u8;
                        what = format!("{var}: class {class}");
                    } else {
                        m[at + 1] |= 0x08; // the complex flag
                        what = format!("{var}: marked complex");
                    }
                }
                _ => {}
            }
        }
        let mut elements: Vec<Vec<u8>> = mats.into_iter().map(|(m, _)| m).collect();
        if op == 8 {
            let other = MatVar { data: mutate::garbage(rng, xv.data.len()), ..xv.clone() };
            let twin = if rng.random_bool(0.5) { xv.clone() } else { other };
            elements.insert(rng.random_range(0..=elements.len()), matrix(&twin, false).0);
            what = "variable X appears twice".into();
            expect = None;
        }
        if op == 16 {
            // Variables that are not numeric arrays are skipped: a char array and an empty matrix.
            let note = MatVar {
                name: "note".into(),
                class: 4,
                dims: vec![1, 3],
                ty: 4,
                data: vec![b'a', 0, b'b', 0, b'c', 0],
            };
            elements.insert(rng.random_range(0..=elements.len()), matrix(&note, false).0);
            elements.push([MI_MATRIX.to_le_bytes(), 0u32.to_le_bytes()].concat());
            what = "extra char array and empty variables".into();
        }
        let mut bytes = if op == 15 {
            what = "valid big-endian file".into();
            // Multi-byte values are big-endian too.
            let y_be = if yv.ty == MI_DOUBLE {
                MatVar { data: y.iter().flat_map(|v| v.to_be_bytes()).collect(), ..yv.clone() }
            } else {
                yv.clone()
            };
            let be: Vec<Vec<u8>> = [&xv, &y_be].iter().map(|v| matrix(v, true).0).collect();
            mat_file(&be, compress, true)
        } else {
            mat_file(&elements, compress, false)
        };
        match op {
            0 => {
                let (t, k) = mutate::truncate(rng, &bytes);
                bytes = t;
                what = format!("truncated at byte {k}");
            }
            1 => {
                let len = rng.random_range(1..=16);
                let extra = if rng.random_bool(0.3) { vec![0; len.min(7)] } else { mutate::garbage(rng, len) };
                what = format!("{} trailing bytes", extra.len());
                bytes.extend(extra);
            }
            2 => {
                let k = mutate::flip(rng, &mut bytes, 0..116);
                what = format!("header text byte {k} changed");
            }
            3 => {
                let v = pick(rng, &[*b"MI", *b"XX", *b"im", [0, 0]]);
                bytes[126..128].copy_from_slice(&v);
                what = format!("endian indicator {:?}", String::from_utf8_lossy(&v));
            }
            11 => {
                let b = &self.bombs()[rng.random_range(0..2)];
                bytes = b.clone();
                what = "zlib bomb".into();
                expect = None;
            }
            12 => {
                bytes = mat_header(false, "MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00");
                bytes.extend_from_slice(b"\x89HDF\r\n\x1a\n");
                what = "MATLAB v7.3 (HDF5) file".into();
                expect = None;
            }
            14 => {
                let k = mutate::flip(rng, &mut bytes, 128..usize::MAX);
                what = format!("byte {k} of the {} data flipped", if compress { "compressed" } else { "uncompressed" });
            }
            17 => what = "valid file".into(),
            _ => {}
        }
        if op == 4 || op == 5 || op == 6 || op == 7 {
            what = format!("{what} ({})", if compress { "compressed" } else { "uncompressed" });
        }
        write(&path, &bytes);
        if op == 13 {
            let kind = Kind::pick(rng);
            what = mutate::replace_with(&path, kind, &bytes);
            if kind != Kind::LinkToCopy {
                expect = None;
            }
        }
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        load_fp(DatasetId::Svhn, dir)
    }
}

// ---------------------------------------------------------------------------------------------
// MNIST-M: PNG folder and label list

/// Ganin's MNIST-M layout: `mnist_m_train/*.png` and `mnist_m_train_labels.txt`.
pub struct MnistM;

fn png_rgb(w: usize, h: usize, hwc: &[u8]) -> Vec<u8> {
    let img = image::RgbImage::from_raw(w as u32, h as u32, hwc.to_vec()).expect("sizes agree");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("in memory");
    out.into_inner()
}

fn fix_ihdr_crc(png: &mut [u8]) {
    let mut c = flate2::Crc::new();
    c.update(&png[12..29]);
    png[29..33].copy_from_slice(&c.sum().to_be_bytes());
}

impl Target for MnistM {
    fn name(&self) -> &'static str {
        "mnist-m"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let folder = dir.join("mnist_m");
        let images = folder.join("mnist_m_train");
        let list = folder.join("mnist_m_train_labels.txt");
        let (n, h, w) = (rng.random_range(1..=4usize), rng.random_range(1..=4usize), rng.random_range(1..=4usize));
        let files: Vec<String> = (0..n).map(|i| format!("{i:08}.png")).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let hwc: Vec<Vec<u8>> = (0..n).map(|_| mutate::garbage(rng, h * w * 3)).collect();
        let planar = |keep: &[usize]| -> Vec<u8> {
            keep.iter()
                .flat_map(|&i| (0..3).flat_map(move |c| (0..h * w).map(move |p| (i, c, p))))
                .map(|(i, c, p)| hwc[i][p * 3 + c])
                .collect()
        };
        let all: Vec<usize> = (0..n).collect();
        let fp = |keep: &[usize], listed: usize| {
            let partial = (keep.len() < listed).then_some(Partial { loaded: keep.len(), listed });
            let l: Vec<u32> = keep.iter().map(|&i| labels[i]).collect();
            expected("mnist-m", &planar(keep), &l, [3, h, w], partial)
        };
        let mut expect = Some(fp(&all, n));
        let mut lines: Vec<String> = files.iter().zip(&labels).map(|(f, l)| format!("{f} {l}")).collect();
        let mut pngs: Vec<Vec<u8>> = hwc.iter().map(|p| png_rgb(w, h, p)).collect();
        let mut names = vec!["mnist_m_train_labels.txt".to_string(), "mnist_m_train".to_string()];
        names.extend(files.iter().cloned());
        let j = rng.random_range(0..n);
        let op = rng.random_range(0..19);
        let mut what = String::new();
        let mut list_bytes: Option<Vec<u8>> = None;
        let mut delete: Vec<usize> = Vec::new();
        match op {
            2 => {
                let label = if rng.random_bool(0.5) { labels[j] } else { (labels[j] + 1) % 10 };
                lines.insert(rng.random_range(0..=lines.len()), format!("{} {label}", files[j]));
                what = format!("{} listed twice", files[j]);
                expect = None;
            }
            3 => {
                let bad = pick(rng, &["10", "-1", "1.5", "x", "99999999999", "\u{663}", "0x3"]);
                lines[j] = format!("{} {bad}", files[j]);
                what = format!("line {}: label {bad:?}", j + 1);
            }
            4 => {
                lines[j] = if rng.random_bool(0.5) { format!("{} 3 4", files[j]) } else { files[j].clone() };
                what = format!("line {}: {:?}", j + 1, lines[j]);
            }
            5 => {
                let bad = pick(rng, &["../00000000.png", "sub/00000000.png", "/00000000.png", ".", "..", "a\\b.png"]);
                lines[j] = format!("{bad} {}", labels[j]);
                what = format!("line {}: file name {bad:?}", j + 1);
            }
            6 => {
                let k = rng.random_range(1..=2 * n);
                for m in 0..k {
                    lines.insert(rng.random_range(0..=lines.len()), format!("gone{m:04}.png {}", m % 10));
                }
                expect = (2 * n >= n + k).then(|| fp(&all, n + k));
                what = format!("{k} listed files missing of {}", n + k);
            }
            7 => {
                let m = rng.random_range(1..=n);
                delete = (0..n).filter(|_| rng.random_bool(m as f64 / n as f64)).collect();
                if delete.is_empty() {
                    delete.push(j);
                }
                let keep: Vec<usize> = (0..n).filter(|i| !delete.contains(i)).collect();
                expect = (!keep.is_empty() && 2 * keep.len() >= n).then(|| fp(&keep, n));
                what = format!("{} of {n} listed PNGs deleted", delete.len());
            }
            8 => {
                list_bytes = Some(pick(rng, &["", "\n\n", "   \n\t\n"]).as_bytes().to_vec());
                what = "empty label list".into();
                expect = None;
            }
            _ => {}
        }
        let mut text = lines.join("\n");
        text.push('\n');
        match op {
            0 => {
                let (b, how, _) = mutate::reencode(rng, &text);
                list_bytes = Some(b);
                what = format!("label list with {how}");
            }
            1 => {
                let t = match rng.random_range(0..4) {
                    0 => format!("{text}\n\n"),
                    1 => text.lines().map(|l| format!("  {l}  ")).collect::<Vec<_>>().join("\n"),
                    2 => text.replace(' ', "\t"),
                    _ => text.trim_end().to_string(),
                };
                list_bytes = Some(t.into_bytes());
                what = "label list with other whitespace".into();
            }
            _ => {}
        }
        let png = &mut pngs[j];
        match op {
            9 => {
                let (t, k) = mutate::truncate(rng, png);
                *png = t;
                what = format!("{} truncated at byte {k}", files[j]);
            }
            10 => {
                let k = mutate::flip(rng, png, 0..usize::MAX);
                what = format!("{}: byte {k} flipped", files[j]);
            }
            11 => {
                let at = pick(rng, &[16usize, 20, 24, 25, 26, 27, 28]);
                // The low byte of the width or height, or one of the one-byte fields.
                let k = if at < 24 { at + 3 } else { at };
                png[k] = png[k].wrapping_add(rng.random_range(1..=255));
                fix_ihdr_crc(png);
                what = format!("{}: IHDR byte {at} changed (CRC fixed)", files[j]);
            }
            12 => {
                let (pw, ph) = pick(rng, &[(12000u32, 12000u32), (65535, 1), (1, 65535), (u32::MAX, 7), (2048, 2048)]);
                png[16..20].copy_from_slice(&pw.to_be_bytes());
                png[20..24].copy_from_slice(&ph.to_be_bytes());
                fix_ihdr_crc(png);
                what = format!("{}: header declares {pw}x{ph} (CRC fixed)", files[j]);
                expect = None;
            }
            13 if n > 1 => {
                *png = png_rgb(w, h + 1, &mutate::garbage(rng, w * (h + 1) * 3));
                what = format!("{} is {w}x{}, the others {w}x{h}", files[j], h + 1);
            }
            _ => {}
        }
        let _ = std::fs::create_dir_all(&images);
        for (i, (f, b)) in files.iter().zip(&pngs).enumerate() {
            if !delete.contains(&i) {
                write(&images.join(f), b);
            }
        }
        let list_bytes = list_bytes.unwrap_or_else(|| text.into_bytes());
        write(&list, &list_bytes);
        match op {
            14 => {
                let kind = Kind::pick(rng);
                let p = images.join(&files[j]);
                what = mutate::replace_with(&p, kind, &pngs[j]);
                expect = match kind {
                    Kind::LinkToCopy => expect,
                    Kind::Missing => {
                        let keep: Vec<usize> = (0..n).filter(|&i| i != j).collect();
                        (!keep.is_empty() && 2 * keep.len() >= n).then(|| fp(&keep, n))
                    }
                    _ => None,
                };
            }
            15 => {
                let kind = Kind::pick(rng);
                what = mutate::replace_with(&list, kind, &list_bytes);
                if kind != Kind::LinkToCopy {
                    expect = None;
                }
            }
            16 => {
                let _ = std::fs::remove_dir_all(&images);
                match rng.random_range(0..3) {
                    0 => what = "image folder missing".into(),
                    1 => {
                        write(&images, b"not a folder");
                        what = "image folder is a file".into();
                    }
                    _ => {
                        what = mutate::replace_with(&images, Kind::DanglingLink, b"");
                    }
                }
                expect = None;
            }
            17 => {
                let _ = std::fs::remove_file(&list);
                mutate::sparse(&list, 65 << 20);
                what = "a 65 MB label list".into();
                expect = None;
            }
            18 => what = "valid folder".into(),
            _ => {}
        }
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        load_fp(DatasetId::MnistM, dir)
    }
}

// ---------------------------------------------------------------------------------------------
// USPS: ESL text

/// The ESL book's USPS text (`zip.train`, plain or gzipped).
#[derive(Default)]
pub struct Usps {
    bomb: OnceLock<Vec<u8>>,
}

const ESL_VALUES: [(&str, u8); 5] =
    [("-1.0000", 0), ("-0.5000", 64), ("0.0000", 128), ("0.5000", 191), ("1.0000", 255)];

impl Target for Usps {
    fn name(&self) -> &'static str {
        "usps"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let n = rng.random_range(1..=4usize);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let values: Vec<Vec<usize>> = (0..n).map(|_| (0..256).map(|_| rng.random_range(0..5)).collect()).collect();
        let fp_of = |k: usize| {
            let px: Vec<u8> = values[..k].iter().flatten().map(|&v| ESL_VALUES[v].1).collect();
            expected("usps", &px, &labels[..k], [1, 16, 16], None)
        };
        let mut expect = Some(fp_of(n));
        let mut lines: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let mut f = vec![format!("{}.0000", labels[i])];
                f.extend(values[i].iter().map(|&v| ESL_VALUES[v].0.to_string()));
                f
            })
            .collect();
        let gz = rng.random_bool(0.5);
        let file = if gz { "zip.train.gz" } else { "zip.train" };
        let path = dir.join("usps").join(file);
        let names = vec![file.to_string()];
        let j = rng.random_range(0..n);
        let op = rng.random_range(0..11);
        let mut what = String::new();
        match op {
            2 => {
                let bad = pick(rng, &["10.0000", "-1", "3.5", "x", "1e3", "nan", "inf", ""]);
                lines[j][0] = bad.into();
                what = format!("line {}: label {bad:?}", j + 1);
            }
            3 => {
                let k = rng.random_range(1..257);
                match rng.random_range(0..3) {
                    0 => {
                        let bad = pick(rng, &["2.0", "-1.5", "nan", "inf", "abc", "1,0"]);
                        lines[j][k] = bad.into();
                        what = format!("line {}: value {k} {bad:?}", j + 1);
                    }
                    1 => {
                        lines[j].remove(k);
                        what = format!("line {}: 255 values", j + 1);
                    }
                    _ => {
                        lines[j].push("0.0000".into());
                        what = format!("line {}: 257 values", j + 1);
                    }
                }
            }
            _ => {}
        }
        let mut text: String = lines.iter().map(|l| format!("{}\n", l.join(" "))).collect();
        let mut plain = text.clone().into_bytes();
        match op {
            1 => {
                // Cut at a line start (a shorter valid file) or inside a line, before its last value.
                let starts: Vec<usize> =
                    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
                let line = rng.random_range(0..n);
                let (start, end) = (starts[line], starts[line + 1]);
                let last_value = text[start..end - 1].rfind(' ').map_or(start, |i| start + i);
                let cut = if rng.random_bool(0.3) { start } else { rng.random_range(start..last_value.max(start + 1)) };
                text.truncate(cut);
                plain = text.clone().into_bytes();
                expect = if cut == start { (line > 0).then(|| fp_of(line)) } else { Some(fp_of(n)) };
                what = format!("text cut at byte {cut} (line {})", line + 1);
            }
            4 => {
                if rng.random_bool(0.5) {
                    let (b, how, _) = mutate::reencode(rng, &text);
                    plain = b;
                    what = format!("text with {how}");
                } else {
                    let t = match rng.random_range(0..3) {
                        0 => text.replace(' ', "\t"),
                        1 => text.replace('\n', " \n\n"),
                        _ => format!("\n{text}"),
                    };
                    plain = t.into_bytes();
                    what = "text with other whitespace".into();
                }
            }
            8 => {
                plain = pick(rng, &["", "\n", "  \n \n"]).as_bytes().to_vec();
                what = "no digits".into();
                expect = None;
            }
            _ => {}
        }
        let mut bytes = if gz { mutate::gzip(&plain) } else { plain.clone() };
        match op {
            0 => {
                let (t, k) = mutate::truncate(rng, &bytes);
                bytes = t;
                what = format!("{file} truncated at byte {k}");
                if !gz {
                    // A plain cut at a line end is a shorter valid file, anywhere else a broken line.
                    let kept = String::from_utf8_lossy(&bytes);
                    let complete = kept.matches('\n').count();
                    let tail = kept.rsplit('\n').next().unwrap_or("");
                    expect = if tail.is_empty() {
                        (complete > 0).then(|| fp_of(complete))
                    } else if tail.split_whitespace().count() == 257 {
                        None // the last value itself was cut: a different valid number
                    } else {
                        Some(fp_of(n))
                    };
                }
            }
            5 => {
                bytes = mutate::gzip(&bytes);
                what = format!("{file} gzipped {}", if gz { "twice" } else { "(content-detected)" });
            }
            6 => {
                let k = mutate::flip(rng, &mut bytes, 0..usize::MAX);
                what = format!("{file}: byte {k} flipped");
                if !gz {
                    // Flipping a byte of plain text changes a value, a valid different file: only
                    // the gzip container can detect it.
                    bytes = mutate::gzip(&plain);
                    let k = mutate::flip(rng, &mut bytes, 0..usize::MAX);
                    what = format!("{file}: byte {k} of its gzip form flipped");
                }
            }
            9 => {
                bytes = self.bomb.get_or_init(|| mutate::bomb(b"", 40 << 20, true)).clone();
                what = "gzip bomb (40 MB of zeros)".into();
                expect = None;
            }
            10 => what = "valid file".into(),
            _ => {}
        }
        if op == 0 && !gz && expect.is_none() {
            // Not a corruption this format can detect; load the untouched file instead.
            bytes = plain.clone();
            expect = Some(fp_of(n));
            what = format!("{what} (inside the last value: replaced by the valid file)");
        }
        write(&path, &bytes);
        if op == 7 {
            if rng.random_bool(0.5) {
                let kind = Kind::pick(rng);
                what = mutate::replace_with(&path, kind, &bytes);
                if kind != Kind::LinkToCopy {
                    expect = None;
                }
            } else {
                let twin = if gz { "zip.train" } else { "zip.train.gz" };
                write(&dir.join("usps").join(twin), &bytes);
                what = format!("{file} also present as {twin}");
                expect = None;
            }
        }
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        load_fp(DatasetId::Usps, dir)
    }
}

// ---------------------------------------------------------------------------------------------
// Hub-layout parquet

/// A Hub-layout parquet shard: `image {bytes, path}` and `label` int64.
#[cfg(feature = "hub")]
pub struct Parquet;

#[cfg(feature = "hub")]
mod pq {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    /// How the fixture's columns are laid out.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Layout {
        Hub,
        NoLabel,
        LabelNamedIdx,
        LabelAsString,
        ExtraIdColumn,
        NoImage,
        NullLabel,
        NullImage,
    }

    /// A parquet file of `images` and `labels` in `layout`.
    pub fn write(images: &[Vec<u8>], labels: &[i64], layout: Layout) -> Vec<u8> {
        let label_col = match layout {
            Layout::NoLabel => "",
            Layout::LabelNamedIdx => "optional int64 idx;",
            Layout::LabelAsString => "optional binary label (STRING);",
            Layout::ExtraIdColumn => "optional int64 id; optional int64 label;",
            _ => "optional int64 label;",
        };
        let image_col = if layout == Layout::NoImage {
            ""
        } else {
            "optional group image { optional binary bytes; optional binary path (STRING); }"
        };
        let schema = format!("message schema {{ {image_col} {label_col} }}");
        let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema).expect("schema"));
        let props = Arc::new(WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build());
        let mut out = Vec::new();
        let mut w = SerializedFileWriter::new(&mut out, schema, props).expect("writer");
        let mut rg = w.next_row_group().expect("row group");
        let n = labels.len();
        let full = vec![2i16; n];
        if !image_col.is_empty() {
            let mut def = full.clone();
            if layout == Layout::NullImage {
                def[0] = 1;
            }
            let bytes: Vec<ByteArray> = images
                .iter()
                .enumerate()
                .filter(|(i, _)| def[*i] == 2)
                .map(|(_, b)| ByteArray::from(b.clone()))
                .collect();
            let mut col = rg.next_column().expect("column").expect("column");
            col.typed::<ByteArrayType>().write_batch(&bytes, Some(&def), None).expect("write");
            col.close().expect("close");
            let paths: Vec<ByteArray> = (0..n).map(|i| ByteArray::from(format!("{i}.png").as_str())).collect();
            let mut col = rg.next_column().expect("column").expect("column");
            col.typed::<ByteArrayType>().write_batch(&paths, Some(&full), None).expect("write");
            col.close().expect("close");
        }
        let ints = |rg: &mut parquet::file::writer::SerializedRowGroupWriter<'_, &mut Vec<u8>>,
                    values: &[i64],
                    null_first: bool| {
            let mut def = vec![1i16; values.len()];
            if null_first {
                def[0] = 0;
            }
            let present: Vec<i64> = values.iter().zip(&def).filter(|(_, d)| **d == 1).map(|(v, _)| *v).collect();
            let mut col = rg.next_column().expect("column").expect("column");
            col.typed::<Int64Type>().write_batch(&present, Some(&def), None).expect("write");
            col.close().expect("close");
        };
        match layout {
            Layout::NoLabel => {}
            Layout::LabelAsString => {
                let v: Vec<ByteArray> = labels.iter().map(|l| ByteArray::from(l.to_string().as_str())).collect();
                let mut col = rg.next_column().expect("column").expect("column");
                col.typed::<ByteArrayType>().write_batch(&v, Some(&vec![1; n]), None).expect("write");
                col.close().expect("close");
            }
            Layout::ExtraIdColumn => {
                ints(&mut rg, &(0..n as i64).map(|i| i + 100).collect::<Vec<_>>(), false);
                ints(&mut rg, labels, false);
            }
            Layout::NullLabel => ints(&mut rg, labels, true),
            _ => ints(&mut rg, labels, false),
        }
        rg.close().expect("close");
        w.close().expect("close");
        out
    }
}

#[cfg(feature = "hub")]
fn png_grey(side: usize, px: &[u8]) -> Vec<u8> {
    let img = image::GrayImage::from_raw(side as u32, side as u32, px.to_vec()).expect("sizes agree");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("in memory");
    out.into_inner()
}

#[cfg(feature = "hub")]
impl Target for Parquet {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        use pq::Layout;
        let (n, side) = (rng.random_range(1..=4usize), rng.random_range(2..=5usize));
        let px: Vec<Vec<u8>> = (0..n).map(|_| mutate::garbage(rng, side * side)).collect();
        let labels: Vec<i64> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
        let mut expect = Some(expected("mnist", &px.concat(), &labels32, [1, side, side], None));
        let mut pngs: Vec<Vec<u8>> = px.iter().map(|p| png_grey(side, p)).collect();
        let mut labels_w = labels.clone();
        let file = "train-00000-of-00001.parquet";
        let folder = dir.join("mnist");
        let path = folder.join(file);
        let mut names = vec![file.to_string()];
        let op = rng.random_range(0..13);
        let mut what = String::new();
        let mut layout = Layout::Hub;
        let j = rng.random_range(0..n);
        match op {
            4 => {
                layout = pick(
                    rng,
                    &[
                        Layout::NoLabel,
                        Layout::LabelNamedIdx,
                        Layout::LabelAsString,
                        Layout::ExtraIdColumn,
                        Layout::NoImage,
                        Layout::NullLabel,
                        Layout::NullImage,
                    ],
                );
                if layout != Layout::ExtraIdColumn {
                    expect = None;
                }
                what = "columns: ".to_string()
                    + match layout {
                        Layout::NoLabel => "no label",
                        Layout::LabelNamedIdx => "the label column named idx",
                        Layout::LabelAsString => "labels as strings",
                        Layout::ExtraIdColumn => "an id column before the labels",
                        Layout::NoImage => "no image",
                        Layout::NullLabel => "a null label",
                        _ => "a null image",
                    };
            }
            5 => {
                labels_w[j] = pick(rng, &[10, -1, 1 << 40, i64::MIN]);
                what = format!("row {j}: label {}", labels_w[j]);
            }
            6 => {
                let len = rng.random_range(0..40);
                pngs[j] = mutate::garbage(rng, len);
                what = format!("row {j}: image bytes are not an image");
            }
            7 if n > 1 => {
                pngs[j] = png_grey(side + 1, &mutate::garbage(rng, (side + 1) * (side + 1)));
                what = format!("row {j}: image of another size");
            }
            8 => {
                pngs.clear();
                labels_w.clear();
                what = "no rows".into();
                expect = None;
            }
            11 => {
                let mut p = pngs[j].clone();
                p[16..20].copy_from_slice(&12000u32.to_be_bytes());
                p[20..24].copy_from_slice(&12000u32.to_be_bytes());
                fix_ihdr_crc(&mut p);
                pngs[j] = p;
                what = format!("row {j}: PNG header declares 12000x12000");
                expect = None;
            }
            _ => {}
        }
        if op == 10 && n > 1 {
            let cut = rng.random_range(1..n);
            for (shard, rows) in [("train-00000-of-00002.parquet", 0..cut), ("train-00001-of-00002.parquet", cut..n)] {
                write(&folder.join(shard), &pq::write(&pngs[rows.clone()], &labels_w[rows], Layout::Hub));
                names.push(shard.into());
            }
            return Case { what: format!("valid, in two shards of {cut} and {} rows", n - cut), expect, names };
        }
        let mut bytes = pq::write(&pngs, &labels_w, layout);
        let len = bytes.len();
        match op {
            0 => {
                let (t, k) = mutate::truncate(rng, &bytes);
                bytes = t;
                what = format!("truncated at byte {k}");
            }
            1 => {
                let old = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().expect("4 bytes")) as u64;
                let v = mutate::size_values(rng, old) as u32;
                bytes[len - 8..len - 4].copy_from_slice(&v.to_le_bytes());
                what = format!("footer length {v} (was {old})");
            }
            2 => {
                let at = if rng.random_bool(0.5) { 0 } else { len - 4 };
                let k = mutate::flip(rng, &mut bytes, at..at + 4);
                what = format!("magic byte {k} changed");
            }
            3 => {
                let footer = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().expect("4 bytes")) as usize;
                let start = len.saturating_sub(8 + footer);
                let k = mutate::flip(rng, &mut bytes, start..len - 8);
                what = format!("footer byte {k} changed");
            }
            12 => what = "valid file".into(),
            _ => {}
        }
        write(&path, &bytes);
        if op == 9 {
            let kind = Kind::pick(rng);
            what = mutate::replace_with(&path, kind, &bytes);
            if kind != Kind::LinkToCopy {
                expect = None;
            }
            names.push("mnist".into());
        }
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        load_fp(DatasetId::Mnist, dir)
    }
}
