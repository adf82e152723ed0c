//! `load_digit_pair` on fixture folders (MNIST IDX, USPS ESL text, a partial MNIST-M Ganin folder)
//! and, when `ADAPT_DATA_DIR` is set, on the real data ("skipped: no data" otherwise, a failure
//! with `ADAPT_REQUIRE_DATA=1`).
mod common;
use adapt_datasets::pair::{
    DomainShaping, Fit, InputDescription, PairProfile, PairSpec, VALIDATION_FRACTION, load_digit_pair,
};
use adapt_datasets::preprocess::{self, InputStep};
use adapt_datasets::registry::DatasetId::{self, *};
use adapt_datasets::{DataRef, Normalization};
use adapt_datasets::{ImageDataset, Preprocess, Rows, Split, load, validation_split};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The paper's spec as the profiles of the real datasets decide it (checked on the real data
/// below): MNIST's digits, inside a margin, binarised; MNIST-M cropped to 28 and MNIST padded to 32.
fn paper(source: DatasetId, target: DatasetId) -> PairSpec {
    let size = if [source, target].contains(&Svhn) { 32 } else { 28 };
    let shaping = |id: DatasetId| DomainShaping {
        binarize: id == Mnist,
        digit_box: None,
        fit: match (id, size) {
            (MnistM, 28) => Fit::Crop,
            (Mnist, 32) => Fit::Pad,
            _ => Fit::Resize,
        },
    };
    PairSpec {
        source: source.into(),
        target: target.into(),
        image_size: size,
        normalization: Normalization::TrainMean,
        source_input: shaping(source),
        target_input: shaping(target),
    }
}

/// The BatchNorm preset: the paper's, nothing binarised.
fn bn(source: DatasetId, target: DatasetId) -> PairSpec {
    let mut spec = paper(source, target);
    spec.source_input.binarize = false;
    spec.target_input.binarize = false;
    spec
}

/// Generate To Adapt's inputs: 32x32, MNIST padded, `(x - 0.5) / 0.5`.
fn gta(source: DatasetId, target: DatasetId) -> PairSpec {
    let shaping =
        |id: DatasetId| DomainShaping { fit: if id == Mnist { Fit::Pad } else { Fit::Resize }, ..Default::default() };
    PairSpec {
        source: source.into(),
        target: target.into(),
        image_size: 32,
        normalization: Normalization::Fixed { mean: vec![0.5], std: vec![0.5] },
        source_input: shaping(source),
        target_input: shaping(target),
    }
}

/// The specs the profiles of the real `source` and `target` give.
fn measured(source: DatasetId, target: DatasetId, dir: &Path) -> (PairSpec, PairSpec) {
    let (s, t) = (DataRef::from(source), DataRef::from(target));
    let p = PairProfile::measure(&s, &t, Some(dir)).unwrap();
    (PairSpec::dann_paper(&s, &t, &p), PairSpec::gta(&s, &t, &p))
}

/// All rows of `rows`, as bits.
fn bits(rows: &dyn Rows) -> Vec<u32> {
    let (x, _) = rows.gather(&(0..rows.len()).collect::<Vec<_>>());
    x.iter().map(|v| v.to_bits()).collect()
}

/// A data directory with 36 MNIST images per split, 13 USPS training and 9 test digits, and an
/// MNIST-M folder whose training list names 10 images of which 7 exist.
fn fixtures(tag: &str) -> PathBuf {
    let dir = tmp(tag);
    write_mnist(&dir.join("mnist"), 36, 28, true);
    std::fs::create_dir_all(dir.join("usps")).unwrap();
    std::fs::write(dir.join("usps/zip.train.gz"), gzip(esl_text(13).0.as_bytes())).unwrap();
    std::fs::write(dir.join("usps/zip.test.gz"), gzip(esl_text(9).0.as_bytes())).unwrap();
    write_ganin(&dir.join("mnist_m"), "train", 10, 7);
    write_ganin(&dir.join("mnist_m"), "test", 5, 5);
    dir
}

