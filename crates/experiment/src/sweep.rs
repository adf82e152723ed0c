//! Sweeps beyond one process: the digit matrix and the GTA ablation as units numbered from 0,
//! each unit one run folder under the sweep's `out`. Any engine that hands each job an index (a
//! Slurm job array, a Kubernetes Indexed Job, GNU parallel) trains the units apart into the
//! shared `out`; a later call over the whole sweep reads the finished units back and writes the
//! table. The run folders' locks ([`crate::files::RunLock`]) keep two jobs given the same unit
//! from training it twice, and an interrupted unit resumes from its checkpoint. Slurm array
//! scripts are written and submitted here.
use crate::aggregate::{DigitMatrix, digit_matrix, finished_preset_runs, matrix_folders, matrix_pairs, preset_runs};
use crate::error::{ExperimentError, Result, ensure};
use crate::files::{LOCK_FILE, create_dir};
use crate::gta::{GtaAblation, ablation_run, check_ablation, prepare_ablation};
use crate::recipe::{Preset, RunOptions};
use crate::summary::RunSummary;
use adapt_datasets::DataRef;
use adapt_datasets::pair::PairProfile;
use adapt_train::{GtaVariant, Method};
use candle_core::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A sweep whose units can be trained one by one.
#[derive(Debug, Clone)]
pub enum Sweep {
    Matrix(DigitMatrix),
    Gta(Box<GtaAblation>),
}

/// One unit of a sweep: one run folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub index: usize,
    /// The run folder relative to the sweep's `out` (e.g. `mnist-usps/seed0/recommended`).
    pub name: String,
    pub description: String,
    pub dir: PathBuf,
}

/// What training one unit did.
#[derive(Debug, Clone, Serialize)]
pub struct UnitOutcome {
    pub unit: Unit,
    /// The unit had finished before and was read back, not trained.
    pub reused: bool,
    pub runs: Vec<RunSummary>,
}

/// What a unit trains, found from its index.
enum Work {
    Matrix { pair: (DataRef, DataRef), seed: u64, preset: Preset, methods: &'static [Method] },
    Gta { variant: GtaVariant, seed: u64 },
}

impl Sweep {
    /// The folder every unit trains into.
    pub fn out(&self) -> &Path {
        match self {
            Sweep::Matrix(m) => &m.out,
            Sweep::Gta(g) => &g.out,
        }
    }

    /// `matrix` or `gta`: the `cargo xtask ablation` subcommand.
    pub fn kind(&self) -> &'static str {
        match self {
            Sweep::Matrix(_) => "matrix",
            Sweep::Gta(_) => "gta",
        }
    }

    /// The table the whole sweep writes.
    pub fn table_file(&self) -> PathBuf {
        self.out().join(match self {
            Sweep::Matrix(_) => "matrix.md",
            Sweep::Gta(_) => "ablation.md",
        })
    }

    fn work(&mut self, opts: &RunOptions) -> Result<Vec<(Work, PathBuf)>> {
        match self {
            Sweep::Matrix(spec) => {
                let mut work = Vec::new();
                for pair in matrix_pairs(spec, opts)? {
                    for seed in 0..spec.seeds {
                        for (preset, methods) in matrix_folders() {
                            let dir = crate::aggregate::preset_dir(&spec.out, (&pair.0, &pair.1), seed, preset);
                            work.push((Work::Matrix { pair: pair.clone(), seed, preset, methods }, dir));
                        }
                    }
                }
                Ok(work)
            }
            Sweep::Gta(spec) => {
                check_ablation(spec)?;
                let seeds = spec.first_seed..spec.first_seed.saturating_add(spec.seeds);
                Ok(seeds
                    .flat_map(|seed| {
                        GtaVariant::ALL.into_iter().filter(|v| spec.variants.contains(v)).map(move |v| (v, seed))
                    })
                    .map(|(variant, seed)| (Work::Gta { variant, seed }, spec.run_dir(variant, seed)))
                    .collect())
            }
        }
    }

