//! Named, seeded model parameters.
//!
//! candle's CPU random generator cannot be seeded, so a model built through candle-nn's `VarMap`
//! gets different initial weights on every run. [`ParamStore`] is a `VarBuilder` backend that
//! draws each parameter from its own generator, seeded from the store's seed and the parameter's
//! name: the same seed gives bit-identical weights whatever the construction order, on any
//! device. It also saves and restores the parameters as safetensors.
//!
//! [`NamedParams`] is what training, initialisation and checkpoints need from a store of named
//! variables; both [`ParamStore`] and candle-nn's [`VarMap`] provide it, so a model built on a
//! `VarMap` trains, re-initialises and checkpoints the same way.
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Suffixes of non-trainable buffers (BatchNorm running statistics).
const BUFFER_SUFFIXES: [&str; 2] = ["running_mean", "running_var"];

/// Whether `name` is a non-trainable buffer (a BatchNorm running statistic).
pub fn is_buffer(name: &str) -> bool {
    BUFFER_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Runs `f` and then puts `vars` back to the values they had before it, whether `f` succeeded or
/// not: for training-mode passes (per-domain BatchNorm, perturbed inputs, batch-statistics
/// evaluation) that must not move the running statistics.
pub fn keeping_values<T, E: From<candle_core::Error>>(
    vars: &[Var],
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let saved: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy()).collect::<Result<_>>()?;
    let out = f();
    for (var, value) in vars.iter().zip(&saved) {
        var.set(value)?;
    }
    out
}

/// A store of named variables, as training, initialisation and checkpoints use it.
///
/// Variable order is always by name, so optimizer state saved by position or by name lines up
/// between runs whatever order the model created its parameters in.
pub trait NamedParams {
    /// Every variable (BatchNorm running statistics included), sorted by name.
    fn named_vars(&self) -> Vec<(String, Var)>;

    /// A `VarBuilder` that creates missing parameters in this store.
    fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static>;

    /// Trainable variables (everything but BatchNorm running statistics) whose name starts with
    /// `prefix` (empty for all), with their names, sorted by name.
    fn trainable_named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.named_vars().into_iter().filter(|(k, _)| k.starts_with(prefix) && !is_buffer(k)).collect()
    }

    /// The BatchNorm running statistics (everything [`is_buffer`] names), sorted by name.
    fn buffer_vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().filter(|(k, _)| is_buffer(k)).map(|(_, v)| v).collect()
    }

    /// [`NamedParams::trainable_named_vars`] without the names.
    fn trainable_vars(&self, prefix: &str) -> Vec<Var> {
        self.trainable_named_vars(prefix).into_iter().map(|(_, v)| v).collect()
    }

    /// Number of scalar parameters (buffers included).
    fn elem_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The current values, detached, keyed by name.
    fn tensors(&self) -> HashMap<String, Tensor> {
        self.named_vars().into_iter().map(|(k, v)| (k, v.as_tensor().detach())).collect()
    }

    /// Overwrites every variable with the tensor of the same name. Every variable must be present
    /// with its shape and dtype (an I32 tensor is not an F32 parameter: converting it would hide a
    /// wrong file) and finite values; extra tensors are ignored (a checkpoint also holds optimizer
    /// state). Nothing is assigned unless every tensor passes. `origin` names the tensors' source
    /// in errors.
    fn assign(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        let vars = self.named_vars();
        for (name, var) in &vars {
            let t = tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::msg(format!("{origin}: parameter '{name}' is missing")))?;
            if t.shape() != var.shape() {
                candle_core::bail!(
                    "{origin}: parameter '{name}' has shape {:?}, the model needs {:?}",
                    t.shape(),
                    var.shape()
                );
            }
            if t.dtype() != var.dtype() {
                candle_core::bail!(
                    "{origin}: parameter '{name}' is {:?}, the model needs {:?}",
                    t.dtype(),
                    var.dtype()
                );
            }
            crate::tensor_file::check_finite([(name.as_str(), t)])
                .map_err(|p| candle_core::Error::msg(format!("{origin}: {p}")))?;
        }
        for (name, var) in vars {
            var.set(&tensors[&name].to_device(var.device())?)?;
        }
        Ok(())
    }

    /// Saves the parameters as safetensors, atomically (see [`save_safetensors_atomic`]).
    fn save(&self, path: &Path) -> Result<()> {
        save_safetensors_atomic(&self.tensors(), path)
    }

    /// Loads parameters saved by [`NamedParams::save`] (or any safetensors file with the same
    /// names) onto the device the variables live on.
    fn load(&self, path: &Path) -> Result<()> {
        let device = self.named_vars().first().map(|(_, v)| v.device().clone()).unwrap_or(Device::Cpu);
        let tensors = load_safetensors(path, &device)?;
        self.assign(&tensors, &path.display().to_string())
    }
}

