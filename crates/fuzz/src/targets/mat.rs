//! The `mat` target: SVHN's (and SynDigits') MATLAB v5 `.mat` files, plain or with compressed elements.
use super::dataset::{expected, load_fp, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target};
use adapt_datasets::registry::DatasetId;
use rand::Rng as _;
use std::path::Path;
use std::sync::OnceLock;

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

