//! The recommended recipe on two folders of your own, through the library crates: a labelled
//! source (`SOURCE/<class>/*.png`, or `SOURCE/train/<class>/...` + `SOURCE/test/...`, or a list
//! file) and a target (the same layouts, or a flat folder of unlabelled images). The recipe is
//! decided from what the images show, trained in a run folder with its report, and the chosen
//! model then labels the target's images into `OUT/predictions.csv`.
//!
//! `cargo run --example your_own_data -- SOURCE TARGET OUT [STEPS]`
use adapt_datasets::DataRef;
use adapt_datasets::pair::PairProfile;
use adapt_experiment::predict::{Predictor, predict_paths};
use adapt_experiment::recipe::{DigitRecipe, Preset, Recipe, RunOptions};
use adapt_train::Method;
use candle_core::Device;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, target, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cargo run --example your_own_data -- SOURCE TARGET OUT [STEPS]");
        std::process::exit(2);
    };
    let (source, target) = (DataRef::Path(source.into()), DataRef::Path(target.into()));
    // Label-free statistics of both domains' training images decide the input steps and switches.
    let profile = PairProfile::measure(&source, &target, None)?;
    let mut recipe =
        DigitRecipe::new(&source, &target, &profile, vec![Method::SourceOnly, Method::Dann], Preset::Recommended, 0);
    if let Some(steps) = rest.first() {
        recipe.steps = steps.parse()?;
    }
    for d in &recipe.decisions {
        println!("decided: {d}");
    }
    let out = PathBuf::from(out);
    let opts = RunOptions { out: Some(out.clone()), ..RunOptions::default() };
    let device = Device::Cpu;
    let outcome = adapt_experiment::run(&Recipe::Digits(recipe), &opts, &device)?;
    for run in &outcome.runs {
        let target_acc =
            if run.target_labelled { format!("{:.1} %", 100.0 * run.target_acc) } else { "n/a (unlabelled)".into() };
        println!(
            "{:<12} source {:.1} %, target {target_acc}{}",
            run.method,
            100.0 * run.source_acc,
            if run.selected { "  <- the label-free choice" } else { "" }
        );
    }
    // The run folder's own choice of method and weights labels the target's images.
    let predictor = Predictor::from_run_folder(&out, None, None, &device)?;
    let DataRef::Path(images) = &target else { unreachable!("a path") };
    let table = predict_paths(&predictor, std::slice::from_ref(images))?;
    table.write_csv(&out.join("predictions.csv"), 1)?;
    println!("{} predictions ({}) -> {}", table.rows.len(), predictor.method(), out.join("predictions.csv").display());
    Ok(())
}
