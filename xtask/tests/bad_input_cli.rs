//! One test per class of bad input, through the built binary as a user runs it: each
//! must end with a non-zero exit and an error naming the flag, file or folder and the problem
//! (and create no run folder when the problem is in the command line), or behave correctly.
mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// A finished toy DANN run of `steps` steps in `dir`.
fn toy_run(dir: &Path, steps: &str) -> Ran {
    let r =
        xtask(&["--json", "train", "--quiet", "--method", "dann", "--steps", steps, "--out", dir.to_str().unwrap()]);
    assert!(r.ok, "the toy run failed: {}", r.stderr);
    r
}

/// Class 1: a batch larger than the training set is refused before any folder or buffer exists.
#[test]
fn class1_a_batch_larger_than_the_training_set() {
    let out = tmp("batch");
    for batch in ["100000000", "151"] {
        let r = xtask(&["train", "--quiet", "--method", "dann", "--batch-size", batch, "--out", out.to_str().unwrap()]);
        assert_fails(&r, batch, &[&format!("a batch of {batch} per domain"), "150 training rows"]);
        assert!(!out.exists(), "--batch-size {batch} created the run folder");
    }
}

/// Class 2: NaN weights are an error naming the file and the tensor, in `eval` and in `--resume`.
#[test]
fn class2_nan_weights_are_refused_by_eval_and_resume() {
    let dir = tmp("nan");
    toy_run(&dir, "100");
    let model = dir.join("model.safetensors");
    assert!(xtask(&["eval", dir.to_str().unwrap()]).ok, "the untouched run evaluates");
    reseal(&model, |t, _| {
        let p = poisoned(&t["features.fc0.weight"], f32::NAN);
        t.insert("features.fc0.weight".into(), p);
    });
    let r = xtask(&["eval", dir.to_str().unwrap()]);
    assert_fails(&r, "eval of NaN weights", &["model.safetensors", "features.fc0.weight", "non-finite"]);
    let r = xtask(&["eval", model.to_str().unwrap()]);
    assert_fails(&r, "eval of a NaN weights file", &["model.safetensors", "features.fc0.weight"]);

    // A checkpoint with an infinite momentum buffer does not resume.
    let broken = tmp("nan-ckpt");
    let r = xtask(&[
        "train",
        "--quiet",
        "--method",
        "dann",
        "--steps",
        "100",
        "--checkpoint-every",
        "25",
        "--stop-after",
        "50",
        "--out",
        broken.to_str().unwrap(),
    ]);
    assert!(!r.ok && r.stderr.contains("stopped after step 50"), "{}", r.stderr);
    reseal(&broken.join("checkpoint.safetensors"), |t, _| {
        let name = "optim.velocity.label.fc0.weight";
        let p = poisoned(&t[name], f32::INFINITY);
        t.insert(name.into(), p);
    });
    let r = xtask(&["train", "--quiet", "--resume", broken.to_str().unwrap()]);
    assert_fails(
        &r,
        "resume of an infinite momentum buffer",
        &["checkpoint.safetensors", "optim.velocity.label.fc0.weight"],
    );
    assert!(!broken.join("model.safetensors").exists(), "NaN state was trained on and saved");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&broken).ok();
}

/// Class 3: `report` neither follows a symbolic link loop nor counts a linked run twice.
#[test]
fn class3_report_ignores_link_loops_and_linked_folders() {
    let runs = tmp("report");
    toy_run(&runs.join("a"), "100");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&runs, runs.join("loop")).unwrap();
        std::os::unix::fs::symlink(runs.join("a"), runs.join("link")).unwrap();
    }
    let child = command(&["--json", "report", runs.to_str().unwrap()]).spawn().unwrap();
    let r = wait(child, Duration::from_secs(60), "report over a link loop");
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.json()["runs"].as_array().map(Vec::len), Some(1), "one run counted as several: {}", r.stdout);
    std::fs::remove_dir_all(&runs).ok();
}

