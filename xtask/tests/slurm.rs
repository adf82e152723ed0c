//! The digit matrix as a Slurm job array on a real Slurm (`.ci/slurm-local.sh start` runs a
//! single-node one; `.ci/run` starts it and sets ADAPT_REQUIRE_SLURM=1): the array's table is the
//! one-process table cell for cell, and a task cancelled mid-run and submitted again resumes its
//! unit from the checkpoint. Without sbatch (and without ADAPT_REQUIRE_SLURM) these tests print
//! "skipped: no sbatch" and pass. They train on the small MNIST and USPS fixture of the other
//! command-line tests: with the real data a unit's loading, evaluation and t-SNE alone take 10-40 s
//! on two cores, and three sweeps of four units would not fit in the five minutes CI gives them
//! (docs/cluster.md measures the real sweep).
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The sweep of both tests: 2 seeds x (recommended: source-only + DANN, paper: DANN) on one pair,
/// 4 units; 150 steps give checkpoints at 50, 100 and 150 (a digit run logs every 50 steps).
const SWEEP: [&str; 8] = ["ablation", "matrix", "--pairs", "mnist:usps", "--seeds", "2", "--steps", "150"];
const UNITS: usize = 4;
/// The paper unit of seed 0: one run folder, which the second test cancels mid-run.
const CANCELLED: usize = 1;

/// Everything a Slurm test may wait for in all.
const LIMIT: Duration = Duration::from_secs(240);

/// The tests share two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// Whether sbatch is here; the test skips (passes) without it, unless ADAPT_REQUIRE_SLURM=1.
fn slurm() -> bool {
    let sbatch = Command::new("sbatch").arg("--version").output().is_ok_and(|o| o.status.success());
    if !sbatch {
        assert!(
            !required("ADAPT_REQUIRE_SLURM"),
            "ADAPT_REQUIRE_SLURM=1 but sbatch is not on PATH (start a local Slurm: .ci/slurm-local.sh start)"
        );
        println!("skipped: no sbatch");
    }
    sbatch
}

/// A fresh fixture data folder (the same images every time).
fn fixture(tag: &str) -> PathBuf {
    let d = tmp(tag);
    digits_data_dir(&d, 400);
    d
}

fn sweep_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--json"];
    args.extend(SWEEP);
    args.extend(["--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    args.extend(extra);
    args
}

/// The table rows of `out/matrix.md`.
fn table(out: &Path) -> Vec<String> {
    let md = std::fs::read_to_string(out.join("matrix.md")).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    md.lines().filter(|l| l.starts_with('|')).map(str::to_string).collect()
}

/// The same sweep in one process, once for both tests.
fn reference() -> &'static [String] {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let (data, out) = (fixture("slurm-one-process-data"), tmp("slurm-one-process"));
        let r = xtask(&sweep_args(&data, &out, &[]));
        assert!(r.ok, "the one-process sweep failed: {}", r.stderr);
        let rows = table(&out);
        std::fs::remove_dir_all(&out).ok();
        std::fs::remove_dir_all(&data).ok();
        rows
    })
}

/// `scontrol show job` of `id`: one line per job (per task of an array), `JobState=...` in each.
fn job_states(id: &str) -> Vec<String> {
    let o = Command::new("scontrol").args(["show", "job", "-o", id]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).map(str::to_string))
        .collect()
}

const ENDED: [&str; 6] = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"];

