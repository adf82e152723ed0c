//! DANN on MNIST -> USPS with the library crates alone: the pair loaded and preprocessed by
//! `adapt-datasets`, the paper's MNIST net from `adapt-models`, the DANN loop of `adapt-train`,
//! the accuracies from `adapt-eval`. No run folder, no checkpoints: the quiet library path.
//!
//! `ADAPT_DATA_DIR=/path/to/data cargo run --example dann_digits -- [STEPS]`
use adapt_datasets::{DatasetId, DigitNet, PairSpec, load_digit_pair};
use adapt_eval::evaluate_dann;
use adapt_models::ParamStore;
use adapt_models::digits::{ConvPadding, DigitDann, DigitNetConfig};
use adapt_models::init::InitScheme;
use adapt_train::batches::MixedSampler;
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig, TrainHooks, train_dann};
use candle_core::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(data_dir) = std::env::var_os("ADAPT_DATA_DIR") else {
        println!("skipped: no data (set ADAPT_DATA_DIR to a folder with mnist/ and usps/)");
        return Ok(());
    };
    let steps: usize = std::env::args().nth(1).map_or(Ok(300), |s| s.parse())?;
    let (source, target) = (DatasetId::Mnist, DatasetId::Usps);
    // The paper's preprocessing: both domains as 3x28x28, binarised MNIST, the training mean subtracted.
    let pair = load_digit_pair(&PairSpec::dann_paper(source, target), Some(data_dir.as_ref()))?;
    let device = Device::Cpu;
    let net = DigitNetConfig { init: InitScheme::Glorot, padding: ConvPadding::Valid, ..DigitNetConfig::default() };
    for method in [Method::SourceOnly, Method::Dann] {
        // The same starting weights for both methods.
        let params = ParamStore::new(0);
        let model = DigitDann::build(DigitNet::for_pair(source, target), &net, &params, params.seed(), &device)?;
        let cfg = TrainConfig {
            method,
            steps,
            batch_size: 32,
            sgd: SgdSettings { lr: 0.01, ..SgdSettings::default() },
            ..TrainConfig::default()
        };
        let mut sampler =
            MixedSampler::new(pair.source_train.clone(), pair.target_train.clone(), cfg.batch_size, cfg.seed)?;
        let outcome = train_dann(&model, &params, &mut sampler, &device, &cfg, TrainHooks::default())?;
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
