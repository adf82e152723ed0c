//! A minimal view of a labelled dataset as rows of `f32`, so samplers and evaluators can work on
//! any dataset (points, images) without knowing its type.

/// A dataset seen as `len()` rows of `row_shape()` values, each with a class label.
pub trait Rows: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one row, e.g. `[2]` for points or `[3, 28, 28]` for images.
    fn row_shape(&self) -> Vec<usize>;

    /// Copies row `i` into `out` (`out.len()` is the product of `row_shape()`).
    fn copy_row(&self, i: usize, out: &mut [f32]);

    fn label(&self, i: usize) -> u32;

    /// Values per row.
    fn row_len(&self) -> usize {
        self.row_shape().iter().product()
    }

    /// Rows `indices` stacked into one row-major buffer, with their labels.
    fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let n = self.row_len();
        let mut data = vec![0f32; indices.len() * n];
        for (chunk, &i) in data.chunks_exact_mut(n.max(1)).zip(indices) {
            self.copy_row(i, chunk);
        }
        (data, indices.iter().map(|&i| self.label(i)).collect())
    }
}

/// Some rows of another dataset, in a given order (e.g. a held-out validation split).
#[derive(Clone)]
pub struct Subset {
    inner: std::sync::Arc<dyn Rows>,
    indices: Vec<usize>,
}

impl Subset {
    /// Rows `indices` of `inner`; every index must be in range.
    pub fn new(inner: std::sync::Arc<dyn Rows>, indices: Vec<usize>) -> crate::Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= inner.len()) {
            return Err(crate::DatasetError::InvalidParameters(format!(
                "subset index {bad} is out of range for {} rows",
                inner.len()
            )));
        }
        Ok(Self { inner, indices })
    }

    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Rows for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn row_shape(&self) -> Vec<usize> {
        self.inner.row_shape()
    }

    fn copy_row(&self, i: usize, out: &mut [f32]) {
        self.inner.copy_row(self.indices[i], out)
    }

    fn label(&self, i: usize) -> u32 {
        self.inner.label(self.indices[i])
    }
}

/// Splits `rows` into (train, validation) with `validation` rows drawn by a seeded shuffle; the
/// validation rows never reach training.
pub fn validation_split(
    rows: std::sync::Arc<dyn Rows>,
    validation: usize,
    seed: u64,
) -> crate::Result<(Subset, Subset)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    if validation == 0 || validation >= rows.len() {
        return Err(crate::DatasetError::InvalidParameters(format!(
            "a validation split of {validation} rows needs between 1 and {} (the dataset has {} rows)",
            rows.len().saturating_sub(1),
            rows.len()
        )));
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let val = order.split_off(order.len() - validation);
    Ok((Subset::new(rows.clone(), order)?, Subset::new(rows, val)?))
}

impl Rows for crate::toy::Points2d {
    fn len(&self) -> usize {
        self.points.len()
    }

    fn row_shape(&self) -> Vec<usize> {
        vec![2]
    }

    fn copy_row(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.points[i]);
    }

    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
}

impl Rows for crate::ImageDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn row_shape(&self) -> Vec<usize> {
        vec![self.channels, self.height, self.width]
    }

    fn copy_row(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(self.image(i));
    }

    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::Points2d;

    #[test]
    fn gather_stacks_rows_in_order() {
        let p = Points2d { points: vec![[1., 2.], [3., 4.], [5., 6.]], labels: vec![0, 1, 0] };
        let (x, y) = p.gather(&[2, 0]);
        assert_eq!(x, vec![5., 6., 1., 2.]);
        assert_eq!(y, vec![0, 0]);
    }
}

#[cfg(test)]
mod subset_tests {
    use super::*;
    use crate::toy::make_moons;
    use std::sync::Arc;

    #[test]
    fn validation_split_partitions_the_rows() {
        let rows: Arc<dyn Rows> = Arc::new(make_moons(100, 0.1, 3).unwrap());
        let (train, val) = validation_split(rows.clone(), 20, 5).unwrap();
        assert_eq!((train.len(), val.len()), (80, 20));
        let mut all: Vec<usize> = train.indices().iter().chain(val.indices()).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let i = val.indices()[3];
        assert_eq!(val.label(3), rows.label(i));
        let (mut a, mut b) = (vec![0.0; 2], vec![0.0; 2]);
        val.copy_row(3, &mut a);
        rows.copy_row(i, &mut b);
        assert_eq!(a, b);
        let (_, again) = validation_split(rows.clone(), 20, 5).unwrap();
        assert_eq!(again.indices(), val.indices());
        let (_, other) = validation_split(rows.clone(), 20, 6).unwrap();
        assert_ne!(other.indices(), val.indices());
    }

    #[test]
    fn impossible_splits_are_errors() {
        let rows: Arc<dyn Rows> = Arc::new(make_moons(10, 0.1, 3).unwrap());
        for n in [0, 10, 11] {
            assert!(validation_split(rows.clone(), n, 0).is_err(), "{n}");
        }
        assert!(Subset::new(rows, vec![10]).is_err());
    }
}
