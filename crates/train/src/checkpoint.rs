//! Training checkpoints: one safetensors file holding the parameters, the optimizer's momentum
//! buffers, and (in the file's metadata) the step and the sampler position, so that a resumed run
//! continues exactly where the saved one stood.
//!
//! Tensor names: parameters keep their own names (the file loads as plain weights too);
//! optimizer state is stored under `optim.`: momentum buffers as `optim.velocity.<parameter
//! name>` ([`save`]), other optimizers' state under names of their own ([`save_state`], e.g. GTA's
//! Adam moments). Metadata keys: `format` ([`FORMAT`]), `step`, `steps` and `sampler` (JSON of
//! [`SamplerState`]).
//!
//! Writes go through a temporary file and a rename: a crash leaves the previous checkpoint intact.
//!
//! What [`load`] refuses, each an error naming the file and the problem: anything not written
//! by [`save_state`] in one piece (the file carries a digest of its metadata and tensors, see
//! [`adapt_models::tensor_file`]), a NaN or infinite weight or optimizer value, a tensor whose
//! dtype or shape is not its parameter's, a tensor that is neither a parameter nor optimizer
//! state, a step of 0 or past the run. What only the run can check (the sampler position against
//! the dataset sizes, the run length) is checked by [`check_resume`] before training continues.
//!
//! Parameters come from any [`NamedParams`] store (a `ParamStore` or a candle-nn `VarMap`).
use crate::batches::{MixedSampler, SamplerState};
use crate::error::{Result, TrainError};
use crate::optim::MomentumSgd;
use adapt_models::NamedParams;
use adapt_models::tensor_file::{self, TensorFileError};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Identifies files written by this module (and their layout version): version 2 carries a
/// digest, which it must match.
pub const FORMAT: &str = "adapt-checkpoint-v2";
/// Checkpoints written before the digest: they load with every other check.
pub const FORMAT_V1: &str = "adapt-checkpoint-v1";
/// File name of a run's latest checkpoint inside its run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Names of optimizer-state tensors start with this.
pub const OPTIMIZER_PREFIX: &str = "optim.";
const VELOCITY_PREFIX: &str = "optim.velocity.";

/// Where and how often the training loop saves.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    pub path: PathBuf,
    /// Save after every this many steps (and always after the last one).
    pub every: usize,
}

/// What a checkpoint restores besides the parameters.
#[derive(Debug, Clone)]
pub struct Resume {
    /// Steps already done.
    pub step: usize,
    /// The run's total step count when saved (the schedules depend on it).
    pub steps: usize,
    pub sampler: SamplerState,
    /// Momentum buffers by parameter name (absent before a parameter's first update).
    pub velocity: HashMap<String, Tensor>,
    /// Every optimizer-state tensor by its full name (`optim.` included).
    pub optimizer_state: HashMap<String, Tensor>,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), reason: what.to_string() }
}

/// Names of the variables a [`MomentumSgd`] built on `params.trainable_vars("")` updates, in
/// its order (it keeps only floating-point variables).
pub fn momentum_names(params: &dyn NamedParams) -> Vec<String> {
    params.trainable_named_vars("").into_iter().filter(|(_, v)| v.dtype().is_float()).map(|(n, _)| n).collect()
}

/// `opt`'s momentum buffers named for a checkpoint (`optim.velocity.<name>`), `names` being its
/// variables' names in order (see [`momentum_names`]); buffers not yet created are left out.
pub fn velocity_state(names: &[String], opt: &MomentumSgd) -> Result<Vec<(String, Tensor)>> {
    if names.len() != opt.velocity().len() {
        return Err(TrainError::Config(format!(
            "optimizer holds {} buffers for {} trainable parameters",
            opt.velocity().len(),
            names.len()
        )));
    }
    Ok(names
        .iter()
        .zip(opt.velocity())
        .filter_map(|(name, v)| v.as_ref().map(|v| (format!("{VELOCITY_PREFIX}{name}"), v.detach())))
        .collect())
}

/// Saves parameters, momentum buffers, step and sampler position to `path`, atomically.
pub fn save(
    path: &Path,
    params: &dyn NamedParams,
    opt: &MomentumSgd,
    step: usize,
    steps: usize,
    sampler: SamplerState,
) -> Result<()> {
    let velocity = velocity_state(&momentum_names(params), opt).map_err(|e| corrupt(path, e))?;
    save_state(path, params, velocity, step, steps, sampler)
}

/// Saves parameters, the optimizer state `optimizer` (names starting with
/// [`OPTIMIZER_PREFIX`]), step and sampler position to `path`, atomically.
pub fn save_state(
    path: &Path,
    params: &dyn NamedParams,
    optimizer: Vec<(String, Tensor)>,
    step: usize,
    steps: usize,
    sampler: SamplerState,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = params.tensors().into_iter().collect();
    for (name, t) in optimizer {
        if !name.starts_with(OPTIMIZER_PREFIX) {
            return Err(corrupt(path, format!("optimizer state '{name}' must be named {OPTIMIZER_PREFIX}...")));
        }
        tensors.push((name, t.detach()));
    }
    let sampler = serde_json::to_string(&sampler).map_err(|e| corrupt(path, e))?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        ("steps".to_string(), steps.to_string()),
        ("sampler".to_string(), sampler),
    ]);
    // Refuses non-finite weights and optimizer state: the checkpoint on disk stays the last good one.
    tensor_file::write(path, tensors, metadata).map_err(file_err)
}