/// The runner's pipeline before `load_digit_pair`, step by step with the crate's lower-level calls.
fn by_hand(spec: &PairSpec, dir: &Path, pre: impl Fn(DatasetId, &ImageDataset) -> Preprocess) -> [Vec<u32>; 5] {
    let id = |d: &DataRef| d.builtin().unwrap();
    let get = |id: DatasetId, split| {
        let mut ds = load(id.name(), split, Some(dir)).unwrap();
        pre(id, &ds).apply(&mut ds).unwrap();
        ds
    };
    let (mut st, mut tt, mut se, mut te) = (
        get(id(&spec.source), Split::Train),
        get(id(&spec.target), Split::Train),
        get(id(&spec.source), Split::Test),
        get(id(&spec.target), Split::Test),
    );
    let mean = preprocess::channel_mean(&[&st, &tt]).unwrap();
    for ds in [&mut st, &mut tt, &mut se, &mut te] {
        preprocess::subtract_mean(ds, &mean).unwrap();
    }
    let all: Arc<dyn Rows> = Arc::new(st);
    let held = all.len() / 12;
    let (fit, val) = validation_split(all, held, 0x5eed_0da7a).unwrap();
    [bits(&fit), bits(&val), bits(&tt), bits(&se), bits(&te)]
}

fn pair_bits(p: &adapt_datasets::DomainPair) -> [Vec<u32>; 5] {
    [
        bits(p.source_train.as_ref()),
        bits(p.source_val.as_deref().unwrap()),
        bits(p.target_train.as_ref()),
        bits(p.source_test.as_ref()),
        bits(p.target_test.as_ref()),
    ]
}

