//! Predicting the classes of new images with a trained model: a [`Predictor`] built from a
//! weights file written by adapt ([`crate::weights`]) or from a run folder, and
//! [`predict_paths`], what `cargo xtask predict` runs: image files, folders and list files in,
//! one row per image out ([`PredictionTable`], written as CSV).
//!
//! New images are treated as target-domain images. Each is brought to the target's recorded
//! original shape: a grey image is copied to three channels where the target is colour, a colour
//! one made grey by the mean of its channels where the target is grey, and an image of another
//! size resized bilinearly to the target's original size (images larger than that are first
//! shrunk with antialiasing, as adapt's folder loader stores them). Each conversion is reported
//! in a note. Then the target's recorded test steps (the training steps where the test images
//! had none of their own) make it the net's input; images that the target's own test steps take
//! at their size go through those directly.
//!
//! The net runs in evaluation mode exactly as [`crate::evaluate`] scores the target test set:
//! BatchNorm with the net's running statistics, the same batches, the class the argmax of the
//! logits. So the exported target test set predicts to the target accuracy `eval` reports, to
//! the last digit.
use crate::error::{Context, ExperimentError, Result};
use crate::evaluate::method_dirs;
use crate::files::write_atomic;
use crate::summary::{RunSummary, Selection};
use crate::weights::{RunConfig, WeightsStep, read_weights_info};
use adapt_datasets::image_folder::{FolderOptions, IMAGE_EXTENSIONS, load_image_source};
use adapt_datasets::pair::{DomainInput, InputDescription};
use adapt_datasets::preprocess::{InputStep, resize};
use adapt_datasets::{ImageDataset, Split};
use adapt_models::ParamStore;
use adapt_models::digits::DigitDann;
use adapt_models::gta::GtaModel;
use candle_core::{D, Device, Tensor};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Metadata key of a weights file's class names: a JSON array of strings, one per output of the
/// classifier, in output order.
pub const CLASSES_KEY: &str = "adapt.classes";

/// Images per batch for a digit net: what [`adapt_eval::evaluate_dann_with`] scores the target
/// test set with.
pub const DIGIT_BATCH: usize = 256;

/// Images per batch for Generate To Adapt's F + C: what its evaluation scores the test sets with.
pub const GTA_BATCH: usize = 500;

/// An image file whose width x height exceeds this is refused from its header, before decoding.
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;

/// The class of one image and every class's probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index into [`Predictor::classes`]: the argmax of the logits, as evaluation scores it.
    pub class: u32,
    /// `(class, softmax probability)` for every class, most probable first (`class` leads a tie).
    pub ranked: Vec<(u32, f32)>,
}

impl Prediction {
    /// The probability of [`Prediction::class`].
    pub fn probability(&self) -> f32 {
        self.ranked[0].1
    }
}

enum Net {
    Digits(DigitDann),
    Gta(Box<GtaModel>),
}

/// A trained classifier with the input steps it was trained with.
pub struct Predictor {
    weights: PathBuf,
    method: String,
    step: WeightsStep,
    classes: Vec<String>,
    target: DomainInput,
    input_shape: [usize; 3],
    batch_size: usize,
    net: Net,
    device: Device,
    // The net's variables live here; the net only holds handles to them.
    _params: ParamStore,
}

