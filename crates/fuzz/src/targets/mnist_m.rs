//! The `mnist-m` target: MNIST-M's PNG folder and label list.
use super::dataset::{expected, fix_ihdr_crc, load_fp, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target};
use adapt_datasets::Partial;
use adapt_datasets::registry::DatasetId;
use rand::Rng as _;
use std::path::Path;

/// Ganin's MNIST-M layout: `mnist_m_train/*.png` and `mnist_m_train_labels.txt`.
pub struct MnistM;

fn png_rgb(w: usize, h: usize, hwc: &[u8]) -> Vec<u8> {
    let img = image::RgbImage::from_raw(w as u32, h as u32, hwc.to_vec()).expect("sizes agree");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("in memory");
    out.into_inner()
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

