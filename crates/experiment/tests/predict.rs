//! The predictor: rebuilt from weights files and run folders, new images converted to the
//! target's input steps, predictions that reproduce `eval`'s target accuracy exactly, and the
//! refusals of what it cannot take.
use adapt_datasets::pair::{DomainInput, InputDescription, NormalizationUsed, ValidationHoldOut};
use adapt_datasets::preprocess::InputStep;
use adapt_datasets::{DatasetId, ImageDataset, Split};
use adapt_experiment::digits::DigitRunConfig;
use adapt_experiment::predict::{CLASSES_KEY, Predictor, load_image_file, predict_paths};
use adapt_experiment::weights::{RunConfig, WeightsInfo, WeightsStep, save_weights};
use adapt_experiment::{DigitRecipe, Preset, Recipe, RunOptions, Selection, ToyRecipe};
use adapt_models::ParamStore;
use adapt_train::Method;
use candle_core::Device;
use std::path::{Path, PathBuf};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-predict-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// USPS as a digit run's target records it: 16x16 grey, resized to 28, copied to RGB, scaled,
/// a mean subtracted.
fn usps_target() -> DomainInput {
    DomainInput {
        dataset: "usps".into(),
        raw_pixels: "grey".into(),
        original_shape: [1, 16, 16],
        splits: vec![],
        steps: vec![
            InputStep::bilinear(28, 28),
            InputStep::RepeatChannels { channels: 3 },
            InputStep::Scale { divide_by: 255.0 },
            InputStep::Normalize { mean: vec![0.2, 0.2, 0.2], std: vec![1.0; 3] },
        ],
        test_steps: None,
    }
}

/// A digit model (random weights, BatchNorm net) for MNIST -> `target`, saved at `path` with
/// `extra` metadata keys added.
fn digit_weights(path: &Path, target: DomainInput, extra: &[(&str, &str)]) {
    // Profiles of grey 28- and 16-pixel digits: the MNIST net.
    let grey = |side: usize| adapt_datasets::DomainProfile {
        name: "grey".into(),
        shape: [1, side, side],
        images: 10,
        colour_spread: 0.0,
        ground_share: 0.8,
        ground_level: 0.0,
        digit_side: None,
        ink_box: None,
    };
    let profile = adapt_datasets::pair::PairProfile { source: grey(28), target: grey(16) };
    let (s, t) = (DatasetId::Mnist.into(), DatasetId::Usps.into());
    let mut recipe = DigitRecipe::new(&s, &t, &profile, vec![Method::Dann], Preset::Bn, 3);
    recipe.steps = 10;
    let cfg = DigitRunConfig::new(&recipe, Method::Dann, vec![0.2], adapt_datasets::pair::digit_classes()).unwrap();
    let params = ParamStore::new(3);
    cfg.build_model(&params, &Device::Cpu).unwrap();
    let input = InputDescription {
        source: DomainInput { dataset: "mnist".into(), original_shape: [1, 28, 28], ..usps_target() },
        target,
        input_shape: [3, 28, 28],
        normalization: NormalizationUsed {
            kind: "fixed".into(),
            mean: vec![0.2; 3],
            std: vec![1.0; 3],
            origin: "".into(),
        },
        validation: ValidationHoldOut { one_in: 12, held_out: 0, seed: 0, rule: "".into() },
    };
    let info = WeightsInfo {
        config: RunConfig::Digits(cfg),
        input: serde_json::to_value(Some(input)).unwrap(),
        classes: adapt_datasets::pair::digit_classes(),
    };
    save_weights(&params, path, &info, WeightsStep { step: 10, selection: Selection::Last }).unwrap();
    if !extra.is_empty() {
        let file = adapt_models::tensor_file::read(path, &Device::Cpu, true).unwrap();
        let mut meta = file.metadata;
        meta.remove(adapt_models::tensor_file::DIGEST_KEY);
        for (k, v) in extra {
            meta.insert(k.to_string(), v.to_string());
        }
        adapt_models::tensor_file::write(path, file.tensors.into_iter().collect(), meta).unwrap();
    }
}

