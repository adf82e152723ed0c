//! The fuzz suite of adapt: generated corruptions of valid input files, run against the real
//! loaders (datasets, checkpoints, weights and run files). It is the engine behind `cargo xtask
//! fuzz` and its fast sample in `cargo test`; a development tool, not published.
//!
//! A [`Target`] writes one case at a time (a valid fixture, then one corruption of it:
//! truncations, header fields, declared sizes, encodings, file kinds, duplicates), says what a
//! correct outcome is, and loads it the way the program does. Every case ends as exactly one of:
//!
//! * a **correct load**: the load succeeded and gave exactly the data the case expects (the
//!   fixture's, for a corruption that cannot change it, such as a byte of a header's free text);
//! * a **clear error**: the load failed with a message naming the file (or folder) it is about;
//! * an **unclear error**: it failed without naming it;
//! * a **silent acceptance**: it succeeded with other data than expected, or at all where no
//!   load is correct;
//! * a **panic** (caught), a **hang** (no answer within [`Options::timeout`]), or a **runaway
//!   allocation** (more than [`Options::max_case_bytes`] allocated at once, measured by
//!   [`memory::CountingAlloc`] when the binary installs it).
//!
//! Cases are drawn from a seeded generator: the same seed and case count give the same cases.
//!
//! * [`targets`]: every target, one file each, registered in one list.
//! * [`mutate`]: the corruptions the targets share.
//! * [`memory`]: the counting allocator that bounds what a case may allocate.
//! * [`suite`]: the `cargo xtask fuzz` command: its flags, the selection of targets, the table.
pub mod memory;
pub mod mutate;
pub mod suite;
pub mod targets;

pub use suite::{FuzzArgs, FuzzError, Suite};

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One generated input and what a correct outcome is.
#[derive(Debug, Clone)]
pub struct Case {
    /// What was done to the fixture ("truncated train-images-idx3-ubyte.gz at byte 17").
    pub what: String,
    /// The fingerprint of the only correct load (see [`Target::load`]); `None` when the input is
    /// invalid whatever it holds (a FIFO, a duplicate), so any load is a silent acceptance.
    pub expect: Option<u64>,
    /// File or folder names; a clear error names one of them.
    pub names: Vec<String>,
}

/// Something the suite generates corrupt inputs for: a loader, checkpoints, a run file.
pub trait Target: Send + Sync {
    /// Short name in reports (`idx`, `mat`, `checkpoint`, ...).
    fn name(&self) -> &'static str;
    /// Writes one case into the empty folder `dir`, drawing every choice from `rng`.
    fn make(&self, rng: &mut Rng, dir: &Path) -> Case;
    /// Reads what [`Target::make`] wrote, as the program would: a fingerprint of everything read
    /// (see [`fingerprint`]), or the error's message.
    fn load(&self, dir: &Path) -> Result<u64, String>;
    /// Builds what the cases share (a trained run, say) before the first case, so that its time
    /// does not count against that case's limit; an error names what could not be built.
    fn prepare(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The generator every case draws from.
pub type Rng = rand::rngs::StdRng;

/// A stable fingerprint of `value` within this process.
pub fn fingerprint<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// Fingerprint of a loaded dataset: its shape, labels, pixels (bit patterns) and partial counts.
pub fn dataset_fingerprint(ds: &adapt_datasets::ImageDataset) -> u64 {
    let pixels: Vec<u32> = ds.images.iter().map(|v| v.to_bits()).collect();
    fingerprint(&(ds.shape(), &ds.labels, pixels, ds.partial.map(|p| (p.loaded, p.listed))))
}

/// How a run of the suite is carried out.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cases per target.
    pub cases: usize,
    pub seed: u64,
    /// A case that takes longer has hung.
    pub timeout: Duration,
    /// More allocated at once during one load is a runaway allocation (fixtures are kilobytes).
    pub max_case_bytes: usize,
    /// While a case loads, a single allocation request above this is refused (the process
    /// aborts), so a runaway cannot take the machine down.
    pub hard_limit: usize,
    /// Scratch folder for the cases (removed afterwards).
    pub workdir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cases: 10_000,
            seed: 0,
            timeout: Duration::from_secs(5),
            max_case_bytes: 128 << 20,
            hard_limit: 2 << 30,
            workdir: std::env::temp_dir().join(format!("adapt-fuzz-{}", std::process::id())),
        }
    }
}

