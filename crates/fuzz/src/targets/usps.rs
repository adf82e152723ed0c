//! The `usps` target: USPS in the ESL book's text format, plain or gzipped.
use super::dataset::{expected, load_fp, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target};
use adapt_datasets::registry::DatasetId;
use rand::Rng as _;
use std::path::Path;
use std::sync::OnceLock;

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