/// Class 4: a second training into a folder in use, or its `--resume`, fails while the first runs.
#[test]
fn class4_a_folder_in_use_is_refused() {
    let dir = tmp("lock");
    let first = command(&["train", "--quiet", "--method", "dann", "--steps", "200000", "--out", dir.to_str().unwrap()])
        .spawn()
        .unwrap();
    let lock = dir.join(".adapt-run.lock");
    let start = std::time::Instant::now();
    // The recipe is written right after the lock is taken: a resume needs it to get as far as the lock.
    while !(lock.exists() && dir.join("recipe.json").exists()) {
        assert!(start.elapsed() < Duration::from_secs(120), "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = xtask(&["train", "--quiet", "--method", "dann", "--steps", "100", "--out", dir.to_str().unwrap()]);
    assert_fails(&again, "a second training", &["in use by process", &first.id().to_string()]);
    let resume = xtask(&["train", "--quiet", "--resume", dir.to_str().unwrap()]);
    assert_fails(&resume, "a resume of a running folder", &["in use by process"]);
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Class 5: `data verify` fails, naming the file, for a data file that is a FIFO (without hanging)
/// and for a `--data-dir` that does not exist.
#[test]
fn class5_data_verify_fails_instead_of_reporting_absent() {
    let data = tmp("verify");
    digits_data_dir(&data, 24);
    let ok = xtask(&["data", "--data-dir", data.to_str().unwrap(), "verify", "--no-checksums", "--only", "mnist,usps"]);
    assert!(ok.ok && ok.stdout.contains("verify: OK"), "{}{}", ok.stdout, ok.stderr);
    let labels = data.join("mnist/train-labels-idx1-ubyte");
    std::fs::remove_file(&labels).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&labels).status().unwrap().success());
    let child = command(&["data", "--data-dir", data.to_str().unwrap(), "verify", "--no-checksums", "--only", "mnist"])
        .spawn()
        .unwrap();
    let r = wait(child, Duration::from_secs(60), "verify of a FIFO");
    assert!(!r.ok && r.stdout.contains("train-labels-idx1-ubyte") && r.stdout.contains("FIFO"), "{}", r.stdout);
    let missing = data.join("nope");
    let r = xtask(&["data", "--data-dir", missing.to_str().unwrap(), "verify"]);
    assert!(!r.ok && r.stdout.contains("nope") && r.stdout.contains("does not exist"), "{}", r.stdout);
    std::fs::remove_dir_all(&data).ok();
}

/// Class 6: checkpoint metadata that does not fit the run (an edited step, an I32 parameter)
/// is refused on resume, even with a digest that matches the edit.
#[test]
fn class6_checkpoint_metadata_must_fit_the_run() {
    let dir = tmp("meta");
    let broken = |tag: &str| {
        let d = dir.join(tag);
        let r = xtask(&[
            "train",
            "--quiet",
            "--method",
            "dann",
            "--steps",
            "100",
            "--checkpoint-every",
            "25",
            "--stop-after",
            "50",
            "--out",
            d.to_str().unwrap(),
        ]);
        assert!(!r.ok && r.stderr.contains("stopped after step 50"), "{}", r.stderr);
        d
    };
    let d = broken("step");
    reseal(&d.join("checkpoint.safetensors"), |_, m| {
        m.insert("step".into(), "25".into());
    });
    let r = xtask(&["train", "--quiet", "--resume", d.to_str().unwrap()]);
    assert_fails(&r, "an edited step", &["checkpoint.safetensors", "sampler position"]);
    let d = broken("i32");
    reseal(&d.join("checkpoint.safetensors"), |t, _| {
        let w = t["label.fc0.weight"].to_dtype(candle_core::DType::I32).unwrap();
        t.insert("label.fc0.weight".into(), w);
    });
    let r = xtask(&["train", "--quiet", "--resume", d.to_str().unwrap()]);
    assert_fails(&r, "an I32 parameter", &["checkpoint.safetensors", "label.fc0.weight", "I32"]);
    // Without a matching digest, any edit at all is refused.
    let d = broken("digest");
    let path = d.join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let r = xtask(&["train", "--quiet", "--resume", d.to_str().unwrap()]);
    assert_fails(&r, "a flipped bit", &["checkpoint.safetensors", "digest"]);
    // An emptied metrics file would lose the history before the checkpoint.
    let d = broken("metrics");
    std::fs::write(d.join("metrics.jsonl"), "").unwrap();
    let r = xtask(&["train", "--quiet", "--resume", d.to_str().unwrap()]);
    assert_fails(&r, "an empty metrics file", &["metrics.jsonl", "checkpoint is at step 50"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Class 8: runs that would look real without training anything are refused, and so is a
/// `--resume` flag that would be ignored, and a summary with impossible figures.
#[test]
fn class8_degenerate_runs_and_impossible_summaries() {
    let out = tmp("degenerate");
    for (flag, value) in [("--steps", "0"), ("--lr", "0")] {
        let r = xtask(&["train", "--quiet", "--method", "dann", flag, value, "--out", out.to_str().unwrap()]);
        assert_fails(&r, flag, &[flag]);
        assert!(!out.exists(), "{flag} {value} created a run folder");
    }
    toy_run(&out, "100");
    let r = xtask(&["train", "--quiet", "--resume", out.to_str().unwrap(), "--steps", "400"]);
    assert_fails(&r, "--resume with --steps", &["--steps", "--resume"]);
    let summary = out.join("summary.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["target_acc"] = serde_json::json!(7.5);
    std::fs::write(&summary, v.to_string()).unwrap();
    let r = xtask(&["report", out.to_str().unwrap()]);
    assert_fails(&r, "target_acc 7.5", &["summary.json", "target_acc 7.5"]);
    std::fs::remove_dir_all(&out).ok();
}

/// Class 9: bad values are named with their flag, before any folder exists or data is read.
#[test]
fn class9_bad_values_name_their_flag_before_anything_happens() {
    let out = tmp("values");
    for lr in ["nan", "inf", "-1"] {
        let r = xtask(&["train", "--quiet", "--method", "dann", "--lr", lr, "--out", out.to_str().unwrap()]);
        assert_fails(&r, lr, &["--lr"]);
        assert!(!r.stderr.contains("checkpoint"), "--lr {lr}: the message points to a checkpoint: {}", r.stderr);
        assert!(!out.exists(), "--lr {lr} created a run folder");
    }
    // A digit pair with no data anywhere: the value is checked before the data is looked for.
    let on_digits = |flag: &str, value: &str| {
        let out = out.to_str().unwrap();
        xtask(&["train", "--quiet", "--source", "mnist", "--target", "usps", flag, value, "--out", out])
    };
    assert_fails(&on_digits("--lr", "nan"), "--lr nan on digits", &["--lr"]);
    for decay in ["1", "-0.5", "nan"] {
        assert_fails(&on_digits("--weight-average", decay), decay, &["--weight-average"]);
    }
    // The net (28 or 32 pixels) is decided from the images; no shift fits the larger one's 32.
    assert_fails(&on_digits("--shift", "32"), "--shift 32", &["shift of 32 pixels", "32x32"]);
    assert!(!out.exists(), "--shift 32 created a run folder");
    // GTA's length and USPS box, and its flags on a DANN recipe.
    for (args, flag) in [
        (&["--method", "gta", "--epochs", "0"][..], "--epochs"),
        (&["--method", "gta", "--usps-box", "0"], "--usps-box"),
        (&["--method", "dann", "--epochs", "3"], "--epochs"),
        (&["--method", "gta", "--steps", "5", "--epochs", "3"], "--epochs"),
    ] {
        let mut argv =
            vec!["train", "--quiet", "--source", "usps", "--target", "mnist", "--out", out.to_str().unwrap()];
        argv.extend(args);
        assert_fails(&xtask(&argv), &format!("{args:?}"), &[flag]);
        assert!(!out.exists(), "{args:?} created a run folder");
    }
    let r = xtask(&["train", "--quiet", "--seed", "-1"]);
    assert_fails(&r, "--seed -1", &["--seed"]);
    assert!(!out.exists());
}

/// Class 10: `eval RUN_DIR` reads the data folder the run recorded when none is given.
#[test]
fn class10_eval_uses_the_data_folder_the_run_recorded() {
    let root = tmp("eval-data");
    let data = root.join("data");
    digits_data_dir(&data, 48);
    let run = root.join("run");
    let r = xtask(&[
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
        "4",
        "--batch-size",
        "4",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let trained = r.json()["runs"][0].clone();
    // No --data-dir, no ADAPT_DATA_DIR, no Hub: only the recorded folder can give the data.
    let e = xtask(&["--json", "eval", run.to_str().unwrap()]);
    assert!(e.ok, "{}", e.stderr);
    let again = &e.json()["runs"][0];
    for k in ["source_acc", "target_acc", "domain_acc"] {
        assert_eq!(again[k], trained[k], "{k}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// `build-cuda` names what it lacks before it installs or builds anything: a Python that does not
/// exist, a CUDA release it cannot use, a cache inside the repository.
#[test]
fn class11_build_cuda_names_what_is_missing() {
    let cache = tmp("cuda-cache");
    let c = cache.to_str().unwrap();
    let r = xtask(&["build-cuda", "--cache", c, "--python", "/nonexistent/python3"]);
    assert_fails(&r, "build-cuda without Python", &["/nonexistent/python3", "Python 3"]);
    assert!(!cache.exists(), "build-cuda created its cache before finding Python");
    let r = xtask(&["build-cuda", "--cache", c, "--cuda-version", "12.4"]);
    assert_fails(&r, "build-cuda --cuda-version 12.4", &["--cuda-version 12.4", "13.0"]);
    let r = xtask(&["build-cuda", "--cache", c, "--compute-cap", "9"]);
    assert_fails(&r, "build-cuda --compute-cap 9", &["--compute-cap 9"]);
    let inside = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/cuda-cache");
    let r = xtask(&["build-cuda", "--cache", inside]);
    assert_fails(&r, "build-cuda --cache inside the repository", &["outside the repository"]);
}