impl Predictor {
    /// The model in the weights file `path` (a `model.safetensors` or `best.safetensors` written
    /// by adapt), rebuilt as [`crate::evaluate::evaluate_weights`] rebuilds it. An error naming
    /// the file when it is not one, or holds a toy (2D points) model.
    pub fn from_weights(path: &Path, device: &Device) -> Result<Self> {
        let (info, step) = read_weights_info(path)?;
        let params = |seed: u64| ParamStore::new(seed);
        let (net, method, store, batch_size) = match &info.config {
            RunConfig::Toy(_) => {
                return Err(ExperimentError::file(
                    path,
                    "holds a model of the 2D toy (points, not images): there is nothing to predict on images",
                ));
            }
            RunConfig::Digits(cfg) => {
                let store = params(cfg.train.seed);
                let model = cfg.build_model(&store, device)?;
                store.load(path).map_err(|e| ExperimentError::file(path, e))?;
                (Net::Digits(model), cfg.train.method.as_str().to_string(), store, DIGIT_BATCH)
            }
            RunConfig::Gta(cfg) => {
                let store = params(cfg.train.seed);
                let model = cfg.build_model(&store, device)?;
                store.load(path).map_err(|e| ExperimentError::file(path, e))?;
                (Net::Gta(Box::new(model)), cfg.train.variant.method_name().to_string(), store, GTA_BATCH)
            }
        };
        let input: Option<InputDescription> = serde_json::from_value(info.input.clone()).map_err(|e| {
            ExperimentError::file(path, format!("metadata 'adapt.input' is not an input description ({e})"))
        })?;
        let input = input.ok_or_else(|| {
            ExperimentError::file(path, "metadata 'adapt.input' records no input steps: not a model of images")
        })?;
        let mut predictor = Self {
            weights: path.to_path_buf(),
            method,
            step,
            classes: Vec::new(),
            target: input.target,
            input_shape: input.input_shape,
            batch_size,
            net,
            device: device.clone(),
            _params: store,
        };
        let outputs = predictor.outputs()?;
        predictor.classes = match read_class_names(path)? {
            Some(names) if names.len() != outputs => {
                return Err(ExperimentError::file(
                    path,
                    format!("'{CLASSES_KEY}' names {} classes, the classifier has {outputs} outputs", names.len()),
                ));
            }
            Some(names) => names,
            // Weights written before they named their classes are of the built-in digit sets.
            None => (0..outputs).map(|c| c.to_string()).collect(),
        };
        Ok(predictor)
    }

    /// The model at `model`: a weights file ([`Predictor::from_weights`], which takes no `method`
    /// or `selection`) or a run folder ([`Predictor::from_run_folder`]); an error naming `model`
    /// when it is neither.
    pub fn open(model: &Path, method: Option<&str>, selection: Option<Selection>, device: &Device) -> Result<Self> {
        if model.is_file() {
            if selection.is_some() || method.is_some() {
                return Err(ExperimentError::Invalid(format!(
                    "--weights and --method pick a file inside a run folder; {} is a weights file",
                    model.display()
                )));
            }
            Self::from_weights(model, device)
        } else if model.is_dir() {
            Self::from_run_folder(model, method, selection, device)
        } else {
            Err(ExperimentError::Invalid(format!("{}: no such run folder or weights file", model.display())))
        }
    }

    /// The model of a run folder written by adapt: a method's folder, or a comparison's whose
    /// method is `method` (default: the one its `summary.json` marks selected, else `dann`);
    /// `selection` picks the weights file (default: the run's own choice).
    pub fn from_run_folder(
        dir: &Path,
        method: Option<&str>,
        selection: Option<Selection>,
        device: &Device,
    ) -> Result<Self> {
        let dirs = method_dirs(dir)?;
        let summaries: Vec<Option<RunSummary>> = dirs.iter().map(|d| RunSummary::read(d)).collect::<Result<_>>()?;
        let name_of = |i: usize| -> String {
            match &summaries[i] {
                Some(s) => s.method.clone(),
                None => dirs[i].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            }
        };
        let names: Vec<String> = (0..dirs.len()).map(name_of).collect();
        let chosen = match method {
            Some(m) => names.iter().position(|n| n == m).ok_or_else(|| {
                ExperimentError::file(dir, format!("has no run of method '{m}' (it has: {})", names.join(", ")))
            })?,
            None if dirs.len() == 1 => 0,
            None => {
                let selected: Vec<usize> =
                    (0..dirs.len()).filter(|&i| summaries[i].as_ref().is_some_and(|s| s.selected)).collect();
                match selected[..] {
                    [one] => one,
                    _ => names.iter().position(|n| n == "dann").ok_or_else(|| {
                        ExperimentError::file(
                            dir,
                            format!(
                                "no method is marked selected and none is 'dann' (it has: {}): name one with --method",
                                names.join(", ")
                            ),
                        )
                    })?,
                }
            }
        };
        let method_dir = &dirs[chosen];
        let selection = match selection {
            Some(s) => s,
            None => summaries[chosen].as_ref().map(|s| s.selection).unwrap_or_default(),
        };
        let file = method_dir.join(selection.weights_file());
        if !file.is_file() {
            return Err(ExperimentError::file(
                &file,
                format!("missing: the run in {} has no {} weights", method_dir.display(), selection.as_str()),
            ));
        }
        Self::from_weights(&file, device)
    }