    /// Every unit, in index order (the order the whole sweep trains them in). Loads no training
    /// data and creates nothing (the matrix without pairs looks for the datasets that load).
    pub fn units(&mut self, opts: &RunOptions) -> Result<Vec<Unit>> {
        let out = self.out().to_path_buf();
        Ok(self
            .work(opts)?
            .into_iter()
            .enumerate()
            .map(|(index, (work, dir))| {
                let description = match work {
                    Work::Matrix { pair: (s, t), seed, preset, methods } => format!(
                        "{} -> {}, seed {seed}, preset {}: {}",
                        s,
                        t,
                        preset.as_str(),
                        methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" + ")
                    ),
                    Work::Gta { variant, seed } => format!("seed {seed}, {}", variant.description()),
                };
                let name = dir.strip_prefix(&out).unwrap_or(&dir).display().to_string();
                Unit { index, name, description, dir }
            })
            .collect())
    }

    /// Trains unit `index` into `out` (or reads it back when it has finished, or resumes it from
    /// its checkpoint when interrupted); an index the sweep has not is an error before anything
    /// is loaded or created. A unit another process trains is refused by its folder's lock.
    pub fn train_unit(&mut self, index: usize, opts: &RunOptions, device: &Device) -> Result<UnitOutcome> {
        let units = self.units(opts)?;
        let n = units.len();
        let Some(unit) = units.into_iter().nth(index) else {
            return Err(ExperimentError::Invalid(format!(
                "unit {index} is not one of the sweep's: it has {n} units, 0 to {} (see --list-tasks)",
                n.saturating_sub(1)
            )));
        };
        let work = self.work(opts)?.swap_remove(index).0;
        let (runs, reused) = match (&mut *self, work) {
            (Sweep::Matrix(spec), Work::Matrix { pair, seed, preset, methods }) => {
                match finished_preset_runs(&unit.dir, methods)? {
                    Some(runs) => (runs, true),
                    None => {
                        let profile = PairProfile::measure(&pair.0, &pair.1, opts.data_dir.as_deref())?;
                        (preset_runs(spec, (&pair.0, &pair.1, &profile), seed, (preset, methods), opts, device)?, false)
                    }
                }
            }
            (Sweep::Gta(spec), Work::Gta { variant, seed }) => {
                let data = prepare_ablation(spec, opts)?;
                let (run, reused) = ablation_run(spec, (variant, seed), &data, opts, device)?;
                (vec![run], reused)
            }
            _ => unreachable!("a sweep's work is of its own kind"),
        };
        Ok(UnitOutcome { unit, reused, runs })
    }

    /// The whole sweep in this process: every unit trained or read back, then the table, also
    /// written to [`Sweep::table_file`].
    pub fn run_all(&mut self, opts: &RunOptions, device: &Device) -> Result<(Vec<RunSummary>, String)> {
        match self {
            Sweep::Matrix(spec) => {
                let (rows, md) = digit_matrix(spec, opts, device)?;
                Ok((rows.into_iter().flat_map(|r| r.columns.into_iter().flat_map(|(_, runs)| runs)).collect(), md))
            }
            Sweep::Gta(spec) => crate::gta::ablation(spec, opts, device),
        }
    }
}

/// How a sweep is carried out: whole (the default), one unit, listed, or as Slurm scripts.
#[derive(Debug, Clone)]
pub enum SweepMode {
    /// Every unit trained or read back in this process, then the table.
    Whole,
    /// The units listed; nothing is trained or created.
    List,
    /// Only unit N trained (or read back, or resumed).
    Task(usize),
    /// A Slurm array job, a report job and `submit.sh` written into `out`, submitted with
    /// `submit`; each job runs `binary` with `argv` (this command line) and its own `--task`.
    Slurm { binary: PathBuf, argv: Vec<String>, options: SlurmOptions, submit: bool },
}

