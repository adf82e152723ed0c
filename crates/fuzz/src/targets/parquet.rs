//! The `parquet` target: Hub-layout parquet shards.
use super::dataset::{expected, fix_ihdr_crc, load_fp, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target};
use adapt_datasets::registry::DatasetId;
use rand::Rng as _;
use std::path::Path;

/// A Hub-layout parquet shard: `image {bytes, path}` and `label` int64.
pub struct Parquet;

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

fn png_grey(side: usize, px: &[u8]) -> Vec<u8> {
    let img = image::GrayImage::from_raw(side as u32, side as u32, px.to_vec()).expect("sizes agree");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("in memory");
    out.into_inner()
}

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
