//! Optimisers and learning-rate schedules.
//!
//! candle-nn's `SGD` has no momentum, and the DANN paper trains with momentum 0.9, so
//! [`MomentumSgd`] implements PyTorch's `torch.optim.SGD` update. The GTA recipe trains with
//! [`Adam`], PyTorch's `torch.optim.Adam` update whose state can be saved with a checkpoint and
//! restored (candle-nn's `AdamW` keeps its moments private); [`AdamSettings`] holds the paper's
//! values.
use crate::error::TrainError;
use adapt_kernels::{AdamStep, SgdStep, adam_update, adam_update_supported, sgd_momentum_update};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Settings of [`MomentumSgd`], with PyTorch's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdSettings {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdSettings {
    /// The DANN paper: lr 0.01 (before the schedule), momentum 0.9.
    fn default() -> Self {
        Self { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false }
    }
}

/// Stochastic gradient descent with (optionally Nesterov) momentum and L2 weight decay:
///
/// ```text
/// g = grad + weight_decay * p
/// v = momentum * v + g            (v = g on the first step)
/// p = p - lr * (nesterov ? g + momentum * v : v)
/// ```
///
/// Velocity buffers are stored detached: gradients returned by candle's `backward()` still hold
/// the forward graph, and keeping one would keep every step's graph alive. The update itself is
/// [`adapt_kernels::sgd_momentum_update`]: in place and parallel for f32 on the CPU.
pub struct MomentumSgd {
    vars: Vec<Var>,
    velocity: Vec<Option<Tensor>>,
    settings: SgdSettings,
}

impl MomentumSgd {
    pub fn settings(&self) -> SgdSettings {
        self.settings
    }

    /// The velocity buffers, in the order of the variables (None before a variable's first step).
    pub fn velocity(&self) -> &[Option<Tensor>] {
        &self.velocity
    }

