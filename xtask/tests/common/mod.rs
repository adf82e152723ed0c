//! Running the built `xtask` binary as a user would, with a time limit, and the fixtures the
//! command-line tests share.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary did.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The last stdout line as JSON (`--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.lines().last().unwrap_or("")).unwrap_or(serde_json::Value::Null)
    }
}

/// A fresh temporary folder path for this test (not created).
pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-xtask-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The binary with no data directory, no network and an empty Hugging Face cache.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args)
        .env_remove("ADAPT_DATA_DIR")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", std::env::temp_dir().join(format!("adapt-xtask-hf-{}", std::process::id())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` at most `limit`; a command that takes longer has hung.
pub fn wait(mut child: Child, limit: Duration, what: &str) -> Ran {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("{what}: still running after {limit:?} (hung)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    Ran {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// Runs `xtask ARGS` to its end (at most five minutes).
pub fn xtask(args: &[&str]) -> Ran {
    wait(command(args).spawn().unwrap(), Duration::from_secs(300), &args.join(" "))
}

/// Asserts the run failed and its error names every one of `needles`.
pub fn assert_fails(r: &Ran, what: &str, needles: &[&str]) {
    assert!(!r.ok, "{what}: exited 0\n{}{}", r.stdout, r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "{what}: the error does not name '{n}':\n{}", r.stderr);
    }
}

/// Rewrites the safetensors file at `path` after `edit`, with a digest matching the new contents
/// (what a buggy writer would leave): the checks behind the digest are then what is tested.
pub fn reseal(path: &Path, edit: impl FnOnce(&mut HashMap<String, candle_core::Tensor>, &mut HashMap<String, String>)) {
    use adapt_models::tensor_file::{DIGEST_KEY, digest};
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap_or_default();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).unwrap();
    edit(&mut tensors, &mut meta);
    let views: Vec<(&str, &candle_core::Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    meta.insert(DIGEST_KEY.into(), digest(&meta, &views));
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// `t` with its first value replaced by `v`.
pub fn poisoned(t: &candle_core::Tensor, v: f32) -> candle_core::Tensor {
    let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[0] = v;
    candle_core::Tensor::from_vec(values, t.shape(), &candle_core::Device::Cpu).unwrap()
}

/// Every tensor of a safetensors file, as raw values.
pub fn weights(path: &Path) -> HashMap<String, Vec<f32>> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    tensors.into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

/// A small data directory with MNIST (IDX) and USPS (ESL text): `n` training and `n / 2` test
/// images each, deterministic pixels, labels cycling through the digits.
pub fn digits_data_dir(root: &Path, n: usize) {
    let mnist = root.join("mnist");
    let usps = root.join("usps");
    std::fs::create_dir_all(&mnist).unwrap();
    std::fs::create_dir_all(&usps).unwrap();
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    };
    for (prefix, count) in [("train", n), ("t10k", n / 2)] {
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        // A bright bar whose position depends on the label: something a net can learn.
        let px: Vec<u8> = (0..count)
            .flat_map(|i| (0..784).map(move |p| if (p / 28) / 3 == i % 10 { 255 } else { ((i * 7 + p) % 40) as u8 }))
            .collect();
        std::fs::write(mnist.join(format!("{prefix}-images-idx3-ubyte")), idx(&[count as u32, 28, 28], &px)).unwrap();
        std::fs::write(mnist.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[count as u32], &labels)).unwrap();
    }
    for (split, count) in [("train", n), ("test", n / 2)] {
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!("{}.0000", i % 10));
            for p in 0..256 {
                let v = if (p / 16) / 2 == i % 8 { 1.0 } else { -1.0 + ((i + p) % 5) as f32 * 0.1 };
                text.push_str(&format!(" {v:.4}"));
            }
            text.push('\n');
        }
        std::fs::write(usps.join(format!("zip.{split}")), text).unwrap();
    }
}

/// The real data folder (ADAPT_DATA_DIR) when it holds every one of `folders`; else `None`,
/// printing "skipped: no data", or a failure naming the folder when ADAPT_REQUIRE_DATA is set.
pub fn real_data(folders: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("ADAPT_DATA_DIR").map(PathBuf::from);
    let ok = dir.as_ref().is_some_and(|d| folders.iter().all(|n| d.join(n).is_dir()));
    if !ok {
        assert!(
            std::env::var_os("ADAPT_REQUIRE_DATA").is_none(),
            "ADAPT_REQUIRE_DATA is set, but ADAPT_DATA_DIR ({dir:?}) lacks one of {folders:?}"
        );
        println!("skipped: no data (set ADAPT_DATA_DIR)");
    }
    dir.filter(|_| ok)
}
