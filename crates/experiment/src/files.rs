//! Files of a run folder: atomic writes, the metrics log cut back on resume, the configuration
//! compared as a value, and the folder's name.
use crate::error::{ExperimentError, Result};
use adapt_datasets::files::{entry_kind, read_regular, read_text};
use adapt_models::ParamStore;
use adapt_train::checkpoint::{self, CHECKPOINT_FILE, Resume};
use candle_core::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The weights after the last step.
pub const MODEL_FILE: &str = "model.safetensors";
/// The weights of the checkpoint the source-validation rule chose.
pub const BEST_FILE: &str = "best.safetensors";
pub const SELECTION_FILE: &str = "selection.json";
pub const REPORT_FILE: &str = "report.md";
/// The recipe a run folder was started with, so `resume` can rebuild it.
pub const RECIPE_FILE: &str = "recipe.json";

/// Writes `text` to `path` through a temporary file and a rename: a crash never leaves a
/// half-written file under the final name.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| ExperimentError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ExperimentError::io(path, e))
}

/// `value` as pretty JSON in `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ExperimentError::file(path, e))?;
    write_atomic(path, &text)
}

/// No run file (configuration, recipe, summary, metrics, selection) comes near this; a larger
/// one is refused before it is read.
pub const MAX_RUN_FILE: u64 = 64 << 20;

/// The text of the run file `path` (a regular file of at most [`MAX_RUN_FILE`] bytes, UTF-8, a
/// byte-order mark dropped); `Ok(None)` when nothing is there (a dangling link is an error).
pub fn read_run_file(path: &Path) -> Result<Option<String>> {
    match read_text(path, MAX_RUN_FILE) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExperimentError::io(path, e)),
    }
}

/// `path` read as JSON `T`; `Ok(None)` when the file does not exist, an error naming the file
/// when it exists but is unreadable or not a `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_run_file(path)? else { return Ok(None) };
    serde_json::from_str(&text).map(Some).map_err(|e| ExperimentError::file(path, e))
}

/// When a run writes its metrics records: every `every` steps and after the last of `steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSchedule {
    pub every: usize,
    pub steps: usize,
}

impl RecordSchedule {
    /// The step of the `k`-th record (0-based).
    pub fn step_of(&self, k: usize) -> usize {
        (k + 1).saturating_mul(self.every).min(self.steps)
    }
}

/// A metrics record as read back on resume: its figures must be ones a run can write.
pub trait MetricsRecord: DeserializeOwned {
    fn check(&self) -> std::result::Result<(), String>;
}

fn check_figures(figures: &[(&str, Option<f64>, f64, f64)]) -> std::result::Result<(), String> {
    for &(name, v, lo, hi) in figures {
        if let Some(v) = v
            && !(v.is_finite() && (lo..=hi).contains(&v))
        {
            return Err(format!("{name} {v} is outside [{lo}, {hi}]"));
        }
    }
    Ok(())
}

impl MetricsRecord for adapt_train::StepMetrics {
    fn check(&self) -> std::result::Result<(), String> {
        check_figures(&[
            ("label_loss", Some(self.label_loss), 0.0, f64::MAX),
            ("domain_loss", Some(self.domain_loss), 0.0, f64::MAX),
            ("label_acc", Some(self.label_acc), 0.0, 1.0),
            ("domain_acc", Some(self.domain_acc), 0.0, 1.0),
            ("pseudo_label_rate", Some(self.pseudo_label_rate), 0.0, 1.0),
            ("lambda", Some(self.lambda), 0.0, 1.0),
            ("lr", Some(self.lr), 0.0, f64::MAX),
        ])
    }
}