    /// The class names, in the classifier's output order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The weights file the model came from.
    pub fn weights(&self) -> &Path {
        &self.weights
    }

    /// The method that trained it (`dann`, `source-only`, `gta`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The training step the weights are of, and the rule that kept them.
    pub fn step(&self) -> WeightsStep {
        self.step
    }

    /// The net's input `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    /// How the target domain's images became the net's inputs in training.
    pub fn target_input(&self) -> &DomainInput {
        &self.target
    }

    /// Images per batch. With running BatchNorm statistics other batches change the outputs by
    /// float rounding only; the default is evaluation's, so results match it bit for bit.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The same predictor with `n` images per batch (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(ExperimentError::Invalid("the batch size must be at least 1, got 0".into()));
        }
        self.batch_size = n;
        Ok(self)
    }

    /// What [`Predictor::prepare`] does to images of `[C, H, W]` before the recorded steps, in
    /// words (empty when the steps take them as they are); an error when it cannot convert them.
    pub fn conversions(&self, shape: [usize; 3]) -> Result<Vec<String>> {
        Ok(self.route("images", shape)?.notes)
    }

    /// `images` (raw pixels in `[0, 255]`, any size, 1 or 3 channels) made into the net's inputs:
    /// converted as the module docs say, then put through the target's recorded steps.
    pub fn prepare(&self, mut images: ImageDataset) -> Result<ImageDataset> {
        let what = if images.origin.is_empty() { images.name.clone() } else { images.origin.clone() };
        let route = self.route(&what, [images.channels, images.height, images.width])?;
        match route.channels {
            Some((1, 3)) => InputStep::RepeatChannels { channels: 3 }.apply(&mut images)?,
            Some((3, 1)) => channel_mean(&mut images),
            Some(_) | None => {}
        }
        if let Some((h, w)) = route.resize {
            resize(&mut images, h, w)?;
        }
        for step in route.steps {
            step.apply(&mut images)?;
        }
        Ok(images)
    }

    /// Predictions for `inputs`, already prepared ([`Predictor::prepare`]): one per image, in
    /// order. An error when they are not of the net's input shape or hold non-finite values.
    pub fn predict(&self, inputs: &ImageDataset) -> Result<Vec<Prediction>> {
        let shape = [inputs.channels, inputs.height, inputs.width];
        if shape != self.input_shape {
            return Err(ExperimentError::Invalid(format!(
                "{}: inputs of {shape:?}, the net takes {:?}: prepare the images first (Predictor::prepare)",
                inputs.name, self.input_shape
            )));
        }
        if let Some(i) = inputs.images.iter().position(|v| !v.is_finite()) {
            return Err(ExperimentError::Invalid(format!(
                "{}: image {} holds the non-finite input {}",
                inputs.name,
                i / inputs.image_len(),
                inputs.images[i]
            )));
        }
        let (classes, probabilities, c) = match &self.net {
            Net::Digits(model) => {
                let p = adapt_eval::predict(model, inputs, None, &self.device, self.batch_size, false)?;
                (p.classes, p.probabilities, p.num_classes)
            }
            Net::Gta(model) => self.gta_outputs(model, inputs)?,
        };
        Ok(classes.iter().zip(probabilities.chunks_exact(c.max(1))).map(|(&k, p)| ranked(k, p)).collect())
    }

    /// The classifier's outputs, from one blank input through the net.
    fn outputs(&self) -> Result<usize> {
        let [c, h, w] = self.input_shape;
        let blank = ImageDataset::from_u8("blank", Split::Test, &vec![0; c * h * w], vec![0], [c, h, w])?;
        let n = match &self.net {
            Net::Digits(model) => adapt_eval::predict(model, &blank, None, &self.device, 1, false)?.num_classes,
            Net::Gta(model) => self.gta_outputs(model, &blank)?.2,
        };
        Ok(n)
    }

    /// F + C's classes (argmax of the logits), probabilities and class count, in batches as its
    /// evaluation runs them.
    fn gta_outputs(&self, model: &GtaModel, inputs: &ImageDataset) -> Result<(Vec<u32>, Vec<f32>, usize)> {
        let (mut classes, mut probabilities, mut c) = (Vec::new(), Vec::new(), 0);
        let per = inputs.image_len();
        for start in (0..inputs.len()).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(inputs.len());
            let x = Tensor::from_slice(
                &inputs.images[start * per..end * per],
                (end - start, inputs.channels, inputs.height, inputs.width),
                &self.device,
            )?;
            let logits = model.classify(&x)?;
            if let Some(v) = logits.flatten_all()?.to_vec1::<f32>()?.into_iter().find(|v| !v.is_finite()) {
                return Err(ExperimentError::Invalid(format!(
                    "{}: the model's outputs for images {start}..{end} are not finite ({v})",
                    self.weights.display()
                )));
            }
            classes.extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
            let p = candle_nn::ops::softmax_last_dim(&logits)?;
            c = p.dim(1)?;
            probabilities.extend(p.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((classes, probabilities, c))
    }

    /// How images of `shape` reach the net. Where the target's test images had steps of their
    /// own and those take the images at their size, those (they are test-like images); else the
    /// channels converted to the target's and the size brought to its original size, then the
    /// test steps where they take that, else the training steps (planned for that size).
    fn route(&self, what: &str, [c, h, w]: [usize; 3]) -> Result<Route<'_>> {
        let [oc, oh, ow] = self.target.original_shape;
        if h == 0 || w == 0 {
            return Err(ExperimentError::Invalid(format!("{what}: images of 0 pixels ({h}x{w})")));
        }
        if let Some(test) = self.target.test_steps.as_deref()
            && self.takes(test, [c, h, w])
        {
            return Ok(Route { channels: None, resize: None, steps: test, notes: Vec::new() });
        }
        let mut notes = Vec::new();
        let channels = match (c, oc) {
            _ if c == oc => None,
            (1, 3) => {
                notes.push("grey images copied to 3 channels (the target's images are colour)".to_string());
                Some((1, 3))
            }
            (3, 1) => {
                notes.push("colour images made grey by the mean of their channels (the target's are grey)".into());
                Some((3, 1))
            }
            _ => {
                return Err(ExperimentError::Invalid(format!(
                    "{what}: images of {c} channels cannot be converted to the target's {oc} (1 or 3 are)"
                )));
            }
        };
        let resize = ((h, w) != (oh, ow)).then_some((oh, ow));
        if resize.is_some() {
            notes.push(format!(
                "{h}x{w} images resized bilinearly to the target's original {oh}x{ow} (aspect ratio not kept)"
            ));
        }
        let steps = match self.target.test_steps.as_deref() {
            Some(test) if self.takes(test, [oc, oh, ow]) => test,
            _ => &self.target.steps,
        };
        Ok(Route { channels, resize, steps, notes })
    }

    /// Whether `steps` take one image of `shape` to the net's input shape.
    fn takes(&self, steps: &[InputStep], [c, h, w]: [usize; 3]) -> bool {
        let Ok(mut probe) = ImageDataset::from_u8("probe", Split::Test, &vec![0; c * h * w], vec![0], [c, h, w]) else {
            return false;
        };
        steps.iter().all(|s| s.apply(&mut probe).is_ok())
            && [probe.channels, probe.height, probe.width] == self.input_shape
    }
}

