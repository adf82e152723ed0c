//! Fuzz targets for the files a run folder holds, on the engine of [`adapt_datasets::fuzz`]:
//! `checkpoint` (loaded and restored into a trainer and sampler, as `--resume` does), `weights`
//! (read as `eval` reads a weights file), `metrics` (cut back on resume), `summary` (read by
//! `report`), `recipe` (read by `--resume` and `eval`) and `config` (compared on resume).
//!
//! The fixtures come from a real toy run (trained once, interrupted after a checkpoint, and
//! unbroken). Corruptions are structural (truncations, header and size fields, encodings, file
//! kinds, duplicates) and semantic (values no run writes: NaN weights, a sampler position the
//! step does not reach, an accuracy of 7.5). Some edits of the safetensors files come with a
//! digest that matches them, as a buggy writer would leave them, so that the checks behind the
//! digest are exercised too. A replaced value that is itself valid (a weight changed to another
//! finite number under a matching digest, a recipe of another valid length) is a different valid
//! file, not a corruption, and is not generated.
use crate::error::{ExperimentError, Result};
use crate::files::{RecordSchedule, check_saved_config, read_metrics};
use crate::recipe::{Recipe, RunOptions, RunRecord, ToyRecipe};
use crate::summary::RunSummary;
use crate::toy::ToyRunConfig;
use crate::weights::{RunConfig, read_weights_info};
use adapt_datasets::DomainPair;
use adapt_datasets::fuzz::mutate::{self, Kind};
use adapt_datasets::fuzz::{Case, Rng, Target, fingerprint};
use adapt_models::ParamStore;
use adapt_models::tensor_file::{DIGEST_KEY, digest};
use adapt_train::batches::MixedSampler;
use adapt_train::checkpoint::{self, CHECKPOINT_FILE};
use adapt_train::{DannTrainer, Method, StepMetrics};
use candle_core::Device;
use rand::Rng as _;
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The run the fixtures come from, trained once per process.
struct Fixture {
    cfg: ToyRunConfig,
    data: DomainPair,
    checkpoint: Vec<u8>,
    checkpoint_fp: u64,
    weights: Vec<u8>,
    weights_fp: u64,
    summary: String,
    summary_fp: u64,
    recipe: String,
    recipe_fp: u64,
    config: String,
    config_value: RunConfig,
    metrics: Vec<String>,
    metrics_fp: u64,
}

const METRICS_UP_TO: usize = 30;
const METRICS_SCHEDULE: RecordSchedule = RecordSchedule { every: 5, steps: 62 };

static FIXTURE: OnceLock<std::result::Result<Fixture, String>> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| build_fixture().map_err(|e| e.to_string())).as_ref().expect("the toy fixture run trains")
}

