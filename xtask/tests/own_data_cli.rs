//! Your own images through the command line: a built-in dataset exported as class folders gets
//! the same recipe and the same result as the dataset by name, and bad folders are refused before
//! any run folder exists. Reads the real data (ADAPT_DATA_DIR).
mod common;
use common::*;
use std::path::Path;

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_dataset_by_name_and_as_exported_folders_gets_the_same_recipe_and_accuracy() {
    let Some(data) = real_data(&["usps", "mnist"]) else { return };
    let dir = tmp("own-data-same");
    let usps = dir.join("usps");
    let r = xtask(&[
        "--json",
        "data",
        "export",
        "usps",
        "--out",
        usps.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.json()["splits"], serde_json::json!([["train", 7291], ["test", 2007]]));
    let train = |source: &str, out: &Path| {
        let r = xtask(&[
            "--json",
            "train",
            "--quiet",
            "--method",
            "dann",
            "--preset",
            "recommended",
            "--steps",
            "60",
            "--source",
            source,
            "--target",
            "mnist",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(r.ok, "{source}: {}", r.stderr);
        r.json()["runs"][0].clone()
    };
    let (by_name, by_folder) = (dir.join("by-name"), dir.join("by-folder"));
    let a = train("usps", &by_name);
    let b = train(usps.to_str().unwrap(), &by_folder);
    // The recipes differ in the source's name only, the decisions included.
    let mut ra = json_file(&by_name.join("recipe.json"));
    let rb = json_file(&by_folder.join("recipe.json"));
    assert_eq!(rb["recipe"]["source"], usps.to_str().unwrap());
    ra["recipe"]["source"] = rb["recipe"]["source"].clone();
    assert_eq!(ra, rb);
    let decided: Vec<&str> =
        rb["recipe"]["decisions"].as_array().unwrap().iter().map(|d| d["setting"].as_str().unwrap()).collect();
    assert!(decided.contains(&"source_digit_box") && decided.contains(&"net"), "{decided:?}");
    assert_eq!(rb["recipe"]["source_input"]["digit_box"], 20, "USPS drawn at MNIST's digit scale");
    for key in ["target_acc", "source_acc", "domain_acc", "steps"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_folders_are_refused_before_a_run_folder_exists() {
    let Some(data) = real_data(&["usps", "mnist"]) else { return };
    let dir = tmp("own-data-bad");
    let png = |p: &Path, v: u8| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(8, 8, image::Luma([v])).save(p).unwrap();
    };
    // One class only.
    png(&dir.join("one/a/0.png"), 10);
    png(&dir.join("one/a/1.png"), 200);
    // A target with a class the source lacks.
    for (c, v) in [("a", 10), ("b", 200)] {
        png(&dir.join(format!("two/{c}/0.png")), v);
        png(&dir.join(format!("two/{c}/1.png")), v);
    }
    png(&dir.join("other/z/0.png"), 50);
    // A corrupt image.
    png(&dir.join("corrupt/a/0.png"), 10);
    std::fs::create_dir_all(dir.join("corrupt/b")).unwrap();
    std::fs::write(dir.join("corrupt/b/0.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.join("run");
    let cases: [(&str, &str, &[&str]); 4] = [
        ("one", "mnist", &["class"]),
        ("two", "other", &["'z'"]),
        ("corrupt", "mnist", &["0.png"]),
        ("missing", "mnist", &["missing", "neither a dataset nor an existing"]),
    ];
    for (source, target, needles) in cases {
        let at = |name: &str| {
            if name == "mnist" { name.to_string() } else { dir.join(name).display().to_string() }
        };
        let r = xtask(&[
            "train",
            "--quiet",
            "--source",
            &at(source),
            "--target",
            &at(target),
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_fails(&r, source, needles);
        assert!(!out.exists(), "{source}: a run folder was created");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