/// `n` grey `h x w` digits-like images (a bright bar whose place depends on the image).
fn grey(n: usize, h: usize, w: usize) -> ImageDataset {
    let mut px = Vec::new();
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                px.push(if (x + i) % w < w / 3 || y == (i * 3) % h { 230 } else { (i * 7 % 40) as u8 });
            }
        }
    }
    ImageDataset::from_u8("hand-made", Split::Test, &px, vec![0; n], [1, h, w]).unwrap()
}

fn save_png(ds: &ImageDataset, i: usize, path: &Path) {
    let (h, w) = (ds.height as u32, ds.width as u32);
    let px: Vec<u8> = ds.image(i).iter().map(|&v| v as u8).collect();
    if ds.channels == 1 {
        image::GrayImage::from_raw(w, h, px).unwrap().save(path).unwrap();
    } else {
        let plane = (h * w) as usize;
        let hwc: Vec<u8> = (0..plane).flat_map(|p| [px[p], px[plane + p], px[2 * plane + p]]).collect();
        image::RgbImage::from_raw(w, h, hwc).unwrap().save(path).unwrap();
    }
}

#[test]
fn a_weights_file_predicts_its_classes_with_ranked_probabilities() {
    let dir = tmp("basic");
    let weights = dir.join("model.safetensors");
    digit_weights(&weights, usps_target(), &[]);
    let p = Predictor::from_weights(&weights, &Device::Cpu).unwrap();
    assert_eq!(p.classes(), (0..10).map(|c| c.to_string()).collect::<Vec<_>>(), "built-in digits: 0..9");
    assert_eq!((p.method(), p.input_shape(), p.batch_size(), p.step().step), ("dann", [3, 28, 28], 256, 10));
    let inputs = p.prepare(grey(5, 16, 16)).unwrap();
    assert_eq!(inputs.shape(), [5, 3, 28, 28]);
    let preds = p.predict(&inputs).unwrap();
    assert_eq!(preds.len(), 5);
    for pr in &preds {
        assert_eq!(pr.ranked.len(), 10);
        assert_eq!(pr.ranked[0].0, pr.class);
        assert!(pr.ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{:?}", pr.ranked);
        let sum: f32 = pr.ranked.iter().map(|r| r.1).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        assert_eq!(pr.probability(), pr.ranked[0].1);
    }
    // Other batches change the outputs by float rounding only (running statistics).
    let small = Predictor::from_weights(&weights, &Device::Cpu).unwrap().with_batch_size(2).unwrap();
    for (a, b) in small.predict(&inputs).unwrap().iter().zip(&preds) {
        assert_eq!(a.class, b.class);
        assert!(a.ranked.iter().zip(&b.ranked).all(|(x, y)| (x.1 - y.1).abs() < 1e-6), "{a:?} vs {b:?}");
    }
    assert!(Predictor::from_weights(&weights, &Device::Cpu).unwrap().with_batch_size(0).is_err());
    // Unprepared images are refused, not silently misread.
    let e = p.predict(&grey(2, 16, 16)).unwrap_err().to_string();
    assert!(e.contains("prepare"), "{e}");
    let mut nan = inputs.clone();
    nan.images[3 * 28 * 28 + 5] = f32::NAN;
    assert!(p.predict(&nan).unwrap_err().to_string().contains("non-finite"));
}

#[test]
fn new_images_are_converted_to_the_targets_shape_and_steps() {
    let dir = tmp("convert");
    let weights = dir.join("model.safetensors");
    digit_weights(&weights, usps_target(), &[]);
    let p = Predictor::from_weights(&weights, &Device::Cpu).unwrap();
    // At the target's own shape the recorded steps apply as they are.
    assert!(p.conversions([1, 16, 16]).unwrap().is_empty());
    let g = grey(4, 16, 16);
    let mut by_hand = g.clone();
    for s in &usps_target().steps {
        s.apply(&mut by_hand).unwrap();
    }
    assert_eq!(p.prepare(g.clone()).unwrap().images, by_hand.images);
    // Colour images become grey by the mean of their channels: three equal channels give the
    // grey image back.
    let mut rgb = g.clone();
    InputStep::RepeatChannels { channels: 3 }.apply(&mut rgb).unwrap();
    assert_eq!(p.prepare(rgb).unwrap().images, by_hand.images);
    assert!(p.conversions([3, 16, 16]).unwrap()[0].contains("mean of their channels"));
    // Other sizes are brought to the target's original 16x16 first, as its images were.
    let odd = grey(2, 40, 30);
    let mut by_hand = odd.clone();
    adapt_datasets::preprocess::resize(&mut by_hand, 16, 16).unwrap();
    for s in &usps_target().steps {
        s.apply(&mut by_hand).unwrap();
    }
    assert_eq!(p.prepare(odd).unwrap().images, by_hand.images);
    let notes = p.conversions([1, 40, 30]).unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains("40x30 images resized bilinearly to the target's original 16x16"),
        "{notes:?}"
    );
    let e = p.conversions([4, 16, 16]).unwrap_err().to_string();
    assert!(e.contains("4 channels"), "{e}");

    // A colour target whose steps crop a 32x32 frame (MNIST-M): a grey image is copied to RGB,
    // and one of another size is resized to 32x32 first.
    let mnist_m = DomainInput {
        dataset: "mnist-m".into(),
        original_shape: [3, 32, 32],
        steps: vec![
            InputStep::CenterCrop { height: 28, width: 28, top: 2, left: 2 },
            InputStep::Scale { divide_by: 255.0 },
        ],
        ..usps_target()
    };
    let weights = dir.join("mnist_m.safetensors");
    digit_weights(&weights, mnist_m, &[]);
    let p = Predictor::from_weights(&weights, &Device::Cpu).unwrap();
    let notes = p.conversions([1, 20, 24]).unwrap();
    assert!(notes[0].contains("copied to 3 channels"), "{notes:?}");
    assert!(notes[1].contains("20x24 images resized bilinearly to the target's original 32x32"), "{notes:?}");
    let prepared = p.prepare(grey(3, 20, 24)).unwrap();
    assert_eq!(prepared.shape(), [3, 3, 28, 28]);
    assert!(prepared.images.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(p.conversions([3, 32, 32]).unwrap().is_empty());
    assert_eq!(p.prepare(grey(1, 32, 32)).unwrap().shape(), [1, 3, 28, 28]);
}

#[test]
fn class_names_come_from_the_weights_metadata() {
    let dir = tmp("classes");
    let weights = dir.join("model.safetensors");
    let names: Vec<String> = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    digit_weights(&weights, usps_target(), &[(CLASSES_KEY, &serde_json::to_string(&names).unwrap())]);
    assert_eq!(Predictor::from_weights(&weights, &Device::Cpu).unwrap().classes(), names);
    for (bad, needle) in [
        (r#"["a","b"]"#, "names 2 classes"),
        ("not json", "JSON array"),
        (r#"["a","a","b","c","d","e","f","g","h","i"]"#, "twice"),
    ] {
        digit_weights(&weights, usps_target(), &[(CLASSES_KEY, bad)]);
        let e = Predictor::from_weights(&weights, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains(needle) && e.contains("model.safetensors"), "{bad}: {e}");
    }
}

#[test]
fn what_is_not_an_image_model_is_refused_naming_it() {
    let dir = tmp("refused");
    // A toy run's weights: a model of 2D points.
    let recipe = Recipe::Toy(ToyRecipe { steps: 20, ..ToyRecipe::new(vec![Method::Dann], 0) });
    let toy = dir.join("toy");
    let opts = RunOptions { out: Some(toy.clone()), quiet: true, ..RunOptions::default() };
    adapt_experiment::run(&recipe, &opts, &Device::Cpu).unwrap();
    let e = Predictor::from_weights(&toy.join("model.safetensors"), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("toy") && e.contains("model.safetensors"), "{e}");
    let e = Predictor::from_run_folder(&toy, None, None, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("toy"), "{e}");
    // An image where the weights should be; a folder that is no run.
    let png = dir.join("digit.png");
    save_png(&grey(1, 16, 16), 0, &png);
    let e = Predictor::from_weights(&png, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("digit.png"), "{e}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = Predictor::from_run_folder(&empty, None, None, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("not a run folder") && e.contains("empty"), "{e}");
}

#[test]
fn image_files_are_decoded_and_bad_ones_named() {
    let dir = tmp("files");
    let weights = dir.join("model.safetensors");
    digit_weights(&weights, usps_target(), &[]);
    let p = Predictor::from_weights(&weights, &Device::Cpu).unwrap();
    let g = grey(3, 16, 16);
    let mut files = Vec::new();
    for i in 0..3 {
        files.push(dir.join(format!("{i}.png")));
        save_png(&g, i, &files[i]);
    }
    // A colour file of another size among them.
    let mut rgb = grey(1, 20, 20);
    InputStep::RepeatChannels { channels: 3 }.apply(&mut rgb).unwrap();
    files.push(dir.join("colour.png"));
    save_png(&rgb, 0, &files[3]);
    let (decoded, notes) = load_image_file(&files[3]).unwrap();
    assert_eq!((decoded.shape(), notes.len()), ([1, 3, 20, 20], 0));
    let table = predict_paths(&p, &files).unwrap();
    assert_eq!(table.rows.len(), 4);
    assert_eq!(table.rows[0].path, files[0].display().to_string());
    let direct = p.predict(&p.prepare(g).unwrap()).unwrap();
    for (i, (row, d)) in table.rows.iter().zip(&direct).enumerate() {
        assert_eq!(row.prediction, *d, "file {i}");
    }
    assert!(table.notes.iter().any(|n| n.contains("colour.png") && n.contains("mean")), "{:?}", table.notes);
    assert_eq!((table.accuracy(), table.labelled_images()), (None, 0));
    let csv = table.to_csv(3).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "path,class,probability,class_2,probability_2,class_3,probability_3");
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1].split(',').count(), 7);
    assert!(table.to_csv(11).is_err() && table.to_csv(0).is_err());

    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let text = dir.join("notes.png");
    std::fs::write(&text, "hello").unwrap();
    let missing = dir.join("missing.png");
    for bad in [&corrupt, &text, &missing] {
        let e = predict_paths(&p, &[files[0].clone(), bad.clone()]).unwrap_err().to_string();
        assert!(e.contains(bad.file_name().unwrap().to_str().unwrap()), "{e}");
    }
    assert!(predict_paths(&p, &[]).unwrap_err().to_string().contains("no input"));
    // The output must go into an existing folder.
    let e = table.write_csv(&dir.join("none").join("p.csv"), 1).unwrap_err().to_string();
    assert!(e.contains("no such folder"), "{e}");
    table.write_csv(&dir.join("p.csv"), 1).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("p.csv")).unwrap(), table.to_csv(1).unwrap());
}

