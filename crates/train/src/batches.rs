//! Mixed batches for domain adaptation: `n` labelled source rows followed by `n` unlabelled target
//! rows, drawn from per-domain shuffled epochs.
use adapt_datasets::Rows;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::error::{Result, TrainError};

/// Where a shuffled epoch order stands; enough to restore it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPosition {
    pub epoch: u64,
    pub offset: usize,
}

/// Visits `0..len` in a fresh seeded permutation every epoch.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    len: usize,
    seed: u64,
    perm: Vec<usize>,
    position: EpochPosition,
}

impl EpochOrder {
    pub fn new(len: usize, seed: u64) -> Self {
        let mut order = Self { len, seed, perm: Vec::new(), position: EpochPosition { epoch: 0, offset: 0 } };
        order.shuffle();
        order
    }

    fn shuffle(&mut self) {
        self.perm = (0..self.len).collect();
        // Each epoch's permutation depends only on (seed, epoch), so a restored position needs no
        // generator state.
        let mut rng = StdRng::seed_from_u64(self.seed ^ self.position.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.perm.shuffle(&mut rng);
    }

    /// The next `n` indices, continuing into the next epoch when this one runs out.
    pub fn take(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.position.offset == self.len {
                self.position = EpochPosition { epoch: self.position.epoch + 1, offset: 0 };
                self.shuffle();
            }
            out.push(self.perm[self.position.offset]);
            self.position.offset += 1;
        }
        out
    }

    pub fn position(&self) -> EpochPosition {
        self.position
    }

    /// Continues from `position`, which must lie in the order (offset at most the length).
    pub fn restore(&mut self, position: EpochPosition) -> std::result::Result<(), String> {
        if position.offset > self.len {
            return Err(format!("offset {} is past the {} rows of an epoch", position.offset, self.len));
        }
        self.position = position;
        self.shuffle();
        Ok(())
    }

    /// Where an order of `len` rows stands after `taken` rows: `take` moves to the next epoch only
    /// when it needs a row, so a finished epoch shows as offset `len`.
    pub fn position_after(len: usize, taken: u128) -> EpochPosition {
        if taken == 0 || len == 0 {
            return EpochPosition { epoch: 0, offset: 0 };
        }
        let epoch = (taken - 1) / len as u128;
        EpochPosition { epoch: epoch.min(u64::MAX as u128) as u64, offset: (taken - epoch * len as u128) as usize }
    }
}

/// One training batch: `n_source` labelled source rows, then target rows.
pub struct MixedBatch {
    pub inputs: Tensor,
    pub source_labels: Tensor,
    pub n_source: usize,
}

/// Draws [`MixedBatch`]es of `per_domain` source and `per_domain` target rows.
pub struct MixedSampler {
    source: Arc<dyn Rows>,
    target: Arc<dyn Rows>,
    per_domain: usize,
    source_order: EpochOrder,
    target_order: EpochOrder,
}

/// The sampler's position, saved in checkpoints for exact resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub source: EpochPosition,
    pub target: EpochPosition,
}

impl MixedSampler {
    pub fn new(source: Arc<dyn Rows>, target: Arc<dyn Rows>, per_domain: usize, seed: u64) -> Result<Self> {
        if per_domain == 0 {
            return Err(TrainError::Config("batch size per domain must be at least 1".into()));
        }
        if source.is_empty() || target.is_empty() {
            return Err(TrainError::Config(format!(
                "empty training set: {} source rows, {} target rows",
                source.len(),
                target.len()
            )));
        }
        if source.row_shape() != target.row_shape() {
            return Err(TrainError::Config(format!(
                "source rows have shape {:?} but target rows {:?}; preprocess both to one shape",
                source.row_shape(),
                target.row_shape()
            )));
        }
        let source_order = EpochOrder::new(source.len(), seed.wrapping_mul(2));
        let target_order = EpochOrder::new(target.len(), seed.wrapping_mul(2).wrapping_add(1));
        Ok(Self { source, target, per_domain, source_order, target_order })
    }

    pub fn per_domain(&self) -> usize {
        self.per_domain
    }

    pub fn next_batch(&mut self, device: &Device) -> Result<MixedBatch> {
        let n = self.per_domain;
        let (mut xs, ys) = self.source.gather(&self.source_order.take(n));
        let (xt, _) = self.target.gather(&self.target_order.take(n));
        xs.extend_from_slice(&xt);
        let mut shape = vec![2 * n];
        shape.extend(self.source.row_shape());
        Ok(MixedBatch {
            inputs: Tensor::from_vec(xs, shape, device)?,
            source_labels: Tensor::from_vec(ys, n, device)?,
            n_source: n,
        })
    }

    pub fn state(&self) -> SamplerState {
        SamplerState { source: self.source_order.position(), target: self.target_order.position() }
    }

    /// Where the sampler stands after `steps_done` batches from the start.
    pub fn state_after(&self, steps_done: usize) -> SamplerState {
        let taken = steps_done as u128 * self.per_domain as u128;
        SamplerState {
            source: EpochOrder::position_after(self.source.len(), taken),
            target: EpochOrder::position_after(self.target.len(), taken),
        }
    }

