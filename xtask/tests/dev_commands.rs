//! The development commands through the built binary: `fuzz` and `bench` keep their flags,
//! their output and their errors now that their logic lives in adapt-fuzz and adapt-bench.
mod common;
use common::*;

/// The per-target counts of a `fuzz --json` run.
fn fuzz_counts(args: &[&str]) -> Vec<(String, u64, u64)> {
    let r = xtask(&[&["--json", "fuzz"], args].concat());
    assert!(r.ok, "{}", r.stderr);
    let json = r.json();
    assert_eq!((json["ok"].as_bool(), json["failed"].as_u64()), (Some(true), Some(0)), "{json}");
    assert_eq!(json["allocations_counted"].as_bool(), Some(true), "the runner counts allocations");
    let reports = json["fuzz"].as_array().expect("a report per target");
    reports
        .iter()
        .map(|t| {
            let n = |k: &str| t[k].as_u64().unwrap();
            assert_eq!(n("correct_loads") + n("clear_errors"), n("cases"), "{t}");
            (t["target"].as_str().unwrap().to_string(), n("correct_loads"), n("clear_errors"))
        })
        .collect()
}

#[test]
fn fuzz_runs_the_selected_targets_reproducibly_and_names_unknown_ones() {
    let first = fuzz_counts(&["--cases", "40", "--only", "config,idx"]);
    let names: Vec<&str> = first.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["idx", "config"], "the targets in report order");
    assert_eq!(first, fuzz_counts(&["--cases", "40", "--only", "config,idx"]), "the same seed, the same cases");
    assert_ne!(first, fuzz_counts(&["--cases", "40", "--only", "config,idx", "--seed", "7"]), "another seed");

    let table = xtask(&["fuzz", "--cases", "5", "--only", "usps"]);
    assert!(table.ok, "{}", table.stderr);
    assert!(table.stdout.starts_with("target       cases  correct   clear"), "{}", table.stdout);
    assert!(table.stdout.lines().nth(1).is_some_and(|l| l.starts_with("usps             5")), "{}", table.stdout);

    let r = xtask(&["fuzz", "--only", "idx,nope"]);
    assert_fails(&r, "fuzz --only nope", &["--only: unknown target 'nope'", "known: idx, mat, mnist-m", "config"]);
}

#[test]
fn bench_times_a_step_and_compares_through_a_child_process() {
    let r = xtask(&["--json", "bench", "--steps", "1", "--warmup", "0", "--batch", "2", "--threads", "1"]);
    assert!(r.ok, "{}", r.stderr);
    let json = r.json();
    assert_eq!(
        (json["net"].as_str(), json["kernels"].as_str(), json["threads"].as_u64()),
        (Some("mnist"), Some("adapt-ops"), Some(1))
    );
    assert!(json["images_per_s"].as_f64().is_some_and(|v| v > 0.0), "{json}");
    // With `--json` the JSON object has stdout to itself; the summary and the profile go to stderr.
    assert!(r.stderr.lines().any(|l| l.starts_with("mnist on cpu: ")), "{}", r.stderr);
    assert!(r.stderr.contains("outside these kernels"), "{}", r.stderr);

    // A stand-in for Python that answers as the PyTorch reference does: our side is this binary's
    // bench in a child process, whose flags must parse and whose JSON line must be read back.
    let dir = tmp("bench-peer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dann_torch_bench.py"), "").unwrap();
    let python = dir.join("python");
    std::fs::write(
        &python,
        "#!/bin/sh\necho '{\"images_per_s\": 10.0, \"ms_per_step\": 400.0, \"threads\": 1, \"torch\": \"stand-in\"}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (py, peer) = (python.to_str().unwrap(), dir.to_str().unwrap());
    let common = ["--steps", "1", "--warmup", "0", "--batch", "2", "--threads", "1", "--rounds", "1"];
    let r = xtask(&[&["--json", "bench", "--against-pytorch", py, "--peer-dir", peer], &common[..]].concat());
    assert!(r.ok, "{}", r.stderr);
    let json = r.json();
    assert_eq!((json["torch"].as_str(), json["pytorch_median_images_per_s"].as_f64()), (Some("stand-in"), Some(10.0)));
    assert!(json["ours_median_images_per_s"].as_f64().is_some_and(|v| v > 0.0), "{json}");
    assert!(r.stderr.contains("median: adapt") && r.stderr.contains("PyTorch stand-in 10.0 images/s"), "{}", r.stderr);

    let r = xtask(&[&["bench", "--against-pytorch", py, "--peer-dir", "/nonexistent"], &common[..]].concat());
    assert_fails(&r, "bench without the scripts", &["--against-pytorch: /nonexistent", "dann_torch_bench.py"]);
    assert_fails(&xtask(&["bench", "--threads", "0"]), "bench --threads 0", &["--threads must be positive"]);
    std::fs::remove_dir_all(&dir).ok();
}
