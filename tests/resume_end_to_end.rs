//! `cargo xtask train --resume`: a run interrupted after a checkpoint and resumed must end with
//! exactly the weights, metrics and figures of an unbroken run with the same seed (CPU).
use clap::Parser;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use xtask::cli::{Cli, run};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-e2e-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn train(extra: &[&str]) -> anyhow::Result<Option<serde_json::Value>> {
    let mut argv = vec!["xtask", "--json", "train", "--quiet", "--method", "dann", "--steps", "400", "--seed", "4"];
    argv.extend_from_slice(extra);
    run(Cli::parse_from(argv))
}

fn weights(path: &Path) -> HashMap<String, Vec<f32>> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    tensors.into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

#[test]
fn interrupted_and_resumed_toy_run_matches_an_unbroken_one() {
    let unbroken = tmp_dir("unbroken");
    let a = train(&["--checkpoint-every", "100", "--out", unbroken.to_str().unwrap()]).unwrap().unwrap();

    let broken = tmp_dir("broken");
    let err = train(&["--checkpoint-every", "100", "--stop-after", "200", "--out", broken.to_str().unwrap()])
        .expect_err("--stop-after interrupts the run");
    assert!(format!("{err:#}").contains("stopped after step 200"), "{err:#}");
    assert!(!broken.join("model.safetensors").exists(), "an interrupted run has no final weights");
    let b = run(Cli::parse_from(["xtask", "--json", "train", "--quiet", "--resume", broken.to_str().unwrap()]))
        .unwrap()
        .unwrap();

    let (wa, wb) = (weights(&unbroken.join("model.safetensors")), weights(&broken.join("model.safetensors")));
    assert_eq!(wa.len(), wb.len());
    for (name, v) in &wa {
        assert_eq!(v, &wb[name], "{name} differs between the unbroken and the resumed run");
    }
    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&unbroken), metrics(&broken));
    assert_eq!(metrics(&broken).lines().count(), 400 / 25);
    let (ra, rb) = (&a["runs"][0], &b["runs"][0]);
    for k in ["target_acc", "source_acc", "domain_acc", "a_distance"] {
        assert_eq!(ra[k], rb[k], "{k}");
    }
    assert_eq!(rb["resumed_at"], 200);
    assert_eq!(rb["seed"], 4);
    std::fs::remove_dir_all(&unbroken).ok();
    std::fs::remove_dir_all(&broken).ok();
}

#[test]
fn resuming_a_folder_that_is_not_a_run_names_it() {
    let dir = tmp_dir("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let err = run(Cli::parse_from(["xtask", "train", "--resume", dir.to_str().unwrap()])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("recipe.json") && msg.contains(dir.to_str().unwrap()), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}
