//! What the run-file targets share (`checkpoint`, `weights`, `metrics`, `summary`, `recipe`,
//! `config`): the fixture run, the readers each target loads through, and the edits of
//! safetensors and JSON files.
//!
//! The fixtures come from a real toy run (trained once, interrupted after a checkpoint, and
//! unbroken). Corruptions are structural (truncations, header and size fields, encodings, file
//! kinds, duplicates) and semantic (values no run writes: NaN weights, a sampler position the
//! step does not reach, an accuracy of 7.5). Some edits of the safetensors files come with a
//! digest that matches them, as a buggy writer would leave them, so that the checks behind the
//! digest are exercised too. A replaced value that is itself valid (a weight changed to another
//! finite number under a matching digest, a recipe of another valid length) is a different valid
//! file, not a corruption, and is not generated.
use crate::mutate::{self, Kind};
use crate::{Rng, fingerprint};
use adapt_datasets::DomainPair;
use adapt_experiment::error::{ExperimentError, Result};
use adapt_experiment::files::{RecordSchedule, read_metrics};
use adapt_experiment::recipe::{Recipe, RunOptions, RunRecord, ToyRecipe};
use adapt_experiment::summary::RunSummary;
use adapt_experiment::toy::ToyRunConfig;
use adapt_experiment::weights::{RunConfig, read_weights_info};
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
use std::sync::OnceLock;

/// The run the fixtures come from, trained once per process.
pub(super) struct Fixture {
    pub(super) cfg: ToyRunConfig,
    pub(super) data: DomainPair,
    pub(super) checkpoint: Vec<u8>,
    pub(super) checkpoint_fp: u64,
    pub(super) weights: Vec<u8>,
    pub(super) weights_fp: u64,
    pub(super) summary: String,
    pub(super) summary_fp: u64,
    pub(super) recipe: String,
    pub(super) recipe_fp: u64,
    pub(super) config: String,
    pub(super) config_value: RunConfig,
    pub(super) metrics: Vec<String>,
    pub(super) metrics_fp: u64,
}

pub(super) const METRICS_UP_TO: usize = 30;
pub(super) const METRICS_SCHEDULE: RecordSchedule = RecordSchedule { every: 5, steps: 62 };

static FIXTURE: OnceLock<std::result::Result<Fixture, String>> = OnceLock::new();

/// The fixture run, trained on first use (an error says why it could not be).
fn trained() -> &'static std::result::Result<Fixture, String> {
    FIXTURE.get_or_init(|| build_fixture().map_err(|e| format!("training the fixture run: {e}")))
}

/// The fixture run; the targets' [`Target::prepare`](crate::Target::prepare) has trained it.
pub(super) fn fixture() -> &'static Fixture {
    trained().as_ref().expect("the toy fixture run trains")
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
    if adapt_experiment::toy::run(&recipe, &opts(&stopped, Some(50)), &device).is_ok() {
        return Err(ExperimentError::Invalid("the fixture run was not stopped".into()));
    }
    adapt_experiment::toy::run(&recipe, &opts(&finished, None), &device)?;
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
        config_value: adapt_experiment::files::read_config(&stopped.join(adapt_experiment::files::CONFIG_FILE))?,
        cfg,
        data,
        checkpoint: read(stopped.join(CHECKPOINT_FILE))?,
        checkpoint_fp: 0,
        weights: read(finished.join(adapt_experiment::files::MODEL_FILE))?,
        weights_fp: 0,
        summary: text(finished.join(adapt_experiment::summary::SUMMARY_FILE))?,
        summary_fp: 0,
        recipe: text(stopped.join(adapt_experiment::files::RECIPE_FILE))?,
        recipe_fp: 0,
        config: text(stopped.join(adapt_experiment::files::CONFIG_FILE))?,
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
    write(adapt_experiment::files::MODEL_FILE, &f.weights)?;
    f.weights_fp = load_weights(&f, &dir)?;
    write(adapt_experiment::summary::SUMMARY_FILE, f.summary.as_bytes())?;
    f.summary_fp = load_summary(&dir)?;
    write(adapt_experiment::files::RECIPE_FILE, f.recipe.as_bytes())?;
    f.recipe_fp = load_recipe(&dir)?;
    write(adapt_experiment::files::METRICS_FILE, (f.metrics.join("\n") + "\n").as_bytes())?;
    f.metrics_fp = load_metrics(&dir)?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(f)
}