#[test]
fn dann_pairs_match_the_step_by_step_pipeline_bit_for_bit() {
    let dir = fixtures("pair-dann");
    let spec = paper(Mnist, Usps);
    let p = load_digit_pair(&spec, Some(&dir)).unwrap();
    assert_eq!((p.source_name.as_str(), p.target_name.as_str()), ("mnist", "usps"));
    // 36 / 12 = 3 held out.
    assert_eq!((p.source_train.len(), p.source_val.as_ref().unwrap().len()), (33, 3));
    assert_eq!((p.target_train.len(), p.source_test.len(), p.target_test.len()), (13, 36, 9));
    for rows in [&p.source_train, &p.target_train, &p.source_test, &p.target_test] {
        assert_eq!(rows.row_shape(), [3, 28, 28]);
    }
    let binarised =
        |id: DatasetId, _: &ImageDataset| Preprocess { binarize: (id == Mnist).then_some(1.0), ..Preprocess::rgb(28) };
    assert!(pair_bits(&p) == by_hand(&spec, &dir, binarised), "paper recipe");
    assert_eq!(p.std, [1.0]);
    assert_eq!(p.mean.len(), 3);
    // The subtracted mean is the mean of both training sets: after it, their joint mean is 0.
    let (mut sum, mut count) = (0f64, 0usize);
    for rows in [p.source_train.as_ref(), p.source_val.as_deref().unwrap(), p.target_train.as_ref()] {
        let (x, _) = rows.gather(&(0..rows.len()).collect::<Vec<_>>());
        sum += x.iter().map(|v| *v as f64).sum::<f64>();
        count += x.len();
    }
    assert!((sum / count as f64).abs() < 1e-5, "{}", sum / count as f64);
    assert!(p.notes.is_empty());

    let bn = bn(Mnist, Usps);
    let q = load_digit_pair(&bn, Some(&dir)).unwrap();
    assert!(pair_bits(&q) == by_hand(&bn, &dir, |_, _| Preprocess::rgb(28)), "bn recipe");
    assert_ne!(q.mean, p.mean, "plain MNIST has another mean than binarised MNIST");

    // MNIST-M crops 32 -> 28 (its digits are MNIST's padded by 2), MNIST stays at 28.
    let mm = paper(Mnist, MnistM);
    let r = load_digit_pair(&mm, Some(&dir)).unwrap();
    let crop = |id: DatasetId, _: &ImageDataset| Preprocess {
        binarize: (id == Mnist).then_some(1.0),
        crop_to: (id == MnistM).then_some(28),
        resize: (id != MnistM).then_some(28),
        ..Preprocess::rgb(28)
    };
    assert!(pair_bits(&r) == by_hand(&mm, &dir, crop), "MNIST -> MNIST-M");
    assert_eq!(r.notes, ["mnist-m train: 7 of 10 listed images present; using those"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gta_inputs_are_in_minus_one_to_one_and_the_description_reproduces_them() {
    let dir = fixtures("pair-gta");
    let p = load_digit_pair(&gta(Mnist, MnistM), Some(&dir)).unwrap();
    assert_eq!((p.mean.as_slice(), p.std.as_slice()), (&[0.5f32][..], &[0.5f32][..]));
    for (rows, is_source) in
        [(&p.source_train, true), (&p.target_train, false), (&p.source_test, true), (&p.target_test, false)]
    {
        assert_eq!(rows.row_shape(), [3, 32, 32]);
        let (x, _) = rows.gather(&(0..rows.len()).collect::<Vec<_>>());
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert!(!is_source || x.contains(&-1.0), "MNIST's zero padding maps to -1");
    }
    // Raw pixel v becomes (v / 255 - 0.5) * 2, in f32: MNIST-M image 0, channel 1, pixel (row 4, column 6).
    let raw = load("mnist-m", Split::Test, Some(&dir)).unwrap();
    let mut row = vec![0f32; 3 * 1024];
    p.target_test.copy_row(0, &mut row);
    let v = raw.image(0)[1024 + 4 * 32 + 6];
    assert_eq!(row[1024 + 4 * 32 + 6].to_bits(), ((v / 255.0 - 0.5) * (1.0 / 0.5)).to_bits());

    // The description, through JSON, is all it takes to rebuild the inputs from the raw files.
    let json = serde_json::to_string(p.input.as_ref().unwrap()).unwrap();
    let d: InputDescription = serde_json::from_str(&json).unwrap();
    assert_eq!(d.input_shape, [3, 32, 32]);
    assert_eq!(d.source.original_shape, [1, 28, 28]);
    assert!(matches!(d.source.steps[0], InputStep::Pad { top: 2, left: 2, bottom: 2, right: 2, .. }));
    assert_eq!(d.normalization.mean, [0.5; 3]);
    let counts: Vec<(&str, usize)> = d.source.splits.iter().map(|s| (s.split.as_str(), s.images)).collect();
    assert_eq!(counts, [("train", 33), ("validation", 3), ("test", 36)]);
    assert_eq!(d.validation.held_out, 36 / VALIDATION_FRACTION);
    assert_eq!(d.target.splits[0].partial.map(|p| (p.loaded, p.listed)), Some((7, 10)));
    for (domain, split, rows) in [
        (&d.target, Split::Train, &p.target_train),
        (&d.target, Split::Test, &p.target_test),
        (&d.source, Split::Test, &p.source_test),
    ] {
        let mut ds = load(&domain.dataset, split, Some(&dir)).unwrap();
        for step in &domain.steps {
            step.apply(&mut ds).unwrap();
        }
        assert!(bits(&ds) == bits(rows.as_ref()), "{} {split}", domain.dataset);
    }
    let text = d.to_string();
    assert!(text.contains("pad with 0 to 32x32") && text.contains("validation: 3 of the 36"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn per_image_standardisation_gives_every_input_channel_mean_zero_and_std_one() {
    let dir = fixtures("pair-per-image");
    let spec = PairSpec { normalization: Normalization::PerImage { epsilon: 1e-3 }, ..paper(Mnist, MnistM) };
    let p = load_digit_pair(&spec, Some(&dir)).unwrap();
    assert!(p.mean.is_empty() && p.std.is_empty());
    let plane = 28 * 28;
    for rows in [&p.source_train, &p.target_train, &p.source_test, &p.target_test] {
        let (x, _) = rows.gather(&(0..rows.len()).collect::<Vec<_>>());
        for channel in x.chunks(plane) {
            let mean = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
            let var = channel.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / plane as f64;
            assert!(mean.abs() < 1e-5 && ((var - 1.0).abs() < 1e-4 || var == 0.0), "mean {mean}, variance {var}");
        }
    }
    // The description names the step and, replayed on the raw files, gives the same inputs.
    let d = p.input.as_ref().unwrap();
    assert_eq!(d.normalization.kind, "per_image");
    assert_eq!(d.target.steps.last(), Some(&InputStep::Standardize { epsilon: 1e-3 }));
    let mut ds = load("mnist-m", Split::Test, Some(&dir)).unwrap();
    for step in &d.target.steps {
        step.apply(&mut ds).unwrap();
    }
    assert!(bits(&ds) == bits(p.target_test.as_ref()));
    // A bad epsilon is refused before anything is read.
    let bad = PairSpec { normalization: Normalization::PerImage { epsilon: 0.0 }, ..spec };
    let err = load_digit_pair(&bad, Some(&tmp("pair-per-image-none"))).err().unwrap().to_string();
    assert!(err.contains("epsilon"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_data_is_an_error_naming_the_dataset() {
    let dir = tmp("pair-missing");
    write_mnist(&dir.join("mnist"), 24, 28, false);
    std::fs::create_dir_all(dir.join("usps")).unwrap();
    let e = load_digit_pair(&paper(Mnist, Usps), Some(&dir)).err().unwrap().to_string();
    assert!(e.contains("usps") && e.contains("zip.train.gz"), "{e}");
    // Too few source images to hold one in 12 out.
    write_mnist(&dir.join("mnist"), 11, 28, false);
    std::fs::write(dir.join("usps/zip.train.gz"), gzip(esl_text(3).0.as_bytes())).unwrap();
    std::fs::write(dir.join("usps/zip.test.gz"), gzip(esl_text(3).0.as_bytes())).unwrap();
    assert!(load_digit_pair(&paper(Mnist, Usps), Some(&dir)).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_mnist_to_usps_counts_ranges_and_input_check() {
    let Some(dir) = real_data(&["mnist", "usps"]) else { return };
    // The profiles decide what the paper's code did by name: MNIST binarised, USPS resized.
    let (p_spec, g_spec) = measured(Mnist, Usps, &dir);
    assert_eq!((p_spec, g_spec), (paper(Mnist, Usps), gta(Mnist, Usps)));
    let p = load_digit_pair(&paper(Mnist, Usps), Some(&dir)).unwrap();
    assert_eq!((p.source_train.len(), p.source_val.as_ref().unwrap().len(), p.source_test.len()), (55000, 5000, 10000));
    assert_eq!((p.target_train.len(), p.target_test.len()), (7291, 2007));
    assert_eq!(p.target_train.row_shape(), [3, 28, 28]);
    // USPS digits fill their 16x16 frame; MNIST's sit in a 20-pixel box inside 28: the check says so.
    let warnings = p.compare_inputs(usize::MAX).unwrap();
    assert_eq!(warnings.iter().map(|w| w.quantity.as_str()).collect::<Vec<_>>(), ["ink_box_height"], "{warnings:?}");

    let g = load_digit_pair(&gta(Mnist, Usps), Some(&dir)).unwrap();
    assert_eq!((g.target_train.len(), g.target_test.len()), (7291, 2007));
    for rows in [&g.source_train, g.source_val.as_ref().unwrap(), &g.target_train, &g.source_test, &g.target_test] {
        assert_eq!(rows.row_shape(), [3, 32, 32]);
        let (x, _) = rows.gather(&(0..rows.len()).collect::<Vec<_>>());
        let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
        assert!(lo >= -1.0 && hi <= 1.0, "[{lo}, {hi}]");
        assert_eq!((lo, hi), (-1.0, 1.0));
    }
}

#[test]
fn real_mnist_to_mnist_m_inputs_agree() {
    let Some(dir) = real_data(&["mnist", "mnist_m"]) else { return };
    // MNIST-M's 32-pixel frame is cropped to 28, not resized: its ink lies inside the crop.
    let (p_spec, g_spec) = measured(Mnist, MnistM, &dir);
    assert_eq!((p_spec, g_spec), (paper(Mnist, MnistM), gta(Mnist, MnistM)));
    assert_eq!(measured(MnistM, Mnist, &dir).0, paper(MnistM, Mnist));
    let p = load_digit_pair(&paper(Mnist, MnistM), Some(&dir)).unwrap();
    assert_eq!((p.target_train.len(), p.target_test.len()), (30000, 9001));
    assert_eq!(p.notes, ["mnist-m train: 30000 of 59001 listed images present; using those"]);
    // Cropped to 28, MNIST-M's digits are MNIST's: no warning, though the domains look different.
    assert_eq!(p.compare_inputs(usize::MAX).unwrap(), []);
}
