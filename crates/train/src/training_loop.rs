//! The loop that DANN and GTA training (and any [`LoopTrainer`]) run: one update per mixed batch
//! from a [`MixedSampler`], a metrics record of the averages since the previous record every
//! `log_every` steps and after the last, periodic checkpoints, resume from a checkpoint, and a
//! stop on the first non-finite loss.
//!
//! The guarantees every trainer gets from it:
//!
//! * **Checkpoints** come every `every` steps and after the last one; `every` must be a positive
//!   multiple of `log_every`, so a resumed run writes the same records as an unbroken one. The
//!   metrics are flushed before each checkpoint: a checkpoint is never ahead of the records on
//!   disk.
//! * **Resume** restores the optimizer state, the steps done and the sampler position (the
//!   parameters were restored by [`crate::checkpoint::load`]); a checkpoint of a run of another
//!   length is refused.
//! * **A non-finite loss** ([`TrainError::NonFiniteLoss`], raised by the trainer before the bad
//!   update) ends the run with the records so far flushed; the last checkpoint on disk stays the
//!   last good one.
//!
//! Every hook is optional: [`Hooks::default`] trains with no progress bar, no metrics file and no
//! checkpoints.
use crate::batches::{MixedBatch, MixedSampler};
use crate::checkpoint::{self, CheckpointPolicy, Resume};
use crate::error::{Result, TrainError};
use crate::log::{MetricsWriter, Progress};
use adapt_models::NamedParams;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// A training algorithm as the loop drives it: one update per batch, plus what the loop needs to
/// report, checkpoint and resume it.
pub trait LoopTrainer {
    /// What one update reports.
    type Losses;
    /// A metrics record (written to `metrics.jsonl` as one JSON line).
    type Record: Serialize;