/// What [`Sweep::carry_out`] did, as `--json` prints it (one object, its fields by mode).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SweepDone {
    Listed {
        tasks: Vec<Unit>,
    },
    Task {
        task: usize,
        unit: Unit,
        reused: bool,
        runs: Vec<RunSummary>,
    },
    Slurm {
        slurm: SlurmScripts,
        /// The job ids, when the scripts were submitted.
        #[serde(skip_serializing_if = "Option::is_none")]
        jobs: Option<SlurmJobs>,
    },
    Whole {
        runs: Vec<RunSummary>,
    },
}

impl Sweep {
    /// Carries the sweep out in `mode`, handing each human-readable line to `say` as soon as it
    /// holds (the Slurm scripts are named before they are submitted, so a failed `sbatch` still
    /// leaves them said).
    pub fn carry_out(
        &mut self,
        mode: SweepMode,
        opts: &RunOptions,
        device: &Device,
        say: &mut dyn FnMut(&str),
    ) -> Result<SweepDone> {
        match mode {
            SweepMode::List => {
                let tasks = self.units(opts)?;
                for u in &tasks {
                    say(&format!("{:>4}  {}  ({})", u.index, u.name, u.description));
                }
                Ok(SweepDone::Listed { tasks })
            }
            SweepMode::Task(index) => {
                let done = self.train_unit(index, opts, device)?;
                let how = if done.reused { "had finished, read back" } else { "trained" };
                say(&format!("unit {index} ({}): {how} in {}", done.unit.description, done.unit.dir.display()));
                Ok(SweepDone::Task { task: index, unit: done.unit, reused: done.reused, runs: done.runs })
            }
            SweepMode::Slurm { binary, argv, options, submit: send } => {
                let tasks = self.units(opts)?.len();
                let command = TaskCommand::new(&binary, &argv, self.out(), opts.data_dir.as_deref())?;
                let slurm = write_slurm(self, tasks, &command, &options)?;
                say(&format!("written: {} ({tasks} tasks), {}", slurm.array.display(), slurm.report.display()));
                if !send {
                    say(&format!("submit with: sh {}", slurm.submit.display()));
                    return Ok(SweepDone::Slurm { slurm, jobs: None });
                }
                let jobs = submit(&slurm)?;
                say(&format!(
                    "submitted: array job {} ({tasks} tasks), report job {} after it",
                    jobs.array_job, jobs.report_job
                ));
                say(&format!("table: {} (logs in {})", self.table_file().display(), slurm.logs.display()));
                Ok(SweepDone::Slurm { slurm, jobs: Some(jobs) })
            }
            SweepMode::Whole => {
                let (runs, table) = self.run_all(opts, device)?;
                say(&table);
                say(&format!("written: {}", self.table_file().display()));
                Ok(SweepDone::Whole { runs })
            }
        }
    }
}

/// The environment variables an engine hands a job's index in, in the order they are read:
/// Slurm job arrays, Kubernetes Indexed Jobs.
pub const INDEX_VARIABLES: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// Which unit a job trains: a number, or `env` for the index its engine hands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskIndex {
    Index(usize),
    /// The first of [`INDEX_VARIABLES`] that is set.
    Env,
}

impl std::str::FromStr for TaskIndex {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "env" {
            return Ok(TaskIndex::Env);
        }
        s.parse().map(TaskIndex::Index).map_err(|_| {
            format!(
                "'{s}' is neither a unit's index (0, 1, ...: see --list-tasks) nor `env` ({})",
                INDEX_VARIABLES.join(" or ")
            )
        })
    }
}