fn build_fixture() -> Result<Fixture> {
    let root = std::env::temp_dir().join(format!("adapt-fuzz-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let recipe = ToyRecipe { steps: 100, batch_size: 16, lr: 0.05, ..ToyRecipe::new(vec![Method::Dann], 5) };
    let (stopped, finished) = (root.join("stopped"), root.join("finished"));
    let opts = |out: &Path, stop: Option<usize>| RunOptions {
        out: Some(out.to_path_buf()),
        quiet: true,
        checkpoint_every: 25,
        stop_after: stop,
        ..RunOptions::default()
    };
    let device = Device::Cpu;
    if crate::toy::run(&recipe, &opts(&stopped, Some(50)), &device).is_ok() {
        return Err(ExperimentError::Invalid("the fixture run was not stopped".into()));
    }
    crate::toy::run(&recipe, &opts(&finished, None), &device)?;
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| ExperimentError::io(p, e));
    let text = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| ExperimentError::io(p, e));
    let cfg = ToyRunConfig::new(&recipe, Method::Dann);
    let (_, data) = cfg.data()?;
    let mut metrics = Vec::new();
    let mut rng = <Rng as rand::SeedableRng>::seed_from_u64(3);
    for k in 0.. {
        let step = METRICS_SCHEDULE.step_of(k);
        if k > 0 && step == METRICS_SCHEDULE.step_of(k - 1) {
            break;
        }
        let r = StepMetrics {
            step,
            label_loss: rng.random_range(0.0..2.0),
            domain_loss: rng.random_range(0.0..2.0),
            label_acc: rng.random_range(0.0..1.0),
            domain_acc: rng.random_range(0.0..1.0),
            pseudo_label_rate: rng.random_range(0.0..1.0),
            lambda: rng.random_range(0.0..1.0),
            lr: rng.random_range(0.001..0.05),
        };
        metrics.push(serde_json::to_string(&r).map_err(|e| ExperimentError::Invalid(e.to_string()))?);
    }
    let mut f = Fixture {
        config_value: crate::files::read_config(&stopped.join(crate::files::CONFIG_FILE))?,
        cfg,
        data,
        checkpoint: read(stopped.join(CHECKPOINT_FILE))?,
        checkpoint_fp: 0,
        weights: read(finished.join(crate::files::MODEL_FILE))?,
        weights_fp: 0,
        summary: text(finished.join(crate::summary::SUMMARY_FILE))?,
        summary_fp: 0,
        recipe: text(stopped.join(crate::files::RECIPE_FILE))?,
        recipe_fp: 0,
        config: text(stopped.join(crate::files::CONFIG_FILE))?,
        metrics,
        metrics_fp: 0,
    };
    // The expected fingerprints: what the readers give for the untouched files.
    let dir = root.join("pristine");
    std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| ExperimentError::io(dir.join(name), e))
    };
    write(CHECKPOINT_FILE, &f.checkpoint)?;
    f.checkpoint_fp = load_checkpoint(&f, &dir)?;
    write(crate::files::MODEL_FILE, &f.weights)?;
    f.weights_fp = load_weights(&f, &dir)?;
    write(crate::summary::SUMMARY_FILE, f.summary.as_bytes())?;
    f.summary_fp = load_summary(&dir)?;
    write(crate::files::RECIPE_FILE, f.recipe.as_bytes())?;
    f.recipe_fp = load_recipe(&dir)?;
    write(crate::files::METRICS_FILE, (f.metrics.join("\n") + "\n").as_bytes())?;
    f.metrics_fp = load_metrics(&dir)?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(f)
}

fn tensor_fp(params: &ParamStore, extra: &HashMap<String, candle_core::Tensor>) -> Result<u64> {
    let mut all: Vec<(String, Vec<u32>)> = Vec::new();
    for (name, t) in params.tensors().into_iter().chain(extra.iter().map(|(k, v)| (k.clone(), v.clone()))) {
        all.push((
            name,
            t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect(),
        ));
    }
    all.sort();
    Ok(fingerprint(&all))
}

fn load_checkpoint(f: &Fixture, dir: &Path) -> Result<u64> {
    let device = Device::Cpu;
    let params = ParamStore::new(f.cfg.train.seed ^ 0xff);
    let model = f.cfg.build_model(&params, &device)?;
    let path = dir.join(CHECKPOINT_FILE);
    let resume = checkpoint::load(&path, &params, &device)?;
    let mut sampler = MixedSampler::new(
        f.data.source_train.clone(),
        f.data.target_train.clone(),
        f.cfg.train.batch_size,
        f.cfg.train.seed,
    )?;
    DannTrainer::new(&model, &params, &f.cfg.train)?.restore(&path, &resume, &mut sampler)?;
    let state = sampler.state();
    let positions = [state.source.epoch, state.source.offset as u64, state.target.epoch, state.target.offset as u64];
    Ok(fingerprint(&(tensor_fp(&params, &resume.optimizer_state)?, resume.step, resume.steps, positions)))
}

fn load_weights(f: &Fixture, dir: &Path) -> Result<u64> {
    let path = dir.join(crate::files::MODEL_FILE);
    let (info, at) = read_weights_info(&path)?;
    let params = ParamStore::new(f.cfg.train.seed ^ 0xff);
    f.cfg.build_model(&params, &Device::Cpu)?;
    params.load(&path)?;
    Ok(fingerprint(&(format!("{:?} {} {at:?}", info.config, info.input), tensor_fp(&params, &HashMap::new())?)))
}

fn load_summary(dir: &Path) -> Result<u64> {
    let s = RunSummary::read(dir)?
        .ok_or_else(|| ExperimentError::file(&dir.join(crate::summary::SUMMARY_FILE), "missing"))?;
    Ok(fingerprint(&format!("{s:?}")))
}