/// What the cases of one target came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub cases: usize,
    pub correct_loads: usize,
    pub clear_errors: usize,
    pub unclear_errors: usize,
    pub silent_acceptances: usize,
    pub panics: usize,
    pub hangs: usize,
    pub runaway_allocations: usize,
    /// Cases the suite itself failed to write (a bug of the suite; none is expected).
    pub generator_failures: usize,
    /// The most bytes one case had allocated at once (0 when allocations are not counted).
    pub peak_case_bytes: usize,
    pub seconds: f64,
    /// The first failing cases, described.
    pub failures: Vec<String>,
}

impl std::fmt::Display for TargetReport {
    /// One line: the counts of each outcome, the peak allocation and the time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<10} {:>6} cases: {:>5} correct loads, {:>5} clear errors, {} unclear, {} silent, {} panics, {} hangs, \
             {} runaway (peak {} kB), {:.1}s",
            self.target,
            self.cases,
            self.correct_loads,
            self.clear_errors,
            self.unclear_errors,
            self.silent_acceptances,
            self.panics,
            self.hangs,
            self.runaway_allocations,
            self.peak_case_bytes >> 10,
            self.seconds
        )
    }
}

/// What is wrong with a sample run of `cases` cases per target: a target that ran another number
/// of cases, one whose cases exercised no correct load or no clear error, and every failing case.
/// Empty when the sample passed.
pub fn sample_problems(reports: &[TargetReport], cases: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for r in reports {
        if r.cases != cases {
            problems.push(format!("{}: ran {} cases, not {cases}", r.target, r.cases));
        }
        if r.correct_loads == 0 || r.clear_errors == 0 {
            problems.push(format!("{}: the cases exercise nothing", r.target));
        }
        if r.failed() > 0 {
            problems.push(format!("{}: {:#?}", r.target, r.failures));
        }
    }
    problems
}

impl TargetReport {
    /// Cases that are not a correct load or a clear error.
    pub fn failed(&self) -> usize {
        self.unclear_errors
            + self.silent_acceptances
            + self.panics
            + self.hangs
            + self.runaway_allocations
            + self.generator_failures
    }

    fn fail(&mut self, kind: &str, case: &Case, detail: &str) {
        if self.failures.len() < 8 {
            let detail: String = detail.chars().take(300).collect();
            self.failures.push(format!("{kind}: {}: {detail}", case.what));
        }
    }
}

enum Answer {
    /// The case is written and about to be loaded (so a hang can say which case it was).
    Started(Case),
    /// Writing case `i` panicked: a bug of the suite, not of the loader.
    GeneratorPanic(usize),
    Done {
        case: Case,
        result: std::thread::Result<Result<u64, String>>,
        peak: usize,
    },
}

/// The seed of case `i` of `target`: cases are independent of each other and of the order.
fn case_seed(seed: u64, target: &str, i: usize) -> u64 {
    fingerprint(&(seed, target, i as u64))
}

