//! Corrupted inputs of every format: truncations at many offsets, flipped magic bytes, wrong
//! dimensions, out-of-range labels, too few labels, corrupt PNG/parquet/.mat. Every case must end
//! without a panic, and every error must name the file it is about. Cases are counted and printed.
mod common;
use adapt_datasets::{ImageDataset, Result, Split, load};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

#[derive(Default)]
struct Tally {
    cases: usize,
    rejected: usize,
    loaded: usize,
}

impl Tally {
    /// Records one case. `must_fail`: the input is invalid and must be rejected. Otherwise a
    /// successful load is allowed (e.g. a truncation in trailing padding, a byte flip in pixel data).
    fn check(&mut self, what: &str, r: std::thread::Result<Result<ImageDataset>>, file: &str, must_fail: bool) {
        self.cases += 1;
        let r = r.unwrap_or_else(|_| panic!("{what}: loader panicked"));
        match r {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(file), "{what}: error does not name {file}: {msg}");
                self.rejected += 1;
            }
            Ok(ds) => {
                assert!(!must_fail, "{what}: invalid input loaded ({} images)", ds.len());
                self.loaded += 1;
            }
        }
    }
}

fn guarded(dir: &Path, name: &str, split: Split) -> std::thread::Result<Result<ImageDataset>> {
    let dir = dir.to_path_buf();
    let name = name.to_string();
    std::panic::catch_unwind(move || load(&name, split, Some(&dir)))
}

fn offsets(len: usize, rng: &mut StdRng, random: usize) -> Vec<usize> {
    // Every offset in the first 300 bytes (headers and tags live there), then random ones.
    let mut v: Vec<usize> = (0..len.min(300)).collect();
    v.extend((0..random).map(|_| rng.random_range(0..len)));
    v
}