fn load_recipe(dir: &Path) -> Result<u64> {
    let path = dir.join(crate::files::RECIPE_FILE);
    let r = RunRecord::read(dir)?.ok_or_else(|| ExperimentError::file(&path, "missing"))?;
    // What `--resume` checks before anything else: the batch must fit the data.
    if let Recipe::Toy(t) = &r.recipe {
        let (_, data) = ToyRunConfig::new(t, Method::Dann).data()?;
        crate::pair::check_batch(&data, t.batch_size).map_err(|e| ExperimentError::file(&path, e))?;
    }
    Ok(fingerprint(&format!("{r:?}")))
}

fn load_metrics(dir: &Path) -> Result<u64> {
    let (records, _) =
        read_metrics::<StepMetrics>(&dir.join(crate::files::METRICS_FILE), METRICS_UP_TO, METRICS_SCHEDULE)?;
    Ok(fingerprint(&format!("{records:?}")))
}

fn err(r: Result<u64>) -> std::result::Result<u64, String> {
    r.map_err(|e| e.to_string())
}

fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// Writes `bytes` to `dir/name`, and with `replace` puts another kind of entry in its place
/// (after which no load is correct, but through a link to a copy).
fn place(
    rng: &mut Rng,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    replace: bool,
    what: &mut String,
    expect: &mut Option<u64>,
) {
    let path = dir.join(name);
    let _ = std::fs::write(&path, bytes);
    if replace {
        let kind = Kind::pick(rng);
        *what = mutate::replace_with(&path, kind, bytes);
        if kind != Kind::LinkToCopy {
            *expect = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors files: checkpoints and weights

/// One tensor of a safetensors file, as raw bytes.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Entry {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn parse_st(bytes: &[u8]) -> (HashMap<String, String>, Vec<Entry>) {
    let st = SafeTensors::deserialize(bytes).expect("the fixture is valid");
    let (_, md) = SafeTensors::read_metadata(bytes).expect("the fixture is valid");
    let mut entries: Vec<Entry> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| Entry { name, dtype: v.dtype(), shape: v.shape().to_vec(), data: v.data().to_vec() })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    (md.metadata().clone().unwrap_or_default(), entries)
}

/// The file of `meta` and `entries`, its digest recomputed when `seal` (else the old one kept).
fn build_st(mut meta: HashMap<String, String>, entries: &[Entry], seal: bool) -> Vec<u8> {
    if seal {
        let views: Vec<(&str, &Entry)> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
        meta.insert(DIGEST_KEY.into(), digest(&meta, &views));
    }
    safetensors::serialize(entries.iter().map(|e| (e.name.clone(), e)), Some(meta)).expect("serialisable")
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// `e` converted to another dtype, values kept as near as the dtype allows.
fn convert(e: &Entry, to: Dtype) -> Entry {
    let v = f32s(&e.data);
    let data: Vec<u8> = match to {
        Dtype::I32 => v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect(),
        Dtype::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
        Dtype::U32 => v.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect(),
        Dtype::U8 => v.iter().map(|x| *x as u8).collect(),
        Dtype::F64 => v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect(),
        // bfloat16 is the upper half of an f32.
        _ => v.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect(),
    };
    Entry { dtype: to, data, ..e.clone() }
}

/// The edits both safetensors targets make. `keys` are the metadata keys with values no writer
/// produces for them.
fn mutate_st(rng: &mut Rng, good: &[u8], keys: &[(&str, &[&str])], what: &mut String) -> Vec<u8> {
    let (meta, entries) = parse_st(good);
    let seal = rng.random_bool(0.5);
    let sealed = if seal { " (digest matching the edit)" } else { " (digest of the original)" };
    let floats: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].dtype == Dtype::F32).collect();
    let i = pick(rng, &floats);
    let name = entries[i].name.clone();
    match rng.random_range(0..12) {
        0 => {
            let (t, k) = mutate::truncate(rng, good);
            *what = format!("truncated at byte {k}");
            t
        }
        1 => {
            let mut b = good.to_vec();
            let old = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let v = pick(rng, &[0, 1, old + 1, old - 1, old + 8, u64::MAX, 1 << 40, b.len() as u64]);
            b[..8].copy_from_slice(&v.to_le_bytes());
            *what = format!("header length {v} (was {old})");
            b
        }
        2 => {
            let mut b = good.to_vec();
            let k = mutate::flip(rng, &mut b, 0..usize::MAX);
            *what = format!("byte {k} flipped");
            b
        }
        3 => {
            let to = pick(rng, &[Dtype::I32, Dtype::I64, Dtype::U32, Dtype::U8, Dtype::F64, Dtype::BF16]);
            let mut e = entries.clone();
            e[i] = convert(&e[i], to);
            *what = format!("'{name}' stored as {to:?}{sealed}");
            build_st(meta, &e, seal)
        }
        4 => {
            let mut e = entries.clone();
            let n: usize = e[i].shape.iter().product();
            e[i].shape = if e[i].shape.len() > 1 { e[i].shape.iter().rev().copied().collect() } else { vec![1, n] };
            if e[i].shape == entries[i].shape {
                e[i].shape = vec![n, 1, 1];
            }
            *what = format!("'{name}' of shape {:?}{sealed}", e[i].shape);
            build_st(meta, &e, seal)
        }
        5 => {
            let mut e = entries.clone();
            e.remove(i);
            *what = format!("'{name}' left out{sealed}");
            build_st(meta, &e, seal)
        }
        6 => {
            let mut e = entries.clone();
            let stray =
                pick(rng, &["stray.weight", "features.fc9.weight", "optim.adam.F.0.m", "optim.velocity.nowhere"]);
            e.push(Entry { name: stray.into(), ..e[i].clone() });
            *what = format!("an extra tensor '{stray}'{sealed}");
            build_st(meta, &e, seal)
        }
        7 => {
            let mut e = entries.clone();
            let mut v = f32s(&e[i].data);
            let k = rng.random_range(0..v.len());
            v[k] = pick(rng, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
            e[i].data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            *what = format!("'{name}'[{k}] = {}{}", v[k], " (digest matching the edit)");
            build_st(meta, &e, true)
        }
        8 => {
            let (key, bad) = pick(rng, keys);
            let mut m = meta.clone();
            match rng.random_range(0..4) {
                0 => {
                    m.remove(key);
                    *what = format!("metadata '{key}' removed{sealed}");
                }
                1 if !bad.is_empty() => {
                    let v = pick(rng, bad);
                    m.insert(key.into(), v.into());
                    *what = format!("metadata '{key}' = {v:?}{sealed}");
                }
                _ => {
                    m.insert("comment".into(), "added by hand".into());
                    *what = format!("an unknown metadata key{sealed}");
                }
            }
            build_st(m, &entries, seal)
        }
        9 => {
            // The header's JSON with a key given twice (the later one pointing elsewhere).
            let n = u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
            let header = String::from_utf8_lossy(&good[8..8 + n]).into_owned();
            let twin = format!("\"{name}\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}},");
            let header = header.replacen('{', &format!("{{{twin}"), 1);
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend(header.as_bytes());
            b.extend(&good[8 + n..]);
            *what = format!("'{name}' twice in the header");
            b
        }
        10 => {
            let n = u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
            let (insert, how): (&[u8], &str) = if rng.random_bool(0.5) {
                (b"\xef\xbb\xbf", "a byte-order mark")
            } else {
                (b"        ", "trailing spaces")
            };
            let at = if how == "trailing spaces" { 8 + n } else { 8 };
            let mut b = ((n + insert.len()) as u64).to_le_bytes().to_vec();
            b.extend(&good[8..at]);
            b.extend(insert);
            b.extend(&good[at..]);
            *what = format!("header JSON with {how}");
            b
        }
        _ => {
            // A declared size the bytes cannot back, written into the header as it is.
            let big = pick(rng, &[1usize << 20, 1 << 40, usize::MAX / 8]);
            *what = format!("'{name}' declares {big} rows");
            let n = u64::from_le_bytes(good[..8].try_into().expect("8 bytes")) as usize;
            let mut header: Value = serde_json::from_slice(&good[8..8 + n]).expect("the fixture is valid");
            header[name.as_str()]["shape"][0] = json!(big);
            let text = serde_json::to_vec(&header).expect("serialisable");
            let mut b = (text.len() as u64).to_le_bytes().to_vec();
            b.extend(text);
            b.extend(&good[8 + n..]);
            b
        }
    }
}

/// `checkpoint.safetensors` of an interrupted toy DANN run, loaded and restored as `--resume`
/// does it (parameters, momentum, step, sampler position checked against the data).
pub struct CheckpointTarget;

impl Target for CheckpointTarget {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.checkpoint_fp);
        let op = rng.random_range(0..14);
        let mut what = "valid checkpoint".to_string();
        let keys: [(&str, &[&str]); 4] = [
            ("format", &["adapt-checkpoint-v3", "", "adapt-weights-v2"]),
            ("step", &["0", "49", "51", "25", "-1", "x", "18446744073709551615", "1e3"]),
            ("steps", &["99", "101", "0", "x", "-100"]),
            (
                "sampler",
                &[
                    r#"{"source":{"epoch":5,"offset":99999999},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":18446744073709551615,"offset":50},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":-1,"offset":50},"target":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":5,"offset":50}}"#,
                    r#"{"source":{"epoch":5,"offset":50},"target":{"epoch":5,"offset":51}}"#,
                    r#"{"source":"#,
                ],
            ),
        ];
        let bytes = match op {
            0..=11 => mutate_st(rng, &f.checkpoint, &keys, &mut what),
            12 => {
                what = "the checkpoint of another model (a file of weights only)".into();
                let (meta, entries) = parse_st(&f.checkpoint);
                let weights: Vec<Entry> = entries.into_iter().filter(|e| !e.name.starts_with("optim.")).collect();
                build_st(meta, &weights, true)
            }
            _ => f.checkpoint.clone(),
        };
        let replace = op == 13 && rng.random_bool(0.6);
        place(rng, dir, CHECKPOINT_FILE, &bytes, replace, &mut what, &mut expect);
        Case { what, expect, names: vec![CHECKPOINT_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_checkpoint(fixture(), dir))
    }
}

