//! Digit experiments (the DANN paper's): source-only and DANN between any two digit datasets,
//! with the paper's networks and recipe, in one run folder with feature plots and a report.
use crate::dann_run::{ANALYSIS_POINTS, MethodRun, SelectionRecord, VALIDATOR_IMAGES, train_and_evaluate};
use crate::error::{Context, Result};
use crate::files::{
    RECIPE_FILE, REPORT_FILE, RunLock, SELECTION_FILE, create_dir, read_json, run_folder_path, write_json,
};
use crate::recipe::{DigitRecipe, Preset, Recipe, RunOptions, RunRecord};
use crate::selection::{SOURCE_VAL_TOLERANCE, keep_adapted, validator_choices};
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsInfo};
use adapt_datasets::pair::DomainShaping;
use adapt_datasets::{DataRef, DomainPair, InputWarning, Normalization, PairSpec, load_digit_pair};
use adapt_eval::plots::{self, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{BatchNormStatistics, TsneConfig, predict, predict_with, principal_scores, tsne};
use adapt_models::ParamStore;
use adapt_models::digits::{ConvPadding, DigitDann, DigitNet, DigitNetConfig};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, TrainConfig};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything that defines one digit run; written to `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigitRunConfig {
    pub source: String,
    pub target: String,
    pub net: DigitNet,
    pub preset: Preset,
    /// How the source's images reach the net (binarisation, digit box, fit).
    #[serde(default)]
    pub source_input: DomainShaping,
    /// How the target's images reach the net.
    #[serde(default)]
    pub target_input: DomainShaping,
    /// Class names: the net's output `i` is `classes[i]` (the source's classes).
    #[serde(default = "adapt_datasets::pair::digit_classes")]
    pub classes: Vec<String>,
    pub model: DigitNetConfig,
    /// Pixel size both domains are brought to (28 or 32).
    pub image_size: usize,
    /// Per-channel mean subtracted from both domains (over source + target training images;
    /// empty with `standardize_inputs`).
    pub pixel_mean: Vec<f32>,
    /// Every image standardised on its own instead of the training mean subtracted
    /// ([`adapt_datasets::Normalization::PerImage`]).
    #[serde(default)]
    pub standardize_inputs: bool,
    pub train: TrainConfig,
}

/// How `source -> target` reaches the net's input: each domain shaped as recorded, then each
/// image standardised on its own with `standardize`, else the mean subtracted: `mean` fixes it (a
/// saved run's), `None` computes it over both training sets.
pub fn pair_spec(
    (source, target): (DataRef, DataRef),
    net: DigitNet,
    (source_input, target_input): (DomainShaping, DomainShaping),
    standardize: bool,
    mean: Option<Vec<f32>>,
) -> PairSpec {
    let normalization = match mean {
        _ if standardize => Normalization::PerImage { epsilon: adapt_datasets::pair::STANDARDIZE_EPSILON },
        Some(mean) => Normalization::Fixed { mean, std: vec![1.0] },
        None => Normalization::TrainMean,
    };
    PairSpec { source, target, image_size: net.image_size(), normalization, source_input, target_input }
}

impl DigitRunConfig {
    /// The run of `method` in `recipe`, with the pixel mean its data was normalised with.
    pub fn new(recipe: &DigitRecipe, method: Method, pixel_mean: Vec<f32>, classes: Vec<String>) -> Result<Self> {
        let (source, target) = recipe.pair()?;
        let net = recipe.net;
        let (mut model, separate_domain_passes) = recipe.net_for(method)?;
        model.classes = classes.len();
        // The target losses need class predictions on the target: DANN only, so source-only
        // stays trained on source labels alone.
        let adapted = |weight: f64| if method == Method::Dann { weight } else { 0.0 };
        Ok(Self {
            source: source.as_string(),
            target: target.as_string(),
            net,
            preset: recipe.preset,
            source_input: recipe.source_input,
            target_input: recipe.target_input,
            classes,
            model,
            image_size: net.image_size(),
            pixel_mean,
            standardize_inputs: recipe.standardize_inputs,
            train: TrainConfig {
                method,
                steps: recipe.steps,
                batch_size: recipe.batch_size,
                seed: recipe.seed,
                sgd: SgdSettings { lr: recipe.lr, ..SgdSettings::default() },
                log_every: 50,
                target_im_weight: adapted(recipe.target_im_weight),
                separate_domain_passes,
                weight_average_decay: recipe.weight_average_decay,
                input_shift: recipe.input_shift,
                source_colour_jitter: recipe.source_colour_jitter,
                target_vat_weight: adapted(recipe.target_vat_weight),
                vat_radius: recipe.vat_radius,
                target_pseudo_label_weight: adapted(recipe.target_pseudo_label_weight),
                pseudo_label_threshold: recipe.pseudo_label_threshold,
                ..TrainConfig::default()
            },
        })
    }

    /// The network, its parameters created (and initialised as `model.init` says) in `params`.
    pub fn build_model(&self, params: &ParamStore, device: &Device) -> Result<DigitDann> {
        Ok(DigitDann::build(self.net, &self.model, params, params.seed(), device)?)
    }

    /// Loads this run's data with its recorded pixel mean.
    pub fn load_data(&self, data_dir: Option<&Path>) -> Result<DomainPair> {
        let pair = crate::recipe::parse_pair(&self.source, &self.target)?;
        let spec = pair_spec(
            pair,
            self.net,
            (self.source_input, self.target_input),
            self.standardize_inputs,
            Some(self.pixel_mean.clone()),
        );
        Ok(load_digit_pair(&spec, data_dir)?)
    }
}

/// 2D views of the features of the first 500 source and 500 target test images: PCA and t-SNE,
/// each fitted once on the union of both domains.
pub struct FeatureViews {
    pub pca: Vec<DomainPoint>,
    pub tsne: Vec<DomainPoint>,
}

pub fn feature_views(
    model: &DigitDann,
    data: &DomainPair,
    device: &Device,
    seed: u64,
    source: BatchNormStatistics<'_>,
) -> Result<FeatureViews> {
    let n = ANALYSIS_POINTS;
    let s = predict_with(model, data.source_test.as_ref(), Some(n), device, 250, true, source)?;
    let t = predict(model, data.target_test.as_ref(), Some(n), device, 250, true)?;
    let mut all = s.features.clone();
    all.extend(&t.features);
    let labels: Vec<(u32, bool)> = (0..s.classes.len())
        .map(|i| (data.source_test.label(i), false))
        .chain((0..t.classes.len()).map(|i| (data.target_test.label(i), true)))
        .collect();
    let to_points = |coords: Vec<[f64; 2]>| -> Vec<DomainPoint> {
        coords
            .into_iter()
            .zip(&labels)
            .map(|(c, &(label, is_target))| DomainPoint { x: c[0], y: c[1], label, is_target })
            .collect()
    };
    // Randomised PCA: the exact subspace iteration of `Pca` takes most of a minute on 1000 x 2352.
    let pca_coords = principal_scores(&all, s.feature_dim, 2, seed).chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let tsne_coords = tsne(&all, s.feature_dim, &TsneConfig { seed, ..TsneConfig::default() })?;
    Ok(FeatureViews { pca: to_points(pca_coords), tsne: to_points(tsne_coords) })
}

/// Both views of every method, by domain and by class.
pub fn write_feature_plots(dir: &Path, views: &[(String, FeatureViews)]) -> Result<()> {
    for (file, kind, pick) in [
        ("features_pca.png", "PCA", (|v: &FeatureViews| &v.pca) as fn(&FeatureViews) -> &Vec<DomainPoint>),
        ("features_tsne.png", "t-SNE", |v: &FeatureViews| &v.tsne),
    ] {
        let mut panels = Vec::new();
        for (method, v) in views {
            for by_domain in [true, false] {
                panels.push(ScatterPanel {
                    title: format!("{method}: {kind} by {}", if by_domain { "domain" } else { "class" }),
                    points: pick(v).clone(),
                    by_domain,
                });
            }
        }
        plots::scatter_panels(&dir.join(file), &panels)?;
    }
    Ok(())
}

/// What [`run`] returns besides the summaries.
pub struct DigitRun {
    pub summaries: Vec<RunSummary>,
    /// What the loaders had to say (e.g. a dataset only partly present).
    pub notes: Vec<String>,
}

/// Trains the recipe's methods on its pair in one run folder and writes its report.
pub fn run(recipe: &DigitRecipe, opts: &RunOptions, device: &Device) -> Result<DigitRun> {
    recipe.validate()?;
    let (source, target) = recipe.pair()?;
    let net = recipe.net;
    let spec = pair_spec(
        (source.clone(), target.clone()),
        net,
        (recipe.source_input, recipe.target_input),
        recipe.standardize_inputs,
        None,
    );
    let loaded =
        load_digit_pair(&spec, opts.data_dir.as_deref()).context(|| format!("loading {source} -> {target}"))?;
    let data = &loaded;
    crate::pair::check_batch(data, recipe.batch_size)?;
    // A label-free look at whether both domains reached the net alike (scale, placement, contrast).
    let input_warnings = loaded.compare_inputs(INPUT_CHECK_IMAGES)?;
    let mut notes = loaded.notes.clone();
    notes.extend(input_warnings.iter().map(|w| format!("input check: {w}")));
    let methods = &recipe.methods;
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_folder_path(opts.out.as_deref(), label, &source.short_name(), &target.short_name());
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Digits(recipe.clone()), opts))?;
    let mut summaries = Vec::new();
    let mut records = Vec::new();
    let mut views = Vec::new();
    for &method in methods {
        let cfg = DigitRunConfig::new(recipe, method, loaded.mean.clone(), loaded.classes.clone())?;
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        let params = ParamStore::new(cfg.train.seed);
        let model = cfg.build_model(&params, device)?;
        let info = WeightsInfo {
            input: input_json(data)?,
            config: RunConfig::Digits(cfg.clone()),
            classes: loaded.classes.clone(),
        };
        let run = MethodRun {
            kind: RunKind::Digits,
            train: &cfg.train,
            select: recipe.select,
            config: &info.config,
            info: &info,
        };
        let (mut summary, _) = train_and_evaluate(&run, &model, &params, data, &sub, device, opts)?;
        summary.recommended = recipe.preset == Preset::Recommended && method == Method::Dann;
        let source = crate::dann_run::source_statistics(&cfg.train, &params);
        views.push((summary.method.clone(), feature_views(&model, data, device, cfg.train.seed, source)?));
        records.push(read_json::<SelectionRecord>(&sub.join(SELECTION_FILE))?.unwrap_or_default());
        summaries.push(summary);
    }
    let guard = apply_source_only_guard(&mut summaries, &records);
    for s in &summaries {
        s.write(Path::new(&s.run_dir))?;
    }
    if let Some(kept) = &guard {
        notes.push(format!("label-free choice: {kept}"));
    }
    write_feature_plots(&dir, &views)?;
    let parts = ReportParts {
        summaries: &summaries,
        recipe,
        net,
        data,
        input_warnings: &input_warnings,
        records: &records,
        guard: guard.as_deref(),
    };
    write_report(&dir, &parts)?;
    Ok(DigitRun { summaries, notes })
}

/// With a source-only and an adapted run side by side, marks the one [`keep_adapted`] reports
/// (`selected`) and says why; `None` when there is no such pair.
fn apply_source_only_guard(summaries: &mut [RunSummary], records: &[SelectionRecord]) -> Option<String> {
    let index = |m: &str| summaries.iter().position(|s| s.method == m);
    let (so, ad) = (index(Method::SourceOnly.as_str())?, index(Method::Dann.as_str())?);
    let (so_scores, ad_scores) = (records[so].checkpoints.last()?, records[ad].checkpoints.last()?);
    let keep = keep_adapted(so_scores, ad_scores);
    summaries[so].selected = !keep;
    summaries[ad].selected = keep;
    Some(format!(
        "{} (information maximisation on target-train {:.3} vs source-only {:.3}; source validation {:.1} % vs {:.1} %)",
        if keep { "the adapted model" } else { "source-only (the evidence does not favour the adapted model)" },
        ad_scores.information_maximization,
        so_scores.information_maximization,
        100.0 * ad_scores.source_val_acc,
        100.0 * so_scores.source_val_acc
    ))
}

/// Training images per domain the input check compares.
pub const INPUT_CHECK_IMAGES: usize = 2000;

/// The pair's input description as it goes into the weights' metadata.
fn input_json(pair: &DomainPair) -> Result<serde_json::Value> {
    serde_json::to_value(&pair.input).map_err(|e| crate::ExperimentError::Invalid(format!("input description: {e}")))
}

/// The report's sentence on what training does to the inputs beyond the preprocessing above.
fn training_inputs(recipe: &DigitRecipe) -> String {
    let mut parts = Vec::new();
    if recipe.input_shift > 0 {
        parts.push(format!(
            "every training image of both domains moved by up to {} pixels each way, a fresh offset per image and step",
            recipe.input_shift
        ));
    }
    if recipe.source_colour_jitter {
        parts.push(format!(
            "every source training image recoloured channel by channel (contrast about the image's own mean scaled by \
             0.5-1.5, inverted with probability 1/2, offset by up to {}; `MixedSampler::with_source_colour_jitter`), \
             the target as loaded",
            adapt_train::batches::COLOUR_JITTER_OFFSET
        ));
    }
    if recipe.separate_domain_passes {
        parts.push(format!(
            "BatchNorm with each domain's own statistics, the running statistics from the target only{}",
            if recipe.source_only_preset_net {
                " (adapted run; source-only trains the preset's plain net)"
            } else {
                ""
            }
        ));
    }
    if parts.is_empty() {
        "Training uses the inputs as described, with no augmentation.".into()
    } else {
        format!("In training: {}. Evaluation sees the inputs as described.", parts.join("; "))
    }
}

/// What a digit run's report shows.
struct ReportParts<'a> {
    summaries: &'a [RunSummary],
    recipe: &'a DigitRecipe,
    net: DigitNet,
    data: &'a DomainPair,
    input_warnings: &'a [InputWarning],
    records: &'a [SelectionRecord],
    guard: Option<&'a str>,
}

fn write_report(dir: &Path, parts: &ReportParts<'_>) -> Result<()> {
    let &ReportParts { summaries, recipe, net, data, input_warnings, records, guard } = parts;
    let (source, target) = (&summaries[0].source, &summaries[0].target);
    let size = net.image_size();
    let mut report = Report::new(&format!("{source} -> {target}"));
    report.paragraph(&format!(
        "The paper's {} network ({} convolutions) on {size}x{size} RGB inputs, preset `{}`{}, pixel mean of both \
         training sets subtracted. \
         Seed {}. One in {} source training images is held out as a source validation split. \
         Target labels are used for the test accuracies below only, never for training or for choosing a model; \
         the reported weights are {}.",
        if net == DigitNet::Mnist { "MNIST" } else { "SVHN" },
        match recipe.model.padding {
            ConvPadding::Same => "zero-padded",
            ConvPadding::Valid => "unpadded",
        },
        recipe.preset.as_str(),
        match (recipe.source_input.binarize, recipe.target_input.binarize) {
            (true, true) => " (both domains binarised)",
            (true, false) => " (source binarised)",
            (false, true) => " (target binarised)",
            (false, false) => "",
        },
        recipe.seed,
        adapt_datasets::pair::VALIDATION_FRACTION,
        match recipe.select {
            Selection::Last => "those of the last step",
            Selection::SourceVal => "those of the checkpoint with the best source validation accuracy",
        }
    ));
    report.paragraph(&format!("Splits: {}.", data.protocol));
    if !recipe.decisions.is_empty() {
        report.heading("What the recipe decided from the data");
        report.paragraph(
            "Each setting below was decided from label-free statistics of the two domains' training images \
             (`adapt_datasets::profile`), never from a dataset's name:",
        );
        report.paragraph(
            &recipe
                .decisions
                .iter()
                .map(|d| format!("- **{}** {}: {}", d.setting, d.value, d.because))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    let target_cell =
        |s: &RunSummary| if s.target_labelled { percent(s.target_acc) } else { "n/a (unlabelled)".into() };
    report.table(
        &["method", "source acc", "target acc", "domain acc", "A-distance", "reported step", "steps", "seconds"],
        &summaries
            .iter()
            .map(|s| {
                vec![
                    s.method.clone(),
                    percent(s.source_acc),
                    target_cell(s),
                    percent(s.domain_acc),
                    format!("{:.2}", s.a_distance),
                    s.selected_step.to_string(),
                    s.steps.to_string(),
                    format!("{:.0}", s.seconds),
                ]
            })
            .collect::<Vec<_>>(),
    );
    report.paragraph(
        "Domain accuracy: the model's own domain classifier on both test sets (50 % = cannot tell the domains apart). \
         A-distance: proxy A-distance 2(1 - 2 err) of a linear domain classifier trained on frozen features of \
         500 + 500 test images (0: indistinguishable, 2: separable).",
    );
    report.heading("Model selection without target labels");
    report.paragraph(&format!(
        "At every checkpoint each method's predictions on the first {VALIDATOR_IMAGES} target training images are \
         scored by label-free validators (higher is better; `adapt_eval::validators`), beside the source validation \
         accuracy. The table shows which checkpoint each would choose and, for evaluation only, that checkpoint's \
         target test accuracy; the oracle row uses target labels and is no selection rule. {}",
        guard.map_or(String::new(), |g| format!(
            "Between source-only and the adapted run the rule reports {g}: the adapted model is kept only when its \
             information-maximisation score on target-train is at least source-only's and its source validation \
             accuracy is at most {:.0} points lower.",
            100.0 * SOURCE_VAL_TOLERANCE
        ))
    ));
    let mut rows = Vec::new();
    for (s, record) in summaries.iter().zip(records) {
        for c in validator_choices(record) {
            let acc = if s.target_labelled { percent(c.target_test_acc) } else { "n/a (unlabelled)".into() };
            rows.push(vec![s.method.clone(), c.validator, c.step.to_string(), acc]);
        }
    }
    report.table(&["method", "validator", "chosen step", "target test acc of that checkpoint"], &rows);
    report.heading("Inputs");
    if let Some(input) = &data.input {
        report.paragraph(&format!("How each domain became the net's input:\n\n```\n{input}\n```"));
    }
    report.paragraph(&training_inputs(recipe));
    report.paragraph(&if input_warnings.is_empty() {
        format!(
            "Label-free input check (first {INPUT_CHECK_IMAGES} training images per domain: per-channel mean and std, \
             ink bounding box): the domains agree within the limits of `adapt_datasets::stats`."
        )
    } else {
        format!(
            "**Input check warnings** (first {INPUT_CHECK_IMAGES} training images per domain; limits in \
             `adapt_datasets::stats`):\n\n{}",
            input_warnings.iter().map(|w| format!("- {w}")).collect::<Vec<_>>().join("\n")
        )
    });
    report.heading("Features");
    report.paragraph(
        "Features of 500 source and 500 target test images; PCA and t-SNE each fitted once on their union. \
         Left: coloured by domain; right: by class.",
    );
    report.image("feature t-SNE", "features_tsne.png");
    report.image("feature PCA", "features_pca.png");
    report.heading("Training curves");
    for s in summaries {
        let rel = if summaries.len() > 1 { format!("{}/curves.png", s.method) } else { "curves.png".into() };
        report.image(&format!("{} curves", s.method), &rel);
    }
    report.write(&dir.join(REPORT_FILE))?;
    Ok(())
}
