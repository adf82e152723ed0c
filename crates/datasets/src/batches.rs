//! A seeded shuffling batch iterator with exact resume.
//!
//! The order of epoch `e` is a Fisher-Yates permutation drawn from a generator seeded with
//! `(seed, e)` alone, so the whole stream is a pure function of the seed, and a position
//! `(epoch, cursor)` ([`BatchState`]) is all that is needed to resume exactly where a run stopped.
//! Batches are gathered with one `memcpy` per image into buffers the caller may reuse
//! ([`BatchIter::next_into`]), which is far below the cost of a training step.
use crate::{DatasetError, ImageDataset, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

impl AsRef<ImageDataset> for ImageDataset {
    fn as_ref(&self) -> &ImageDataset {
        self
    }
}

/// The position of a [`BatchIter`]: save it with a checkpoint, pass it to [`BatchIter::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchState {
    pub seed: u64,
    /// Epochs completed so far.
    pub epoch: u64,
    /// Index into the current epoch's order of the next image to deliver.
    pub cursor: usize,
}

/// Iterator over `(images [B, C, H, W], labels [B])` batches of a dataset.
///
/// Works over an owned dataset, a reference or an `Arc` (anything that is `AsRef<ImageDataset>`).
#[derive(Debug, Clone)]
pub struct BatchIter<D: AsRef<ImageDataset>> {
    data: D,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    epochs: Option<u64>,
    state: BatchState,
    order: Vec<u32>,
}

/// The permutation of `n` items for epoch `epoch` (identity when not shuffling).
fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        // Mix the epoch into the seed with an odd constant so that (seed, epoch) pairs do not collide
        // along diagonals as a plain sum would.
        let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
    }
    order
}

impl<D: AsRef<ImageDataset>> BatchIter<D> {
    /// Shuffling batches of `batch_size` with the given seed, endless (see [`Self::epochs`]),
    /// keeping the short last batch of each epoch (see [`Self::drop_last`]).
    pub fn new(data: D, batch_size: usize, seed: u64) -> Result<Self> {
        let n = data.as_ref().len();
        if batch_size == 0 {
            return Err(DatasetError::InvalidParameters("batch size must be at least 1".into()));
        }
        if n == 0 {
            return Err(DatasetError::InvalidParameters(format!(
                "{}: cannot batch an empty dataset",
                data.as_ref().name
            )));
        }
        if n > u32::MAX as usize {
            return Err(DatasetError::InvalidParameters(format!("{}: too many images ({n})", data.as_ref().name)));
        }
        let state = BatchState { seed, epoch: 0, cursor: 0 };
        let order = epoch_order(n, seed, 0, true);
        Ok(Self { data, batch_size, drop_last: false, shuffle: true, epochs: None, state, order })
    }

    /// Drop each epoch's last batch when it is smaller than the batch size.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }

    /// Stop after this many epochs (default: never).
    pub fn epochs(mut self, epochs: u64) -> Self {
        self.epochs = Some(epochs);
        self
    }

    /// Deliver images in dataset order (for evaluation).
    pub fn shuffle(mut self, yes: bool) -> Self {
        self.shuffle = yes;
        self.order = epoch_order(self.order.len(), self.state.seed, self.state.epoch, yes);
        self
    }

    /// The current position.
    pub fn state(&self) -> BatchState {
        self.state
    }

    /// Moves to a saved position; the next batch is the one that followed it originally.
    pub fn restore(&mut self, state: BatchState) -> Result<()> {
        let n = self.order.len();
        if state.cursor > n {
            return Err(DatasetError::InvalidParameters(format!(
                "batch state cursor {} is beyond the {n} images of {}",
                state.cursor,
                self.data.as_ref().name
            )));
        }
        if state.seed != self.state.seed || state.epoch != self.state.epoch {
            self.order = epoch_order(n, state.seed, state.epoch, self.shuffle);
        }
        self.state = state;
        Ok(())
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.order.len();
        if self.drop_last { n / self.batch_size } else { n.div_ceil(self.batch_size) }
    }

    /// The dataset being batched.
    pub fn dataset(&self) -> &ImageDataset {
        self.data.as_ref()
    }

    fn next_epoch(&mut self) {
        self.state.epoch += 1;
        self.state.cursor = 0;
        self.order = epoch_order(self.order.len(), self.state.seed, self.state.epoch, self.shuffle);
    }