#[test]
fn corrupted_inputs_never_panic_and_errors_name_the_file() {
    let mut t = Tally::default();
    let mut rng = StdRng::seed_from_u64(42);
    let root = tmp("robust");

    // ---- MNIST IDX, plain and gzipped ----
    for gz in [false, true] {
        let dir = root.join(format!("idx{gz}"));
        write_mnist(&dir.join("mnist"), 3, 28, gz);
        let ext = if gz { ".gz" } else { "" };
        for file in [format!("train-images-idx3-ubyte{ext}"), format!("train-labels-idx1-ubyte{ext}")] {
            let p = dir.join("mnist").join(&file);
            let good = std::fs::read(&p).unwrap();
            for k in offsets(good.len(), &mut rng, 60) {
                std::fs::write(&p, &good[..k]).unwrap();
                t.check(&format!("{file} truncated at {k}"), guarded(&dir, "mnist", Split::Train), &file, true);
            }
            if !gz {
                for b in 0..4 {
                    for _ in 0..8 {
                        let mut bad = good.clone();
                        bad[b] ^= rng.random_range(1..=255u8);
                        std::fs::write(&p, &bad).unwrap();
                        t.check(&format!("{file} magic byte {b}"), guarded(&dir, "mnist", Split::Train), &file, true);
                    }
                }
            } else {
                // Corrupt the deflate stream: either rejected by the CRC/stream check or, rarely, a
                // different valid stream; never a panic.
                for _ in 0..40 {
                    let mut bad = good.clone();
                    let k = rng.random_range(10..bad.len());
                    bad[k] ^= rng.random_range(1..=255u8);
                    std::fs::write(&p, &bad).unwrap();
                    t.check(&format!("{file} byte flip"), guarded(&dir, "mnist", Split::Train), &file, false);
                }
            }
            std::fs::write(&p, &good).unwrap();
        }
        // Wrong dimensions, too few labels, labels out of range.
        let w = |name: &str, bytes: Vec<u8>| {
            std::fs::write(dir.join("mnist").join(format!("{name}{ext}")), if gz { gzip(&bytes) } else { bytes })
                .unwrap()
        };
        let px = vec![0u8; 3 * 784];
        w("train-images-idx3-ubyte", idx(&[3, 784], &px));
        t.check("images with 2 dims", guarded(&dir, "mnist", Split::Train), "train-images-idx3-ubyte", true);
        w("train-images-idx3-ubyte", idx(&[3, 28, 28], &px));
        w("train-labels-idx1-ubyte", idx(&[2], &[1, 2]));
        t.check("too few labels", guarded(&dir, "mnist", Split::Train), "train-labels-idx1-ubyte", true);
        for l in [10u8, 77, 255] {
            w("train-labels-idx1-ubyte", idx(&[3], &[1, l, 2]));
            t.check("label out of range", guarded(&dir, "mnist", Split::Train), "train-labels-idx1-ubyte", true);
        }
        w("train-labels-idx1-ubyte", idx(&[3], &[1, 2, 3, 4]));
        t.check("trailing label bytes", guarded(&dir, "mnist", Split::Train), "train-labels-idx1-ubyte", true);
    }

    // ---- SVHN / SynDigits .mat, uncompressed and compressed ----
    for compress in [false, true] {
        let dir = root.join(format!("mat{compress}"));
        std::fs::create_dir_all(dir.join("svhn")).unwrap();
        let p = dir.join("svhn/train_32x32.mat");
        let file = "train_32x32.mat";
        let good = svhn_mat(2, 32, 32, &[3, 0], compress, false);
        for k in offsets(good.len(), &mut rng, 80) {
            std::fs::write(&p, &good[..k]).unwrap();
            // A cut inside the final element's zero padding leaves a complete file.
            let complete = k >= good.len() - 7 && !compress;
            t.check(&format!("mat truncated at {k}"), guarded(&dir, "svhn", Split::Train), file, !complete);
        }
        for _ in 0..120 {
            let mut bad = good.clone();
            let k = rng.random_range(0..bad.len());
            bad[k] ^= rng.random_range(1..=255u8);
            std::fs::write(&p, &bad).unwrap();
            t.check("mat byte flip", guarded(&dir, "svhn", Split::Train), file, false);
        }
        let mut bad = good.clone();
        bad[126..128].copy_from_slice(b"XX");
        std::fs::write(&p, &bad).unwrap();
        t.check("mat endian indicator", guarded(&dir, "svhn", Split::Train), file, true);
        // Wrong dimensions: 2 channels; labels out of range; too few labels; no y at all.
        let x2 = mat_matrix("X", &[32, 32, 2, 2], &MatValues::U8(vec![0; 32 * 32 * 2 * 2]));
        let y = mat_matrix("y", &[2, 1], &MatValues::F64(vec![1.0, 2.0]));
        std::fs::write(&p, mat_file(&[x2, y.clone()], compress)).unwrap();
        t.check("mat X with 2 channels", guarded(&dir, "svhn", Split::Train), file, true);
        let x = mat_matrix("X", &[32, 32, 3, 2], &MatValues::U8(vec![0; 32 * 32 * 3 * 2]));
        for yv in [vec![1.0, 11.0], vec![1.0, -1.0], vec![1.5, 2.0]] {
            let y = mat_matrix("y", &[2, 1], &MatValues::F64(yv));
            std::fs::write(&p, mat_file(&[x.clone(), y], compress)).unwrap();
            t.check("mat label out of range", guarded(&dir, "svhn", Split::Train), file, true);
        }
        let y1 = mat_matrix("y", &[1, 1], &MatValues::F64(vec![1.0]));
        std::fs::write(&p, mat_file(&[x.clone(), y1], compress)).unwrap();
        t.check("mat too few labels", guarded(&dir, "svhn", Split::Train), file, true);
        std::fs::write(&p, mat_file(std::slice::from_ref(&x), compress)).unwrap();
        t.check("mat without y", guarded(&dir, "svhn", Split::Train), file, true);
        // Dimensions promising more data than stored.
        let short = mat_matrix("X", &[32, 32, 3, 3], &MatValues::U8(vec![0; 32 * 32 * 3 * 2]));
        std::fs::write(&p, mat_file(&[short, y], compress)).unwrap();
        t.check("mat dims larger than data", guarded(&dir, "svhn", Split::Train), file, true);
    }

    // ---- USPS ESL text ----
    let dir = root.join("usps");
    std::fs::create_dir_all(dir.join("usps")).unwrap();
    let (text, _) = esl_text(3);
    let p = dir.join("usps/zip.train.gz");
    let good = gzip(text.as_bytes());
    for k in offsets(good.len(), &mut rng, 40) {
        std::fs::write(&p, &good[..k]).unwrap();
        t.check(&format!("esl gz truncated at {k}"), guarded(&dir, "usps", Split::Train), "zip.train.gz", true);
    }
    let plain = text.as_bytes();
    for _ in 0..60 {
        let k = rng.random_range(1..plain.len());
        std::fs::write(&p, gzip(&plain[..k])).unwrap();
        // A cut at a line end, or inside the last value of a line, leaves a shorter valid file.
        let last = text[..k].rsplit('\n').next().unwrap_or("");
        let valid = last.trim().is_empty() || last.split_whitespace().count() == 257;
        t.check(&format!("esl text cut at {k}"), guarded(&dir, "usps", Split::Train), "zip.train.gz", !valid);
    }
    let line = |label: &str, v: &str, n: usize| format!("{label} {}\n", vec![v; n].join(" "));
    for (what, bad) in [
        ("label 10", line("10.0000", "0.5", 256)),
        ("label 3.5", line("3.5", "0.5", 256)),
        ("label x", line("x", "0.5", 256)),
        ("value out of range", line("3", "2.0", 256)),
        ("too few values", line("3", "0.5", 255)),
        ("too many values", line("3", "0.5", 257)),
        ("not a number", line("3", "abc", 256)),
    ] {
        std::fs::write(&p, gzip(bad.as_bytes())).unwrap();
        t.check(what, guarded(&dir, "usps", Split::Train), "zip.train.gz", true);
    }
    std::fs::write(&p, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    t.check("binary garbage", guarded(&dir, "usps", Split::Train), "zip.train.gz", true);

    // ---- MNIST-M Ganin folder ----
    let dir = root.join("ganin");
    write_ganin(&dir.join("mnist_m"), "train", 3, 3);
    let png_path = dir.join("mnist_m/mnist_m_train/00000001.png");
    let good = std::fs::read(&png_path).unwrap();
    for k in offsets(good.len(), &mut rng, 40) {
        std::fs::write(&png_path, &good[..k]).unwrap();
        t.check(&format!("png truncated at {k}"), guarded(&dir, "mnist-m", Split::Train), "00000001.png", true);
    }
    for _ in 0..40 {
        let mut bad = good.clone();
        let k = rng.random_range(0..bad.len());
        bad[k] ^= rng.random_range(1..=255u8);
        std::fs::write(&png_path, &bad).unwrap();
        t.check("png byte flip", guarded(&dir, "mnist-m", Split::Train), "00000001.png", false);
    }
    std::fs::write(&png_path, png(28, 28, 3, vec![0; 28 * 28 * 3])).unwrap();
    t.check("png of another size", guarded(&dir, "mnist-m", Split::Train), "00000001.png", true);
    std::fs::write(&png_path, &good).unwrap();
    let labels = dir.join("mnist_m/mnist_m_train_labels.txt");
    for bad in [
        "00000000.png 5\n00000001.png 12\n",
        "00000000.png\n",
        "00000000.png 5 extra\n",
        "00000000.png five\n",
        "../../etc/passwd 1\n",
        "",
        "missing.png 1\n",
    ] {
        std::fs::write(&labels, bad).unwrap();
        let file = if bad == "missing.png 1\n" { "mnist_m_train" } else { "mnist_m_train_labels.txt" };
        t.check(&format!("labels {bad:?}"), guarded(&dir, "mnist-m", Split::Train), file, true);
    }

    // ---- Hub-layout parquet in a local folder (read only with the `hub` feature) ----
    #[cfg(feature = "hub")]
    {
        let dir = root.join("pq");
        let p = dir.join("mnist/train-00000-of-00001.parquet");
        write_hub_parquet(&p, &grey_pngs(4, 28), &[1, 2, 3, 4]);
        let good = std::fs::read(&p).unwrap();
        for k in offsets(good.len(), &mut rng, 100) {
            std::fs::write(&p, &good[..k]).unwrap();
            t.check(
                &format!("parquet truncated at {k}"),
                guarded(&dir, "mnist", Split::Train),
                "train-00000-of-00001.parquet",
                true,
            );
        }
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..rng.random_range(1..4) {
                let k = rng.random_range(0..bad.len());
                bad[k] ^= rng.random_range(1..=255u8);
            }
            std::fs::write(&p, &bad).unwrap();
            t.check("parquet byte flips", guarded(&dir, "mnist", Split::Train), "train-00000-of-00001.parquet", false);
        }
        write_hub_parquet(&p, &grey_pngs(2, 28), &[3, 10]);
        t.check(
            "parquet label out of range",
            guarded(&dir, "mnist", Split::Train),
            "train-00000-of-00001.parquet",
            true,
        );
        write_hub_parquet(&p, &[b"not a png".to_vec()], &[3]);
        t.check("parquet corrupt PNG", guarded(&dir, "mnist", Split::Train), "train-00000-of-00001.parquet", true);
    }

    std::fs::remove_dir_all(&root).unwrap();
    println!(
        "robustness: {} corrupted inputs, {} rejected with the file named, {} loaded (benign)",
        t.cases, t.rejected, t.loaded
    );
    assert!(t.cases > 2000, "{}", t.cases);
}