impl TaskIndex {
    /// The index, read from this process's environment for [`TaskIndex::Env`].
    pub fn resolve(self) -> Result<usize> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// The index, with `lookup` giving the value of an environment variable.
    pub fn resolve_with(self, lookup: impl Fn(&str) -> Option<String>) -> Result<usize> {
        let TaskIndex::Index(i) = self else {
            let Some((name, value)) = INDEX_VARIABLES.iter().find_map(|&n| lookup(n).map(|v| (n, v))) else {
                return Err(ExperimentError::Invalid(format!(
                    "the unit's index comes from the environment, but neither {} is set",
                    INDEX_VARIABLES.join(" nor ")
                )));
            };
            return value
                .trim()
                .parse()
                .map_err(|_| ExperimentError::Invalid(format!("{name} is '{value}', not a unit's index (0, 1, ...)")));
        };
        Ok(i)
    }
}

/// What the Slurm scripts ask for; `None` leaves it to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// At most this many array tasks at once (`--array=0-(N-1)%K`).
    pub max_parallel: Option<usize>,
    pub partition: Option<String>,
    /// Time limit per task, in Slurm's notation (`MM`, `HH:MM:SS`, `D-HH:MM`, ...).
    pub time: Option<String>,
    /// CPUs per task; also the training's thread count (`RAYON_NUM_THREADS`).
    pub cpus_per_task: Option<usize>,
    pub gpus_per_task: Option<usize>,
}

impl SlurmOptions {
    fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--max-parallel", self.max_parallel),
            ("--cpus-per-task", self.cpus_per_task),
            ("--gpus-per-task", self.gpus_per_task),
        ] {
            ensure(v != Some(0), || format!("{flag} 0: a Slurm task needs at least 1"))?;
        }
        if let Some(p) = &self.partition {
            ensure(!p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,".contains(c)), || {
                format!("--partition '{p}' is not a list of partition names (letters, digits, '-', '_', '.', ',')")
            })?;
        }
        if let Some(t) = &self.time {
            ensure(!t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-'), || {
                format!("--time '{t}' is not a Slurm time limit (MM, HH:MM:SS, D-HH:MM, ...)")
            })?;
        }
        Ok(())
    }
}

/// The command every job of a sweep runs: an absolute binary and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCommand {
    pub binary: PathBuf,
    /// The sweep's arguments, without an index or a scheduler's flags; `--out` and `--data-dir`
    /// absolute, `--quiet` (no progress bars in the jobs' logs).
    pub args: Vec<String>,
}

/// Flags of `cargo xtask ablation` that are the sweep's own (with whether they take a value):
/// left out of the jobs' command lines, which give `--out`, `--data-dir` and the index themselves.
const SWEEP_FLAGS: [(&str, bool); 12] = [
    ("--task", true),
    ("--list-tasks", false),
    ("--slurm", false),
    ("--submit", false),
    ("--max-parallel", true),
    ("--partition", true),
    ("--time", true),
    ("--cpus-per-task", true),
    ("--gpus-per-task", true),
    ("--out", true),
    ("--data-dir", true),
    ("--json", false),
];

