//! End to end on the rotated-moons toy: `cargo xtask train` must show DANN adapting.
use clap::Parser;
use xtask::cli::{Cli, run};

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn dann_beats_source_only_on_the_rotated_moons() {
    let out = tmp_dir("toy");
    let cli = Cli::parse_from(["xtask", "--json", "train", "--quiet", "--out", out.to_str().unwrap()]);
    let value = run(cli).expect("toy comparison runs").expect("train returns its figures");
    let runs = value["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 2);
    let get = |i: usize, k: &str| runs[i][k].as_f64().unwrap_or_else(|| panic!("{k} missing in {}", runs[i]));
    assert_eq!(runs[0]["method"], "source-only");
    assert_eq!(runs[1]["method"], "dann");
    for i in 0..2 {
        for k in ["source_acc", "target_acc", "domain_acc"] {
            assert!((0.0..=1.0).contains(&get(i, k)), "{k} = {}", get(i, k));
        }
        assert!(get(i, "source_acc") > 0.95, "source accuracy {}", get(i, "source_acc"));
    }
    // Source-only cannot follow the rotation; DANN must recover a clear part of it.
    assert!(get(0, "target_acc") < 0.9, "source-only target accuracy {}", get(0, "target_acc"));
    assert!(
        get(1, "target_acc") > get(0, "target_acc") + 0.05,
        "DANN {} vs source-only {}",
        get(1, "target_acc"),
        get(0, "target_acc")
    );
    // Adversarial training makes the domains harder to tell apart than source-only features.
    assert!(
        get(1, "domain_acc") < get(0, "domain_acc"),
        "domain acc DANN {} vs source-only {}",
        get(1, "domain_acc"),
        get(0, "domain_acc")
    );

    for f in [
        "report.md",
        "decision_boundaries.png",
        "features_pca.png",
        "dann/metrics.jsonl",
        "dann/config.toml",
        "dann/model.safetensors",
        "source-only/curves.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(out.join("dann/metrics.jsonl")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines.len(), 3000 / 25);
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["step"], 3000);
    assert!(last["lambda"].as_f64().unwrap() > 0.99);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("![decision boundaries](decision_boundaries.png)"));
    // `eval` reopens the comparison folder: both methods' figures again from their weights.
    let eval = run(Cli::parse_from(["xtask", "--json", "eval", out.to_str().unwrap()])).unwrap().unwrap();
    let again = eval["runs"].as_array().unwrap();
    assert_eq!(again.len(), 2);
    for r in runs {
        let e = again.iter().find(|e| e["method"] == r["method"]).expect("each method evaluated again");
        assert_eq!(e["kind"], "toy");
        assert_eq!(e["target_acc"], r["target_acc"], "{e}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    let out = tmp_dir("nan");
    let cli = Cli::parse_from([
        "xtask",
        "train",
        "--quiet",
        "--method",
        "dann",
        "--lr",
        "1e30",
        "--steps",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = format!("{:#}", run(cli).expect_err("a learning rate of 1e30 must diverge"));
    assert!(err.contains("not finite"), "{err}");
    assert!(err.contains("dann"), "{err}");
    // No plots of garbage were produced.
    assert!(!out.join("decision_boundaries.png").exists());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn unknown_datasets_list_the_known_ones() {
    let cli = Cli::parse_from(["xtask", "train", "--source", "cifar"]);
    let err = format!("{:#}", run(cli).unwrap_err());
    assert!(err.contains("'cifar' is neither a dataset") && err.contains("mnist-m") && err.contains("moons"), "{err}");
}

#[test]
fn bad_flags_are_clap_errors() {
    assert!(Cli::try_parse_from(["xtask", "train", "--steps", "many"]).is_err());
    assert!(Cli::try_parse_from(["xtask", "train", "--method", "magic"]).is_err());
    assert!(Cli::try_parse_from(["xtask", "train", "--device", "tpu"]).is_err());
}

#[test]
fn a_flag_the_toy_does_not_use_is_an_error_naming_it() {
    for flag in [
        ["--padding", "same"],
        ["--init", "glorot"],
        ["--preset", "bn"],
        ["--select", "source-val"],
        ["--weight-average", "0.99"],
        ["--shift", "2"],
    ] {
        let err = run(Cli::parse_from(["xtask", "train", flag[0], flag[1]])).unwrap_err();
        assert!(format!("{err:#}").contains(flag[0]), "{err:#}");
    }
    let err = run(Cli::parse_from([
        "xtask", "train", "--method", "gta", "--source", "usps", "--target", "mnist", "--lr", "0.1",
    ]))
    .unwrap_err();
    assert!(format!("{err:#}").contains("--lr"), "{err:#}");
}

#[test]
fn gta_takes_the_shift_and_defaults_to_two_pixels() {
    let recipe_of = |extra: &[&str]| {
        let mut argv = vec!["xtask", "train", "--method", "gta", "--source", "usps", "--target", "mnist"];
        argv.extend(extra);
        let Some(xtask::cli::Command::Train(args)) = Cli::parse_from(argv).command else { panic!("not train") };
        match args.recipe().unwrap() {
            adapt_experiment::recipe::Recipe::Gta(r) => r,
            other => panic!("not a GTA recipe: {other:?}"),
        }
    };
    assert_eq!(recipe_of(&[]).input_shift, 2, "the recipe that measured best moves images by 2 px");
    assert_eq!(recipe_of(&["--shift", "0"]).input_shift, 0);
    let mut argv = vec!["xtask", "train", "--method", "gta", "--source", "usps", "--target", "mnist"];
    argv.extend(["--shift", "32"]);
    let err = run(Cli::parse_from(argv)).unwrap_err();
    assert!(format!("{err:#}").contains("shift of 32 pixels"), "{err:#}");
}
