//! Weights files that describe themselves: `model.safetensors` and `best.safetensors` carry, in
//! their safetensors metadata, the run's whole configuration (model kind, net, training recipe)
//! and how each domain's images became the net's input, so a bare weights file can be rebuilt
//! and evaluated ([`crate::evaluate::evaluate_weights`]) or loaded by hand in another framework.
//!
//! Metadata keys: `format` ([`WEIGHTS_FORMAT`]), `adapt.config` (the [`RunConfig`] as JSON, tagged
//! by `kind`), `adapt.input` (the input preprocessing as JSON), `adapt.step` (the training step
//! and the selection rule that kept it). Tensor names are the model's
//! parameter names (`features.conv0.weight`, `label.fc0.bias`, ...), f32, PyTorch layouts.
use crate::error::{ExperimentError, Result};
use crate::summary::Selection;
use crate::{digits::DigitRunConfig, gta::GtaRunConfig, toy::ToyRunConfig};
use adapt_models::{ParamStore, tensor_file};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Version 2 files carry a digest of their contents (see [`adapt_models::tensor_file`]), which
/// they must match; version 1 files, written before it, are read without one.
pub const WEIGHTS_FORMAT: &str = "adapt-weights-v2";
const WEIGHTS_FORMAT_V1: &str = "adapt-weights-v1";
const CONFIG_KEY: &str = "adapt.config";
const INPUT_KEY: &str = "adapt.input";
const STEP_KEY: &str = "adapt.step";
const CLASSES_KEY: &str = "adapt.classes";

/// A run's whole configuration, tagged by experiment family; `config.toml` holds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunConfig {
    Toy(ToyRunConfig),
    Digits(DigitRunConfig),
    Gta(GtaRunConfig),
}

/// What a weights file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsInfo {
    pub config: RunConfig,
    /// How each domain's images became the net's input (human- and machine-readable).
    pub input: serde_json::Value,
    /// Class names, output `i` is `classes[i]` (`adapt.classes`; files written before it: the
    /// ten digits, or nothing for the toy's two moons).
    pub classes: Vec<String>,
}

/// Which training step a weights file holds, and why it was kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightsStep {
    pub step: usize,
    pub selection: Selection,
}

/// Saves `params` to `path` (temporary file, then rename) with `info` and `at` in the metadata;
/// non-finite weights are refused, naming the tensor.
pub fn save_weights(params: &ParamStore, path: &Path, info: &WeightsInfo, at: WeightsStep) -> Result<()> {
    let metadata = HashMap::from([
        ("format".to_string(), WEIGHTS_FORMAT.to_string()),
        (CONFIG_KEY.to_string(), to_json(path, &info.config)?),
        (INPUT_KEY.to_string(), to_json(path, &info.input)?),
        (STEP_KEY.to_string(), to_json(path, &at)?),
        (CLASSES_KEY.to_string(), to_json(path, &info.classes)?),
    ]);
    let mut tensors: Vec<(String, candle_core::Tensor)> = params.tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensor_file::write(path, tensors, metadata).map_err(|e| ExperimentError::file(&e.path, e.problem))
}

/// The description in a weights file written by [`save_weights`]; an error naming the file if it
/// is not one, or if it was altered since (its digest) or holds non-finite weights.
pub fn read_weights_info(path: &Path) -> Result<(WeightsInfo, WeightsStep)> {
    let file = tensor_file::read(path, &candle_core::Device::Cpu, false)
        .map_err(|e| ExperimentError::file(&e.path, e.problem))?;
    let meta = file.metadata;
    let field = |key: &str| {
        meta.get(key).ok_or_else(|| {
            ExperimentError::file(path, format!("metadata has no '{key}': not a weights file written by adapt"))
        })
    };
    let format = field("format")?;
    if format != WEIGHTS_FORMAT && format != WEIGHTS_FORMAT_V1 {
        return Err(ExperimentError::file(path, format!("format '{format}' is not {WEIGHTS_FORMAT}")));
    }
    if format == WEIGHTS_FORMAT && !file.sealed {
        return Err(ExperimentError::file(
            path,
            format!("metadata has no '{}' ({WEIGHTS_FORMAT} files carry one)", tensor_file::DIGEST_KEY),
        ));
    }
    let config = serde_json::from_str(field(CONFIG_KEY)?)
        .map_err(|e| ExperimentError::file(path, format!("metadata '{CONFIG_KEY}' is unreadable ({e})")))?;
    let input = serde_json::from_str(field(INPUT_KEY)?)
        .map_err(|e| ExperimentError::file(path, format!("metadata '{INPUT_KEY}' is unreadable ({e})")))?;
    let at: WeightsStep = serde_json::from_str(field(STEP_KEY)?)
        .map_err(|e| ExperimentError::file(path, format!("metadata '{STEP_KEY}' is unreadable ({e})")))?;
    let config: RunConfig = config;
    if at.step == 0 || at.step > config.steps() {
        return Err(ExperimentError::file(path, format!("holds step {} of a {}-step run", at.step, config.steps())));
    }
    let classes = match meta.get(CLASSES_KEY) {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ExperimentError::file(path, format!("metadata '{CLASSES_KEY}' is not a JSON array of class names ({e})"))
        })?,
        None if matches!(config, RunConfig::Toy(_)) => Vec::new(),
        None => adapt_datasets::pair::digit_classes(),
    };
    Ok((WeightsInfo { config, input, classes }, at))
}

fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| ExperimentError::file(path, e))
}