/// What [`Predictor::prepare`] does for one image shape.
struct Route<'a> {
    channels: Option<(usize, usize)>,
    resize: Option<(usize, usize)>,
    steps: &'a [InputStep],
    notes: Vec<String>,
}

/// Every colour image of `ds` made grey: the mean of its three channels.
fn channel_mean(ds: &mut ImageDataset) {
    let plane = ds.height * ds.width;
    let mut out = Vec::with_capacity(ds.len() * plane);
    for img in ds.images.chunks_exact(3 * plane) {
        out.extend((0..plane).map(|p| (img[p] + img[plane + p] + img[2 * plane + p]) / 3.0));
    }
    ds.images = out;
    ds.channels = 1;
}

/// A prediction of `class` from one image's class probabilities.
fn ranked(class: u32, probabilities: &[f32]) -> Prediction {
    let mut ranked: Vec<(u32, f32)> = probabilities.iter().enumerate().map(|(i, &p)| (i as u32, p)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then((b.0 == class).cmp(&(a.0 == class))).then(a.0.cmp(&b.0)));
    Prediction { class, ranked }
}

/// The most a safetensors header of a weights file may be (it holds the tensor index and the
/// metadata: a few kilobytes).
const MAX_HEADER: u64 = 64 << 20;

/// The class names a weights file records under [`CLASSES_KEY`], read from its header alone.
fn read_class_names(path: &Path) -> Result<Option<Vec<String>>> {
    let bad = |problem: String| ExperimentError::file(path, problem);
    let mut file = std::fs::File::open(path).map_err(|e| ExperimentError::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| ExperimentError::io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(bad(format!("a safetensors header of {len} bytes, more than {MAX_HEADER}")));
    }
    let mut header = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut header).map_err(|e| ExperimentError::io(path, e))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("unreadable safetensors header ({e})")))?;
    let Some(text) = header.get("__metadata__").and_then(|m| m.get(CLASSES_KEY)) else { return Ok(None) };
    let text = text.as_str().ok_or_else(|| bad(format!("metadata '{CLASSES_KEY}' is not a string")))?;
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|e| bad(format!("metadata '{CLASSES_KEY}' is not a JSON array of class names ({e})")))?;
    if let Some(i) = (0..names.len()).find(|&i| names[..i].contains(&names[i])) {
        return Err(bad(format!("metadata '{CLASSES_KEY}' names the class '{}' twice", names[i])));
    }
    Ok(Some(names))
}