    /// Steps of the whole run (the schedules depend on it).
    fn total_steps(&self) -> usize;
    /// A metrics record every this many steps (and after the last).
    fn log_every(&self) -> usize;
    /// Rows per domain each batch must have.
    fn batch_size(&self) -> usize;
    /// Updates done so far; the loop runs until this reaches [`LoopTrainer::total_steps`].
    fn steps_done(&self) -> usize;
    /// The next update. A loss that is not finite must fail with [`TrainError::NonFiniteLoss`]
    /// (see [`TrainError::check_finite`]) before its update is applied.
    fn train_step(&mut self, batch: &MixedBatch) -> Result<Self::Losses>;
    /// What `losses` adds to the metrics window, slot by slot (`None`: nothing in that slot, e.g.
    /// a loss this variant does not have).
    fn window_values(losses: &Self::Losses) -> Vec<Option<f64>>;
    /// The record of `window`, which ends after `done` steps.
    fn record(&self, window: &MetricWindow, done: usize) -> Self::Record;
    /// The progress bar's message for `record`.
    fn progress_message(record: &Self::Record) -> String;
    /// The optimizer state a checkpoint saves, names starting with
    /// [`checkpoint::OPTIMIZER_PREFIX`].
    fn checkpoint_state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Takes the optimizer state and the steps done from `resume` (a checkpoint of a run of this
    /// length); `path` names the file in errors.
    fn restore_state(&mut self, path: &Path, resume: &Resume) -> Result<()>;
    /// Exchanges the weights the run evaluates (e.g. a [`crate::weight_average::WeightAverage`])
    /// with the trained ones in the model; a second call undoes the first. The default (the
    /// trained weights are the evaluated ones) does nothing.
    fn swap_evaluation_weights(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Sums of per-step values since the previous metrics record, slot by slot.
#[derive(Debug, Clone, Default)]
pub struct MetricWindow {
    steps: usize,
    sums: Vec<Option<f64>>,
}

impl MetricWindow {
    /// Adds one step's values (see [`LoopTrainer::window_values`]).
    pub fn add(&mut self, values: &[Option<f64>]) {
        if self.sums.len() < values.len() {
            self.sums.resize(values.len(), None);
        }
        for (sum, value) in self.sums.iter_mut().zip(values) {
            if let Some(v) = value {
                *sum = Some(sum.unwrap_or(0.0) + v);
            }
        }
        self.steps += 1;
    }

    /// Steps added since the window opened.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Sum of `slot` (0 where nothing was added).
    pub fn sum(&self, slot: usize) -> f64 {
        self.sums.get(slot).copied().flatten().unwrap_or(0.0)
    }

    /// Mean per step of `slot` (0 where nothing was added).
    pub fn mean(&self, slot: usize) -> f64 {
        self.optional_mean(slot).unwrap_or(0.0)
    }

    /// Mean per step of `slot`, `None` where nothing was added.
    pub fn optional_mean(&self, slot: usize) -> Option<f64> {
        self.sums.get(slot).copied().flatten().map(|s| s / self.steps.max(1) as f64)
    }
}

/// Where a run reports and saves, and where it starts from; every part is optional
/// ([`Hooks::default`]: nothing at all).
pub struct Hooks<'a, R> {
    /// Every metrics record is appended here.
    pub metrics: Option<&'a mut MetricsWriter>,
    /// Shows the step and the last record's figures.
    pub progress: Option<&'a Progress>,
    /// Periodic checkpoints (their interval must be a multiple of `log_every`, so a resumed run
    /// writes the same metrics records as an unbroken one).
    pub checkpoint: Option<CheckpointPolicy>,
    /// State from [`crate::checkpoint::load`] (which has already restored the parameters).
    pub resume: Option<Resume>,
    /// Sees every metrics record.
    pub on_record: Option<&'a mut dyn FnMut(&R)>,
    /// Called after each checkpoint is written, with the step count (e.g. for model selection);
    /// an error stops the run there.
    pub on_checkpoint: Option<&'a mut dyn FnMut(usize) -> Result<()>>,
}

impl<R> Default for Hooks<'_, R> {
    fn default() -> Self {
        Self { metrics: None, progress: None, checkpoint: None, resume: None, on_record: None, on_checkpoint: None }
    }
}

impl<'a, R> Hooks<'a, R> {
    /// No metrics file, no checkpoints, fresh start: a progress bar and a look at each record.
    pub fn quiet(progress: &'a Progress, on_record: &'a mut dyn FnMut(&R)) -> Self {
        Self { progress: Some(progress), on_record: Some(on_record), ..Self::default() }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome<R> {
    pub steps: usize,
    /// Wall-clock seconds of this call (a resumed run counts only its own part).
    pub seconds: f64,
    /// The last metrics record.
    pub last: R,
}

/// Continues `trainer` from `resume` (whose parameters [`crate::checkpoint::load`] has already
/// restored): checks the run length, restores the optimizer state, the steps done and the
/// sampler's position. `path` names the file in errors.
pub fn restore<T: LoopTrainer + ?Sized>(
    trainer: &mut T,
    path: &Path,
    resume: &Resume,
    sampler: &mut MixedSampler,
) -> Result<()> {
    checkpoint::check_resume(path, resume, trainer.total_steps(), sampler)?;
    trainer.restore_state(path, resume)?;
    sampler
        .restore(resume.sampler, resume.step)
        .map_err(|reason| TrainError::Checkpoint { path: path.to_path_buf(), reason })
}

/// Runs `trainer` from its current step (or from `hooks.resume`) to its last on batches from
/// `sampler`, on `device`; checkpoints save `params`, the store the trainer's model lives in.
///
/// On the CPU, a run resumed from a checkpoint ends with the parameters of an unbroken run. The
/// checkpoint hook, and `params` once the run returns, hold the weights the trainer evaluates
/// ([`LoopTrainer::swap_evaluation_weights`]); checkpoints always save the trained ones.
pub fn run<T: LoopTrainer + ?Sized>(
    trainer: &mut T,
    params: &dyn NamedParams,
    sampler: &mut MixedSampler,
    device: &Device,
    hooks: Hooks<'_, T::Record>,
) -> Result<Outcome<T::Record>> {
    let Hooks { mut metrics, progress, checkpoint, resume, mut on_record, mut on_checkpoint } = hooks;
    let (steps, log_every) = (trainer.total_steps(), trainer.log_every());
    if sampler.per_domain() != trainer.batch_size() {
        return Err(TrainError::Config(format!(
            "sampler draws {} rows per domain, the configuration says {}",
            sampler.per_domain(),
            trainer.batch_size()
        )));
    }
    if let Some(c) = &checkpoint
        && (c.every == 0 || !c.every.is_multiple_of(log_every))
    {
        return Err(TrainError::Config(format!(
            "checkpoint interval {} must be a positive multiple of the log interval {log_every}",
            c.every
        )));
    }
    if let Some(r) = &resume {
        let origin = checkpoint.as_ref().map(|c| c.path.clone()).unwrap_or_default();
        restore(trainer, &origin, r, sampler)?;
    }
    let start = Instant::now();
    let mut window = MetricWindow::default();
    let mut last = None;
    while trainer.steps_done() < steps {
        let batch = sampler.next_batch(device)?;
        let losses = match trainer.train_step(&batch) {
            Ok(losses) => losses,
            Err(e) => {
                // The records so far stay readable next to the last good checkpoint.
                if let Some(p) = progress {
                    p.finish();
                }
                if let Some(m) = metrics.as_deref_mut() {
                    m.flush()?;
                }
                return Err(e);
            }
        };
        window.add(&T::window_values(&losses));
        let done = trainer.steps_done();
        if done.is_multiple_of(log_every) || done == steps {
            let record = trainer.record(&window, done);
            window = MetricWindow::default();
            if let Some(m) = metrics.as_deref_mut() {
                m.write(&record)?;
            }
            if let Some(p) = progress {
                p.update(done as u64, T::progress_message(&record));
            }
            if let Some(f) = on_record.as_deref_mut() {
                f(&record);
            }
            last = Some(record);
        }
        if let Some(c) = &checkpoint
            && (done.is_multiple_of(c.every) || done == steps)
        {
            // Metrics first: a checkpoint must never be ahead of the records on disk.
            if let Some(m) = metrics.as_deref_mut() {
                m.flush()?;
            }
            checkpoint::save_state(&c.path, params, trainer.checkpoint_state()?, done, steps, sampler.state())?;
            if let Some(f) = on_checkpoint.as_deref_mut() {
                // The hook sees the evaluated weights; training goes on with the trained ones.
                trainer.swap_evaluation_weights()?;
                let seen = f(done);
                trainer.swap_evaluation_weights()?;
                seen?;
            }
        }
    }
    if let Some(m) = metrics {
        m.flush()?;
    }
    if let Some(p) = progress {
        p.finish();
    }
    // What the run reports is the evaluated model.
    trainer.swap_evaluation_weights()?;
    let last =
        last.ok_or_else(|| TrainError::Config("no step was run: the checkpoint is already at the end".into()))?;
    Ok(Outcome { steps, seconds: start.elapsed().as_secs_f64(), last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_averages_per_slot_and_skips_absent_values() {
        let mut w = MetricWindow::default();
        w.add(&[Some(1.0), None, Some(3.0)]);
        w.add(&[Some(2.0), None]);
        assert_eq!(w.steps(), 2);
        assert_eq!((w.mean(0), w.sum(2), w.mean(2)), (1.5, 3.0, 1.5));
        assert_eq!((w.optional_mean(1), w.mean(1), w.optional_mean(7)), (None, 0.0, None));
    }
}
