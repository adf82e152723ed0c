//! The `idx` target: MNIST's IDX image and label files, plain or gzipped.
use super::dataset::{expected, load_fp, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target};
use adapt_datasets::registry::DatasetId;
use rand::Rng as _;
use std::path::Path;

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