#[test]
fn folders_and_list_files_give_paths_labels_and_accuracy() {
    let dir = tmp("folders");
    let weights = dir.join("model.safetensors");
    digit_weights(&weights, usps_target(), &[]);
    let p = Predictor::from_weights(&weights, &Device::Cpu).unwrap();
    let g = grey(6, 16, 16);
    // Class folders 3/ and 7/ (and a class the model lacks), a flat folder, a list file.
    let classes = dir.join("classes");
    for (i, class) in ["3", "3", "7", "7", "cat", "7"].iter().enumerate() {
        std::fs::create_dir_all(classes.join(class)).unwrap();
        save_png(&g, i, &classes.join(class).join(format!("{i}.png")));
    }
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for i in 0..2 {
        save_png(&g, i, &flat.join(format!("{i}.png")));
    }
    std::fs::write(dir.join("list.txt"), "flat/0.png 3\nflat/1.png 9\n").unwrap();
    let inputs = [classes.clone(), flat.clone(), dir.join("list.txt")];
    let table = predict_paths(&p, &inputs).unwrap();
    assert_eq!(table.rows.len(), 10);
    let direct = p.predict(&p.prepare(g).unwrap()).unwrap();
    // Class folders in the loader's order (by file name): 0..5.
    for (row, d) in table.rows.iter().zip(&direct) {
        assert_eq!(row.prediction, *d, "{}", row.path);
    }
    assert_eq!(table.rows[0].path, classes.join("3").join("0.png").display().to_string());
    assert_eq!(table.rows[4].label, None, "'cat' is not a class of the model");
    assert!(table.notes.iter().any(|n| n.contains("labels cat are not classes")), "{:?}", table.notes);
    assert_eq!(table.rows[6].path, flat.join("0.png").display().to_string());
    assert_eq!((table.rows[6].label, table.rows[7].label), (None, None));
    assert_eq!(table.rows[8].path, dir.join("flat/0.png").display().to_string());
    assert_eq!((table.rows[8].label, table.rows[9].label), (Some(3), Some(9)));
    assert_eq!(table.labelled_images(), 7);
    let right = table.rows.iter().filter(|r| r.label.is_some_and(|l| l == r.prediction.class)).count();
    assert_eq!(table.accuracy(), Some(right as f64 / 7.0));

    // An empty folder, and a corrupt image inside a folder, are refused naming them.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(predict_paths(&p, &[empty]).unwrap_err().to_string().contains("empty"));
    std::fs::write(flat.join("2.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let e = predict_paths(&p, &[flat]).unwrap_err().to_string();
    assert!(e.contains("2.png"), "{e}");
}

/// A short digit run on MNIST -> USPS, its target test set exported as class folders of PNGs:
/// predicting them gives `eval`'s target accuracy exactly, for a net with per-domain BatchNorm
/// (whose running statistics are the target's).
#[test]
fn predictions_on_the_exported_target_test_set_reproduce_eval() {
    let Some(data) = std::env::var_os("ADAPT_DATA_DIR").filter(|d| PathBuf::from(d).join("usps").is_dir()) else {
        assert!(
            std::env::var_os("ADAPT_REQUIRE_DATA").is_none(),
            "ADAPT_REQUIRE_DATA is set, but ADAPT_DATA_DIR ({:?}) has no usps/ folder",
            std::env::var_os("ADAPT_DATA_DIR")
        );
        eprintln!("skipped: no data (set ADAPT_DATA_DIR)");
        return;
    };
    let data = PathBuf::from(data);
    let dir = tmp("eval");
    let run = dir.join("run");
    let (s, t) = (DatasetId::Mnist.into(), DatasetId::Usps.into());
    let profile = adapt_datasets::pair::PairProfile::measure(&s, &t, Some(&data)).unwrap();
    let mut recipe = DigitRecipe::new(&s, &t, &profile, vec![Method::Dann], Preset::Bn, 1);
    recipe.steps = 100;
    recipe.set_bn_per_domain(true).unwrap();
    let opts =
        RunOptions { out: Some(run.clone()), data_dir: Some(data.clone()), quiet: true, ..RunOptions::default() };
    adapt_experiment::run(&Recipe::Digits(recipe), &opts, &Device::Cpu).unwrap();
    let eval = adapt_experiment::evaluate::evaluate_run_folder(&run, None, None, &Device::Cpu).unwrap();
    let target_acc = eval[0].target_acc;

    let test = adapt_datasets::load("usps", Split::Test, Some(&data)).unwrap();
    let export = dir.join("usps");
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    adapt_datasets::image_folder::export_class_folders(&[&test], &classes, &export).unwrap();
    let p = Predictor::from_run_folder(&run, None, None, &Device::Cpu).unwrap();
    assert_eq!(p.weights(), run.join("model.safetensors"));
    let table = predict_paths(&p, &[export.join("test")]).unwrap();
    assert_eq!((table.rows.len(), table.labelled_images()), (test.len(), test.len()));
    assert_eq!(table.accuracy(), Some(target_acc), "predict against eval");
    assert!(table.notes.is_empty(), "USPS images need no conversion: {:?}", table.notes);
    // The folder loads in the exported order, each row naming its file.
    let first = &table.rows[0];
    assert_eq!(first.label, Some(test.labels[0]));
    assert!(first.path.ends_with(&format!("test/{}/0000000.png", test.labels[0])), "{}", first.path);
    std::fs::remove_dir_all(&dir).ok();
}