impl TaskCommand {
    /// The jobs' command from this process's arguments (`argv` without the program name):
    /// `binary` made absolute, the sweep's own flags dropped, `--out` (absolute) and `--data-dir`
    /// (absolute; it must exist) appended.
    pub fn new(binary: &Path, argv: &[String], out: &Path, data_dir: Option<&Path>) -> Result<Self> {
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| ExperimentError::io(p, e));
        let binary = absolute(binary)?;
        ensure(binary.is_file(), || format!("the binary {} to run in the jobs is not a file", binary.display()))?;
        let mut args = Vec::new();
        let mut skip_value = false;
        for a in argv {
            if std::mem::take(&mut skip_value) {
                continue;
            }
            // `--flag value` or `--flag=value`.
            let (flag, value_follows) = a.split_once('=').map_or((a.as_str(), true), |(f, _)| (f, false));
            match SWEEP_FLAGS.iter().find(|(f, _)| *f == flag) {
                Some(&(_, takes_value)) => skip_value = takes_value && value_follows,
                None => args.push(a.clone()),
            }
        }
        if !args.iter().any(|a| a == "--quiet") {
            args.push("--quiet".into());
        }
        args.extend(["--out".into(), absolute(out)?.display().to_string()]);
        if let Some(d) = data_dir {
            let d = std::fs::canonicalize(d).map_err(|e| ExperimentError::io(d, e))?;
            ensure(d.is_dir(), || format!("the data folder {} is not a folder", d.display()))?;
            args.extend(["--data-dir".into(), d.display().to_string()]);
        }
        Ok(Self { binary, args })
    }

    /// The command as one shell line, every word quoted.
    pub fn shell(&self, extra: &[&str]) -> String {
        std::iter::once(self.binary.display().to_string())
            .chain(self.args.iter().cloned())
            .chain(extra.iter().map(|s| s.to_string()))
            .map(|w| shell_quote(&w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `word` in single quotes for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The files `--slurm` writes into the sweep's `out`.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmScripts {
    /// The array job: one task per unit, `--task env`.
    pub array: PathBuf,
    /// The report job, to run after every task succeeded (`--dependency=afterok`).
    pub report: PathBuf,
    /// Submits both, the report depending on the array (what `--submit` does).
    pub submit: PathBuf,
    /// Where the jobs write their logs.
    pub logs: PathBuf,
    pub tasks: usize,
}

pub const ARRAY_SCRIPT: &str = "sweep.sbatch";
pub const REPORT_SCRIPT: &str = "report.sbatch";
pub const SUBMIT_SCRIPT: &str = "submit.sh";

/// Writes the sweep's Slurm scripts into its `out` (created): an array job of `tasks` tasks that
/// runs `command` with `--task env`, a report job that runs it over the whole sweep, and a
/// submit script. Bad options are an error before anything is created.
pub fn write_slurm(sweep: &Sweep, tasks: usize, command: &TaskCommand, slurm: &SlurmOptions) -> Result<SlurmScripts> {
    slurm.check()?;
    ensure(tasks > 0, || "the sweep has no units".into())?;
    let out = std::path::absolute(sweep.out()).map_err(|e| ExperimentError::io(sweep.out(), e))?;
    let logs = out.join("slurm-logs");
    let name = format!("adapt-{}", sweep.kind());
    let mut common = String::new();
    if let Some(p) = &slurm.partition {
        common.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &slurm.time {
        common.push_str(&format!("#SBATCH --time={t}\n"));
    }
    let mut threads = String::new();
    if let Some(c) = slurm.cpus_per_task {
        common.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
        // Training results are bit-identical for one thread count; the CPUs the task was given
        // fix it, rather than the node's core count.
        threads = "export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"\n".into();
    }
    let array = match slurm.max_parallel {
        Some(k) => format!("0-{}%{k}", tasks - 1),
        None => format!("0-{}", tasks - 1),
    };
    let gpus = slurm.gpus_per_task.map_or(String::new(), |g| format!("#SBATCH --gpus-per-task={g}\n"));
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let array_text = format!(
        "#!/bin/bash\n\
         # One task per unit of the {kind} sweep in {out}: each trains its unit (--task env reads\n\
         # SLURM_ARRAY_TASK_ID) into the shared folder; `{list}` lists them.\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array={array}\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         {common}{gpus}\
         set -u\n\
         {threads}\
         {task} &\n\
         child=$!\n\
         # scancel or the time limit sends SIGTERM to this shell and the training, which then dies\n\
         # holding its run folder's lock. Another host never takes over a lock of this one, so the\n\
         # dead process's lock is removed here: a rerun of the unit on any node resumes the folder.\n\
         release() {{\n\
         \x20   kill -TERM \"$child\" 2>/dev/null\n\
         \x20   wait \"$child\"\n\
         \x20   find {qout} -name {LOCK_FILE} -type f -exec awk -v pid=\"$child\" -v host=\"$(uname -n)\" \\\n\
         \x20       'NR == 1 && $1 != pid {{ exit 1 }} NR == 2 && $1 != host {{ exit 1 }}' {{}} \\; -delete\n\
         \x20   exit 143\n\
         }}\n\
         trap release TERM\n\
         wait \"$child\"\n",
        kind = sweep.kind(),
        out = out.display(),
        list = command.shell(&["--list-tasks"]),
        logs = logs.display(),
        task = command.shell(&["--task", "env"]),
        qout = q(&out),
    );
    let report_text = format!(
        "#!/bin/bash\n\
         # The {kind} sweep's table, submitted with --dependency=afterok:<the array job> (see {SUBMIT_SCRIPT}):\n\
         # every unit has finished, so this reads them back and writes {table}.\n\
         #SBATCH --job-name={name}-report\n\
         #SBATCH --output={logs}/report_%j.out\n\
         {common}\
         set -u\n\
         {threads}\
         exec {report}\n",
        kind = sweep.kind(),
        table = std::path::absolute(sweep.table_file()).unwrap_or_else(|_| sweep.table_file()).display(),
        logs = logs.display(),
        report = command.shell(&[]),
    );
    let (array_path, report_path, submit_path) =
        (out.join(ARRAY_SCRIPT), out.join(REPORT_SCRIPT), out.join(SUBMIT_SCRIPT));
    let submit_text = format!(
        "#!/bin/sh\n\
         # Submits the array job, then the report job to run once every task has succeeded.\n\
         set -e\n\
         array=$(sbatch --parsable {})\n\
         array=${{array%%;*}}\n\
         report=$(sbatch --parsable --dependency=afterok:\"$array\" --kill-on-invalid-dep=yes {})\n\
         echo \"array job $array ({tasks} tasks), report job ${{report%%;*}}\"\n",
        q(&array_path),
        q(&report_path),
    );
    create_dir(&logs)?;
    for (path, text) in [(&array_path, &array_text), (&report_path, &report_text), (&submit_path, &submit_text)] {
        crate::files::write_atomic(path, text)?;
        make_executable(path)?;
    }
    Ok(SlurmScripts { array: array_path, report: report_path, submit: submit_path, logs, tasks })
}

fn make_executable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ExperimentError::io(path, e))?;
    }
    Ok(())
}

