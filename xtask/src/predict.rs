//! `cargo xtask predict MODEL INPUT...`: the classes of new images, from a run folder or a weights
//! file written by adapt, as a CSV `path,class,probability` (to `--out`, else to stdout).
use crate::device::{self, DeviceChoice};
use crate::train::SelectChoice;
use adapt_experiment::predict::{Predictor, check_out_path, predict_paths};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// A run folder of `cargo xtask train` (a comparison's: its selected method), or a weights
    /// file (`model.safetensors`, `best.safetensors`).
    pub model: PathBuf,
    /// Image files, folders (flat, or one sub-folder per class) or list files (`path [LABEL]`
    /// lines, or a CSV with `path[,label]`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The CSV to write (through a temporary file and a rename); default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also list the 2nd to K-th most probable classes.
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// For a run folder: which saved weights (default: the run's own choice).
    #[arg(long, value_enum)]
    pub weights: Option<SelectChoice>,
    /// For a comparison folder: the method whose model predicts (default: the selected one).
    #[arg(long)]
    pub method: Option<String>,
    /// Images per batch (default: what `eval` uses, so results match it exactly).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

pub fn run(args: &PredictArgs) -> Result<serde_json::Value> {
    let start = Instant::now();
    // Everything the command line can get wrong is refused before any image is read.
    if let Some(out) = &args.out {
        check_out_path(out)?;
    }
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let device = device::select(args.device)?;
    let predictor = Predictor::open(&args.model, args.method.as_deref(), args.weights.map(Into::into), &device)?;
    let predictor = match args.batch_size {
        Some(n) => predictor.with_batch_size(n)?,
        None => predictor,
    };
    let table = predict_paths(&predictor, &args.inputs)?;
    let csv = table.to_csv(args.top_k)?;
    // With the CSV on stdout, the words go to stderr so stdout stays one CSV (and the JSON line).
    let say = |line: String| if args.out.is_some() { println!("{line}") } else { eprintln!("{line}") };
    for note in &table.notes {
        say(format!("note: {note}"));
    }
    match &args.out {
        Some(out) => adapt_experiment::files::write_atomic(out, &csv)?,
        None => print!("{csv}"),
    }
    let accuracy = table.accuracy();
    let n = table.rows.len();
    say(format!(
        "{n} image{} predicted by {} ({}){}",
        if n == 1 { "" } else { "s" },
        predictor.method(),
        predictor.weights().display(),
        args.out.as_ref().map(|o| format!(" -> {}", o.display())).unwrap_or_default()
    ));
    if let Some(a) = accuracy {
        say(format!("accuracy: {:.2}% on {} labelled images", 100.0 * a, table.labelled_images()));
    }
    Ok(serde_json::json!({
        "model": args.model.display().to_string(),
        "weights": predictor.weights().display().to_string(),
        "method": predictor.method(),
        "images": table.rows.len(),
        "classes": predictor.classes(),
        "out": args.out.as_ref().map(|o| o.display().to_string()),
        "accuracy": accuracy,
        "labelled_images": table.labelled_images(),
        "notes": table.notes,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}
