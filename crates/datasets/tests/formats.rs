//! Every loader on small fixtures written from the format descriptions.
mod common;
use adapt_datasets::{Split, load};
use common::*;

#[test]
fn mnist_idx_gzipped_and_plain() {
    for gz in [true, false] {
        let dir = tmp(&format!("mnist-{gz}"));
        let labels = write_mnist(&dir.join("mnist"), 7, 28, gz);
        let ds = load("mnist", Split::Train, Some(&dir)).unwrap();
        assert_eq!(ds.shape(), [7, 1, 28, 28]);
        assert_eq!(ds.labels, labels);
        assert_eq!(ds.name, "mnist");
        for i in 0..7 {
            for p in [0, 1, 100, 783] {
                assert_eq!(ds.image(i)[p], pixel(i, p) as f32);
            }
        }
        let t = load("mnist", Split::Test, Some(&dir)).unwrap();
        assert_eq!((t.len(), t.split), (7, Split::Test));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn mnist_m_ganin_folder_full_and_partial() {
    let dir = tmp("mnistm");
    let root = dir.join("mnist_m");
    let train = write_ganin(&root, "train", 12, 7);
    let test = write_ganin(&root, "test", 4, 4);
    let ds = load("mnist-m", Split::Train, Some(&dir)).unwrap();
    assert_eq!(ds.shape(), [7, 3, 32, 32]);
    assert_eq!(ds.labels, train[..7]);
    let p = ds.partial.unwrap();
    assert_eq!((p.loaded, p.listed), (7, 12));
    // Planar channels: channel c of pixel (x, y) of image i.
    for (i, x, y, c) in [(0, 0, 0, 0), (3, 5, 7, 2), (4, 31, 31, 1)] {
        assert_eq!(ds.image(i)[c * 1024 + y * 32 + x], rgb(i, x, y, c) as f32);
    }
    let t = load("mnist_m", Split::Test, Some(&dir)).unwrap();
    assert_eq!(t.labels, test);
    assert!(t.partial.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_svhn(ds: &adapt_datasets::ImageDataset, n: usize, labels: &[u32]) {
    assert_eq!(ds.shape(), [n, 3, 32, 32]);
    assert_eq!(ds.labels, labels);
    for (i, r, c, ch) in [(0, 0, 0, 0), (1, 3, 9, 1), (n - 1, 31, 30, 2), (2, 30, 1, 2)] {
        assert_eq!(ds.image(i)[ch * 1024 + r * 32 + c], svhn_px(i, r, c, ch) as f32, "image {i} ({r},{c},{ch})");
    }
}

#[test]
fn svhn_mat_uncompressed_and_compressed_with_label_10_as_0() {
    let labels = [0, 1, 9, 5, 0, 3];
    for (compress, y_u8) in [(false, false), (true, false), (false, true), (true, true)] {
        let dir = tmp(&format!("svhn-{compress}-{y_u8}"));
        std::fs::create_dir_all(dir.join("svhn")).unwrap();
        std::fs::write(dir.join("svhn/train_32x32.mat"), svhn_mat(6, 32, 32, &labels, compress, y_u8)).unwrap();
        std::fs::write(dir.join("svhn/extra_32x32.mat"), svhn_mat(3, 32, 32, &labels[..3], compress, y_u8)).unwrap();
        let ds = load("svhn", Split::Train, Some(&dir)).unwrap();
        check_svhn(&ds, 6, &labels);
        assert_eq!(load("svhn", Split::Extra, Some(&dir)).unwrap().len(), 3);
        let e = load("svhn", Split::Test, Some(&dir)).unwrap_err().to_string();
        assert!(e.contains("test_32x32.mat"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn syn_digits_mat_loads_like_svhn() {
    let dir = tmp("syn");
    std::fs::create_dir_all(dir.join("syn_digits")).unwrap();
    let labels = [4, 0, 7];
    std::fs::write(dir.join("syn_digits/synth_test_32x32.mat"), svhn_mat(3, 32, 32, &labels, true, false)).unwrap();
    let ds = load("syn-digits", Split::Test, Some(&dir)).unwrap();
    assert_eq!(ds.name, "syn-digits");
    check_svhn(&ds, 3, &labels);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usps_esl_text_gzipped_with_float_labels() {
    let dir = tmp("usps");
    std::fs::create_dir_all(dir.join("usps")).unwrap();
    let (text, labels) = esl_text(9);
    std::fs::write(dir.join("usps/zip.train.gz"), gzip(text.as_bytes())).unwrap();
    std::fs::write(dir.join("usps/zip.test"), &text).unwrap();
    for split in [Split::Train, Split::Test] {
        let ds = load("usps", split, Some(&dir)).unwrap();
        assert_eq!(ds.shape(), [9, 1, 16, 16]);
        assert_eq!(ds.labels, labels);
        for i in 0..9 {
            for p in [0, 17, 255] {
                // [-1, 1] -> [0, 255], 1 (ink) = 255.
                let want = ((esl_value(i, p) + 1.0) * 127.5).round();
                assert_eq!(ds.image(i)[p], want);
            }
        }
    }
    // Resized to MNIST's 28 for the USPS <-> MNIST experiments.
    let mut ds = load("usps", Split::Train, Some(&dir)).unwrap();
    adapt_datasets::Preprocess { resize: Some(28), scale: true, ..Default::default() }.apply(&mut ds).unwrap();
    assert_eq!(ds.shape(), [9, 1, 28, 28]);
    assert!(ds.pixel_range().0 >= 0.0 && ds.pixel_range().1 <= 1.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "hub")]
#[test]
fn hub_layout_parquet_in_a_local_folder() {
    use adapt_datasets::registry::{DatasetId, load_local};
    let dir = tmp("pq-local");
    let labels: Vec<i64> = (0..10).map(|i| (i * 3) % 10).collect();
    write_hub_parquet(&dir.join("mnist/mnist/train-00000-of-00002.parquet"), &grey_pngs(6, 28), &labels[..6]);
    // The second shard continues the first: image numbering restarts, so use other pixels.
    let more: Vec<Vec<u8>> = (6..10).map(|i| png(28, 28, 1, (0..784).map(|p| pixel(i, p)).collect())).collect();
    write_hub_parquet(&dir.join("mnist/mnist/train-00001-of-00002.parquet"), &more, &labels[6..]);
    let ds = load("mnist", Split::Train, Some(&dir)).unwrap();
    assert_eq!(ds.shape(), [10, 1, 28, 28]);
    assert_eq!(ds.labels, labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
    for i in 0..10 {
        assert_eq!(ds.image(i)[200], pixel(i, 200) as f32);
    }
    // RGB datasets decode to three planes.
    let rgb_png: Vec<Vec<u8>> = (0..3)
        .map(|i| png(32, 32, 3, (0..32 * 32 * 3).map(|k| rgb(i, (k / 3) % 32, k / 96, k % 3)).collect()))
        .collect();
    write_hub_parquet(&dir.join("svhn/cropped_digits/test-00000-of-00001.parquet"), &rgb_png, &[1, 2, 3]);
    // A config the loader must not pick up.
    write_hub_parquet(&dir.join("svhn/full_numbers/test-00000-of-00001.parquet"), &rgb_png[..1], &[9]);
    let ds = load_local(DatasetId::Svhn, Split::Test, &dir.join("svhn")).unwrap();
    assert_eq!(ds.shape(), [3, 3, 32, 32]);
    assert_eq!(ds.labels, vec![1, 2, 3]);
    assert_eq!(ds.image(2)[2 * 1024 + 4 * 32 + 6], rgb(2, 6, 4, 2) as f32);
    std::fs::remove_dir_all(&dir).unwrap();
}
