//! Mixed batches for domain adaptation: `n` labelled source rows followed by `n` unlabelled target
//! rows, drawn from per-domain shuffled epochs.
use adapt_datasets::Rows;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
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
    seed: u64,
    /// Images are moved by up to this many pixels each way (see [`MixedSampler::with_shift`]).
    max_shift: usize,
    /// Source images get random channel contrast, polarity and offset (see
    /// [`MixedSampler::with_source_colour_jitter`]).
    source_colour_jitter: bool,
    /// Batches drawn since the start of the run (the shifts of a batch depend on it).
    drawn: u64,
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
        Ok(Self {
            source,
            target,
            per_domain,
            source_order,
            target_order,
            seed,
            max_shift: 0,
            source_colour_jitter: false,
            drawn: 0,
        })
    }

    /// Moves every image of every batch, both domains, by a random offset of up to `max_shift`
    /// pixels along each axis, the pixels that come in copied from the nearest border pixel (the
    /// background, whatever the normalisation). Small translations are the augmentation the
    /// digit recipes that reach 97-99 % rely on (self-ensembling: +-2 px). The offsets depend only
    /// on the seed and the batch's index in the run, so a resumed run draws the same ones; 0
    /// leaves the images as they are.
    pub fn with_shift(mut self, max_shift: usize) -> Result<Self> {
        if max_shift > 0 {
            let shape = self.source.row_shape();
            if shape.len() != 3 || shape[1] <= max_shift || shape[2] <= max_shift {
                return Err(TrainError::Config(format!(
                    "a shift of {max_shift} pixels needs images (channels, height, width) larger than it; rows are {shape:?}"
                )));
            }
        }
        self.max_shift = max_shift;
        Ok(self)
    }

    /// Recolours every source image of every batch, each channel on its own: its deviations from
    /// the image's own channel mean scaled by a gain drawn from `[0.5, 1.5]`, negated with
    /// probability 1/2 (dark strokes on light ground and the reverse), then offset by up to
    /// [`COLOUR_JITTER_OFFSET`] either way. A source of one colour scheme (MNIST's white on
    /// black) so stops being one, and the label predictor cannot key on it; the target is left
    /// as it is. Draws depend on the seed and the batch's index only, as the shifts do.
    pub fn with_source_colour_jitter(mut self, on: bool) -> Self {
        self.source_colour_jitter = on;
        self
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
        if self.max_shift > 0 {
            self.shift_images(&mut xs, &shape);
        }
        if self.source_colour_jitter {
            let source_len = n * self.source.row_shape().iter().product::<usize>();
            self.jitter_colours(&mut xs[..source_len], &shape);
        }
        self.drawn += 1;
        Ok(MixedBatch {
            inputs: Tensor::from_vec(xs, shape, device)?,
            source_labels: Tensor::from_vec(ys, n, device)?,
            n_source: n,
        })
    }

    fn shift_images(&self, xs: &mut [f32], shape: &[usize]) {
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ 0x5348_4946_5453_0000 ^ self.drawn.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let m = self.max_shift as i64;
        let mut moved = vec![0f32; c * h * w];
        for image in xs.chunks_exact_mut(c * h * w) {
            let (dy, dx) = (rng.random_range(-m..=m) as isize, rng.random_range(-m..=m) as isize);
            shift_image(image, &mut moved, (c, h, w), dy, dx);
            image.copy_from_slice(&moved);
        }
    }

    fn jitter_colours(&self, xs: &mut [f32], shape: &[usize]) {
        let (c, plane) = (shape[1], shape[2..].iter().product::<usize>());
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ 0x434f_4c4f_5552_0000 ^ self.drawn.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for image in xs.chunks_exact_mut(c * plane) {
            for channel in image.chunks_exact_mut(plane) {
                let gain = rng.random_range(0.5f32..=1.5) * if rng.random_bool(0.5) { -1.0 } else { 1.0 };
                let offset = rng.random_range(-COLOUR_JITTER_OFFSET..=COLOUR_JITTER_OFFSET);
                jitter_channel(channel, gain, offset);
            }
        }
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
        self.drawn = steps_done as u64;
        self.source_order.restore(state.source)?;
        self.target_order.restore(state.target)
    }
}

/// The largest offset [`MixedSampler::with_source_colour_jitter`] adds to a channel (a quarter
/// of the `[0, 1]` pixel range).
pub const COLOUR_JITTER_OFFSET: f32 = 0.25;

/// `channel` becomes `mean + gain (channel - mean) + offset`, `mean` its own mean.
pub fn jitter_channel(channel: &mut [f32], gain: f32, offset: f32) {
    let mean = channel.iter().sum::<f32>() / channel.len().max(1) as f32;
    for v in channel {
        *v = mean + gain * (*v - mean) + offset;
    }
}