fn file_err(e: TensorFileError) -> TrainError {
    TrainError::Checkpoint { path: e.path, reason: e.problem }
}

/// Loads a checkpoint: assigns the parameters in `params` and returns the rest.
///
/// Errors name the file: missing, not a regular file, truncated or not safetensors, altered
/// since it was written (its digest), not written by [`save`], holding non-finite values, a
/// tensor of another dtype or shape than its parameter, a tensor that is neither a parameter nor
/// optimizer state, or a step of 0 or past the run. Nothing is assigned unless all of it passes.
pub fn load(path: &Path, params: &dyn NamedParams, device: &Device) -> Result<Resume> {
    let file = tensor_file::read(path, device, false).map_err(file_err)?;
    let meta = &file.metadata;
    let field = |key: &str| meta.get(key).ok_or_else(|| corrupt(path, format!("metadata has no '{key}'")));
    let format = field("format")?;
    if format != FORMAT && format != FORMAT_V1 {
        return Err(corrupt(path, format!("format '{format}' is not {FORMAT}")));
    }
    if format == FORMAT && !file.sealed {
        return Err(corrupt(path, format!("metadata has no '{}' ({FORMAT} files carry one)", tensor_file::DIGEST_KEY)));
    }
    let number = |key: &str| -> Result<usize> {
        field(key)?.parse().map_err(|e| corrupt(path, format!("metadata '{key}' is not a step count ({e})")))
    };
    let (step, steps) = (number("step")?, number("steps")?);
    if step == 0 {
        return Err(corrupt(path, "step 0: checkpoints are written after a step, never before the first"));
    }
    if step > steps {
        return Err(corrupt(path, format!("step {step} is past the run's {steps} steps")));
    }
    let sampler: SamplerState = serde_json::from_str(field("sampler")?)
        .map_err(|e| corrupt(path, format!("metadata 'sampler' is unreadable ({e})")))?;
    let tensors = file.tensors;
    let names: std::collections::HashSet<String> = params.named_vars().into_iter().map(|(k, _)| k).collect();
    if let Some(stray) = tensors.keys().filter(|k| !names.contains(*k) && !k.starts_with(OPTIMIZER_PREFIX)).min() {
        return Err(corrupt(
            path,
            format!("tensor '{stray}' is neither a parameter of this model nor optimizer state"),
        ));
    }
    params.assign(&tensors, &path.display().to_string())?;
    let optimizer_state: HashMap<String, Tensor> =
        tensors.into_iter().filter(|(k, _)| k.starts_with(OPTIMIZER_PREFIX)).collect();
    let velocity = optimizer_state
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(VELOCITY_PREFIX).map(|name| (name.to_string(), v.clone())))
        .collect();
    Ok(Resume { step, steps, sampler, velocity, optimizer_state })
}

/// The restored momentum buffers for variables `names` (in that order; see [`momentum_names`]),
/// None where the checkpoint has none. `path` names the file in errors.
pub fn velocity_buffers(path: &Path, names: &[String], resume: &Resume) -> Result<Vec<Option<Tensor>>> {
    if let Some(extra) = resume.velocity.keys().find(|k| !names.contains(k)) {
        return Err(corrupt(path, format!("momentum buffer for unknown parameter '{extra}'")));
    }
    // The weight average rides along with momentum SGD (see [`crate::weight_average`]).
    let theirs = |k: &&String| k.starts_with(VELOCITY_PREFIX) || k.starts_with(crate::weight_average::AVERAGE_PREFIX);
    if let Some(other) = resume.optimizer_state.keys().find(|k| !theirs(k)) {
        return Err(corrupt(
            path,
            format!("optimizer state '{other}' is not momentum SGD's (a checkpoint of another method?)"),
        ));
    }
    Ok(names.iter().map(|n| resume.velocity.get(n).cloned()).collect())
}

/// Puts the restored momentum buffers into `opt` (whose variables are `params`' trainable ones).
pub fn restore_velocity(path: &Path, params: &dyn NamedParams, opt: &mut MomentumSgd, resume: &Resume) -> Result<()> {
    let buffers = velocity_buffers(path, &momentum_names(params), resume)?;
    opt.set_velocity(buffers).map_err(|e| corrupt(path, e))
}

/// Refuses a checkpoint saved by a run of another length: the schedules depend on it.
pub fn check_run_length(path: &Path, resume: &Resume, steps: usize) -> Result<()> {
    if resume.steps != steps {
        return Err(corrupt(
            path,
            format!("the checkpoint belongs to a run of {} steps, the configuration says {steps}", resume.steps),
        ));
    }
    Ok(())
}

/// What a checkpoint must agree with before a run continues from it: the run's length, and a
/// sampler position that the checkpoint's step reaches on these datasets (an offset past a
/// dataset's end or an epoch the run never got to would change what is trained on).
pub fn check_resume(path: &Path, resume: &Resume, steps: usize, sampler: &MixedSampler) -> Result<()> {
    check_run_length(path, resume, steps)?;
    sampler.check_state(resume.sampler, resume.step).map_err(|problem| corrupt(path, problem))
}