/// `model.safetensors` of a finished toy run, read as `eval` reads a weights file.
pub struct WeightsTarget;

impl Target for WeightsTarget {
    fn name(&self) -> &'static str {
        "weights"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.weights_fp);
        let op = rng.random_range(0..13);
        let mut what = "valid weights".to_string();
        let keys: [(&str, &[&str]); 4] = [
            ("format", &["adapt-weights-v3", "", "adapt-checkpoint-v2"]),
            ("adapt.config", &["{}", "[", r#"{"kind":"toy"}"#, r#"{"kind":"gta"}"#, "null"]),
            ("adapt.input", &["[", "", "{\"input\":"]),
            (
                "adapt.step",
                &[
                    r#"{"step":0,"selection":"last"}"#,
                    r#"{"step":101,"selection":"last"}"#,
                    r#"{"step":-1}"#,
                    "{}",
                    "x",
                    r#"{"step":100,"selection":"best"}"#,
                ],
            ),
        ];
        let bytes = if op < 12 { mutate_st(rng, &f.weights, &keys, &mut what) } else { f.weights.clone() };
        let replace = op == 12 && rng.random_bool(0.6);
        place(rng, dir, crate::files::MODEL_FILE, &bytes, replace, &mut what, &mut expect);
        Case { what, expect, names: vec![crate::files::MODEL_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_weights(fixture(), dir))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON and TOML run files

/// A JSON document `good` after one edit: fields set to values no run writes (`bad`, by path),
/// removed, added, repeated, re-encoded, reformatted, or cut.
fn mutate_json(rng: &mut Rng, good: &str, bad: &[(&[&str], Vec<Value>)], what: &mut String) -> Vec<u8> {
    let doc: Value = serde_json::from_str(good).expect("the fixture is valid");
    let set = |path: &[&str], v: Option<Value>| {
        let mut d = doc.clone();
        let mut at = &mut d;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        let last = path[path.len() - 1];
        if let Value::Object(m) = at {
            match v {
                Some(v) => {
                    m.insert(last.into(), v);
                }
                None => {
                    m.remove(last);
                }
            }
        }
        serde_json::to_string_pretty(&d).expect("serialisable")
    };
    match rng.random_range(0..10) {
        0 => {
            let (t, k) = mutate::truncate(rng, good.as_bytes());
            *what = format!("cut at byte {k}");
            t
        }
        1 | 2 => {
            let (path, values) = pick(rng, bad);
            let v = pick(rng, &values);
            *what = format!("{} = {v}", path.join("."));
            set(path, Some(v)).into_bytes()
        }
        3 => {
            let (path, _) = pick(rng, bad);
            *what = format!("{} removed", path.join("."));
            set(path, None).into_bytes()
        }
        4 => {
            let (path, _) = pick(rng, bad);
            let mut p: Vec<&str> = path[..path.len() - 1].to_vec();
            p.push("added_by_hand");
            *what = format!("an unknown field {}", p.join("."));
            set(&p, Some(json!("x"))).into_bytes()
        }
        5 => {
            let (path, _) = pick(rng, bad);
            let key = path[0];
            let compact = serde_json::to_string(&doc).expect("serialisable");
            *what = format!("{key} given twice");
            compact.replacen('{', &format!("{{\"{key}\":{},", doc[key]), 1).into_bytes()
        }
        6 => {
            let (b, how, _) = mutate::reencode(rng, good);
            *what = format!("with {how}");
            b
        }
        7 => {
            *what = "reformatted".into();
            if rng.random_bool(0.5) {
                serde_json::to_vec(&doc).expect("serialisable")
            } else {
                format!("\n  {good}  \n").into_bytes()
            }
        }
        8 => {
            let v = pick(rng, &["[]", "null", "\"x\"", "1", "", "{}"]);
            *what = format!("the document {v:?}");
            v.as_bytes().to_vec()
        }
        _ => {
            *what = "valid".into();
            good.as_bytes().to_vec()
        }
    }
}

/// A finished run's `summary.json`, as `report` reads it.
pub struct SummaryTarget;

fn nums(v: &[f64]) -> Vec<Value> {
    v.iter().map(|x| json!(x)).collect()
}

impl Target for SummaryTarget {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let acc = || [nums(&[7.5, -0.1, 1.0000001, 100.0]), vec![json!("0.9"), Value::Null, json!(true)]].concat();
        let bad: Vec<(&[&str], Vec<Value>)> = vec![
            (&["kind"], vec![json!("digits"), json!("gta"), json!("toyx"), json!(3)]),
            (&["method"], vec![json!("dan"), json!(""), json!(5), json!("gta-full")]),
            (&["source"], vec![json!("mnist"), json!(""), json!("moons2"), Value::Null]),
            (&["target"], vec![json!("usps"), json!("moons"), json!("")]),
            (&["seed"], vec![json!(-1), json!(1.5), json!("5"), json!(1e30)]),
            (&["source_acc"], acc()),
            (&["target_acc"], acc()),
            (&["domain_acc"], acc()),
            (&["a_distance"], vec![json!(2.5), json!(-2.1), Value::Null, json!("x")]),
            (&["target_ari"], nums(&[1.5, -1.01])),
            (&["source_val_acc"], vec![json!(1.5), json!(-1), json!("x")]),
            (&["selected_step"], vec![json!(0), json!(101), json!(-1), json!(1.5)]),
            (&["selection"], vec![json!("best"), json!(1), json!("source-val")]),
            (&["weights"], vec![json!("x.safetensors"), json!("best.safetensors"), json!("")]),
            (&["seconds"], vec![json!(-1), json!("x"), Value::Null]),
            (&["steps"], vec![json!(0), json!(-1), json!(1.5), json!(99)]),
            (&["resumed_at"], vec![json!(0), json!(101), json!(-5), json!("x")]),
            (&["run_dir"], vec![json!(5), json!([])]),
        ];
        let mut what = String::new();
        let mut expect = Some(f.summary_fp);
        let op = rng.random_range(0..12);
        let bytes = match op {
            10 => {
                mutate::sparse(&dir.join(crate::summary::SUMMARY_FILE), 65 << 20);
                what = "a 65 MB summary".into();
                expect = None;
                return Case { what, expect, names: vec![crate::summary::SUMMARY_FILE.into()] };
            }
            _ => mutate_json(rng, &f.summary, &bad, &mut what),
        };
        place(rng, dir, crate::summary::SUMMARY_FILE, &bytes, op == 11, &mut what, &mut expect);
        Case { what, expect, names: vec![crate::summary::SUMMARY_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_summary(dir))
    }
}

/// An interrupted run's `recipe.json`, as `--resume` reads it.
pub struct RecipeTarget;

impl Target for RecipeTarget {
    fn name(&self) -> &'static str {
        "recipe"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let bad: Vec<(&[&str], Vec<Value>)> = vec![
            (&["recipe", "kind"], vec![json!("digits"), json!("gta"), json!("foo"), json!(1)]),
            (
                &["recipe", "methods"],
                vec![json!([]), json!(["foo"]), json!("dann"), json!([1]), json!(["dann", "dann"])],
            ),
            (&["recipe", "seed"], vec![json!(-1), json!(1.5), json!("5"), json!(1e20)]),
            (&["recipe", "steps"], vec![json!(0), json!(-1), json!(1.5), json!("x")]),
            (&["recipe", "batch_size"], vec![json!(0), json!(151), json!(1e12), json!(-1), json!(100000000)]),
            (&["recipe", "lr"], vec![json!(0), json!(-1), json!("nan"), json!(-0.0), Value::Null, json!("0.05")]),
            (&["data_dir"], vec![json!(5), json!([])]),
            (&["checkpoint_every"], vec![json!(-1), json!(1.5), json!("x")]),
        ];
        let mut what = String::new();
        let mut expect = Some(f.recipe_fp);
        let op = rng.random_range(0..11);
        let bytes = mutate_json(rng, &f.recipe, &bad, &mut what);
        place(rng, dir, crate::files::RECIPE_FILE, &bytes, op == 10, &mut what, &mut expect);
        Case { what, expect, names: vec![crate::files::RECIPE_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_recipe(dir))
    }
}

/// An interrupted run's `config.toml`, compared with the configuration a resume rebuilds.
pub struct ConfigTarget;

impl Target for ConfigTarget {
    fn name(&self) -> &'static str {
        "config"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(fingerprint("same configuration"));
        let mut lines: Vec<String> = f.config.lines().map(str::to_string).collect();
        let values: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
        let k = pick(rng, &values);
        let key = lines[k].split(" = ").next().unwrap_or("").to_string();
        let op = rng.random_range(0..10);
        let mut what = "valid configuration".to_string();
        let mut bytes: Vec<u8> = match op {
            0 => {
                let v = pick(
                    rng,
                    &[
                        "0",
                        "-1",
                        "1e400",
                        "nan",
                        "inf",
                        "\"x\"",
                        "true",
                        "[1]",
                        "{}",
                        "",
                        "1.5",
                        "99999999999999999999",
                    ],
                );
                lines[k] = format!("{key} = {v}");
                what = format!("{key} = {v}");
                lines.join("\n").into_bytes()
            }
            1 => {
                let line = lines.remove(k);
                what = format!("line '{line}' removed");
                lines.join("\n").into_bytes()
            }
            2 => {
                let line = lines[k].clone();
                lines.insert(k, line.clone());
                what = format!("line '{line}' twice");
                lines.join("\n").into_bytes()
            }
            3 => {
                lines.insert(k, "# a comment".into());
                lines.insert(k, String::new());
                what = "comments and blank lines".into();
                lines.join("\n").into_bytes()
            }
            4 => {
                let (t, c) = mutate::truncate(rng, f.config.as_bytes());
                what = format!("cut at byte {c}");
                t
            }
            5 => {
                let (b, how, _) = mutate::reencode(rng, &f.config);
                what = format!("with {how}");
                b
            }
            6 => {
                lines.insert(k + 1, "added_by_hand = 1".into());
                what = format!("an unknown key after {key}");
                lines.join("\n").into_bytes()
            }
            _ => f.config.clone().into_bytes(),
        };
        if op == 7 {
            bytes = format!("{}\n[extra]\nkind = \"toy\"\n", f.config).into_bytes();
            what = "an unknown table".into();
        }
        place(rng, dir, crate::files::CONFIG_FILE, &bytes, op == 8, &mut what, &mut expect);
        if op == 9 {
            let _ = std::fs::remove_file(dir.join(crate::files::CONFIG_FILE));
            mutate::sparse(&dir.join(crate::files::CONFIG_FILE), 65 << 20);
            what = "a 65 MB configuration".into();
            expect = None;
        }
        Case { what, expect, names: vec![crate::files::CONFIG_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        let f = fixture();
        check_saved_config(&dir.join(crate::files::CONFIG_FILE), &f.config_value)
            .map(|()| fingerprint("same configuration"))
            .map_err(|e| e.to_string())
    }
}

/// A run's `metrics.jsonl`, cut back to the checkpoint's step on resume.
pub struct MetricsTarget;

impl Target for MetricsTarget {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let f = fixture();
        let mut expect = Some(f.metrics_fp);
        let mut lines = f.metrics.clone();
        let k = rng.random_range(0..lines.len());
        let op = rng.random_range(0..14);
        let mut what = "valid records".to_string();
        let mut record: Value = serde_json::from_str(&lines[k]).expect("the fixture is valid");
        match op {
            1 => {
                lines.remove(k);
                what = format!("record {k} removed");
            }
            2 => {
                lines.insert(k, lines[k].clone());
                what = format!("record {k} repeated");
            }
            3 if k + 1 < lines.len() => {
                lines.swap(k, k + 1);
                what = format!("records {k} and {} swapped", k + 1);
            }
            4 => {
                let l = pick(rng, &["", " ", "{}", "[]", "garbage", "{\"step\":"]);
                lines.insert(k, l.into());
                what = format!("line {l:?} before record {k}");
            }
            5 => {
                let (field, v) = pick(
                    rng,
                    &[
                        ("label_acc", json!(7.5)),
                        ("label_acc", json!(-0.1)),
                        ("domain_acc", json!("x")),
                        ("label_loss", json!(-1)),
                        ("domain_loss", Value::Null),
                        ("lambda", json!(1.5)),
                        ("lr", json!(-0.01)),
                        ("step", json!(0)),
                        ("step", json!(-5)),
                        ("step", json!("x")),
                        ("step", json!(record["step"].as_u64().unwrap_or(0) + 1)),
                    ],
                );
                record[field] = v.clone();
                lines[k] = record.to_string();
                what = format!("record {k}: {field} = {v}");
            }
            6 => {
                let field = pick(rng, &["label_acc", "lr", "step", "lambda"]);
                record.as_object_mut().map(|m| m.remove(field));
                lines[k] = record.to_string();
                what = format!("record {k} without {field}");
            }
            7 => {
                record["added_by_hand"] = json!(1);
                lines[k] = record.to_string();
                what = format!("record {k} with an unknown field");
            }
            8 => {
                lines[k] = serde_json::to_string_pretty(&record).expect("serialisable").replace('\n', " ");
                what = format!("record {k} with spaces");
            }
            _ => {}
        }
        let text = lines.join("\n") + "\n";
        let bytes = match op {
            0 => {
                let (t, c) = mutate::truncate(rng, text.as_bytes());
                what = format!("cut at byte {c}");
                t
            }
            9 => {
                let (b, how, _) = mutate::reencode(rng, &text);
                what = format!("with {how}");
                b
            }
            10 => {
                what = "empty".into();
                expect = None;
                Vec::new()
            }
            _ => text.into_bytes(),
        };
        place(rng, dir, crate::files::METRICS_FILE, &bytes, op == 11, &mut what, &mut expect);
        if op == 12 {
            let p = dir.join(crate::files::METRICS_FILE);
            let _ = std::fs::remove_file(&p);
            mutate::sparse(&p, 65 << 20);
            what = "a 65 MB metrics file".into();
            expect = None;
        }
        Case { what, expect, names: vec![crate::files::METRICS_FILE.into()] }
    }

    fn load(&self, dir: &Path) -> std::result::Result<u64, String> {
        err(load_metrics(dir))
    }
}

/// The run-file targets: `checkpoint`, `weights`, `metrics`, `summary`, `recipe`, `config`.
pub fn run_file_targets() -> Vec<Arc<dyn Target>> {
    vec![
        Arc::new(CheckpointTarget),
        Arc::new(WeightsTarget),
        Arc::new(MetricsTarget),
        Arc::new(SummaryTarget),
        Arc::new(RecipeTarget),
        Arc::new(ConfigTarget),
    ]
}

/// Trains the fixture run now (about a second) rather than inside the first case, whose time
/// limit it would eat.
pub fn prepare() -> std::result::Result<(), String> {
    FIXTURE.get_or_init(|| build_fixture().map_err(|e| e.to_string())).as_ref().map(|_| ()).map_err(Clone::clone)
}