/// The job ids `sbatch` gave the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlurmJobs {
    pub array_job: String,
    /// Runs after every task of `array_job` succeeded; cancelled by Slurm when one fails.
    pub report_job: String,
}

/// Submits the scripts with `sbatch` (from `PATH`): the array, then the report with
/// `--dependency=afterok:<array job>`.
pub fn submit(scripts: &SlurmScripts) -> Result<SlurmJobs> {
    let array_job = sbatch(&[], &scripts.array)?;
    let report_job =
        sbatch(&[&format!("--dependency=afterok:{array_job}"), "--kill-on-invalid-dep=yes"], &scripts.report)?;
    Ok(SlurmJobs { array_job, report_job })
}

/// `sbatch --parsable FLAGS SCRIPT`, the job id it prints.
fn sbatch(flags: &[&str], script: &Path) -> Result<String> {
    let output = std::process::Command::new("sbatch").arg("--parsable").args(flags).arg(script).output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ExperimentError::Invalid(format!(
                "sbatch not found on PATH: submitting needs Slurm's sbatch (the scripts are written: run {} on a \
                 machine with Slurm)",
                script.with_file_name(SUBMIT_SCRIPT).display()
            )));
        }
        Err(e) => return Err(ExperimentError::io(script, e)),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !output.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ExperimentError::file(
            script,
            format!(
                "sbatch {} failed ({}): {}{}",
                flags.join(" "),
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(out: &Path, seeds: u64) -> Sweep {
        Sweep::Matrix(DigitMatrix {
            datasets: None,
            pairs: Some(vec![
                (adapt_datasets::DatasetId::Mnist.into(), adapt_datasets::DatasetId::Usps.into()),
                (adapt_datasets::DatasetId::Usps.into(), adapt_datasets::DatasetId::Mnist.into()),
            ]),
            seeds,
            steps: Some(50),
            out: out.to_path_buf(),
        })
    }

    #[test]
    fn units_are_numbered_pair_seed_folder_and_an_index_out_of_range_is_refused() {
        let out = std::env::temp_dir().join(format!("adapt-sweep-units-{}", std::process::id()));
        let mut sweep = matrix(&out, 2);
        let units = sweep.units(&RunOptions::default()).unwrap();
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mnist-usps/seed0/recommended",
                "mnist-usps/seed0/paper",
                "mnist-usps/seed1/recommended",
                "mnist-usps/seed1/paper",
                "usps-mnist/seed0/recommended",
                "usps-mnist/seed0/paper",
                "usps-mnist/seed1/recommended",
                "usps-mnist/seed1/paper",
            ]
        );
        assert!(units.iter().enumerate().all(|(i, u)| u.index == i && u.dir == out.join(&u.name)));
        assert!(units[0].description.contains("source-only + dann"), "{}", units[0].description);
        let e = sweep.train_unit(8, &RunOptions::default(), &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("unit 8") && e.contains("8 units, 0 to 7"), "{e}");
        assert!(!out.exists(), "nothing is created for a unit the sweep has not");

        let mut gta = Sweep::Gta(Box::new(GtaAblation {
            source: "MNIST".into(),
            target: "mnist-m".into(),
            seeds: 2,
            first_seed: 3,
            steps: 10,
            epochs: None,
            batch_size: 10,
            preset: crate::recipe::GtaPreset::Unit,
            digit_box: None,
            profile: crate::recipe::tests::pair_profile("mnist", "mnist-m").2,
            input_shift: 0,
            variants: vec![GtaVariant::Full, GtaVariant::Stream1],
            out: out.clone(),
        }));
        let names: Vec<String> = gta.units(&RunOptions::default()).unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(
            names,
            [
                "mnist-mnist-m/seed3/gta-stream1",
                "mnist-mnist-m/seed3/gta-full",
                "mnist-mnist-m/seed4/gta-stream1",
                "mnist-mnist-m/seed4/gta-full"
            ]
        );
    }

    #[test]
    fn carry_out_lists_the_units_and_writes_unsubmitted_scripts() {
        let out = std::env::temp_dir().join(format!("adapt-sweep-modes-{}", std::process::id()));
        let mut sweep = matrix(&out, 1);
        let (opts, mut lines) = (RunOptions::default(), Vec::new());
        let done = sweep.carry_out(SweepMode::List, &opts, &Device::Cpu, &mut |l| lines.push(l.to_string())).unwrap();
        let SweepDone::Listed { tasks } = &done else { panic!("{done:?}") };
        assert_eq!(tasks.len(), 4);
        assert_eq!(lines[0], format!("{:>4}  {}  ({})", 0, tasks[0].name, tasks[0].description));
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["tasks"].as_array().map(Vec::len), Some(4));
        assert!(!out.exists(), "listing created {}", out.display());
        let err = sweep.carry_out(SweepMode::Task(9), &opts, &Device::Cpu, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("unit 9 is not one of the sweep's"), "{err}");

        let mode = SweepMode::Slurm {
            binary: PathBuf::from("/usr/bin/true"),
            argv: vec!["ablation".into(), "matrix".into(), "--slurm".into()],
            options: SlurmOptions::default(),
            submit: false,
        };
        lines.clear();
        let done = sweep.carry_out(mode, &opts, &Device::Cpu, &mut |l| lines.push(l.to_string())).unwrap();
        let SweepDone::Slurm { slurm, jobs: None } = &done else { panic!("{done:?}") };
        assert!(slurm.array.is_file() && slurm.submit.is_file());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1], format!("submit with: sh {}", slurm.submit.display()));
        let json = serde_json::to_value(&done).unwrap();
        assert!(json.get("jobs").is_none() && json["slurm"]["tasks"] == 4, "{json}");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn the_index_comes_from_the_flag_or_the_engine() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        assert_eq!("3".parse::<TaskIndex>().unwrap().resolve_with(env(&[])).unwrap(), 3);
        let from_env = "env".parse::<TaskIndex>().unwrap();
        assert_eq!(from_env.resolve_with(env(&[("SLURM_ARRAY_TASK_ID", "5")])).unwrap(), 5);
        assert_eq!(from_env.resolve_with(env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap(), 2);
        let e = from_env.resolve_with(env(&[])).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"), "{e}");
        let e = from_env.resolve_with(env(&[("SLURM_ARRAY_TASK_ID", "4294967296x")])).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID is '4294967296x'"), "{e}");
        assert!("-1".parse::<TaskIndex>().unwrap_err().contains("--list-tasks"));
    }

    #[test]
    fn the_scripts_run_the_sweep_by_index_with_absolute_paths() {
        let root = std::env::temp_dir().join(format!("adapt-sweep-scripts-{}", std::process::id()));
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let binary = std::env::current_exe().unwrap();
        let argv: Vec<String> = [
            "--json",
            "ablation",
            "matrix",
            "--pairs",
            "mnist:usps",
            "--slurm",
            "--submit",
            "--max-parallel=2",
            "--partition",
            "debug",
            "--out",
            "relative/out",
            "--data-dir",
            "x",
            "--task",
            "env",
            "--seeds",
            "2",
        ]
        .map(String::from)
        .to_vec();
        let out = root.join("out");
        let command = TaskCommand::new(&binary, &argv, &out, Some(&data)).unwrap();
        let data = std::fs::canonicalize(&data).unwrap();
        let expected: Vec<String> = ["ablation", "matrix", "--pairs", "mnist:usps", "--seeds", "2", "--quiet", "--out"]
            .map(String::from)
            .into_iter()
            .chain([out.display().to_string(), "--data-dir".into(), data.display().to_string()])
            .collect();
        assert_eq!(command.args, expected);
        let slurm = SlurmOptions {
            max_parallel: Some(2),
            partition: Some("debug".into()),
            time: Some("1:00:00".into()),
            cpus_per_task: Some(2),
            gpus_per_task: Some(1),
        };
        let sweep = matrix(&out, 2);
        let scripts = write_slurm(&sweep, 8, &command, &slurm).unwrap();
        let array = std::fs::read_to_string(&scripts.array).unwrap();
        for line in [
            "#SBATCH --array=0-7%2",
            "#SBATCH --partition=debug",
            "#SBATCH --time=1:00:00",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --gpus-per-task=1",
            "export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"",
        ] {
            assert!(array.lines().any(|l| l == line), "no '{line}' in\n{array}");
        }
        assert!(array.contains(&format!("'{}' 'ablation' 'matrix'", binary.display())), "{array}");
        assert!(array.contains("'--task' 'env' &"), "{array}");
        let report = std::fs::read_to_string(&scripts.report).unwrap();
        assert!(!report.contains("--task") && !report.contains("--gpus-per-task"), "{report}");
        let submit = std::fs::read_to_string(&scripts.submit).unwrap();
        assert!(submit.contains("--dependency=afterok:\"$array\""), "{submit}");
        // Bad options are refused before anything is written.
        let other = root.join("other");
        for (bad, says) in [
            (SlurmOptions { max_parallel: Some(0), ..slurm.clone() }, "--max-parallel 0"),
            (SlurmOptions { partition: Some("a b".into()), ..slurm.clone() }, "--partition 'a b'"),
            (SlurmOptions { time: Some("1h\n#SBATCH".into()), ..slurm.clone() }, "--time"),
        ] {
            let e = write_slurm(&matrix(&other, 1), 2, &command, &bad).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(!other.exists());
        let e = TaskCommand::new(&binary, &argv, &out, Some(&root.join("missing"))).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&root).ok();
    }
}