/// A seeded store of named variables; clones share the same variables.
#[derive(Clone)]
pub struct ParamStore {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
    seed: u64,
}

/// FNV-1a: a stable hash of the parameter name (std's hasher is not stable across releases).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn sample(init: Init, shape: &Shape, rng: &mut StdRng) -> Result<Vec<f32>> {
    let n = shape.elem_count();
    let uniform = |lo: f64, up: f64, rng: &mut StdRng| -> Result<Vec<f32>> {
        if lo == up {
            return Ok(vec![lo as f32; n]);
        }
        let d = Uniform::new(lo, up).map_err(|e| candle_core::Error::msg(format!("uniform({lo}, {up}): {e}")))?;
        Ok((0..n).map(|_| d.sample(rng) as f32).collect())
    };
    let normal = |mean: f64, std: f64, rng: &mut StdRng| -> Result<Vec<f32>> {
        let d = Normal::new(mean, std).map_err(|e| candle_core::Error::msg(format!("normal({mean}, {std}): {e}")))?;
        Ok((0..n).map(|_| d.sample(rng) as f32).collect())
    };
    match init {
        Init::Const(c) => Ok(vec![c as f32; n]),
        Init::Uniform { lo, up } => uniform(lo, up, rng),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Kaiming { dist, fan, non_linearity } => {
            let fan = match fan {
                FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => uniform(-(3f64.sqrt()) * std, 3f64.sqrt() * std, rng),
                NormalOrUniform::Normal => normal(0.0, std, rng),
            }
        }
    }
}

impl ParamStore {
    pub fn new(seed: u64) -> Self {
        Self { vars: Arc::new(Mutex::new(BTreeMap::new())), seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A `VarBuilder` that creates missing parameters in this store.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Var>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All variables, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// See [`NamedParams::trainable_vars`] (here so callers need not import the trait).
    pub fn trainable_vars(&self, prefix: &str) -> Vec<Var> {
        NamedParams::trainable_vars(self, prefix)
    }

    /// See [`NamedParams::trainable_named_vars`].
    pub fn trainable_named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        NamedParams::trainable_named_vars(self, prefix)
    }

    pub fn get(&self, name: &str) -> Option<Var> {
        self.lock().get(name).cloned()
    }

    /// See [`NamedParams::elem_count`].
    pub fn elem_count(&self) -> usize {
        NamedParams::elem_count(self)
    }

    /// See [`NamedParams::tensors`].
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        NamedParams::tensors(self)
    }

    /// See [`NamedParams::assign`].
    pub fn assign(&self, tensors: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        NamedParams::assign(self, tensors, origin)
    }

    /// See [`NamedParams::save`].
    pub fn save(&self, path: &Path) -> Result<()> {
        NamedParams::save(self, path)
    }

    /// See [`NamedParams::load`].
    pub fn load(&self, path: &Path) -> Result<()> {
        NamedParams::load(self, path)
    }
}

impl NamedParams for ParamStore {
    fn named_vars(&self) -> Vec<(String, Var)> {
        ParamStore::named_vars(self)
    }

    fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        ParamStore::var_builder(self, dtype, device)
    }
}