pub(super) fn tensor_fp(params: &ParamStore, extra: &HashMap<String, candle_core::Tensor>) -> Result<u64> {
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

pub(super) fn load_checkpoint(f: &Fixture, dir: &Path) -> Result<u64> {
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

pub(super) fn load_weights(f: &Fixture, dir: &Path) -> Result<u64> {
    let path = dir.join(adapt_experiment::files::MODEL_FILE);
    let (info, at) = read_weights_info(&path)?;
    let params = ParamStore::new(f.cfg.train.seed ^ 0xff);
    f.cfg.build_model(&params, &Device::Cpu)?;
    params.load(&path)?;
    Ok(fingerprint(&(format!("{:?} {} {at:?}", info.config, info.input), tensor_fp(&params, &HashMap::new())?)))
}

pub(super) fn load_summary(dir: &Path) -> Result<u64> {
    let s = RunSummary::read(dir)?
        .ok_or_else(|| ExperimentError::file(&dir.join(adapt_experiment::summary::SUMMARY_FILE), "missing"))?;
    Ok(fingerprint(&format!("{s:?}")))
}

pub(super) fn load_recipe(dir: &Path) -> Result<u64> {
    let path = dir.join(adapt_experiment::files::RECIPE_FILE);
    let r = RunRecord::read(dir)?.ok_or_else(|| ExperimentError::file(&path, "missing"))?;
    // What `--resume` checks before anything else: the batch must fit the data.
    if let Recipe::Toy(t) = &r.recipe {
        let (_, data) = ToyRunConfig::new(t, Method::Dann).data()?;
        adapt_experiment::pair::check_batch(&data, t.batch_size).map_err(|e| ExperimentError::file(&path, e))?;
    }
    Ok(fingerprint(&format!("{r:?}")))
}

pub(super) fn load_metrics(dir: &Path) -> Result<u64> {
    let (records, _) =
        read_metrics::<StepMetrics>(&dir.join(adapt_experiment::files::METRICS_FILE), METRICS_UP_TO, METRICS_SCHEDULE)?;
    Ok(fingerprint(&format!("{records:?}")))
}

pub(super) fn err(r: Result<u64>) -> std::result::Result<u64, String> {
    r.map_err(|e| e.to_string())
}

pub(super) fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// Writes `bytes` to `dir/name`, and with `replace` puts another kind of entry in its place
/// (after which no load is correct, but through a link to a copy).
pub(super) fn place(
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
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) dtype: Dtype,
    pub(super) shape: Vec<usize>,
    pub(super) data: Vec<u8>,
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

pub(super) fn parse_st(bytes: &[u8]) -> (HashMap<String, String>, Vec<Entry>) {
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
pub(super) fn build_st(mut meta: HashMap<String, String>, entries: &[Entry], seal: bool) -> Vec<u8> {
    if seal {
        let views: Vec<(&str, &Entry)> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
        meta.insert(DIGEST_KEY.into(), digest(&meta, &views));
    }
    safetensors::serialize(entries.iter().map(|e| (e.name.clone(), e)), Some(meta)).expect("serialisable")
}

pub(super) fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// `e` converted to another dtype, values kept as near as the dtype allows.
pub(super) fn convert(e: &Entry, to: Dtype) -> Entry {
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
pub(super) fn mutate_st(rng: &mut Rng, good: &[u8], keys: &[(&str, &[&str])], what: &mut String) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// JSON and TOML run files

/// A JSON document `good` after one edit: fields set to values no run writes (`bad`, by path),
/// removed, added, repeated, re-encoded, reformatted, or cut.
pub(super) fn mutate_json(rng: &mut Rng, good: &str, bad: &[(&[&str], Vec<Value>)], what: &mut String) -> Vec<u8> {
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

/// Trains the fixture run now (about a second) rather than inside the first case, whose time
/// limit it would eat.
pub(super) fn prepare() -> std::result::Result<(), String> {
    trained().as_ref().map(|_| ()).map_err(Clone::clone)
}
