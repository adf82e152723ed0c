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