/// Decodes the image file `path`: grey images (with or without alpha) to one channel, others to
/// RGB, 8 bits per sample, as raw pixels in `[0, 255]`. With what was dropped or reduced, in
/// words. An error naming the file when it is not a readable image of 1 to
/// [`MAX_IMAGE_PIXELS`] pixels.
pub fn load_image_file(path: &Path) -> Result<(ImageDataset, Vec<String>)> {
    let bad = |problem: String| ExperimentError::file(path, problem);
    adapt_datasets::files::require_regular(path).map_err(|e| ExperimentError::io(path, e))?;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| ExperimentError::io(path, e))?;
    if reader.format().is_none() {
        return Err(bad("not an image of a format adapt reads (unrecognised content)".into()));
    }
    use image::ImageDecoder;
    let decoder = reader.into_decoder().map_err(|e| bad(format!("cannot read the image header: {e}")))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 || pixels > MAX_IMAGE_PIXELS {
        return Err(bad(format!("an image of {w}x{h} pixels: predict takes 1 to {MAX_IMAGE_PIXELS}")));
    }
    let colour = decoder.color_type();
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| bad(format!("cannot decode the image: {e}")))?;
    let mut notes = Vec::new();
    if colour.has_alpha() {
        notes.push("alpha channel dropped".to_string());
    }
    if colour.bytes_per_pixel() / colour.channel_count() > 1 {
        notes.push("samples of more than 8 bits scaled to 8 bits".to_string());
    }
    let grey =
        matches!(colour, image::ColorType::L8 | image::ColorType::La8 | image::ColorType::L16 | image::ColorType::La16);
    let (w, h) = (w as usize, h as usize);
    let (pixels, c) = if grey {
        (img.into_luma8().into_raw(), 1)
    } else {
        let rgb = img.into_rgb8().into_raw();
        let mut planar = vec![0u8; rgb.len()];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                planar[ch * h * w + i] = px[ch];
            }
        }
        (planar, 3)
    };
    let mut ds = ImageDataset::from_u8(path.display().to_string(), Split::Test, &pixels, vec![0], [c, h, w])?;
    ds.origin = path.display().to_string();
    Ok((ds, notes))
}

/// One predicted image.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictedImage {
    /// The image's path: as given, or the folder or list file joined with its relative path.
    pub path: String,
    /// The label the input gave it, when it named a class of the model.
    pub label: Option<u32>,
    pub prediction: Prediction,
}

/// Predictions for every input image, with what was done to the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionTable {
    /// The model's class names ([`Predictor::classes`]).
    pub classes: Vec<String>,
    pub rows: Vec<PredictedImage>,
    /// Conversions and label matters, in words, each with the input it is about.
    pub notes: Vec<String>,
}

impl PredictionTable {
    /// Images whose input label is a class of the model.
    pub fn labelled_images(&self) -> usize {
        self.rows.iter().filter(|r| r.label.is_some()).count()
    }