impl MetricsRecord for adapt_train::GtaStepMetrics {
    fn check(&self) -> std::result::Result<(), String> {
        check_figures(&[
            ("d_loss", self.d_loss, 0.0, f64::MAX),
            ("g_loss", self.g_loss, 0.0, f64::MAX),
            ("c_loss", Some(self.c_loss), 0.0, f64::MAX),
            ("f_loss", Some(self.f_loss), f64::MIN, f64::MAX),
            ("label_acc", Some(self.label_acc), 0.0, 1.0),
            ("d_real_acc", self.d_real_acc, 0.0, 1.0),
            ("d_fake_acc", self.d_fake_acc, 0.0, 1.0),
            ("lr", Some(self.lr), 0.0, f64::MAX),
        ])
    }
}

/// Any JSON object with a `step` (for tools that read metrics of any kind).
impl MetricsRecord for serde_json::Value {
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The records of `path` up to step `up_to`, with their original lines (rewritten verbatim, so
/// a resumed file is byte-identical to an unbroken run's).
///
/// The records must be the history the checkpoint at `up_to` was written after: one per step
/// of `schedule` in order, each with figures a run can write ([`MetricsRecord::check`]), and
/// (the metrics are flushed before every checkpoint) the last at step `up_to` when it is above
/// 0. An empty or cut file, one with a record missing, repeated or edited, or one of another run
/// is an error rather than a run that continues with a wrong history. Only an unfinished last
/// line (a write interrupted by a kill, necessarily after the checkpoint) is dropped.
pub fn read_metrics<T: MetricsRecord>(path: &Path, up_to: usize, schedule: RecordSchedule) -> Result<(Vec<T>, String)> {
    let text = match read_run_file(path)? {
        Some(t) => t,
        None if up_to == 0 => String::new(),
        None => return Err(ExperimentError::file(path, format!("missing, but the checkpoint is at step {up_to}"))),
    };
    let mut records = Vec::new();
    let mut kept = String::new();
    let mut last_step = 0;
    let mut reached = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let unfinished = i + 1 == lines.len() && !raw.ends_with('\n');
        let line = raw.trim_end_matches(['\n', '\r']);
        let bad = |e: &dyn std::fmt::Display| {
            ExperimentError::file(path, format!("line {} is not a metrics record ({e})", i + 1))
        };
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if unfinished => break,
            Err(e) => return Err(bad(&e)),
        };
        let step = value.get("step").and_then(|s| s.as_u64()).ok_or_else(|| bad(&"no step"))? as usize;
        let due = schedule.step_of(i);
        if step != due || due <= last_step {
            return Err(bad(&format!("a record of step {step} where the run writes step {due}")));
        }
        last_step = step;
        if step <= up_to {
            let record: T = serde_json::from_value(value).map_err(|e| bad(&e))?;
            record.check().map_err(|e| bad(&e))?;
            records.push(record);
            kept.push_str(line);
            kept.push('\n');
            reached = step;
        }
    }
    if reached != up_to {
        return Err(ExperimentError::file(
            path,
            format!(
                "the records reach step {reached}, the checkpoint is at step {up_to}: the history up to the checkpoint \
                 is missing (a truncated or replaced metrics file)"
            ),
        ));
    }
    Ok((records, kept))
}

