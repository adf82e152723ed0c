//! A training process killed with SIGKILL or stopped with SIGINT at any moment, then resumed
//! (several times over), ends with exactly the weights, metrics and figures of an unbroken run:
//! the checkpoint on disk is always a complete one, the stale lock of a killed process is taken
//! over, a half-written metrics line or temporary file is discarded.
mod common;
use common::*;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const STEPS: &str = "3000";

fn train(out: &Path, resume: bool) -> Child {
    let dir = out.to_str().unwrap();
    let args: Vec<&str> = if resume {
        vec!["--json", "train", "--quiet", "--resume", dir]
    } else {
        vec![
            "--json",
            "train",
            "--quiet",
            "--method",
            "dann",
            "--seed",
            "3",
            "--steps",
            STEPS,
            "--checkpoint-every",
            "100",
            "--out",
            dir,
        ]
    };
    command(&args).spawn().unwrap()
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// Waits until `ready` holds, then stops `child` (training into `dir`) with `signal`; returns
/// whether it was interrupted (a run that finished first interrupted nothing).
fn interrupt_when(mut child: Child, dir: &Path, signal: &str, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !ready() {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "never got ready to interrupt");
        std::thread::sleep(Duration::from_millis(2));
    }
    // A run that ended before the signal interrupted nothing; exit 0 is right only with its final
    // weights on disk (SIGKILL cannot be caught, and a stopped run exits non-zero).
    let finished = |exit: std::process::ExitStatus| {
        assert!(!exit.success() || dir.join("model.safetensors").exists(), "exited 0 without its final weights");
        false
    };
    // (try_wait reaps an ended process, after which its pid must not be signalled.)
    if let Some(exit) = child.try_wait().unwrap() {
        return finished(exit);
    }
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    if exit.success() {
        return finished(exit);
    }
    true
}

#[test]
fn kill_and_sigint_then_resume_end_bit_identical_to_an_unbroken_run() {
    let unbroken = tmp("unbroken");
    let a = wait(train(&unbroken, false), Duration::from_secs(600), "the unbroken run");
    assert!(a.ok, "{}", a.stderr);

    let dir = tmp("killed");
    let ckpt = dir.join("checkpoint.safetensors");
    // SIGKILL as soon as the first checkpoint is on disk.
    let first = interrupt_when(train(&dir, false), &dir, "-KILL", || ckpt.exists());
    let mut interrupted = first;
    assert!(!dir.join("model.safetensors").exists() || !interrupted, "killed, yet final weights were written");
    // SIGINT once the resumed run has written a few more records.
    let before = metrics_lines(&dir);
    let second = interrupt_when(train(&dir, true), &dir, "-INT", || metrics_lines(&dir) > before + 6);
    interrupted |= second;
    // SIGKILL again almost at once, wherever the resumed run is (loading, training, saving).
    let c = train(&dir, true);
    std::thread::sleep(Duration::from_millis(30));
    let third = interrupt_when(c, &dir, "-KILL", || true);
    interrupted |= third;
    eprintln!(
        "interrupted: SIGKILL {first} (at {before} records), SIGINT {second}, SIGKILL {third} (at {} records)",
        metrics_lines(&dir)
    );
    assert!(first && interrupted, "the run finished before it could be killed: the test proves nothing");
    let b = wait(train(&dir, true), Duration::from_secs(600), "the final resume");
    assert!(b.ok, "{}", b.stderr);

    let (wa, wb) = (weights(&unbroken.join("model.safetensors")), weights(&dir.join("model.safetensors")));
    assert_eq!(wa.len(), wb.len());
    for (name, v) in &wa {
        let same = v.iter().zip(&wb[name]).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs between the unbroken and the interrupted run");
    }
    let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&unbroken), metrics(&dir), "the metrics records differ");
    let (ra, rb) = (&a.json()["runs"][0], &b.json()["runs"][0]);
    for k in ["target_acc", "source_acc", "domain_acc", "a_distance", "target_ari"] {
        assert_eq!(ra[k], rb[k], "{k}");
    }
    assert!(rb["resumed_at"].as_u64().is_some_and(|s| s >= 100), "{rb}");
    assert!(!dir.join(".adapt-run.lock").exists(), "the finished run left its lock");
    std::fs::remove_dir_all(&unbroken).ok();
    std::fs::remove_dir_all(&dir).ok();
}
