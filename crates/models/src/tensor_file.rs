//! Safetensors files as adapt writes and reads them: weights, checkpoints, optimizer state.
//!
//! * **Finite values.** Nothing non-finite is written ([`write`] refuses it, naming the tensor)
//!   and nothing non-finite is read ([`read`]): a NaN weight or momentum buffer is an error naming
//!   the file and the tensor, never a model that trains on or reports accuracies.
//! * **A digest.** [`write`] stores a SHA-256 of the metadata and of every tensor (name, dtype,
//!   shape, bytes) under [`DIGEST_KEY`], and [`read`] checks it: a flipped bit, a cut, a tensor
//!   swapped or an edited metadata value is an error rather than different weights. Files from
//!   elsewhere (no digest) still load where the caller allows it.
//! * **Only regular files**, of a bounded size, are opened (see [`adapt_datasets::files`]).
use adapt_datasets::files::read_regular;
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{SafeTensors, View};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Metadata key of the digest.
pub const DIGEST_KEY: &str = "adapt.sha256";

/// No weights or checkpoint file of these models comes near this (the SVHN net's checkpoint,
/// weights and momentum, is about 270 MB).
pub const MAX_TENSOR_FILE: u64 = 16 << 30;

/// A tensor file that cannot be written or used: `problem` says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct TensorFileError {
    pub path: PathBuf,
    pub problem: String,
}

impl From<TensorFileError> for candle_core::Error {
    fn from(e: TensorFileError) -> Self {
        candle_core::Error::msg(e.to_string())
    }
}

