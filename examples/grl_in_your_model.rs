//! Gradient reversal in your own candle-nn model: a feature layer, a label head, and a domain
//! head behind the GRL, trained with candle-nn's own `VarMap` and SGD on the two-moons toy (target:
//! the moons rotated by 35 degrees). The domain head learns to tell the domains apart while the
//! reversed gradient pushes the feature layer the other way; the same net without the reversal
//! is trained beside it. candle's CPU generator cannot be seeded, so a `VarMap` starts from other
//! weights on every run and the figures vary (`adapt_models::ParamStore` gives seeded weights).
//!
//! `cargo run --example grl_in_your_model`
use adapt_datasets::toy::{Points2d, RotatedMoons, RotatedMoonsConfig};
use adapt_grl::{GradientReversal, lambda_schedule};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, Optimizer, SGD, VarBuilder, VarMap, linear, loss::cross_entropy};

struct Net {
    features: Linear,
    label: Linear,
    domain: Linear,
}

impl Net {
    fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            features: linear(2, 16, vb.pp("f"))?,
            label: linear(16, 2, vb.pp("l"))?,
            domain: linear(16, 2, vb.pp("d"))?,
        })
    }

    /// Class logits and domain logits; the domain head sees the features through the GRL.
    fn forward(&self, xs: &Tensor, lambda: f64) -> Result<(Tensor, Tensor)> {
        let f = self.features.forward(xs)?.relu()?;
        let domain = self.domain.forward(&GradientReversal::new(lambda).forward(&f)?)?;
        Ok((self.label.forward(&f)?, domain))
    }
}

/// Points and labels as tensors.
fn tensors(set: &Points2d, device: &Device) -> Result<(Tensor, Tensor)> {
    let flat: Vec<f32> = set.points.iter().flatten().copied().collect();
    Ok((Tensor::from_vec(flat, (set.len(), 2), device)?, Tensor::new(set.labels.as_slice(), device)?))
}

/// Trains a fresh net for 2000 full-batch steps; `reverse` false switches the GRL off (lambda 0), so the
/// features never see the domain head. Returns the target accuracy and the domain head's accuracy.
fn train(reverse: bool, device: &Device) -> Result<(f32, f32)> {
    let varmap = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let mut sgd = SGD::new(varmap.all_vars(), 0.05)?;
    // Two moons as the labelled source, the same moons rotated by 35 degrees as the target.
    let moons = RotatedMoons::generate(&RotatedMoonsConfig::default()).map_err(candle_core::Error::wrap)?;
    let (xs, ys) = tensors(&moons.source_train, device)?;
    let (xt, _) = tensors(&moons.target_train, device)?;
    let (xt_test, yt_test) = tensors(&moons.target_test, device)?; // target labels: only to report
    let (ns, nt) = (moons.source_train.len(), moons.target_train.len());
    let domains = Tensor::cat(&[Tensor::zeros(ns, DType::U32, device)?, Tensor::ones(nt, DType::U32, device)?], 0)?;
    let steps = 2000;
    let mut domain_acc = 0.0;
    for step in 0..steps {
        let lambda = if reverse { lambda_schedule(step as f64 / steps as f64, 10.0) } else { 0.0 };
        let (class_logits, _) = net.forward(&xs, lambda)?;
        let (_, domain_logits) = net.forward(&Tensor::cat(&[&xs, &xt], 0)?, lambda)?;
        let loss = (cross_entropy(&class_logits, &ys)? + cross_entropy(&domain_logits, &domains)?)?;
        sgd.backward_step(&loss)?;
        domain_acc = accuracy(&domain_logits, &domains)?;
    }
    let (target_logits, _) = net.forward(&xt_test, 0.0)?;
    Ok((accuracy(&target_logits, &yt_test)?, domain_acc))
}

fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32> {
    logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()
}

fn main() -> Result<()> {
    let device = Device::Cpu;
    for (name, reverse) in [("without the GRL", false), ("with the GRL", true)] {
        let (target_acc, domain_acc) = train(reverse, &device)?;
        println!("{name:<16} target accuracy {target_acc:.3}, domain head accuracy {domain_acc:.3}");
    }
    Ok(())
}
