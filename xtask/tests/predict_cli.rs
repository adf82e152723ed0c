//! `cargo xtask predict` through the built binary: the CSV's columns and rows, `--top-k`, the
//! JSON last line, the model a comparison folder picks, and clear errors before anything is
//! written.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A finished source-only vs DANN comparison on a small synthetic MNIST -> USPS data folder, and
/// that folder's USPS test split exported as class folders (`EXPORT/test/<class>/N.png`).
fn trained(root: &Path) -> (PathBuf, PathBuf, serde_json::Value) {
    let data = root.join("data");
    digits_data_dir(&data, 48);
    let run = root.join("run");
    let r = xtask(&[
        "--json",
        "train",
        "--quiet",
        "--method",
        "compare",
        "--source",
        "mnist",
        "--target",
        "usps",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let test = adapt_datasets::load("usps", adapt_datasets::Split::Test, Some(&data)).unwrap();
    let classes: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let export = root.join("export");
    adapt_datasets::image_folder::export_class_folders(&[&test], &classes, &export).unwrap();
    (run, export.join("test"), r.json())
}

#[test]
fn predict_writes_the_csv_the_json_and_reproduces_eval() {
    let root = tmp("predict");
    let (run, images, train) = trained(&root);
    let runs = train["runs"].as_array().unwrap();
    let selected = runs.iter().find(|r| r["selected"] == true).expect("a selected run");
    let (run_s, images_s) = (run.to_str().unwrap(), images.to_str().unwrap());

    // To stdout: the CSV, then the JSON line.
    let r = xtask(&["--json", "predict", run_s, images_s]);
    assert!(r.ok, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "path,class,probability");
    let rows = &lines[1..lines.len() - 1];
    assert_eq!(rows.len(), 24, "one row per test image");
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), 3, "{row}");
        assert!(f[0].ends_with(".png") && Path::new(f[0]).is_file(), "{row}");
        assert!(f[1].parse::<u32>().is_ok_and(|c| c < 10), "{row}");
        assert!(f[2].parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p)), "{row}");
    }
    let j = r.json();
    for k in ["model", "weights", "images", "classes", "out", "accuracy", "labelled_images", "seconds"] {
        assert!(j.get(k).is_some(), "{k} missing from {j}");
    }
    assert_eq!((j["images"].as_u64(), j["labelled_images"].as_u64()), (Some(24), Some(24)));
    assert_eq!(j["classes"].as_array().unwrap().len(), 10);
    assert!(j["out"].is_null());
    let method_dir = Path::new(selected["run_dir"].as_str().unwrap());
    assert_eq!(Path::new(j["weights"].as_str().unwrap()), method_dir.join("model.safetensors"));
    // The selected method's target accuracy, exactly as eval gives it.
    let eval = xtask(&["--json", "eval", run_s]);
    assert!(eval.ok, "{}", eval.stderr);
    let scored = eval.json()["runs"].as_array().unwrap().iter().find(|e| e["method"] == selected["method"]).cloned();
    assert_eq!(j["accuracy"], scored.unwrap()["target_acc"], "{j}");
    assert!(r.stderr.contains("accuracy:"), "the accuracy is printed: {}", r.stderr);

    // --top-k 3 to a file: six more columns, ranked; stdout keeps the words and the JSON.
    let out = root.join("p.csv");
    let r = xtask(&["--json", "predict", run_s, images_s, "--top-k", "3", "--out", out.to_str().unwrap()]);
    assert!(r.ok, "{}", r.stderr);
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("path,class,probability,class_2,probability_2,class_3,probability_3"));
    for row in lines {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f.len(), 7, "{row}");
        let p: Vec<f64> = [f[2], f[4], f[6]].iter().map(|v| v.parse().unwrap()).collect();
        assert!(p[0] >= p[1] && p[1] >= p[2], "{row}");
        assert!(f[1] != f[3] && f[3] != f[5], "{row}");
    }
    assert!(!r.stdout.contains("path,class"), "the CSV went to the file only");
    assert_eq!(r.json()["out"], out.to_str().unwrap());
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 4, "no temporary file left beside p.csv");

    // --method and a bare weights file pick other models; a single image file is an input.
    let r = xtask(&["--json", "predict", run_s, images_s, "--method", "source-only"]);
    assert!(r.ok && r.json()["weights"].as_str().unwrap().contains("source-only"), "{}", r.stderr);
    let weights = method_dir.join("model.safetensors");
    let one = images.join("0").join("0000000.png");
    let r = xtask(&["--json", "predict", weights.to_str().unwrap(), one.to_str().unwrap()]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.json()["images"], 1);
    assert!(r.json()["accuracy"].is_null(), "a lone file carries no label");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn predict_refuses_bad_models_inputs_and_outputs_naming_them() {
    let root = tmp("predict-bad");
    let (run, images, _) = trained(&root);
    let (run_s, images_s) = (run.to_str().unwrap(), images.to_str().unwrap());
    let png = images.join("0").join("0000000.png");
    let out = root.join("out.csv");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        // A model that is not adapt's: an image, a missing path, a folder of no run.
        (vec![png.display().to_string(), images_s.into()], vec!["0000000.png".into()]),
        (vec![root.join("nope").display().to_string(), images_s.into()], vec!["nope".into()]),
        (vec![images_s.into(), images_s.into()], vec!["not a run folder".into()]),
        (vec![run_s.into(), images_s.into(), "--method".into(), "gta".into()], vec!["'gta'".into()]),
        (
            vec![
                run.join("dann/model.safetensors").display().to_string(),
                images_s.into(),
                "--weights".into(),
                "last".into(),
            ],
            vec!["--weights".into()],
        ),
        // Inputs: missing, empty, corrupt.
        (vec![run_s.into(), root.join("none.png").display().to_string()], vec!["none.png".into()]),
        (vec![run_s.into(), root.join("empty").display().to_string()], vec!["empty".into()]),
        (vec![run_s.into(), root.join("bad.png").display().to_string()], vec!["bad.png".into()]),
        // Outputs and options.
        (
            vec![run_s.into(), images_s.into(), "--out".into(), root.join("no/dir/p.csv").display().to_string()],
            vec!["no/dir".into()],
        ),
        (
            vec![run_s.into(), images_s.into(), "--top-k".into(), "11".into()],
            vec!["--top-k 11".into(), "10 classes".into()],
        ),
        (vec![run_s.into(), images_s.into(), "--top-k".into(), "0".into()], vec!["--top-k".into()]),
    ];
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("bad.png"), b"\x89PNG\r\n\x1a\nnot an image").unwrap();
    for (args, needles) in cases {
        let mut full: Vec<&str> = vec!["predict"];
        full.extend(args.iter().map(String::as_str));
        if !args.iter().any(|a| a == "--out") {
            full.extend(["--out", o]);
        }
        let r = xtask(&full);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails(&r, &args.join(" "), &needles);
        assert!(!out.exists(), "{}: wrote {o} before failing", args.join(" "));
    }
    // No input at all is a usage error.
    assert!(!xtask(&["predict", run_s]).ok);
    std::fs::remove_dir_all(&root).ok();
}