/// The first value of `t` that is NaN or infinite, as `(flat index, value)`; `None` when all are
/// finite (integer tensors always are).
pub fn first_non_finite(t: &Tensor) -> candle_core::Result<Option<(usize, f64)>> {
    fn scan<T: Copy + Into<f64>>(v: &[T]) -> Option<(usize, f64)> {
        v.iter().map(|&x| x.into()).enumerate().find(|(_, x): &(usize, f64)| !x.is_finite())
    }
    Ok(match t.dtype() {
        DType::F64 => scan(&t.flatten_all()?.to_vec1::<f64>()?),
        d if d.is_float() => scan(&t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        _ => None,
    })
}

/// Every tensor of `tensors` finite; otherwise the problem, naming the first tensor that is not.
pub fn check_finite<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<(), String> {
    for (name, t) in tensors {
        match first_non_finite(t) {
            Ok(None) => {}
            Ok(Some((i, v))) => {
                return Err(format!("tensor '{name}' holds a non-finite value ({v} at element {i} of {:?})", t.dims()));
            }
            Err(e) => return Err(format!("tensor '{name}' cannot be read: {e}")),
        }
    }
    Ok(())
}

/// SHA-256 (hex) of `metadata` (every key but [`DIGEST_KEY`], sorted) and of `tensors` (sorted by
/// name: name, dtype, shape, bytes), each field length-prefixed so no two contents hash alike.
pub fn digest<V: View>(metadata: &HashMap<String, String>, tensors: &[(&str, V)]) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let mut keys: Vec<(&String, &String)> = metadata.iter().filter(|(k, _)| k.as_str() != DIGEST_KEY).collect();
    keys.sort();
    field(&(keys.len() as u64).to_le_bytes());
    for (k, v) in keys {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].0.cmp(tensors[b].0));
    field(&(tensors.len() as u64).to_le_bytes());
    for i in order {
        let (name, t) = &tensors[i];
        field(name.as_bytes());
        field(format!("{:?}", t.dtype()).as_bytes());
        field(&t.shape().iter().flat_map(|&d| (d as u64).to_le_bytes()).collect::<Vec<u8>>());
        field(&t.data());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `tensors` and `metadata` (plus the digest) to `path` through a temporary file and a
/// rename, so a crash never leaves a half-written file under the final name; a non-finite value
/// is refused before anything is written.
pub fn write(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    mut metadata: HashMap<String, String>,
) -> Result<(), TensorFileError> {
    let err = |problem: String| TensorFileError { path: path.to_path_buf(), problem };
    check_finite(tensors.iter().map(|(n, t)| (n.as_str(), t)))
        .map_err(|p| err(format!("refusing to write it: {p}")))?;
    let file_name = path.file_name().ok_or_else(|| err("not a file path".into()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    // Contiguous CPU copies: `View::data` of a tensor copies it, and the digest and the file need
    // the same bytes.
    let tensors = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?.contiguous()?.detach())))
        .collect::<candle_core::Result<Vec<(String, Tensor)>>>()
        .map_err(|e| err(e.to_string()))?;
    let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    metadata.insert(DIGEST_KEY.into(), digest(&metadata, &views));
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| TensorFileError { path: tmp.clone(), problem: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// A tensor file read back by [`read`].
#[derive(Debug, Clone)]
pub struct TensorFile {
    pub metadata: HashMap<String, String>,
    pub tensors: HashMap<String, Tensor>,
    /// Whether the file had a digest (and it matched).
    pub sealed: bool,
}

/// Reads `path` onto `device`: a regular file of at most [`MAX_TENSOR_FILE`] bytes, a valid
/// safetensors layout, a matching digest (a file without one is refused when `require_digest`),
/// tensors of dtypes candle has, every value finite.
pub fn read(path: &Path, device: &Device, require_digest: bool) -> Result<TensorFile, TensorFileError> {
    let err = |problem: String| TensorFileError { path: path.to_path_buf(), problem };
    let bytes = read_regular(path, MAX_TENSOR_FILE).map_err(|e| err(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a readable safetensors file ({e})")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| err(format!("not a readable safetensors file ({e})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let views = st.tensors();
    let sealed = match metadata.get(DIGEST_KEY) {
        Some(saved) => {
            let refs: Vec<(&str, &safetensors::tensor::TensorView)> =
                views.iter().map(|(n, v)| (n.as_str(), v)).collect();
            if digest(&metadata, &refs) != *saved {
                return Err(err(format!(
                    "contents do not match the digest '{DIGEST_KEY}' written with them: the file was altered or damaged"
                )));
            }
            true
        }
        None if require_digest => {
            return Err(err(format!("metadata has no '{DIGEST_KEY}' (not a file written by adapt)")));
        }
        None => false,
    };
    let mut tensors = HashMap::with_capacity(views.len());
    for (name, view) in &views {
        let t = view.load(device).map_err(|e| err(format!("tensor '{name}': {e}")))?;
        tensors.insert(name.clone(), t);
    }
    check_finite(tensors.iter().map(|(n, t)| (n.as_str(), t))).map_err(err)?;
    Ok(TensorFile { metadata, tensors, sealed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("adapt-tensor-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_digest_and_refusals_name_the_file_and_the_tensor() {
        let dir = tmp("rt");
        let path = dir.join("w.safetensors");
        let w = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        let meta = HashMap::from([("step".to_string(), "3".to_string())]);
        write(&path, vec![("w".into(), w.clone())], meta.clone()).unwrap();
        let back = read(&path, &Device::Cpu, true).unwrap();
        assert!(back.sealed);
        assert_eq!(back.tensors["w"].to_vec1::<f32>().unwrap(), [1., 2., 3.]);
        assert_eq!(back.metadata["step"], "3");

        // One flipped bit in the data, or an edited metadata value, breaks the digest.
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let e = read(&path, &Device::Cpu, true).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("digest"), "{e}");
        let at = good.windows(10).position(|w| w == b"\"step\":\"3\"").unwrap();
        let mut edited = good.clone();
        edited[at + 8] = b'4';
        std::fs::write(&path, &edited).unwrap();
        assert!(read(&path, &Device::Cpu, true).unwrap_err().to_string().contains("digest"));

        // NaN is neither written nor read, and the error names the tensor.
        let nan = Tensor::new(&[1f32, f32::NAN], &Device::Cpu).unwrap();
        let e = write(&path, vec![("layer.weight".into(), nan.clone())], HashMap::new()).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("layer.weight") && e.contains("NaN"), "{e}");
        let plain = dir.join("plain.safetensors");
        candle_core::safetensors::save(&HashMap::from([("m".to_string(), nan)]), &plain).unwrap();
        let e = read(&plain, &Device::Cpu, false).unwrap_err().to_string();
        assert!(e.contains("plain.safetensors") && e.contains("'m'") && e.contains("non-finite"), "{e}");
        // A file without a digest is refused only where one is required.
        candle_core::safetensors::save(&HashMap::from([("w".to_string(), w)]), &plain).unwrap();
        assert!(!read(&plain, &Device::Cpu, false).unwrap().sealed);
        assert!(read(&plain, &Device::Cpu, true).unwrap_err().to_string().contains(DIGEST_KEY));
        std::fs::remove_dir_all(&dir).ok();
    }
}
