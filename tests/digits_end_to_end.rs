//! End to end on real digits (needs ADAPT_DATA_DIR; skipped without it, a failure with
//! ADAPT_REQUIRE_DATA=1): MNIST -> MNIST-M must show the domain gap that motivates adaptation.
mod common;
use clap::Parser;
use xtask::cli::{Cli, run};

#[test]
fn missing_data_names_the_folder_looked_in() {
    let e = common::find_real_data(Some("/nonexistent".into()), &["mnist"]).unwrap_err();
    assert!(e.contains("/nonexistent"), "{e}");
    assert!(common::find_real_data(None, &["mnist"]).unwrap_err().contains("ADAPT_DATA_DIR"));
    let dir = std::env::temp_dir().join(format!("adapt-e2e-real-data-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("mnist")).unwrap();
    let dir_s = dir.to_str().unwrap().to_string();
    assert_eq!(common::find_real_data(Some(dir_s.clone()), &["mnist"]).unwrap(), dir_s);
    let e = common::find_real_data(Some(dir_s), &["mnist", "usps"]).unwrap_err();
    assert!(e.contains(&dir.join("usps").display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn source_only_mnist_to_mnist_m_shows_the_domain_gap() {
    let Some(data) = common::real_data(&["mnist", "mnist_m"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-digits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cli = Cli::parse_from([
        "xtask",
        "--json",
        "train",
        "--quiet",
        "--method",
        "source-only",
        "--source",
        "mnist",
        "--target",
        "mnist-m",
        "--steps",
        "300",
        "--data-dir",
        &data,
        "--out",
        out.to_str().unwrap(),
    ]);
    let value = run(cli).expect("digit run").expect("figures");
    let r = &value["runs"][0];
    let (s, t) = (r["source_acc"].as_f64().unwrap(), r["target_acc"].as_f64().unwrap());
    assert_eq!(r["method"], "source-only");
    assert!(s > 0.75, "source accuracy after 300 steps: {s}");
    assert!(t < s - 0.2, "MNIST-M accuracy {t} should be far below MNIST's {s}");
    assert!(t > 0.1, "MNIST-M accuracy {t} at or below chance: the pipeline is broken");
    for f in [
        "report.md",
        "features_pca.png",
        "features_tsne.png",
        "curves.png",
        "config.toml",
        "recipe.json",
        "model.safetensors",
        "best.safetensors",
        "checkpoint.safetensors",
        "selection.json",
        "metrics.jsonl",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for k in ["seed", "domain_acc", "a_distance", "seconds"] {
        assert!(r.get(k).is_some(), "{k} missing from {r}");
    }
    let a = r["a_distance"].as_f64().unwrap();
    assert!((0.0..=2.0).contains(&a), "A-distance {a}");
    // Source-only features keep the domains apart: a linear classifier tells them apart easily.
    assert!(a > 1.0, "source-only A-distance {a}");
    // The last step is a checkpoint too, so the reported weights have a source validation score.
    let val = r["source_val_acc"].as_f64().expect("source validation accuracy of the last step");
    assert!((val - s).abs() < 0.1, "source validation {val} vs source test {s}");

    // `eval` rebuilds the model from config.toml and the saved weights: same figures.
    let eval = run(Cli::parse_from(["xtask", "--json", "eval", out.to_str().unwrap(), "--data-dir", &data]))
        .expect("eval")
        .expect("figures");
    let e = &eval["runs"][0];
    assert_eq!(e["target_acc"], r["target_acc"], "eval disagrees with training: {e} vs {r}");
    assert_eq!(e["source_acc"], r["source_acc"]);
    assert_eq!(e["a_distance"], r["a_distance"]);
    // The source validation choice loads best.safetensors.
    let best = run(Cli::parse_from([
        "xtask",
        "--json",
        "eval",
        out.to_str().unwrap(),
        "--weights",
        "source-val",
        "--data-dir",
        &data,
    ]))
    .expect("eval of the best checkpoint")
    .expect("figures");
    assert_eq!(best["runs"][0]["weights"], "best.safetensors");

    // The weights describe themselves: copied alone into an empty folder, they evaluate to the
    // run's own figures.
    let bare = std::env::temp_dir().join(format!("adapt-e2e-bare-{}", std::process::id()));
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(out.join("model.safetensors"), bare.join("weights.safetensors")).unwrap();
    let alone = run(Cli::parse_from([
        "xtask",
        "--json",
        "eval",
        bare.join("weights.safetensors").to_str().unwrap(),
        "--data-dir",
        &data,
    ]))
    .expect("eval of a bare weights file")
    .expect("figures");
    assert_eq!(alone["runs"][0]["target_acc"], r["target_acc"], "{alone}");
    assert_eq!(alone["runs"][0]["method"], r["method"]);
    std::fs::remove_dir_all(&bare).ok();

    // `report` finds the run's summary.
    let report_md = out.join("all.md");
    let rep = run(Cli::parse_from([
        "xtask",
        "--json",
        "report",
        out.to_str().unwrap(),
        "--out",
        report_md.to_str().unwrap(),
    ]))
    .expect("report")
    .expect("figures");
    assert_eq!(rep["runs"].as_array().unwrap().len(), 1);
    assert!(std::fs::read_to_string(&report_md).unwrap().contains("mnist-m"));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn gta_trains_on_real_digits_and_writes_its_report() {
    let Some(data) = common::real_data(&["mnist", "mnist_m"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-gta-{}", std::process::id()));
    let broken = std::env::temp_dir().join(format!("adapt-e2e-gta-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&broken);
    let train = |dir: &std::path::Path, extra: &[&str]| {
        let mut argv = vec!["xtask", "--json", "train", "--quiet", "--method", "gta", "--source", "mnist"];
        argv.extend(["--target", "mnist-m", "--steps", "12", "--batch-size", "16", "--checkpoint-every", "6"]);
        argv.extend(["--data-dir", &data, "--out", dir.to_str().unwrap()]);
        argv.extend(extra);
        run(Cli::parse_from(argv))
    };
    let value = train(&out, &[]).expect("GTA run").expect("figures");
    let r = &value["runs"][0];
    assert_eq!(r["method"], "gta-full");
    assert_eq!(r["steps"], 12);
    for k in ["source_acc", "target_acc", "domain_acc", "a_distance"] {
        let v = r[k].as_f64().unwrap_or_else(|| panic!("{k} missing from {r}"));
        assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
    }
    for f in ["report.md", "generated.png", "features_tsne.png", "curves.png", "config.toml", "model.safetensors"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    for k in ["d_loss", "g_loss", "c_loss", "f_loss"] {
        assert!(last[k].as_f64().is_some_and(f64::is_finite), "{k} in {last}");
    }

    // Interrupted after its first checkpoint, then resumed: the unbroken run's records and F + C.
    let err = train(&broken, &["--stop-after", "6"]).unwrap_err();
    assert!(format!("{err:#}").contains("stopped after iteration 6"), "{err:#}");
    let resumed = run(Cli::parse_from(["xtask", "--json", "train", "--quiet", "--resume", broken.to_str().unwrap()]))
        .expect("resumed GTA run")
        .expect("figures");
    assert_eq!(resumed["runs"][0]["resumed_at"], 6);
    assert_eq!(std::fs::read_to_string(broken.join("metrics.jsonl")).unwrap(), metrics);
    let weights = |d: &std::path::Path| {
        candle_core::safetensors::load(d.join("model.safetensors"), &candle_core::Device::Cpu).unwrap()
    };
    let (a, b) = (weights(&out), weights(&broken));
    for (name, t) in a.iter().filter(|(n, _)| n.starts_with("F.") || n.starts_with("C.")) {
        let diff = (t - &b[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{name} differs by {diff} between the unbroken and the resumed run");
    }
    assert_eq!(resumed["runs"][0]["target_acc"], r["target_acc"]);
    // `eval` reopens a GTA folder too.
    let eval = run(Cli::parse_from(["xtask", "--json", "eval", broken.to_str().unwrap(), "--data-dir", &data]))
        .expect("eval of a GTA run")
        .expect("figures");
    assert_eq!((&eval["runs"][0]["kind"], &eval["runs"][0]["target_acc"]), (&"gta".into(), &r["target_acc"]));
    // Resuming a finished run re-reports it instead of failing on an empty loop.
    let again = run(Cli::parse_from(["xtask", "--json", "train", "--quiet", "--resume", broken.to_str().unwrap()]))
        .expect("resuming a finished GTA run")
        .expect("figures");
    assert_eq!(again["runs"][0]["resumed_at"], 12);
    assert_eq!(again["runs"][0]["target_acc"], r["target_acc"]);
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(&broken).ok();
}

/// FNV-1a over every tensor's name and raw bytes, in name order.
fn weights_fingerprint(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for name in names {
        let t = tensors.tensor(&name).unwrap();
        for b in name.as_bytes().iter().chain(t.data()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The pinned fingerprint of that run for this CPU's GEMM kernels: the `gemm` crate picks its
/// microkernel at run time (16-lane AVX-512 or 8-lane AVX2 + FMA on x86_64), and the two sum in
/// different orders, so each has its own weights. `None` where no pin was recorded.
fn pinned_fingerprint() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // Intel Xeon (KVM), before the library move.
            return Some(0x9509_7832_2006_b86b);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // AMD EPYC (Zen 3), from commit 4134e13's binary and again after the AVX2 paths.
            return Some(0x3342_b693_233a_1dbd);
        }
    }
    None
}

/// Pins the weights of a short paper-preset DANN run (MNIST -> USPS, seed 0, 200 steps) to the
/// fingerprint the runner produced before its library logic moved into `adapt-experiment`: the
/// move (and any later refactoring) must not change what is learned. On a CPU without a pin,
/// two runs must give the same weights.
#[test]
fn paper_preset_digit_run_is_bit_identical_to_the_pinned_weights() {
    let Some(data) = common::real_data(&["mnist", "usps"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let argv = [
        "xtask",
        "--json",
        "train",
        "--quiet",
        "--method",
        "dann",
        "--source",
        "mnist",
        "--target",
        "usps",
        "--steps",
        "200",
        "--select",
        "source-val",
        "--checkpoint-every",
        "50",
        "--data-dir",
        &data,
        "--out",
        out.to_str().unwrap(),
    ];
    run(Cli::parse_from(argv)).expect("pinned run").expect("figures");
    let fingerprint = weights_fingerprint(&out.join("model.safetensors"));
    std::fs::remove_dir_all(&out).ok();
    match pinned_fingerprint() {
        Some(pinned) => {
            assert_eq!(fingerprint, pinned, "weights changed: {fingerprint:#x} against the pinned {pinned:#x}")
        }
        None => {
            eprintln!(
                "no pinned fingerprint for this CPU's GEMM kernels: checking that a second run repeats the first"
            );
            run(Cli::parse_from(argv)).expect("second run").expect("figures");
            assert_eq!(weights_fingerprint(&out.join("model.safetensors")), fingerprint);
            std::fs::remove_dir_all(&out).ok();
        }
    }
}

/// Without `--method`, a digit pair trains source-only beside the recommended recipe in one run
/// folder; the JSON marks the recommended run and the one the label-free rule reports, and the
/// report shows the validators' choices and the input check.
#[test]
fn the_default_digit_run_compares_source_only_with_the_recommended_recipe() {
    let Some(data) = common::real_data(&["mnist", "usps"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-default-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let argv = [
        "xtask",
        "--json",
        "train",
        "--quiet",
        "--source",
        "mnist",
        "--target",
        "usps",
        "--steps",
        "60",
        "--checkpoint-every",
        "30",
        "--data-dir",
        &data,
        "--out",
        out.to_str().unwrap(),
    ];
    let value = run(Cli::parse_from(argv)).expect("default digit run").expect("figures");
    let runs = value["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0]["method"].as_str(), runs[0]["recommended"].as_bool()), (Some("source-only"), Some(false)));
    assert_eq!((runs[1]["method"].as_str(), runs[1]["recommended"].as_bool()), (Some("dann"), Some(true)));
    for r in runs {
        for k in ["source_acc", "target_acc", "seconds"] {
            assert!(r[k].as_f64().is_some(), "{k} missing from {r}");
        }
    }
    let selected: Vec<bool> = runs.iter().map(|r| r["selected"].as_bool().unwrap()).collect();
    assert_eq!(selected.iter().filter(|s| **s).count(), 1, "exactly one run is the label-free choice: {selected:?}");
    let selection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dann/selection.json")).unwrap()).unwrap();
    assert_eq!(selection["checkpoints"].as_array().unwrap().len(), 2, "scores at steps 30 and 60");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Model selection without target labels") && report.contains("oracle"));
    // USPS drawn into MNIST's digit box: the label-free input check finds no scale mismatch.
    assert!(report.contains("the domains agree"), "{report}");
    std::fs::remove_dir_all(&out).ok();
}