    /// Writes the next batch into `images`/`labels` (cleared first, capacity reused); returns the
    /// batch size, or `None` when the configured epochs are done.
    pub fn next_into(&mut self, images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Option<usize> {
        let n = self.order.len();
        loop {
            if self.epochs.is_some_and(|e| self.state.epoch >= e) {
                return None;
            }
            let left = n - self.state.cursor;
            if left == 0 || (self.drop_last && left < self.batch_size) {
                self.next_epoch();
                continue;
            }
            break;
        }
        let ds = self.data.as_ref();
        let len = ds.image_len();
        let take = self.batch_size.min(n - self.state.cursor);
        images.clear();
        labels.clear();
        images.reserve(take * len);
        labels.reserve(take);
        for &i in &self.order[self.state.cursor..self.state.cursor + take] {
            let i = i as usize;
            images.extend_from_slice(&ds.images[i * len..(i + 1) * len]);
            labels.push(ds.labels[i]);
        }
        self.state.cursor += take;
        Some(take)
    }
}

impl<D: AsRef<ImageDataset>> Iterator for BatchIter<D> {
    type Item = (Vec<f32>, Vec<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        self.next_into(&mut images, &mut labels)?;
        Some((images, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Split;

    fn numbered(n: usize) -> ImageDataset {
        // Image i is filled with the value i, label i % 10: batches reveal the order.
        let px: Vec<u8> = (0..n).flat_map(|i| std::iter::repeat_n(i as u8, 4)).collect();
        ImageDataset::from_u8("n", Split::Train, &px, (0..n as u32).map(|i| i % 10).collect(), [1, 2, 2]).unwrap()
    }

    fn ids(images: &[f32]) -> Vec<usize> {
        images.chunks(4).map(|c| c[0] as usize).collect()
    }

    #[test]
    fn each_epoch_is_a_permutation_and_epochs_differ() {
        let ds = numbered(100);
        let it = BatchIter::new(&ds, 32, 7).unwrap().epochs(2);
        let batches: Vec<_> = it.collect();
        assert_eq!(batches.len(), 8);
        assert_eq!(batches[3].1.len(), 4, "short last batch kept");
        let e0: Vec<usize> = batches[..4].iter().flat_map(|b| ids(&b.0)).collect();
        let e1: Vec<usize> = batches[4..].iter().flat_map(|b| ids(&b.0)).collect();
        let mut s0 = e0.clone();
        s0.sort();
        assert_eq!(s0, (0..100).collect::<Vec<_>>());
        assert_ne!(e0, e1);
        assert_ne!(e0, (0..100).collect::<Vec<_>>());
        for (imgs, labels) in &batches {
            for (id, l) in ids(imgs).iter().zip(labels) {
                assert_eq!(*id as u32 % 10, *l, "labels travel with images");
            }
        }
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let ds = numbered(50);
        let a: Vec<_> = BatchIter::new(&ds, 8, 1).unwrap().epochs(3).collect();
        let b: Vec<_> = BatchIter::new(&ds, 8, 1).unwrap().epochs(3).collect();
        let c: Vec<_> = BatchIter::new(&ds, 8, 2).unwrap().epochs(3).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn drop_last_and_no_shuffle() {
        let ds = numbered(10);
        let v: Vec<_> = BatchIter::new(&ds, 4, 0).unwrap().drop_last(true).shuffle(false).epochs(2).collect();
        assert_eq!(v.len(), 4);
        assert_eq!(ids(&v[0].0), vec![0, 1, 2, 3]);
        assert_eq!(ids(&v[2].0), vec![0, 1, 2, 3]);
        assert!(v.iter().all(|b| b.1.len() == 4));
        assert_eq!(BatchIter::new(&ds, 4, 0).unwrap().drop_last(true).batches_per_epoch(), 2);
        assert!(BatchIter::new(&ds, 0, 0).is_err());
    }

    #[test]
    fn resume_from_any_position_is_exact() {
        let ds = std::sync::Arc::new(numbered(37));
        let full: Vec<_> = BatchIter::new(ds.clone(), 5, 9).unwrap().epochs(4).collect();
        for stop in 0..full.len() {
            let mut it = BatchIter::new(ds.clone(), 5, 9).unwrap().epochs(4);
            for _ in 0..stop {
                it.next();
            }
            let saved = it.state();
            let mut resumed = BatchIter::new(ds.clone(), 5, 123).unwrap().epochs(4);
            resumed.restore(saved).unwrap();
            let rest: Vec<_> = resumed.collect();
            assert_eq!(rest, full[stop..].to_vec(), "resume after {stop} batches");
        }
        let mut it = BatchIter::new(ds, 5, 9).unwrap();
        assert!(it.restore(BatchState { seed: 9, epoch: 0, cursor: 38 }).is_err());
    }
}
