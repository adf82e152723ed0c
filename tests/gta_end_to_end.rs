//! Generate To Adapt's ablation end to end on USPS -> MNIST with the authors' recipe (needs
//! ADAPT_DATA_DIR; skipped without it, a failure with ADAPT_REQUIRE_DATA=1): the runs, their
//! label-free validator records, the per-class image grid and the table; bad lengths refused
//! before any folder exists.
mod common;
use clap::Parser;
use xtask::cli::{Cli, run};

fn ablation(out: &std::path::Path, data: &str, extra: &[&str]) -> anyhow::Result<Option<serde_json::Value>> {
    ablation_of_seeds(out, data, "1", extra)
}

fn ablation_of_seeds(
    out: &std::path::Path,
    data: &str,
    seeds: &str,
    extra: &[&str],
) -> anyhow::Result<Option<serde_json::Value>> {
    let mut argv = vec!["xtask", "--json", "ablation", "gta", "--quiet", "--source", "usps", "--target", "mnist"];
    argv.extend(["--preset", "authors", "--seeds", seeds, "--data-dir", data, "--out", out.to_str().unwrap()]);
    argv.extend(extra);
    run(Cli::try_parse_from(argv)?)
}

fn first_losses(run: &serde_json::Value) -> Vec<f64> {
    let dir = std::path::PathBuf::from(run["run_dir"].as_str().unwrap());
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["c_loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn seeds_trained_apart_are_tabulated_together_and_the_shift_changes_the_inputs() {
    let Some(data) = common::real_data(&["mnist", "usps"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-gta-seeds-{}", std::process::id()));
    let plain_out = std::env::temp_dir().join(format!("adapt-e2e-gta-seeds-plain-{}", std::process::id()));
    for dir in [&out, &plain_out] {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(ablation(&out, &data, &["--shift", "32", "--rows", "stream1"]).is_err(), "--shift 32 accepted");
    assert!(!out.exists(), "--shift 32 created {}", out.display());

    let small = ["--steps", "4", "--batch-size", "16", "--rows", "stream1", "--usps-box", "20"];
    let shifted = [&small[..], &["--shift", "2"]].concat();
    // Seed 1 alone, as a second process would train it.
    let one = ablation(&out, &data, &[&shifted[..], &["--first-seed", "1"]].concat()).unwrap().unwrap();
    let one = one["runs"].as_array().unwrap().clone();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["seed"], 1);
    let dir = std::path::PathBuf::from(one[0]["run_dir"].as_str().unwrap());
    assert!(dir.ends_with("usps-mnist/seed1/gta-stream1"), "{}", dir.display());
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("input_shift = 2"), "{config}");
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("moved by up to 2 px"));

    // The same seed on unmoved images: the same weights and batches, other inputs, other losses.
    let plain =
        ablation(&plain_out, &data, &[&small[..], &["--shift", "0", "--first-seed", "1"]].concat()).unwrap().unwrap();
    let (moved, unmoved) = (first_losses(&one[0]), first_losses(&plain["runs"][0]));
    assert_eq!(moved.len(), unmoved.len());
    assert!(moved.iter().zip(&unmoved).all(|(a, b)| a != b), "{moved:?} vs {unmoved:?}");

    // From seed 0, two seeds: seed 0 is trained, seed 1 read back, both in the table.
    let all = ablation_of_seeds(&out, &data, "2", &shifted).unwrap().unwrap();
    let all = all["runs"].as_array().unwrap();
    assert_eq!(all.iter().map(|r| r["seed"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(all[1]["seconds"], one[0]["seconds"], "seed 1 was trained again");
    let table = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    assert!(table.contains("| gta-stream1 | 2 |") && table.contains("moved by up to 2 px (ours)"), "{table}");
    for dir in [&out, &plain_out] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn the_authors_recipe_runs_the_ablation_with_label_free_selection() {
    let Some(data) = common::real_data(&["mnist", "usps"]) else { return };
    let out = std::env::temp_dir().join(format!("adapt-e2e-gta-ablation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    // Refused before anything is written.
    for bad in [&["--usps-box", "40"][..], &["--epochs", "0"], &["--rows", "stream1", "--batch-size", "0"]] {
        assert!(ablation(&out, &data, bad).is_err(), "{bad:?} accepted");
        assert!(!out.exists(), "{bad:?} created {}", out.display());
    }
    assert!(ablation(&out, &data, &["--steps", "4", "--epochs", "1"]).is_err(), "--steps with --epochs accepted");

    let small = ["--steps", "4", "--batch-size", "16", "--rows", "stream1,full"];
    let value = ablation(&out, &data, &small).expect("ablation").expect("figures");
    let runs = value["runs"].as_array().unwrap();
    let methods: Vec<&str> = runs.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["gta-stream1", "gta-full"]);
    for r in runs {
        let dir = std::path::PathBuf::from(r["run_dir"].as_str().unwrap());
        let sel: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("selection.json")).unwrap()).unwrap();
        let steps: Vec<u64> =
            sel["checkpoints"].as_array().unwrap().iter().map(|c| c["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 2, 3, 4], "{}", dir.display());
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(config.contains("0.44") && config.contains("0.19"), "{config}");
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(report.contains("Checkpoint selection") && report.contains("source validation accuracy"), "{report}");
        assert!(r["source_val_acc"].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)), "{r}");
    }
    // Full GTA's grid: 10 columns (one per class), 8 rows (4 pairs of real and generated images).
    let full = std::path::PathBuf::from(runs[1]["run_dir"].as_str().unwrap());
    let png = std::fs::read(full.join("generated.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    let (cell_w, cell_h) = (64 + 4, 64 + 16 + 4);
    assert_eq!((w, h), (10 * cell_w + 4, 8 * cell_h + 4));
    // The same grid at every checkpoint (4 steps, one checkpoint each).
    for step in 1..=4 {
        assert!(full.join(format!("generated_step{step:05}.png")).is_file(), "no grid at step {step}");
    }
    assert!(!runs[0]["run_dir"].as_str().map(std::path::Path::new).unwrap().join("generated.png").exists());

    let table = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    assert!(table.contains("4 iterations of 16 + 16, preset authors"), "{table}");
    assert!(table.contains("| gta-stream1 | 1 |") && table.contains("| gta-full | 1 |"), "{table}");
    // Finished runs are read back, not trained again.
    let again = ablation(&out, &data, &small).expect("ablation again").expect("figures");
    // (summary.json keeps what was measured; a float may come back one ulp off, so the fields are compared.)
    for (a, b) in again["runs"].as_array().unwrap().iter().zip(runs) {
        for k in ["run_dir", "method", "steps", "seconds", "target_acc", "source_val_acc"] {
            assert_eq!(a[k], b[k], "{k}");
        }
    }
    std::fs::remove_dir_all(&out).ok();
}
