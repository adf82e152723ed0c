//! Inputs that used to pass silently: data files that are not regular files, half of a pair, an
//! empty dataset folder, a data directory that does not exist; MNIST-M label lists with a
//! byte-order mark, a file listed twice, or mostly missing files; SVHN
//! label 0. Each must be an error naming the file (or load correctly, for the BOM).
mod common;
use adapt_datasets::registry::DatasetId;
use adapt_datasets::verify::{Report, verify};
use adapt_datasets::{Split, load};
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `data verify` of `only` in `data_dir`, in a thread: a FIFO that were opened would block it
/// forever, which must fail the test rather than hang it.
fn verify_within(data_dir: &Path, only: DatasetId) -> Report {
    let dir = data_dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = verify(Some(&dir), &[only], false, &mut |_| {});
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("data verify hung").expect("cards readable")
}

fn assert_fails_naming(r: &Report, what: &str, needles: &[&str]) {
    assert!(!r.ok, "{what}: verify passed: {r:?}");
    let all = r.problems.join("\n");
    for n in needles {
        assert!(all.contains(n), "{what}: no problem names '{n}': {all}");
    }
}

fn mnist_dir(tag: &str) -> (PathBuf, PathBuf) {
    let data = tmp(tag);
    write_mnist(&data.join("mnist"), 3, 28, true);
    let images = data.join("mnist/train-images-idx3-ubyte.gz");
    (data, images)
}

/// Puts some kind of file system entry at a path.
type MakeEntry = Box<dyn Fn(&Path)>;

