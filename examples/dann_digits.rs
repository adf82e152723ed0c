//! The recommended recipe on MNIST -> USPS with the library crates: the recipe decided from the
//! two domains' label-free profiles (`adapt-datasets`, `adapt-experiment`), the paper's MNIST net
//! from `adapt-models`, the DANN loop of `adapt-train`, the accuracies from `adapt-eval`. No run
//! folder, no checkpoints: the quiet library path.
//!
//! `ADAPT_DATA_DIR=/path/to/data cargo run --example dann_digits -- [STEPS]`
use adapt_datasets::pair::PairProfile;
use adapt_datasets::{DataRef, DatasetId, load_digit_pair};
use adapt_eval::evaluate_dann;
use adapt_experiment::digits::{DigitRunConfig, pair_spec};
use adapt_experiment::recipe::{DigitRecipe, Preset};
use adapt_models::ParamStore;
use adapt_train::batches::MixedSampler;
use adapt_train::{Method, TrainHooks, train_dann};
use candle_core::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(data_dir) = std::env::var_os("ADAPT_DATA_DIR") else {
        println!("skipped: no data (set ADAPT_DATA_DIR to a folder with mnist/ and usps/)");
        return Ok(());
    };
    let data_dir = std::path::PathBuf::from(data_dir);
    let steps: usize = std::env::args().nth(1).map_or(Ok(300), |s| s.parse())?;
    let (source, target) = (DataRef::from(DatasetId::Mnist), DataRef::from(DatasetId::Usps));
    // What the data shows decides the recipe: here USPS's frame-filling digits are drawn into
    // MNIST's 20-pixel box.
    let profile = PairProfile::measure(&source, &target, Some(&data_dir))?;
    let methods = vec![Method::SourceOnly, Method::Dann];
    let mut recipe = DigitRecipe::new(&source, &target, &profile, methods.clone(), Preset::Recommended, 0);
    recipe.steps = steps;
    for d in &recipe.decisions {
        println!("decided: {d}");
    }
    let spec = pair_spec(
        (source, target),
        recipe.net,
        (recipe.source_input, recipe.target_input),
        recipe.standardize_inputs,
        None,
    );
    let pair = load_digit_pair(&spec, Some(&data_dir))?;
    let device = Device::Cpu;
    for method in methods {
        let cfg = DigitRunConfig::new(&recipe, method, pair.mean.clone(), pair.classes.clone())?;
        // The same starting weights for both methods.
        let params = ParamStore::new(cfg.train.seed);
        let model = cfg.build_model(&params, &device)?;
        let mut sampler = MixedSampler::new(
            pair.source_train.clone(),
            pair.target_train.clone(),
            cfg.train.batch_size,
            cfg.train.seed,
        )?
        .with_shift(cfg.train.input_shift)?
        .with_source_colour_jitter(cfg.train.source_colour_jitter);
        let outcome = train_dann(&model, &params, &mut sampler, &device, &cfg.train, TrainHooks::default())?;
        let eval = evaluate_dann(&model, pair.source_test.as_ref(), pair.target_test.as_ref(), &device)?;
        println!(
            "{:<12} {steps} steps in {:.0} s: MNIST test {:.1} %, USPS test {:.1} %, domain classifier {:.1} %",
            method.as_str(),
            outcome.seconds,
            100.0 * eval.source_acc,
            100.0 * eval.target_acc,
            100.0 * eval.domain_acc
        );
    }
    Ok(())
}