    /// Whether `state` is where this sampler stands after `steps_done` batches: a saved position
    /// is fully determined by the step, the batch size and the dataset sizes, so anything else is
    /// a damaged or edited checkpoint (or one of other data). The problem says which domain.
    pub fn check_state(&self, state: SamplerState, steps_done: usize) -> std::result::Result<(), String> {
        let expected = self.state_after(steps_done);
        for (domain, got, want, len) in [
            ("source", state.source, expected.source, self.source.len()),
            ("target", state.target, expected.target, self.target.len()),
        ] {
            if got != want {
                return Err(format!(
                    "sampler position {domain} epoch {} offset {} is not where {steps_done} steps of {} rows leave                      {len} rows (epoch {} offset {})",
                    got.epoch, got.offset, self.per_domain, want.epoch, want.offset
                ));
            }
        }
        Ok(())
    }

    /// Continues from `state`, which must be where `steps_done` batches leave the sampler (see
    /// [`MixedSampler::check_state`]).
    pub fn restore(&mut self, state: SamplerState, steps_done: usize) -> std::result::Result<(), String> {
        self.check_state(state, steps_done)?;
        self.source_order.restore(state.source)?;
        self.target_order.restore(state.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapt_datasets::toy::Points2d;

    fn points(n: usize, offset: f32) -> Arc<dyn Rows> {
        Arc::new(Points2d {
            points: (0..n).map(|i| [i as f32 + offset, 0.0]).collect(),
            labels: (0..n).map(|i| (i % 2) as u32).collect(),
        })
    }

    #[test]
    fn every_row_once_per_epoch_and_reshuffled() {
        let mut o = EpochOrder::new(10, 3);
        let a = o.take(10);
        let b = o.take(10);
        let mut sa = a.clone();
        sa.sort();
        assert_eq!(sa, (0..10).collect::<Vec<_>>());
        assert_ne!(a, b);
    }

    #[test]
    fn restore_continues_exactly() {
        let mut o = EpochOrder::new(7, 11);
        o.take(12);
        let pos = o.position();
        let expected = o.take(20);
        let mut r = EpochOrder::new(7, 11);
        r.restore(pos).unwrap();
        assert_eq!(r.take(20), expected);
        assert_eq!(EpochOrder::position_after(7, 12), pos);
        assert!(r.restore(EpochPosition { epoch: 0, offset: 8 }).is_err());
    }

    #[test]
    fn a_saved_position_must_be_the_one_the_step_reaches() -> Result<()> {
        let mut s = MixedSampler::new(points(5, 0.0), points(7, 100.0), 3, 0)?;
        for steps in 0..9 {
            assert_eq!(s.state(), s.state_after(steps), "after {steps} steps");
            assert!(s.check_state(s.state(), steps).is_ok());
            s.next_batch(&Device::Cpu)?;
        }
        let good = s.state_after(8);
        let far = SamplerState { source: EpochPosition { epoch: 4, offset: 99_999_999 }, ..good };
        let e = s.check_state(far, 8).unwrap_err();
        assert!(e.contains("source epoch 4 offset 99999999") && e.contains("8 steps"), "{e}");
        let late = SamplerState { target: EpochPosition { epoch: u64::MAX, offset: 1 }, ..good };
        assert!(s.check_state(late, 8).unwrap_err().contains("target epoch 18446744073709551615"));
        assert!(s.restore(far, 8).is_err());
        assert!(s.check_state(good, 7).is_err(), "an edited step does not match the position");
        Ok(())
    }

    #[test]
    fn batches_put_source_first_with_its_labels() -> Result<()> {
        let mut s = MixedSampler::new(points(5, 0.0), points(5, 100.0), 3, 0)?;
        let b = s.next_batch(&Device::Cpu)?;
        assert_eq!(b.inputs.dims(), &[6, 2]);
        let x = b.inputs.to_vec2::<f32>()?;
        assert!(x[..3].iter().all(|r| r[0] < 100.0));
        assert!(x[3..].iter().all(|r| r[0] >= 100.0));
        let y = b.source_labels.to_vec1::<u32>()?;
        for (row, label) in x[..3].iter().zip(&y) {
            assert_eq!(*label, (row[0] as u32) % 2);
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_and_empty_sets_are_errors() {
        let img: Arc<dyn Rows> = Arc::new(
            adapt_datasets::ImageDataset::from_u8("x", adapt_datasets::Split::Train, &[0; 4], vec![0], [1, 2, 2])
                .unwrap(),
        );
        assert!(MixedSampler::new(points(3, 0.0), img, 2, 0).is_err());
        assert!(MixedSampler::new(points(3, 0.0), points(0, 0.0), 2, 0).is_err());
        assert!(MixedSampler::new(points(3, 0.0), points(3, 0.0), 0, 0).is_err());
    }
}