#[test]
fn data_files_that_are_not_regular_files_fail_verify_and_load() {
    let (data, images) = mnist_dir("kinds");
    assert!(verify_within(&data, DatasetId::Mnist).ok, "the fixture itself verifies");
    #[cfg(unix)]
    let cases: Vec<(&str, MakeEntry, &str)> = vec![
        ("a directory", Box::new(|p: &Path| std::fs::create_dir(p).unwrap()), "a directory"),
        (
            "a dangling symlink",
            Box::new(|p: &Path| std::os::unix::fs::symlink(p.with_extension("gone"), p).unwrap()),
            "dangling",
        ),
        (
            "a FIFO",
            Box::new(|p: &Path| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success())),
            "FIFO",
        ),
        (
            "a link to /dev/zero",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
            "character device",
        ),
    ];
    #[cfg(unix)]
    for (what, make, kind) in cases {
        std::fs::remove_file(&images).unwrap();
        make(&images);
        let r = verify_within(&data, DatasetId::Mnist);
        assert_fails_naming(&r, what, &["train-images-idx3-ubyte.gz", kind]);
        let e = load("mnist", Split::Train, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains(kind), "{what}: {e}");
        if images.is_dir() {
            std::fs::remove_dir(&images).unwrap();
        } else {
            std::fs::remove_file(&images).unwrap();
        }
        std::fs::write(&images, gzip(&idx(&[3, 28, 28], &vec![0; 3 * 784]))).unwrap();
    }
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn half_a_pair_an_empty_folder_and_a_missing_data_dir_fail() {
    let (data, _) = mnist_dir("half");
    std::fs::remove_file(data.join("mnist/train-labels-idx1-ubyte.gz")).unwrap();
    let r = verify_within(&data, DatasetId::Mnist);
    assert_fails_naming(&r, "images without labels", &["train-images-idx3-ubyte.gz", "labels"]);
    let e = load("mnist", Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains("no labels file"), "{e}");

    // Two copies of one file (gzipped and not) are not for the loader to choose between.
    write_mnist(&data.join("mnist"), 3, 28, true);
    write_mnist(&data.join("mnist"), 4, 28, false);
    let e = load("mnist", Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz and") && e.contains("keep one"), "{e}");

    std::fs::remove_dir_all(data.join("mnist")).unwrap();
    std::fs::create_dir(data.join("mnist")).unwrap();
    let r = verify_within(&data, DatasetId::Mnist);
    assert_fails_naming(&r, "an empty dataset folder", &["mnist", "no split of mnist recognised"]);

    // An image folder without its label list is half of MNIST-M.
    std::fs::create_dir_all(data.join("mnist_m/mnist_m_test")).unwrap();
    let r = verify_within(&data, DatasetId::MnistM);
    assert_fails_naming(&r, "images without a list", &["mnist_m_test_labels.txt", "missing"]);

    let nowhere = data.join("no-such-dir");
    let r = verify_within(&nowhere, DatasetId::Mnist);
    assert_fails_naming(&r, "a missing --data-dir", &["no-such-dir", "does not exist"]);
    // Loading does not fall back to the Hub either.
    let e = load("mnist", Split::Train, Some(&nowhere)).unwrap_err().to_string();
    assert!(e.contains("no-such-dir") && e.contains("does not exist"), "{e}");
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn mnist_m_label_lists_bom_duplicates_and_mostly_missing_files() {
    let data = tmp("lists");
    let root = data.join("mnist_m");
    let labels = write_ganin(&root, "train", 4, 4);
    let list = root.join("mnist_m_train_labels.txt");
    let text = std::fs::read_to_string(&list).unwrap();

    // A byte-order mark used to swallow the first image's name.
    std::fs::write(&list, format!("\u{feff}{text}")).unwrap();
    let ds = load("mnist-m", Split::Train, Some(&data)).unwrap();
    assert_eq!(ds.labels, labels);
    assert!(ds.partial.is_none());

    // The same file twice, with the same or another label, names both lines.
    for extra in ["00000001.png 7\n", "00000001.png 0\n"] {
        std::fs::write(&list, format!("{text}{extra}")).unwrap();
        let e = load("mnist-m", Split::Train, Some(&data)).unwrap_err().to_string();
        assert!(e.contains("mnist_m_train_labels.txt") && e.contains("line 5") && e.contains("first on line 2"), "{e}");
    }

    // Up to half missing is the known truncation (a partial set); more is an error with the counts.
    let missing = |n: usize| (0..n).map(|i| format!("missing{i:06}.png {}\n", i % 10)).collect::<String>();
    std::fs::write(&list, format!("{text}{}", missing(4))).unwrap();
    let ds = load("mnist-m", Split::Train, Some(&data)).unwrap();
    assert_eq!(ds.partial.map(|p| (p.loaded, p.listed)), Some((4, 8)));
    std::fs::write(&list, format!("{text}{}", missing(300_000))).unwrap();
    let e = load("mnist-m", Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(e.contains("mnist_m_train") && e.contains("only 4 of the 300004"), "{e}");
    let r = verify_within(&data, DatasetId::MnistM);
    assert_fails_naming(&r, "mostly missing", &["only 4 of the 300004"]);

    // A listed name that is a directory is not a missing image.
    std::fs::write(&list, &text).unwrap();
    std::fs::remove_file(root.join("mnist_m_train/00000002.png")).unwrap();
    std::fs::create_dir(root.join("mnist_m_train/00000002.png")).unwrap();
    let e = load("mnist-m", Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(e.contains("00000002.png") && e.contains("a directory"), "{e}");
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn svhn_label_zero_is_not_a_label() {
    let data = tmp("svhn0");
    std::fs::create_dir_all(data.join("svhn")).unwrap();
    let x = mat_matrix("X", &[32, 32, 3, 2], &MatValues::U8(vec![0; 32 * 32 * 3 * 2]));
    for (y, ok) in [(vec![10.0, 1.0], true), (vec![0.0, 1.0], false)] {
        let yv = mat_matrix("y", &[2, 1], &MatValues::F64(y));
        std::fs::write(data.join("svhn/train_32x32.mat"), mat_file(&[x.clone(), yv], false)).unwrap();
        match load("svhn", Split::Train, Some(&data)) {
            Ok(ds) => assert!(ok && ds.labels == [0, 1], "{:?}", ds.labels),
            Err(e) => {
                let e = e.to_string();
                assert!(!ok && e.contains("train_32x32.mat") && e.contains("y[0] = 0 is out of range 1..10"), "{e}");
            }
        }
    }
    std::fs::remove_dir_all(&data).unwrap();
}