/// A `VarMap` has no seed: its parameters start from candle's unseeded generator, so give
/// [`crate::init::reinitialize`] a seed to make them reproducible.
impl NamedParams for VarMap {
    fn named_vars(&self) -> Vec<(String, Var)> {
        // A panic elsewhere while holding the lock leaves the map itself consistent.
        let data = self.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_varmap(self, dtype, device)
    }
}

/// Writes `tensors` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file under the final name; non-finite values are refused (see
/// [`crate::tensor_file::write`]).
pub fn save_safetensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tensors = tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(crate::tensor_file::write(path, tensors, HashMap::new())?)
}

/// Reads a safetensors file (adapt's or any other), naming the file in every error; a digest,
/// where the file has one, must match, and every value must be finite (see
/// [`crate::tensor_file::read`]).
pub fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    Ok(crate::tensor_file::read(path, device, false)?.tensors)
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.lock();
        if let Some(v) = vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!("parameter '{name}' exists with shape {:?}, requested {:?}", v.shape(), s);
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ name_hash(name));
        let values = sample(h, &s, &mut rng)?;
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.lock().get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("parameter '{name}' does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_regardless_of_order() -> Result<()> {
        let build = |seed: u64, reverse: bool| -> Result<HashMap<String, Tensor>> {
            let store = ParamStore::new(seed);
            let vb = store.var_builder(DType::F32, &Device::Cpu);
            let init = Init::Uniform { lo: -1.0, up: 1.0 };
            let names = if reverse { ["b", "a"] } else { ["a", "b"] };
            for n in names {
                vb.get_with_hints((3, 4), n, init)?;
            }
            Ok(store.tensors())
        };
        let x = build(7, false)?;
        let y = build(7, true)?;
        let z = build(8, false)?;
        for k in ["a", "b"] {
            assert_eq!(x[k].to_vec2::<f32>()?, y[k].to_vec2::<f32>()?);
            assert_ne!(x[k].to_vec2::<f32>()?, z[k].to_vec2::<f32>()?);
        }
        // Different names draw different values.
        assert_ne!(x["a"].to_vec2::<f32>()?, x["b"].to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn save_load_round_trip_and_errors_name_the_file() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("adapt-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = ParamStore::new(1);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints((2, 3), "w", Init::Randn { mean: 0.0, stdev: 1.0 })?;
        let path = dir.join("p.safetensors");
        store.save(&path)?;
        assert!(!dir.join(".p.safetensors.tmp").exists());
        let other = ParamStore::new(2);
        other.var_builder(DType::F32, &Device::Cpu).get_with_hints((2, 3), "w", Init::Const(0.0))?;
        other.load(&path)?;
        assert_eq!(other.tensors()["w"].to_vec2::<f32>()?, store.tensors()["w"].to_vec2::<f32>()?);

        // Wrong shape and garbage files are errors that name the file.
        let wrong = ParamStore::new(3);
        wrong.var_builder(DType::F32, &Device::Cpu).get_with_hints((3, 3), "w", Init::Const(0.0))?;
        let e = wrong.load(&path).unwrap_err().to_string();
        assert!(e.contains("p.safetensors") && e.contains("shape"), "{e}");
        std::fs::write(dir.join("bad.safetensors"), b"not a safetensors file").unwrap();
        let e = other.load(&dir.join("bad.safetensors")).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn assign_refuses_another_dtype_and_non_finite_values_and_assigns_nothing() -> Result<()> {
        let store = ParamStore::new(1);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints((2,), "a", Init::Const(1.0))?;
        vb.get_with_hints((2,), "b", Init::Const(1.0))?;
        let ok = Tensor::new(&[5f32, 6.], &Device::Cpu)?;
        let as_i32 =
            HashMap::from([("a".to_string(), ok.clone()), ("b".to_string(), Tensor::new(&[5i32, 6], &Device::Cpu)?)]);
        let e = store.assign(&as_i32, "ckpt.safetensors").unwrap_err().to_string();
        assert!(e.contains("ckpt.safetensors") && e.contains("'b' is I32") && e.contains("F32"), "{e}");
        let nan = HashMap::from([
            ("a".to_string(), ok.clone()),
            ("b".to_string(), Tensor::new(&[f32::NAN, 6.], &Device::Cpu)?),
        ]);
        let e = store.assign(&nan, "ckpt.safetensors").unwrap_err().to_string();
        assert!(e.contains("ckpt.safetensors") && e.contains("'b'") && e.contains("non-finite"), "{e}");
        // Neither refusal left 'a' half assigned.
        assert_eq!(store.tensors()["a"].to_vec1::<f32>()?, [1., 1.]);
        // And NaN weights are never saved.
        store.get("b").unwrap().set(&Tensor::new(&[f32::INFINITY, 0.], &Device::Cpu)?)?;
        let dir = std::env::temp_dir().join(format!("adapt-params-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = store.save(&dir.join("w.safetensors")).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("'b'") && e.contains("inf"), "{e}");
        assert!(!dir.join("w.safetensors").exists());
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn a_var_map_is_a_store_of_named_params_too() -> Result<()> {
        let vm = VarMap::new();
        let vb = NamedParams::var_builder(&vm, DType::F32, &Device::Cpu);
        for name in ["b.weight", "a.weight"] {
            vb.get_with_hints((2, 3), name, Init::Randn { mean: 0.0, stdev: 1.0 })?;
        }
        candle_nn::batch_norm(3, 1e-5, vb.pp("c.bn"))?;
        let names: Vec<String> = vm.named_vars().into_iter().map(|(k, _)| k).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "named_vars must be sorted by name");
        let trainable: Vec<String> = vm.trainable_named_vars("").into_iter().map(|(k, _)| k).collect();
        assert_eq!(trainable, ["a.weight", "b.weight", "c.bn.bias", "c.bn.weight"]);
        assert_eq!(vm.elem_count(), 2 * 6 + 4 * 3);

        // Saved from a VarMap, loaded into a ParamStore of the same names and back.
        let dir = std::env::temp_dir().join(format!("adapt-params-varmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vm.safetensors");
        NamedParams::save(&vm, &path)?;
        let store = ParamStore::new(5);
        let svb = store.var_builder(DType::F32, &Device::Cpu);
        for name in ["a.weight", "b.weight"] {
            svb.get_with_hints((2, 3), name, Init::Const(0.0))?;
        }
        candle_nn::batch_norm(3, 1e-5, svb.pp("c.bn"))?;
        store.load(&path)?;
        let (from, to) = (NamedParams::tensors(&vm), store.tensors());
        for (name, t) in &from {
            assert_eq!(t.flatten_all()?.to_vec1::<f32>()?, to[name].flatten_all()?.to_vec1::<f32>()?, "{name}");
        }
        store.var_builder(DType::F32, &Device::Cpu).get_with_hints((2, 3), "z.weight", Init::Const(1.0))?;
        store.save(&path)?;
        let other = VarMap::new();
        NamedParams::var_builder(&other, DType::F32, &Device::Cpu).get_with_hints(
            (2, 3),
            "z.weight",
            Init::Const(0.0),
        )?;
        NamedParams::load(&other, &path)?;
        assert_eq!(NamedParams::tensors(&other)["z.weight"].flatten_all()?.to_vec1::<f32>()?, vec![1.0; 6]);
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn trainable_vars_skip_batch_norm_statistics() -> Result<()> {
        let store = ParamStore::new(0);
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        candle_nn::batch_norm(4, 1e-5, vb.pp("f.bn"))?;
        let names: Vec<String> = store.named_vars().into_iter().map(|(k, _)| k).collect();
        assert!(names.iter().any(|n| n.ends_with("running_mean")));
        assert_eq!(store.trainable_vars("f.").len(), 2); // weight and bias
        assert_eq!(store.trainable_vars("g.").len(), 0);
        Ok(())
    }
}