/// `out` is `image` (`c` planes of `h` x `w`) moved down by `dy` and right by `dx` pixels, the
/// uncovered pixels copied from the nearest border pixel.
pub fn shift_image(image: &[f32], out: &mut [f32], (c, h, w): (usize, usize, usize), dy: isize, dx: isize) {
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    for plane in 0..c {
        let (src, dst) = (&image[plane * h * w..(plane + 1) * h * w], &mut out[plane * h * w..(plane + 1) * h * w]);
        for y in 0..h {
            let sy = clamp(y as isize - dy, h);
            for x in 0..w {
                dst[y * w + x] = src[sy * w + clamp(x as isize - dx, w)];
            }
        }
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
    fn resume_from_any_position_is_exact_and_the_seed_decides_the_stream() {
        let full = EpochOrder::new(37, 9).take(4 * 37);
        for stop in 0..full.len() {
            let mut o = EpochOrder::new(37, 9);
            o.take(stop);
            let mut resumed = EpochOrder::new(37, 9);
            resumed.restore(o.position()).unwrap();
            assert_eq!(resumed.take(full.len() - stop), full[stop..], "resume after {stop} rows");
        }
        assert_eq!(EpochOrder::new(37, 9).take(4 * 37), full, "same seed, same stream");
        assert_ne!(EpochOrder::new(37, 10).take(4 * 37), full, "another seed, another stream");
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
    fn a_shift_moves_the_pixels_and_fills_from_the_border() {
        // 1 plane of 3 x 3: values 0..9 row by row.
        let image: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = vec![0f32; 9];
        shift_image(&image, &mut out, (1, 3, 3), 1, 0);
        assert_eq!(out, vec![0., 1., 2., 0., 1., 2., 3., 4., 5.]);
        shift_image(&image, &mut out, (1, 3, 3), 0, -1);
        assert_eq!(out, vec![1., 2., 2., 4., 5., 5., 7., 8., 8.]);
        shift_image(&image, &mut out, (1, 3, 3), 0, 0);
        assert_eq!(out, image);
    }

    fn images(n: usize) -> Arc<dyn Rows> {
        let px: Vec<u8> = (0..n * 36).map(|i| ((i * 37) % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % 3) as u32).collect();
        Arc::new(
            adapt_datasets::ImageDataset::from_u8("x", adapt_datasets::Split::Train, &px, labels, [1, 6, 6]).unwrap(),
        )
    }

    /// The three batches `s` draws after `skip` batches, drawn or (`restore`) skipped through a
    /// restored position.
    fn three_batches_after(mut s: MixedSampler, skip: usize, restore: bool) -> Result<Vec<Vec<f32>>> {
        if restore {
            let state = s.state_after(skip);
            s.restore(state, skip).unwrap();
        } else {
            for _ in 0..skip {
                s.next_batch(&Device::Cpu)?;
            }
        }
        (0..3).map(|_| Ok(s.next_batch(&Device::Cpu)?.inputs.flatten_all()?.to_vec1::<f32>()?)).collect()
    }

    #[test]
    fn shifted_batches_differ_from_plain_ones_and_resume_to_the_same_shifts() -> Result<()> {
        let batches = |shift: usize, skip: usize, restore: bool| -> Result<Vec<Vec<f32>>> {
            three_batches_after(MixedSampler::new(images(10), images(8), 4, 3)?.with_shift(shift)?, skip, restore)
        };
        let (plain, shifted) = (batches(0, 5, false)?, batches(2, 5, false)?);
        assert!(plain.iter().zip(&shifted).all(|(a, b)| a != b), "a shift of 2 left a batch unchanged");
        // Shifting moves pixels, it does not invent values: each image keeps its value range.
        for (a, b) in plain.iter().zip(&shifted) {
            for (ia, ib) in a.chunks(36).zip(b.chunks(36)) {
                let max = |v: &[f32]| v.iter().cloned().fold(f32::MIN, f32::max);
                assert!(max(ib) <= max(ia));
            }
        }
        assert_eq!(batches(2, 5, true)?, shifted, "a restored sampler draws other shifts");
        assert!(MixedSampler::new(images(10), images(8), 4, 3)?.with_shift(6).is_err());
        assert!(MixedSampler::new(points(3, 0.0), points(3, 0.0), 2, 0)?.with_shift(1).is_err());
        Ok(())
    }

    #[test]
    fn colour_jitter_recolours_the_source_half_only_and_resumes_to_the_same_draws() -> Result<()> {
        let batches = |jitter: bool, skip: usize, restore: bool| -> Result<Vec<Vec<f32>>> {
            let sampler = MixedSampler::new(images(10), images(8), 4, 3)?.with_source_colour_jitter(jitter);
            three_batches_after(sampler, skip, restore)
        };
        let (plain, jittered) = (batches(false, 2, false)?, batches(true, 2, false)?);
        let std = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt()
        };
        let mut inverted = 0;
        for (a, b) in plain.iter().zip(&jittered) {
            // 4 source images of 36 pixels, then 4 target images left as they were.
            assert_eq!(a[144..], b[144..], "the target half was changed");
            for (ia, ib) in a[..144].chunks(36).zip(b[..144].chunks(36)) {
                let ratio = std(ib) / std(ia);
                assert!((0.5 - 1e-4..=1.5 + 1e-4).contains(&ratio), "contrast scaled by {ratio}");
                let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
                let shift = mean(ib) - mean(ia);
                assert!(shift.abs() <= COLOUR_JITTER_OFFSET + 1e-5, "offset {shift}");
                // The pixel that was brightest is the darkest after an inversion.
                let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
                let argmin = |v: &[f32]| (0..v.len()).min_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
                inverted += usize::from(argmin(ib) == argmax(ia));
            }
        }
        // 12 source images, each inverted with probability 1/2.
        assert!((2..=10).contains(&inverted), "{inverted} of 12 images inverted");
        assert_eq!(batches(true, 2, true)?, jittered, "a restored sampler draws other colours");
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