/// The message of the last panic the suite's hook saw (panics happen on the worker thread).
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Runs `opts.cases` cases of `target`; `progress` sees the report every few hundred cases.
pub fn run_target(target: Arc<dyn Target>, opts: &Options, progress: &mut dyn FnMut(&TargetReport)) -> TargetReport {
    use rand::SeedableRng;
    let mut report = TargetReport { target: target.name().into(), ..TargetReport::default() };
    let start = Instant::now();
    let mut worker = 0usize;
    let spawn = |worker: usize| {
        let (jobs, job_rx) = mpsc::channel::<usize>();
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        let target = target.clone();
        let dir = opts.workdir.join(format!("{}-{worker}", target.name()));
        let (seed, hard_limit) = (opts.seed, opts.hard_limit);
        std::thread::spawn(move || {
            for i in job_rx {
                let _ = std::fs::remove_dir_all(&dir);
                if std::fs::create_dir_all(&dir).is_err() {
                    return;
                }
                let mut rng = Rng::seed_from_u64(case_seed(seed, target.name(), i));
                let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.make(&mut rng, &dir)));
                let Ok(case) = made else {
                    let _ = answer_tx.send(Answer::GeneratorPanic(i));
                    continue;
                };
                if answer_tx.send(Answer::Started(case.clone())).is_err() {
                    return;
                }
                let (result, peak) = memory::measure(hard_limit, || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.load(&dir)))
                });
                if answer_tx.send(Answer::Done { case, result, peak }).is_err() {
                    return;
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        });
        (jobs, answers)
    };
    let (mut jobs, mut answers) = spawn(worker);
    for i in 0..opts.cases {
        if jobs.send(i).is_err() {
            break;
        }
        report.cases += 1;
        let deadline = Instant::now() + opts.timeout;
        let mut started = None;
        let answer = loop {
            match answers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Answer::Started(case)) => started = Some(case),
                other => break other,
            }
        };
        match answer {
            Ok(Answer::Started(_)) => unreachable!("handled above"),
            Ok(Answer::GeneratorPanic(i)) => {
                report.generator_failures += 1;
                let msg = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
                if report.failures.len() < 8 {
                    report.failures.push(format!("generator panic: case {i}: {msg}"));
                }
            }
            Ok(Answer::Done { case, result, peak }) => {
                report.peak_case_bytes = report.peak_case_bytes.max(peak);
                if peak > opts.max_case_bytes {
                    report.runaway_allocations += 1;
                    report.fail("runaway allocation", &case, &format!("{} MB at once", peak >> 20));
                    continue;
                }
                match result {
                    Err(_) => {
                        report.panics += 1;
                        let msg = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
                        report.fail("panic", &case, &msg);
                    }
                    Ok(Ok(fp)) if case.expect == Some(fp) => report.correct_loads += 1,
                    Ok(Ok(_)) => {
                        report.silent_acceptances += 1;
                        let why = if case.expect.is_some() { "loaded other data" } else { "loaded an invalid input" };
                        report.fail("silent acceptance", &case, why);
                    }
                    Ok(Err(msg)) if case.names.iter().any(|n| msg.contains(n.as_str())) => report.clear_errors += 1,
                    Ok(Err(msg)) => {
                        report.unclear_errors += 1;
                        report.fail("unclear error", &case, &msg);
                    }
                }
            }
            Err(_) => {
                report.hangs += 1;
                let what = started.map_or_else(|| format!("case {i} (while being written)"), |c| c.what);
                if report.failures.len() < 8 {
                    report.failures.push(format!("hang: {what} (no answer in {:?})", opts.timeout));
                }
                // The stuck worker keeps its thread; the next cases get a fresh one.
                worker += 1;
                (jobs, answers) = spawn(worker);
            }
        }
        if (i + 1) % 500 == 0 {
            report.seconds = start.elapsed().as_secs_f64();
            progress(&report);
        }
    }
    drop(jobs);
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Prepares every target in `targets` (see [`Target::prepare`]), then runs their cases with
/// panics caught quietly (their messages go to the reports, not to stderr). Fails, before any
/// case runs, when a target cannot be prepared.
pub fn run(
    targets: &[Arc<dyn Target>],
    opts: &Options,
    progress: &mut dyn FnMut(&TargetReport),
) -> Result<Vec<TargetReport>, FuzzError> {
    for t in targets {
        t.prepare().map_err(|problem| FuzzError::Prepare { target: t.name(), problem })?;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
    let reports = targets.iter().map(|t| run_target(t.clone(), opts, progress)).collect();
    std::panic::set_hook(previous);
    let _ = std::fs::remove_dir_all(&opts.workdir);
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_passes_only_with_its_cases_both_outcomes_and_no_failure() {
        let good =
            TargetReport { target: "idx".into(), cases: 10, correct_loads: 4, clear_errors: 6, ..Default::default() };
        assert!(sample_problems(std::slice::from_ref(&good), 10).is_empty());
        assert!(good.to_string().contains("idx") && good.to_string().contains("4 correct loads"));
        let short = TargetReport { cases: 9, ..good.clone() };
        let idle = TargetReport { correct_loads: 0, ..good.clone() };
        let panicked = TargetReport { panics: 1, failures: vec!["case 3 panicked".into()], ..good.clone() };
        for (r, needle) in [(short, "ran 9 cases"), (idle, "exercise nothing"), (panicked, "case 3 panicked")] {
            let problems = sample_problems(&[r], 10);
            assert!(problems.len() == 1 && problems[0].contains(needle), "{problems:?}");
        }
    }
}