    /// Accuracy over [`PredictionTable::labelled_images`]; `None` when there are none.
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.labelled_images();
        let right = self.rows.iter().filter(|r| r.label == Some(r.prediction.class)).count();
        (n > 0).then(|| right as f64 / n as f64)
    }

    /// The table as CSV: a header `path,class,probability` (then `class_2,probability_2` up to
    /// `top_k`), one row per image, fields quoted where they hold a comma, quote or line break.
    pub fn to_csv(&self, top_k: usize) -> Result<String> {
        if top_k == 0 || top_k > self.classes.len() {
            return Err(ExperimentError::Invalid(format!(
                "--top-k {top_k}: the model has {} classes, so 1 to {} can be listed",
                self.classes.len(),
                self.classes.len()
            )));
        }
        let mut out = String::from("path,class,probability");
        for k in 2..=top_k {
            out.push_str(&format!(",class_{k},probability_{k}"));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&csv_field(&row.path));
            for &(c, p) in &row.prediction.ranked[..top_k] {
                out.push_str(&format!(",{},{p:.6}", csv_field(&self.classes[c as usize])));
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// Writes [`PredictionTable::to_csv`] to `path` through a temporary file and a rename.
    pub fn write_csv(&self, path: &Path, top_k: usize) -> Result<()> {
        check_out_path(path)?;
        write_atomic(path, &self.to_csv(top_k)?)
    }
}

/// A CSV field, quoted (RFC 4180) where it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Checks that a CSV can be written at `path`: its folder exists and it is not a folder itself.
pub fn check_out_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(ExperimentError::Invalid("the output path is empty".into()));
    }
    if path.is_dir() {
        return Err(ExperimentError::file(path, "is a folder: give the CSV file to write"));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(ExperimentError::file(parent, format!("no such folder, so {} cannot be written", path.display())));
    }
    Ok(())
}

/// Raw images loaded from one input path, with their paths and labels.
struct InputImages {
    sets: Vec<ImageDataset>,
    paths: Vec<String>,
    /// Per image, the class name its input gave it.
    labels: Option<Vec<String>>,
    notes: Vec<String>,
}

/// Whether `path` names an image file by its extension (other files are read as list files).
fn is_image_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str());
    ext.is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The images at one input path: an image file, a folder or a list file ([`load_image_source`]).
/// Images are stored at most as large as the target's original images (longest side), shrunk
/// with antialiasing where they are larger.
fn load_input(path: &Path, predictor: &Predictor) -> Result<InputImages> {
    let [_, oh, ow] = predictor.target.original_shape;
    let max_side = oh.max(ow);
    if path.is_file() && is_image_file(path) {
        let (images, mut notes) = load_image_file(path)?;
        let images = shrink(images, max_side, &mut notes);
        return Ok(InputImages { sets: vec![images], paths: vec![path.display().to_string()], labels: None, notes });
    }
    let opts = FolderOptions { max_side, max_pixels: MAX_IMAGE_PIXELS, ..FolderOptions::default() };
    let source = load_image_source(path, &opts)?;
    // Paths as the user gave the input: the folder, or the list file's folder, joined with each
    // image's relative path.
    let base =
        if path.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    let paths: Vec<String> =
        source.train_paths.iter().chain(&source.test_paths).map(|p| base.join(p).display().to_string()).collect();
    let sets: Vec<ImageDataset> = std::iter::once(source.train).chain(source.test).collect();
    let labels = source
        .labelled
        .then(|| sets.iter().flat_map(|s| s.labels.iter().map(|&l| source.classes[l as usize].clone())).collect());
    Ok(InputImages { sets, paths, labels, notes: source.conversions })
}

