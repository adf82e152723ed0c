//! An exponential moving average of a model's weights (Polyak averaging, the "EMA model" that
//! VADA / DIRT-T and mean-teacher recipes evaluate): the average of the last few hundred steps
//! sits nearer the middle of the basin that SGD at a finite learning rate keeps jumping around,
//! so it is usually more accurate, on both domains, than the weights of any single step.
//!
//! The average covers every variable of the store, BatchNorm running statistics included (as in
//! timm's `ModelEmaV2`), so an averaged BatchNorm net is normalised with averaged statistics.
//!
//! Early steps are weighted as in TensorFlow's `ExponentialMovingAverage(num_updates)`: the decay
//! at update `t` is `min(decay, (1 + t) / (10 + t))`, so the average does not stay near the
//! random initial weights for the first `1 / (1 - decay)` steps.
//!
//! The averages are training state: a checkpoint stores them under [`AVERAGE_PREFIX`] so that a
//! resumed run ends with the same average as an unbroken one.
use crate::error::{Result, TrainError};
use adapt_models::NamedParams;
use candle_core::{Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// Names of the averaged weights in a checkpoint: `optim.average.<parameter name>`.
pub const AVERAGE_PREFIX: &str = "optim.average.";

/// The moving average of every floating-point variable of a store.
pub struct WeightAverage {
    decay: f64,
    names: Vec<String>,
    vars: Vec<Var>,
    averages: Vec<Tensor>,
    updates: usize,
}

impl WeightAverage {
    /// An average of `params`' variables as they stand now, with `decay` in (0, 1).
    pub fn new(params: &dyn NamedParams, decay: f64) -> Result<Self> {
        if !(decay > 0.0 && decay < 1.0) {
            return Err(TrainError::Config(format!("the weight-average decay must be in (0, 1), got {decay}")));
        }
        let (names, vars): (Vec<String>, Vec<Var>) =
            params.named_vars().into_iter().filter(|(_, v)| v.dtype().is_float()).unzip();
        let averages = vars.iter().map(|v| v.as_tensor().detach().copy()).collect::<candle_core::Result<_>>()?;
        Ok(Self { decay, names, vars, averages, updates: 0 })
    }

    /// The decay of the next update (see the module documentation).
    pub fn current_decay(&self) -> f64 {
        let t = self.updates as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves the averages towards the variables' current values.
    pub fn update(&mut self) -> Result<()> {
        let d = self.current_decay();
        for (avg, var) in self.averages.iter_mut().zip(&self.vars) {
            // Detached: the average must not keep the step's graph alive.
            *avg = ((&*avg * d)? + (var.as_tensor().detach() * (1.0 - d))?)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// Updates applied so far (restored from a checkpoint on resume).
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// Exchanges the variables' values with the averages: call it twice to get back where you
    /// were. Evaluating between the two calls evaluates the averaged model.
    pub fn swap(&mut self) -> Result<()> {
        for (avg, var) in self.averages.iter_mut().zip(&self.vars) {
            let live = var.as_tensor().detach().copy()?;
            var.set(avg)?;
            *avg = live;
        }
        Ok(())
    }

    /// The averages named for a checkpoint (`optim.average.<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.names.iter().zip(&self.averages).map(|(n, a)| (format!("{AVERAGE_PREFIX}{n}"), a.clone())).collect()
    }

    /// Takes the averages from a checkpoint's optimizer state, `updates` being the steps the
    /// checkpoint had done (one update per step). `path` names the file in errors.
    pub fn restore(&mut self, path: &Path, state: &HashMap<String, Tensor>, updates: usize) -> Result<()> {
        let averages = averages_in(path, &self.names, &self.vars, state)?;
        self.averages = averages;
        self.updates = updates;
        Ok(())
    }
}

/// The averages for `names` in a checkpoint's optimizer state, checked against the variables.
fn averages_in(path: &Path, names: &[String], vars: &[Var], state: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
    let corrupt = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
    if let Some(extra) =
        state.keys().filter_map(|k| k.strip_prefix(AVERAGE_PREFIX)).filter(|n| !names.iter().any(|m| m == n)).min()
    {
        return Err(corrupt(format!("weight average for unknown parameter '{extra}'")));
    }
    names
        .iter()
        .zip(vars)
        .map(|(name, var)| {
            let t = state.get(&format!("{AVERAGE_PREFIX}{name}")).ok_or_else(|| {
                corrupt(format!(
                    "no weight average for '{name}' (the run averages its weights; was it saved by another recipe?)"
                ))
            })?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(corrupt(format!(
                    "weight average for '{name}' is {:?} {:?}, the parameter is {:?} {:?}",
                    t.dtype(),
                    t.dims(),
                    var.dtype(),
                    var.dims()
                )));
            }
            Ok(t.clone())
        })
        .collect()
}

/// Puts a checkpoint's averaged weights into `params` (a finished run's reported model, when the
/// checkpoint's live weights were loaded). `path` names the file in errors.
pub fn load_averaged(path: &Path, params: &dyn NamedParams, state: &HashMap<String, Tensor>) -> Result<()> {
    let (names, vars): (Vec<String>, Vec<Var>) =
        params.named_vars().into_iter().filter(|(_, v)| v.dtype().is_float()).unzip();
    for (var, avg) in vars.iter().zip(averages_in(path, &names, &vars, state)?) {
        var.set(&avg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapt_models::ParamStore;
    use candle_core::{DType, Device};

    fn store(value: f32) -> ParamStore {
        let store = ParamStore::new(0);
        store
            .var_builder(DType::F32, &Device::Cpu)
            .get_with_hints(2, "w", candle_nn::Init::Const(value as f64))
            .unwrap();
        store
    }

    fn value(params: &ParamStore) -> Vec<f32> {
        params.named_vars()[0].1.as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn the_average_follows_the_warm_up_then_the_decay() {
        let params = store(0.0);
        let mut avg = WeightAverage::new(&params, 0.5).unwrap();
        // Update 0 uses min(0.5, 1/10) = 0.1: the average moves 90 % of the way to 10.
        params.named_vars()[0].1.set(&Tensor::new(&[10f32, 10.0], &Device::Cpu).unwrap()).unwrap();
        avg.update().unwrap();
        avg.swap().unwrap();
        assert_eq!(value(&params), vec![9.0, 9.0]);
        avg.swap().unwrap();
        assert_eq!(value(&params), vec![10.0, 10.0]);
        // Far into the run the decay is the configured 0.5.
        avg.updates = 1000;
        assert_eq!(avg.current_decay(), 0.5);
        params.named_vars()[0].1.set(&Tensor::new(&[1f32, 1.0], &Device::Cpu).unwrap()).unwrap();
        avg.update().unwrap();
        avg.swap().unwrap();
        assert_eq!(value(&params), vec![5.0, 5.0]);
    }

    #[test]
    fn a_checkpointed_average_restores_and_loads() {
        let params = store(0.0);
        let mut avg = WeightAverage::new(&params, 0.9).unwrap();
        params.named_vars()[0].1.set(&Tensor::new(&[4f32, 8.0], &Device::Cpu).unwrap()).unwrap();
        avg.update().unwrap();
        let state: HashMap<String, Tensor> = avg.state().into_iter().collect();
        let mut other = WeightAverage::new(&params, 0.9).unwrap();
        other.restore(Path::new("c.safetensors"), &state, 1).unwrap();
        assert_eq!(other.updates(), 1);
        load_averaged(Path::new("c.safetensors"), &params, &state).unwrap();
        let v = value(&params);
        assert!((v[0] - 3.6).abs() < 1e-6 && (v[1] - 7.2).abs() < 1e-6, "{v:?}");
        let err = other.restore(Path::new("c.safetensors"), &HashMap::new(), 1).unwrap_err().to_string();
        assert!(err.contains("c.safetensors") && err.contains("no weight average for 'w'"), "{err}");
        let bad = HashMap::from([(format!("{AVERAGE_PREFIX}w"), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap())]);
        let err = load_averaged(Path::new("c.safetensors"), &params, &bad).unwrap_err().to_string();
        assert!(err.contains("weight average for 'w' is"), "{err}");
        assert!(WeightAverage::new(&params, 1.0).is_err() && WeightAverage::new(&params, 0.0).is_err());
    }
}
