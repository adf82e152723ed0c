//! SVHN cropped digits (`train_32x32.mat`, `test_32x32.mat`, `extra_32x32.mat`) and SynDigits
//! (`synth_train_32x32.mat`, ...), which use the same layout: `X` uint8 `(32, 32, 3, N)` in
//! MATLAB's column-major order and `y` `(N, 1)` with digits 1..10, where 10 means 0.
use crate::mat::{MatArray, MatData, read_mat};
use crate::raw::format_err;
use crate::{ImageDataset, Result, Split};
use std::path::Path;

/// Loads an SVHN-layout `.mat` file. The name is `svhn`; callers rename it for SynDigits.
pub fn load_mat(path: &Path, split: Split) -> Result<ImageDataset> {
    let arrays = read_mat(path)?;
    from_arrays(path, &arrays, split)
}

/// Builds the dataset from the decoded `X` and `y` variables of `path`.
pub fn from_arrays(path: &Path, arrays: &[MatArray], split: Split) -> Result<ImageDataset> {
    let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
    let find = |n: &str| {
        let mut found = arrays.iter().filter(|a| a.name == n);
        match (found.next(), found.next()) {
            (Some(a), None) => Ok(a),
            // Which of two would be the images is anyone's guess: neither is taken.
            (Some(_), Some(_)) => {
                Err(format_err(path, format!("variable '{n}' appears more than once (variables: {names:?})")))
            }
            (None, _) => Err(format_err(path, format!("no numeric variable '{n}' (variables: {names:?})"))),
        }
    };
    let x = find("X")?;
    let y = find("y")?;
    // MATLAB drops trailing singleton dimensions, so a one-image file is (32, 32, 3).
    let (h, w, c, n) = match x.dims[..] {
        [h, w, c, n] => (h, w, c, n),
        [h, w, c] => (h, w, c, 1),
        _ => return Err(format_err(path, format!("X has dimensions {:?}, expected (H, W, 3, N)", x.dims))),
    };
    if c != 3 || h == 0 || w == 0 {
        return Err(format_err(path, format!("X has dimensions {:?}, expected (H, W, 3, N)", x.dims)));
    }
    if y.data.len() != n || y.dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(format_err(path, format!("y has dimensions {:?} for {n} images in X", y.dims)));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get(i);
        // SVHN writes the digit 0 as 10, so 0 is no label at all (a file with 0..9 labels is not SVHN's layout).
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(format_err(path, format!("label y[{i}] = {v} is out of range 1..10 (10 is the digit 0)")));
        }
        labels.push(v as u32 % 10); // 10 is the digit 0
    }
    // Column-major (H, W, C, N): element (r, c, ch, i) sits at r + H*(c + W*(ch + 3*i)).
    // Planar row-major [N, C, H, W] wants it at c + W*(r + H*(ch + 3*i)): transpose each plane.
    let plane = h * w;
    let mut px = vec![0u8; n * 3 * plane];
    let value = |k: usize| -> Result<u8> {
        match &x.data {
            MatData::U8(v) => Ok(v[k]),
            MatData::F64(v) => {
                let f = v[k];
                if (0.0..=255.0).contains(&f) {
                    Ok(f.round() as u8)
                } else {
                    Err(format_err(path, format!("X value {f} at element {k} is outside 0..255")))
                }
            }
        }
    };
    for p in 0..n * 3 {
        let base = p * plane;
        for col in 0..w {
            for row in 0..h {
                px[base + row * w + col] = value(base + col * h + row)?;
            }
        }
    }
    let mut ds = ImageDataset::from_u8("svhn", split, &px, labels, [3, h, w])?;
    ds.origin = path.display().to_string();
    Ok(ds)
}