/// Waits until every job of `id` has ended; returns their states.
fn wait_ended(id: &str, start: Instant, logs: &Path) -> Vec<String> {
    loop {
        let states = job_states(id);
        if !states.is_empty() && states.iter().all(|s| ENDED.contains(&s.as_str())) {
            return states;
        }
        if start.elapsed() > LIMIT {
            panic!("job {id} still not ended after {LIMIT:?}: {states:?}\n{}", read_logs(logs));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_logs(logs: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        all.push_str(&format!("--- {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default()));
    }
    all
}

/// `--slurm --submit`: the array's and the report's job ids.
fn submit(data: &Path, out: &Path, extra: &[&str]) -> (String, String) {
    let r = xtask(&sweep_args(data, out, &[&["--slurm", "--submit"], extra].concat()));
    assert!(r.ok, "submitting failed: {}", r.stderr);
    let jobs = &r.json()["jobs"];
    let id = |k: &str| jobs[k].as_str().unwrap_or_else(|| panic!("no {k} in {}", r.stdout)).to_string();
    (id("array_job"), id("report_job"))
}

#[test]
fn a_missing_sbatch_is_an_error_naming_it_after_the_scripts_are_written() {
    let out = tmp("slurm-no-sbatch");
    let empty = tmp("slurm-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let mut args = vec!["--json"];
    args.extend(SWEEP);
    args.extend(["--out", out.to_str().unwrap(), "--slurm", "--submit", "--max-parallel", "3", "--time", "10"]);
    let r = wait(command(&args).env("PATH", &empty).spawn().unwrap(), Duration::from_secs(60), "--submit");
    assert_fails(&r, "--submit without sbatch", &["sbatch not found on PATH", "submit.sh"]);
    let array = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    assert!(array.contains(&format!("#SBATCH --array=0-{}%3\n", UNITS - 1)), "{array}");
    assert!(array.contains("#SBATCH --time=10\n") && array.contains("'--task' 'env'"), "{array}");
    // Listing the units needs neither Slurm nor the data (the pairs are given).
    let mut list = vec!["--json"];
    list.extend(SWEEP);
    list.extend(["--out", out.to_str().unwrap(), "--list-tasks"]);
    let r = xtask(&list);
    assert!(r.ok, "{}", r.stderr);
    let tasks = r.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), UNITS, "{}", r.stdout);
    assert_eq!(tasks[CANCELLED]["name"], "mnist-usps/seed0/paper");
    assert!(r.stdout.lines().any(|l| l.trim_start().starts_with("1  mnist-usps/seed0/paper")), "{}", r.stdout);
    // An index the sweep has not, and `env` with no engine's variable, are refused.
    for (task, says) in [("4", "4 units, 0 to 3"), ("env", "SLURM_ARRAY_TASK_ID")] {
        let mut a = list.clone();
        a.pop();
        a.extend(["--task", task]);
        let r = wait(
            command(&a).env_remove("SLURM_ARRAY_TASK_ID").env_remove("JOB_COMPLETION_INDEX").spawn().unwrap(),
            Duration::from_secs(60),
            "--task",
        );
        assert_fails(&r, &format!("--task {task}"), &[says]);
    }
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(&empty).ok();
}

#[test]
fn the_array_gives_the_one_process_table_and_reuses_each_finished_unit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm() {
        return;
    }
    let expected = reference();
    let start = Instant::now();
    let (data, out) = (fixture("slurm-array-data"), tmp("slurm-array"));
    let data = data.as_path();
    let (array, report) = submit(data, &out, &[]);
    let logs = out.join("slurm-logs");
    let states = wait_ended(&array, start, &logs);
    assert_eq!(states, vec!["COMPLETED"; UNITS], "{}", read_logs(&logs));
    assert_eq!(wait_ended(&report, start, &logs), ["COMPLETED"], "{}", read_logs(&logs));
    assert_eq!(table(&out), expected, "the array's table differs from the one-process table");
    println!("sweep through Slurm: {:.1} s", start.elapsed().as_secs_f64());

    // Every unit has finished: a task given one reads it back, and the whole sweep again trains
    // nothing (no summary rewritten) and gives the same table.
    let mut summaries = Vec::new();
    for seed in 0..2 {
        for folder in ["recommended/source-only", "recommended/dann", "paper"] {
            summaries.push(out.join(format!("mnist-usps/seed{seed}/{folder}/summary.json")));
        }
    }
    let modified =
        |p: &PathBuf| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).modified().unwrap();
    let before: Vec<_> = summaries.iter().map(modified).collect();
    let r = xtask(&sweep_args(data, &out, &["--task", "3"]));
    assert!(r.ok && r.json()["reused"] == true, "{}{}", r.stdout, r.stderr);
    let r = xtask(&sweep_args(data, &out, &[]));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(summaries.iter().map(modified).collect::<Vec<_>>(), before, "a finished unit was trained again");
    assert_eq!(table(&out), expected);
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(data).ok();
}

#[test]
fn a_cancelled_task_submitted_again_resumes_its_unit_from_the_checkpoint() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm() {
        return;
    }
    let expected = reference();
    let start = Instant::now();
    let (data, out) = (fixture("slurm-cancel-data"), tmp("slurm-cancel"));
    let data = data.as_path();
    // One task at a time: the cancelled unit's neighbours cannot finish it meanwhile.
    let (array, report) = submit(data, &out, &["--max-parallel", "1"]);
    let logs = out.join("slurm-logs");
    let unit = out.join("mnist-usps/seed0/paper");
    let task = format!("{array}_{CANCELLED}");
    // Its training process (the lock names it: this is its host) is stopped as soon as the first
    // checkpoint is on disk, so that the cancel lands mid-run however fast the remaining steps go.
    // (Not `scontrol suspend`: Slurm kills a job that has been suspended with SIGKILL, while a
    // cancel or a time limit sends a running job SIGTERM first.)
    let (ckpt, lock) = (unit.join("checkpoint.safetensors"), unit.join(".adapt-run.lock"));
    while !ckpt.exists() || !lock.exists() {
        assert!(start.elapsed() < LIMIT, "unit {CANCELLED} never checkpointed\n{}", read_logs(&logs));
        std::thread::sleep(Duration::from_millis(5));
    }
    let holder = std::fs::read_to_string(&lock).unwrap();
    let (pid, host) = (holder.lines().next().unwrap(), holder.lines().nth(1).unwrap());
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, pid]).status().unwrap().success(), "kill {sig}");
    signal("-STOP");
    assert!(!unit.join("summary.json").exists(), "the unit finished before it was stopped");

    // A second process given the same unit is refused, naming the host and pid that train it.
    let r = xtask(&sweep_args(data, &out, &["--task", &CANCELLED.to_string()]));
    assert_fails(&r, "a second task of the unit", &[&format!("in use by process {pid} on this host ({host})")]);

    signal("-CONT");
    let o = Command::new("scancel").arg(&task).output().unwrap();
    assert!(o.status.success(), "scancel {task}: {}", String::from_utf8_lossy(&o.stderr));
    let states = wait_ended(&array, start, &logs);
    assert_eq!(states.iter().filter(|s| *s == "CANCELLED").count(), 1, "{states:?}\n{}", read_logs(&logs));
    assert_eq!(states.iter().filter(|s| *s == "COMPLETED").count(), UNITS - 1, "{states:?}");
    // The report waited for every task: it can never run now.
    assert_eq!(wait_ended(&report, start, &logs), ["CANCELLED"]);
    assert!(!unit.join("summary.json").exists());
    // The task's script removed its dead process's lock (another host would never take it over).
    assert!(!unit.join(".adapt-run.lock").exists(), "the cancelled task left its lock");

    // The unit submitted again, then the report after it.
    let script = out.join("sweep.sbatch");
    let again = sbatch(&[&format!("--array={CANCELLED}")], &script);
    let report = sbatch(&[&format!("--dependency=afterok:{again}")], &out.join("report.sbatch"));
    assert_eq!(wait_ended(&again, start, &logs), ["COMPLETED"], "{}", read_logs(&logs));
    assert_eq!(wait_ended(&report, start, &logs), ["COMPLETED"], "{}", read_logs(&logs));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unit.join("summary.json")).unwrap()).unwrap();
    let resumed = summary["resumed_at"].as_u64().unwrap_or_else(|| panic!("not resumed: {summary}"));
    assert!((50..150).contains(&resumed), "resumed at step {resumed}");
    assert_eq!(table(&out), expected, "the resumed sweep's table differs from the one-process table");
    std::fs::remove_dir_all(&out).ok();
    std::fs::remove_dir_all(data).ok();
}

/// `sbatch --parsable FLAGS SCRIPT`: the job id.
fn sbatch(flags: &[&str], script: &Path) -> String {
    let o = Command::new("sbatch").arg("--parsable").args(flags).arg(script).output().unwrap();
    assert!(o.status.success(), "sbatch {flags:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap().to_string()
}