/// Starts a method's folder (`config.toml`, `metrics.jsonl`, the checkpoint) afresh, or continues it.
///
/// Afresh: writes `config` and removes what an earlier run left (metrics, checkpoint and `stale`).
/// With `resume` and a checkpoint present: reads the saved configuration as a `C` and compares
/// it with `config` as a value (so fields added later with defaults do not break a run in
/// flight), restores the parameters, and cuts the metrics back to the checkpoint's step (the
/// records after it belong to steps that will run again); returns the checkpoint's state and
/// the kept records.
pub fn open_run_folder<C, T>(
    dir: &Path,
    config: &C,
    schedule: RecordSchedule,
    params: &ParamStore,
    device: &Device,
    resume: bool,
    stale: &[&Path],
) -> Result<(Option<Resume>, Vec<T>)>
where
    C: Serialize + DeserializeOwned + PartialEq,
    T: MetricsRecord,
{
    let (config_path, metrics_path, ckpt_path) =
        (dir.join(CONFIG_FILE), dir.join(METRICS_FILE), dir.join(CHECKPOINT_FILE));
    // A dangling link or any other entry is there: loading it says what it is.
    if resume && entry_kind(&ckpt_path).exists() {
        check_saved_config(&config_path, config)?;
        let r = checkpoint::load(&ckpt_path, params, device)?;
        let (records, kept) = read_metrics(&metrics_path, r.step, schedule)?;
        write_atomic(&metrics_path, &kept)?;
        return Ok((Some(r), records));
    }
    let text = toml::to_string_pretty(config).map_err(|e| ExperimentError::file(&config_path, e))?;
    write_atomic(&config_path, &text)?;
    for old in [metrics_path.as_path(), ckpt_path.as_path()].into_iter().chain(stale.iter().copied()) {
        if old.exists() {
            std::fs::remove_file(old).map_err(|e| ExperimentError::io(old, e))?;
        }
    }
    Ok((None, Vec::new()))
}

/// The configuration saved at `path` (a run folder's `config.toml`) must be `config`, compared
/// as a value (so fields added later with defaults do not break a run in flight).
pub fn check_saved_config<C: DeserializeOwned + PartialEq>(path: &Path, config: &C) -> Result<()> {
    let saved =
        read_run_file(path)?.ok_or_else(|| ExperimentError::file(path, "missing, but the folder has a checkpoint"))?;
    let saved: C = toml::from_str(&saved)
        .map_err(|e| ExperimentError::file(path, format!("not this kind of run's configuration ({e})")))?;
    if saved != *config {
        return Err(ExperimentError::file(
            path,
            "differs from this run's configuration; resume with the same settings",
        ));
    }
    Ok(())
}

/// `path` read as the TOML configuration `C`, naming the file on failure.
pub fn read_config<C: DeserializeOwned>(path: &Path) -> Result<C> {
    let text = read_run_file(path)?.ok_or_else(|| ExperimentError::file(path, "missing"))?;
    toml::from_str(&text).map_err(|e| ExperimentError::file(path, e))
}

/// `YYYYMMDD-HHMMSS` in UTC, from the system clock.
pub fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil conversion.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The folder for a run: `out` if given, else `runs/<timestamp>-<label>-<source>-<target>`.
pub fn run_folder_path(out: Option<&Path>, label: &str, source: &str, target: &str) -> PathBuf {
    match out {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("runs").join(format!("{}-{label}-{source}-{target}", timestamp())),
    }
}

pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_the_documented_form() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(&t[8..9], "-");
        assert!(t.starts_with("20"));
    }

    #[test]
    fn metrics_must_reach_the_checkpoint_and_only_an_unfinished_last_line_is_dropped() {
        let dir = std::env::temp_dir().join(format!("adapt-exp-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(METRICS_FILE);
        let schedule = RecordSchedule { every: 25, steps: 90 };
        let read = |text: &str, up_to: usize| {
            std::fs::write(&path, text).unwrap();
            read_metrics::<serde_json::Value>(&path, up_to, schedule)
                .map(|(r, kept)| (r.len(), kept))
                .map_err(|e| e.to_string())
        };
        let good = "{\"step\":25}\n{\"step\":50}\n{\"step\":75}\n";
        assert_eq!(read(good, 50).unwrap(), (2, "{\"step\":25}\n{\"step\":50}\n".to_string()));
        // A kill in the middle of writing a record after the checkpoint.
        assert_eq!(read(&format!("{good}{{\"step\":10"), 75).unwrap().0, 3);
        // An empty or cut file loses the history before the checkpoint: an error, not a fresh start.
        for (text, up_to) in [("", 50), ("{\"step\":25}\n", 50), (good, 60)] {
            let e = read(text, up_to).unwrap_err();
            assert!(e.contains("metrics.jsonl") && e.contains(&format!("checkpoint is at step {up_to}")), "{e}");
        }
        // Records out of order, repeated, or broken before the end are not this run's history.
        for bad in
            ["{\"step\":25}\n{\"step\":10}\n", "{\"step\":25}\n{\"step\":25}\n", "{\"step\":25}\nxx\n{\"step\":50}\n"]
        {
            assert!(read(bad, 25).unwrap_err().contains("line 2"), "{bad}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(read_metrics::<serde_json::Value>(&path, 25, schedule).unwrap_err().to_string().contains("missing"));
        assert_eq!(read_metrics::<serde_json::Value>(&path, 0, schedule).unwrap().0.len(), 0);
        // The last record of a run comes at its last step, off the interval.
        let end = "{\"step\":25}\n{\"step\":50}\n{\"step\":75}\n{\"step\":90}\n";
        assert_eq!(read(end, 90).unwrap().0, 4);
        // A record left out is not hidden by the steps still rising.
        assert!(read("{\"step\":25}\n{\"step\":75}\n", 75).unwrap_err().contains("line 2"));
        // Figures no run writes.
        let odd = "{\"step\":25,\"label_loss\":0.5,\"domain_loss\":0.6,\"label_acc\":7.5,\"domain_acc\":0.5,\"lambda\":0.1,\"lr\":0.01}\n";
        std::fs::write(&path, odd).unwrap();
        let e = read_metrics::<adapt_train::StepMetrics>(&path, 25, schedule).unwrap_err().to_string();
        assert!(e.contains("label_acc 7.5"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn read_json_tells_missing_from_broken() {
        let dir = std::env::temp_dir().join(format!("adapt-exp-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        assert!(read_json::<serde_json::Value>(&path).unwrap().is_none());
        std::fs::write(&path, "{ not json").unwrap();
        let e = read_json::<serde_json::Value>(&path).unwrap_err().to_string();
        assert!(e.contains("s.json"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The lock file that marks a run folder as in use.
pub const LOCK_FILE: &str = ".adapt-run.lock";

/// Exclusive use of a run folder: two trainings into one folder, or the resume of a folder that
/// is still training, would interleave their checkpoints and metrics. Held until dropped (also
/// on an error return). The lock file holds the pid, the host and the time it was taken, one a
/// line. A lock of this host whose process is gone (a killed run) is stale and taken over; a lock
/// of another host (a run folder on a shared file system) is never judged by a pid of this one,
/// so it stays until its holder releases it or a user removes it.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Who holds a run folder's lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// `None` in a lock written before locks named their host: taken to be this host.
    pub host: Option<String>,
    /// When it was taken, `YYYYMMDD-HHMMSS` UTC (`None` in an old lock).
    pub since: Option<String>,
}

impl LockHolder {
    /// The holder of a lock file's text; `None` when its first line is not a pid.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim);
        let pid = lines.next()?.parse().ok()?;
        let mut field = || lines.next().filter(|l| !l.is_empty()).map(str::to_string);
        Some(Self { pid, host: field(), since: field() })
    }

    fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.pid, self.host.as_deref().unwrap_or(""), self.since.as_deref().unwrap_or(""))
    }
}

/// This machine's host name (the kernel's node name, as `uname -n` prints it).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".into())
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let me = LockHolder { pid: std::process::id(), host: Some(host_name()), since: Some(timestamp()) };
        // The lock is complete before it appears under its name (a hard link of a written file), so
        // a second process never sees an empty lock it would take for a stale one. The draft's name
        // carries the host too: pids of two hosts sharing the folder can be equal.
        let draft = dir.join(format!("{LOCK_FILE}.{}.{}.tmp", me.host.as_deref().unwrap_or(""), me.pid));
        std::fs::write(&draft, me.text()).map_err(|e| ExperimentError::io(&draft, e))?;
        let taken = Self::take(dir, &path, &draft, me.host.as_deref().unwrap_or(""));
        let _ = std::fs::remove_file(&draft);
        taken
    }

    fn take(dir: &Path, path: &Path, draft: &Path, this_host: &str) -> Result<Self> {
        let path = path.to_path_buf();
        for _ in 0..2 {
            match std::fs::hard_link(draft, &path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Read only if it is a regular file: a FIFO under the lock's name would block.
                    let text = match read_regular(&path, 512) {
                        Ok(t) => t,
                        // Released between the two calls: try again.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(ExperimentError::file(
                                &path,
                                format!("lock file unusable ({e}); remove it if no run uses the folder"),
                            ));
                        }
                    };
                    match LockHolder::parse(&String::from_utf8_lossy(&text)) {
                        Some(h) if h.host.as_deref().is_some_and(|host| host != this_host) => {
                            return Err(ExperimentError::file(
                                dir,
                                format!(
                                    "run folder is in use by process {} on host {}{} (lock file {LOCK_FILE}); a lock \
                                     of another host is never taken over: if that process is gone, remove the lock \
                                     file",
                                    h.pid,
                                    h.host.as_deref().unwrap_or_default(),
                                    since(&h)
                                ),
                            ));
                        }
                        Some(h) if process_alive(h.pid) => {
                            return Err(ExperimentError::file(
                                dir,
                                format!(
                                    "run folder is in use by process {} on this host ({this_host}){} (lock file \
                                     {LOCK_FILE})",
                                    h.pid,
                                    since(&h)
                                ),
                            ));
                        }
                        // Stale (its process on this host is gone) or unreadable: take it over.
                        _ => std::fs::remove_file(&path).map_err(|e| ExperimentError::io(&path, e))?,
                    }
                }
                Err(e) => return Err(ExperimentError::io(&path, e)),
            }
        }
        Err(ExperimentError::file(dir, "another process keeps taking the run folder's lock"))
    }
}

fn since(h: &LockHolder) -> String {
    h.since.as_deref().map_or(String::new(), |s| format!(" since {s} UTC"))
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists on this host. Where `/proc` is missing, a lock is assumed held:
/// the message names the lock file so a user can remove it.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_locked_folder_is_refused_and_a_stale_lock_taken_over() {
        let dir = std::env::temp_dir().join(format!("adapt-exp-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = host_name();
        // A live process (pid 1 always exists) holds it; a lock without a host is an old one, of
        // this host.
        for text in ["1\n".to_string(), format!("1\n{host}\n20240102-030405\n")] {
            std::fs::write(dir.join(LOCK_FILE), &text).unwrap();
            let e = RunLock::acquire(&dir).unwrap_err().to_string();
            assert!(e.contains("in use by process 1 on this host"), "{e}");
        }
        // A lock whose process is gone (pid numbers are below 2^22 on Linux) is stale.
        std::fs::write(dir.join(LOCK_FILE), format!("4294967\n{host}\n20240102-030405\n")).unwrap();
        let lock = RunLock::acquire(&dir).expect("stale lock taken over");
        let held = LockHolder::parse(&std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!((held.pid, held.host.as_deref()), (std::process::id(), Some(host.as_str())));
        assert_eq!(held.since.as_ref().map(String::len), Some(15), "{held:?}");
        drop(lock);
        assert!(!dir.join(LOCK_FILE).exists(), "the lock is released on drop");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_lock_of_another_host_is_never_judged_by_a_local_pid() {
        let dir = std::env::temp_dir().join(format!("adapt-exp-lock-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No process 4294967 runs here, but the pid is another machine's.
        let text = "4294967\nnode-17.cluster\n20240102-030405\n";
        std::fs::write(dir.join(LOCK_FILE), text).unwrap();
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains("process 4294967 on host node-17.cluster since 20240102-030405 UTC") && e.contains(LOCK_FILE),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), text, "the lock was left as it was");
        assert_eq!(LockHolder::parse("x\n"), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