/// `images` (one image file) shrunk to fit `max_side` as adapt's folder loader stores larger
/// images: aspect kept, an antialiased triangle (bilinear) filter.
fn shrink(images: ImageDataset, max_side: usize, notes: &mut Vec<String>) -> ImageDataset {
    let (h, w) = (images.height, images.width);
    let longest = h.max(w);
    if longest <= max_side {
        return images;
    }
    let side = |s: usize| ((s as f64 * max_side as f64 / longest as f64).round() as usize).clamp(1, max_side);
    let (nh, nw) = (side(h), side(w));
    let plane = h * w;
    let mut out = Vec::with_capacity(images.channels * nh * nw);
    for ch in 0..images.channels {
        // The decoded samples are 8-bit, so the round trip through u8 is exact.
        let px: Vec<u8> = images.images[ch * plane..(ch + 1) * plane].iter().map(|&v| v as u8).collect();
        let plane = image::GrayImage::from_raw(w as u32, h as u32, px).expect("a plane of h x w samples");
        let small = image::imageops::resize(&plane, nw as u32, nh as u32, image::imageops::FilterType::Triangle);
        out.extend(small.into_raw().into_iter().map(f32::from));
    }
    notes.push(format!("shrunk from {h}x{w} to {nh}x{nw} (antialiased; longest side limited to {max_side})"));
    ImageDataset { images: out, height: nh, width: nw, ..images }
}

/// Predicts every image named by `inputs` (image files, folders, list files) with `predictor`:
/// all inputs are read and converted before the net runs, so a bad one fails the call, naming
/// it, before any prediction is made. Labels the inputs carry count towards the accuracy where
/// they name a class of the model.
pub fn predict_paths(predictor: &Predictor, inputs: &[PathBuf]) -> Result<PredictionTable> {
    if inputs.is_empty() {
        return Err(ExperimentError::Invalid("no input images given".into()));
    }
    let classes = predictor.classes().to_vec();
    let mut prepared: Vec<ImageDataset> = Vec::new();
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    let mut notes = Vec::new();
    for input in inputs {
        let loaded = load_input(input, predictor)?;
        if loaded.paths.is_empty() {
            return Err(ExperimentError::file(input, "holds no images"));
        }
        let shown = input.display();
        notes.extend(loaded.notes.iter().map(|n| format!("{shown}: {n}")));
        for set in &loaded.sets {
            let shape = [set.channels, set.height, set.width];
            let converted = predictor.conversions(shape).context(|| format!("{shown}"))?;
            notes.extend(converted.iter().map(|n| format!("{shown}: {n}")));
        }
        if let Some(given) = &loaded.labels {
            let mut unknown: Vec<&str> =
                given.iter().map(String::as_str).filter(|l| !classes.iter().any(|c| c == l)).collect();
            unknown.sort_unstable();
            unknown.dedup();
            if !unknown.is_empty() {
                notes.push(format!(
                    "{shown}: labels {} are not classes of the model; their images are predicted but not counted",
                    unknown.join(", ")
                ));
            }
            labels.extend(given.iter().map(|l| classes.iter().position(|c| c == l).map(|i| i as u32)));
        } else {
            labels.extend(std::iter::repeat_n(None, loaded.paths.len()));
        }
        paths.extend(loaded.paths);
        for set in loaded.sets {
            prepared.push(predictor.prepare(set).context(|| format!("preparing {shown}"))?);
        }
    }
    let inputs = concat(prepared)?;
    let predictions = predictor.predict(&inputs)?;
    let rows = paths
        .into_iter()
        .zip(labels)
        .zip(predictions)
        .map(|((path, label), prediction)| PredictedImage { path, label, prediction })
        .collect();
    Ok(PredictionTable { classes, rows, notes })
}

/// Prepared datasets (all of the net's input shape) as one, in order.
fn concat(sets: Vec<ImageDataset>) -> Result<ImageDataset> {
    let mut iter = sets.into_iter();
    let mut all = iter.next().ok_or_else(|| ExperimentError::Invalid("no input images given".into()))?;
    all.name = "inputs".into();
    for ds in iter {
        all.images.extend(ds.images);
        all.labels.extend(ds.labels);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_names_a_missing_model_and_refuses_run_folder_choices_for_a_file() {
        let missing = Path::new("/nonexistent/adapt-predict-model");
        let err = Predictor::open(missing, None, None, &Device::Cpu).err().unwrap().to_string();
        assert_eq!(err, "/nonexistent/adapt-predict-model: no such run folder or weights file");
        let file = std::env::temp_dir().join(format!("adapt-predict-open-{}.safetensors", std::process::id()));
        std::fs::write(&file, b"not read").unwrap();
        let err = Predictor::open(&file, Some("dann"), None, &Device::Cpu).err().unwrap().to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(err.starts_with("--weights and --method pick a file inside a run folder;"), "{err}");
    }
}