    /// Restores velocity buffers (e.g. from a checkpoint); must match the variables' shapes.
    pub fn set_velocity(&mut self, velocity: Vec<Option<Tensor>>) -> Result<()> {
        if velocity.len() != self.vars.len() {
            candle_core::bail!("{} velocity buffers for {} variables", velocity.len(), self.vars.len());
        }
        for (v, var) in velocity.iter().zip(&self.vars) {
            if let Some(v) = v {
                if v.shape() != var.shape() {
                    candle_core::bail!(
                        "velocity shape {:?} does not match variable shape {:?}",
                        v.shape(),
                        var.shape()
                    );
                }
                if v.dtype() != var.dtype() {
                    candle_core::bail!(
                        "velocity dtype {:?} does not match variable dtype {:?}",
                        v.dtype(),
                        var.dtype()
                    );
                }
            }
        }
        // A checkpoint read on another device than the variables' (a CPU file resumed on a GPU).
        self.velocity = velocity
            .into_iter()
            .zip(&self.vars)
            .map(|(v, var)| v.map(|t| t.to_device(var.device()).map(|t| t.detach())).transpose())
            .collect::<Result<_>>()?;
        Ok(())
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

impl Optimizer for MomentumSgd {
    type Config = SgdSettings;

    fn new(vars: Vec<Var>, settings: SgdSettings) -> Result<Self> {
        if !(settings.lr.is_finite() && settings.lr >= 0.0) {
            candle_core::bail!("learning rate must be finite and >= 0, got {}", settings.lr);
        }
        if !(0.0..1.0).contains(&settings.momentum) {
            candle_core::bail!("momentum must be in [0, 1), got {}", settings.momentum);
        }
        // Only floating-point variables are trainable; integer buffers never get gradients.
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        let velocity = vec![None; vars.len()];
        Ok(Self { vars, velocity, settings })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let s = self.settings;
        let step = SgdStep { lr: s.lr, momentum: s.momentum, weight_decay: s.weight_decay, nesterov: s.nesterov };
        for (var, vel) in self.vars.iter().zip(self.velocity.iter_mut()) {
            if let Some(grad) = grads.get(var) {
                sgd_momentum_update(var, vel, grad, step)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.settings.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.settings.lr = lr;
    }
}

/// The DANN paper's annealing: `mu_p = mu_0 / (1 + alpha p)^beta`, with `p` the training progress
/// in [0, 1]. The paper uses `mu_0 = 0.01, alpha = 10, beta = 0.75`.
pub fn lr_schedule(p: f64, mu_0: f64, alpha: f64, beta: f64) -> f64 {
    mu_0 / (1.0 + alpha * p.clamp(0.0, 1.0)).powf(beta)
}

/// [`lr_schedule`] with the paper's `alpha = 10, beta = 0.75`.
pub fn paper_lr_schedule(p: f64, mu_0: f64) -> f64 {
    lr_schedule(p, mu_0, 10.0, 0.75)
}

/// Adam settings; `weight_decay` is AdamW's decoupled decay (0 gives plain Adam).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamSettings {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamSettings {
    /// Generate To Adapt (Sankaranarayanan et al., 2018): Adam, lr 5e-4, beta1 0.8.
    pub fn gta() -> Self {
        Self { lr: 5e-4, beta1: 0.8, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

impl Default for AdamSettings {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

impl From<AdamSettings> for ParamsAdamW {
    fn from(s: AdamSettings) -> Self {
        ParamsAdamW { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weight_decay: s.weight_decay }
    }
}

/// Adam with PyTorch's update (no weight decay), moment buffers stored detached.
///
/// candle's gradients still reference the forward graph; keeping one in the optimizer state
/// would keep that step's whole graph alive. The state is exposed for checkpoints.
pub struct Adam {
    vars: Vec<Var>,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    /// Updates applied to each variable (PyTorch counts per parameter).
    steps: Vec<u64>,
    settings: AdamSettings,
}

impl Adam {
    pub fn settings(&self) -> AdamSettings {
        self.settings
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Updates applied to each variable so far, in the order of [`Adam::vars`].
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    /// The state as named tensors `{prefix}{i}.m`, `{prefix}{i}.v` and `{prefix}{i}.step` (i64,
    /// one element), `i` the variable's position; variables never updated are left out.
    pub fn state_tensors(&self, prefix: &str) -> crate::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, ((m, v), &s)) in self.m.iter().zip(&self.v).zip(&self.steps).enumerate() {
            if let (Some(m), Some(v)) = (m, v) {
                out.insert(format!("{prefix}{i}.m"), m.clone());
                out.insert(format!("{prefix}{i}.v"), v.clone());
                out.insert(format!("{prefix}{i}.step"), Tensor::new(&[s as i64], &Device::Cpu)?);
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`Adam::state_tensors`] with the same prefix.
    pub fn load_state_tensors(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> crate::Result<()> {
        for (i, var) in self.vars.iter().enumerate() {
            let key = |part: &str| format!("{prefix}{i}.{part}");
            match (tensors.get(&key("m")), tensors.get(&key("v")), tensors.get(&key("step"))) {
                (Some(m), Some(v), Some(s)) => {
                    let bad = |what: String| TrainError::Config(format!("optimizer state {prefix}{i}: {what}"));
                    if m.shape() != var.shape() || v.shape() != var.shape() {
                        return Err(bad(format!("shape {:?}, the variable's {:?}", m.shape(), var.shape())));
                    }
                    if m.dtype() != var.dtype() || v.dtype() != var.dtype() {
                        return Err(bad(format!(
                            "dtype {:?}/{:?}, the variable's {:?}",
                            m.dtype(),
                            v.dtype(),
                            var.dtype()
                        )));
                    }
                    if s.dtype() != DType::I64 || s.elem_count() != 1 {
                        return Err(bad(format!("step count is {:?} {:?}, not one I64", s.dtype(), s.dims())));
                    }
                    let step = s.flatten_all()?.to_vec1::<i64>()?[0];
                    if step < 1 {
                        return Err(bad(format!("step count {step} (a stored moment follows at least one update)")));
                    }
                    // The second moment is a running mean of squares: a negative one would make
                    // the next update's square root NaN.
                    if v.min_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? < 0.0 {
                        return Err(bad("second moment holds a negative value".into()));
                    }
                    let to_var = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(var.device())?.detach()) };
                    self.m[i] = Some(to_var(m)?);
                    self.v[i] = Some(to_var(v)?);
                    self.steps[i] = step as u64;
                }
                (None, None, None) => {
                    self.m[i] = None;
                    self.v[i] = None;
                    self.steps[i] = 0;
                }
                _ => return Err(TrainError::Config(format!("optimizer state {prefix}{i} is incomplete"))),
            }
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    type Config = AdamSettings;

    fn new(vars: Vec<Var>, settings: AdamSettings) -> Result<Self> {
        if !(settings.lr.is_finite() && settings.lr >= 0.0) {
            candle_core::bail!("learning rate must be finite and >= 0, got {}", settings.lr);
        }
        if settings.weight_decay != 0.0 {
            candle_core::bail!("this Adam has no weight decay (GTA uses none), got {}", settings.weight_decay);
        }
        let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
        let n = vars.len();
        Ok(Self { vars, m: vec![None; n], v: vec![None; n], steps: vec![0; n], settings })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let s = self.settings;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = g.detach();
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            if adam_update_supported(var, &g, [self.m[i].as_ref(), self.v[i].as_ref()]) {
                let step = AdamStep { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, t };
                let (m, v) = adam_update(var, self.m[i].as_ref(), self.v[i].as_ref(), &g, step)?;
                self.m[i] = Some(m);
                self.v[i] = Some(v);
                continue;
            }
            // Elsewhere the same update as candle ops (the fused one reproduces them bit for bit).
            let m = match &self.m[i] {
                Some(m) => ((m * s.beta1)? + (&g * (1.0 - s.beta1))?)?,
                None => (&g * (1.0 - s.beta1))?,
            };
            let v = match &self.v[i] {
                Some(v) => ((v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?,
                None => (g.sqr()? * (1.0 - s.beta2))?,
            };
            let step_size = s.lr / (1.0 - s.beta1.powi(t));
            let denom = ((v.sqrt()? / (1.0 - s.beta2.powi(t)).sqrt())? + s.eps)?;
            var.set(&(var.as_tensor().detach() - ((&m / denom)? * step_size)?)?)?;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.settings.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.settings.lr = lr;
    }
}

/// GTA's decay `lr / (1 + 1e-4 * iteration)`, applied to D, F and C.
pub fn inverse_decay(lr: f64, iteration: usize, rate: f64) -> f64 {
    lr / (1.0 + rate * iteration as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps on a quadratic, compared with PyTorch's update written out by hand.
    #[test]
    fn momentum_sgd_matches_the_pytorch_update() -> Result<()> {
        let dev = Device::Cpu;
        for nesterov in [false, true] {
            let x = Var::new(&[1.0f64, -2.0], &dev)?;
            let s = SgdSettings { lr: 0.1, momentum: 0.9, weight_decay: 0.01, nesterov };
            let mut opt = MomentumSgd::new(vec![x.clone()], s)?;
            let (mut p, mut v) = ([1.0f64, -2.0], [0.0f64; 2]);
            for step in 0..3 {
                // loss = sum(3 * x^2) -> grad 6x
                opt.backward_step(&(x.as_tensor().sqr()? * 3.0)?.sum_all()?)?;
                for i in 0..2 {
                    let g = 6.0 * p[i] + 0.01 * p[i];
                    v[i] = if step == 0 { g } else { 0.9 * v[i] + g };
                    p[i] -= 0.1 * if nesterov { g + 0.9 * v[i] } else { v[i] };
                }
                let got = x.as_tensor().to_vec1::<f64>()?;
                for i in 0..2 {
                    assert!((got[i] - p[i]).abs() < 1e-12, "step {step} nesterov {nesterov}: {got:?} vs {p:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn velocity_is_detached_from_the_graph() -> Result<()> {
        let x = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
        let mut opt = MomentumSgd::new(vec![x.clone()], SgdSettings::default())?;
        opt.backward_step(&x.as_tensor().sqr()?.sum_all()?)?;
        let v = opt.velocity()[0].as_ref().unwrap();
        assert!(!v.track_op(), "velocity buffer keeps a graph alive");
        Ok(())
    }

    #[test]
    fn bad_settings_are_rejected() {
        let x = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        assert!(MomentumSgd::new(vec![x.clone()], SgdSettings { lr: f64::NAN, ..Default::default() }).is_err());
        assert!(MomentumSgd::new(vec![x], SgdSettings { momentum: 1.0, ..Default::default() }).is_err());
    }

    /// PyTorch's Adam, written out, for two steps.
    #[test]
    fn adam_matches_the_pytorch_update_and_keeps_no_graph() -> crate::Result<()> {
        let x = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
        let s = AdamSettings { lr: 0.1, beta1: 0.8, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let mut opt = Adam::new(vec![x.clone()], s)?;
        let (mut p, mut m, mut vv) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            opt.backward_step(&(x.as_tensor().sqr()? * 3.0)?.sum_all()?)?;
            for i in 0..2 {
                let g = 6.0 * p[i];
                m[i] = 0.8 * m[i] + 0.2 * g;
                vv[i] = 0.999 * vv[i] + 0.001 * g * g;
                let denom = (vv[i] / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8;
                p[i] -= 0.1 / (1.0 - 0.8f64.powi(t)) * m[i] / denom;
            }
            let got = x.as_tensor().to_vec1::<f64>()?;
            for i in 0..2 {
                assert!((got[i] - p[i]).abs() < 1e-12, "step {t}: {got:?} vs {p:?}");
            }
        }
        assert!(opt.m.iter().chain(&opt.v).flatten().all(|t| !t.track_op()));
        // State round trip.
        let state = opt.state_tensors("opt.")?;
        let mut other = Adam::new(vec![Var::new(&[0.0f64, 0.0], &Device::Cpu)?], s)?;
        other.load_state_tensors(&state, "opt.")?;
        assert_eq!(other.steps, vec![3]);
        assert_eq!(other.m[0].as_ref().unwrap().to_vec1::<f64>()?, opt.m[0].as_ref().unwrap().to_vec1::<f64>()?);
        assert!(Adam::new(vec![x], AdamSettings { weight_decay: 0.1, ..s }).is_err());
        Ok(())
    }

    #[test]
    fn paper_schedule_values() {
        assert_eq!(paper_lr_schedule(0.0, 0.01), 0.01);
        assert!((paper_lr_schedule(1.0, 0.01) - 0.01 / 11f64.powf(0.75)).abs() < 1e-15);
        let mut prev = f64::INFINITY;
        for i in 0..=100 {
            let v = paper_lr_schedule(i as f64 / 100.0, 0.01);
            assert!(v < prev);
            prev = v;
        }
        assert!((inverse_decay(5e-4, 10_000, 1e-4) - 2.5e-4).abs() < 1e-15);
    }
}
