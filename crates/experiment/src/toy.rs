//! The 2D-toy experiment (rotated moons): source-only and DANN on the same data and seed, with
//! decision boundaries and feature PCA side by side.
use crate::dann_run::{MethodRun, train_and_evaluate};
use crate::error::Result;
use crate::files::{RECIPE_FILE, REPORT_FILE, RunLock, create_dir, run_folder_path, write_json};
use crate::recipe::{Recipe, RunOptions, RunRecord, ToyRecipe};
use crate::summary::{RunKind, RunSummary, Selection};
use crate::weights::{RunConfig, WeightsInfo};
use adapt_datasets::DomainPair;
use adapt_datasets::toy::{Points2d, RotatedMoons, RotatedMoonsConfig};
use adapt_eval::plots::{self, BoundaryPanel, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{Pca, predict};
use adapt_models::ParamStore;
use adapt_models::toy::{ToyConfig, ToyDann, toy_dann};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, StepMetrics, TrainConfig};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub const TOY_SOURCE: &str = "moons";
pub const TOY_TARGET: &str = "moons-rotated";

/// Everything that defines one toy run; written to `config.toml` so it can be re-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyRunConfig {
    pub data: RotatedMoonsConfig,
    pub model: ToyConfig,
    pub train: TrainConfig,
}

impl ToyRunConfig {
    pub fn new(recipe: &ToyRecipe, method: Method) -> Self {
        Self {
            data: RotatedMoonsConfig { seed: recipe.seed, ..Default::default() },
            model: ToyConfig::default(),
            train: TrainConfig {
                method,
                steps: recipe.steps,
                batch_size: recipe.batch_size,
                seed: recipe.seed,
                sgd: SgdSettings { lr: recipe.lr, ..SgdSettings::default() },
                log_every: 25,
                ..TrainConfig::default()
            },
        }
    }

    /// The toy net with this run's seeded starting weights.
    pub fn build_model(&self, params: &ParamStore, device: &Device) -> Result<ToyDann> {
        Ok(toy_dann(&self.model, params.var_builder(DType::F32, device))?)
    }

    /// The generated moons as the runs see them.
    pub fn data(&self) -> Result<(RotatedMoons, DomainPair)> {
        let data = RotatedMoons::generate(&self.data)?;
        let domains = DomainPair {
            source_name: TOY_SOURCE.into(),
            target_name: TOY_TARGET.into(),
            source_train: Arc::new(data.source_train.clone()),
            // 150 source points: too few to hold any out; the toy reports its last step.
            source_val: None,
            target_train: Arc::new(data.target_train.clone()),
            source_test: Arc::new(data.source_test.clone()),
            target_test: Arc::new(data.target_test.clone()),
            mean: Vec::new(),
            std: Vec::new(),
            input: None,
            notes: Vec::new(),
            classes: vec!["0".into(), "1".into()],
            target_labelled: true,
            protocol: "generated train and test points for both domains".into(),
        };
        Ok((data, domains))
    }

    /// What a weights file of this run says about its input.
    pub fn input_description(&self) -> serde_json::Value {
        serde_json::json!({
            "input": "[N, 2] f32 points, no preprocessing",
            "source": format!("two interleaving moons, generator seed {}", self.data.seed),
            "target": format!("the same generator, rotated by {} degrees", self.data.angle_degrees),
        })
    }
}

fn domain_points(set: &Points2d, coords: &[[f64; 2]], is_target: bool) -> Vec<DomainPoint> {
    coords.iter().zip(&set.labels).map(|(c, &label)| DomainPoint { x: c[0], y: c[1], label, is_target }).collect()
}

fn raw_points(set: &Points2d, is_target: bool) -> Vec<DomainPoint> {
    let coords: Vec<[f64; 2]> = set.points.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    domain_points(set, &coords, is_target)
}

struct TrainedToy {
    method: Method,
    model: ToyDann,
    summary: RunSummary,
    curve: Vec<StepMetrics>,
}

/// Class-1 probabilities of `model` on a grid, for the boundary plot.
fn grid_probabilities(
    model: &ToyDann,
    extent: (f64, f64, f64, f64),
    resolution: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let grid = Points2d { labels: vec![0; resolution * resolution], points: plots::grid_points(extent, resolution) };
    Ok(predict(model, &grid, None, device, 4096, false)?.class1_probability)
}

/// PCA of the model's features over source test + target test, fitted on their union.
fn feature_pca(model: &ToyDann, data: &RotatedMoons, device: &Device) -> Result<Vec<DomainPoint>> {
    let s = predict(model, &data.source_test, None, device, 1024, true)?;
    let t = predict(model, &data.target_test, None, device, 1024, true)?;
    let mut all = s.features.clone();
    all.extend(&t.features);
    let pca = Pca::fit(&all, s.feature_dim, 2)?;
    let to2 = |v: Vec<Vec<f64>>| v.into_iter().map(|c| [c[0], c[1]]).collect::<Vec<_>>();
    let mut pts = domain_points(&data.source_test, &to2(pca.transform(&s.features)), false);
    pts.extend(domain_points(&data.target_test, &to2(pca.transform(&t.features)), true));
    Ok(pts)
}

/// Trains the recipe's methods in one run folder and writes its report.
pub fn run(recipe: &ToyRecipe, opts: &RunOptions, device: &Device) -> Result<Vec<RunSummary>> {
    recipe.validate()?;
    let methods = &recipe.methods;
    let data_cfg = ToyRunConfig::new(recipe, Method::Dann);
    let (data, domains) = data_cfg.data()?;
    crate::pair::check_batch(&domains, recipe.batch_size)?;
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_folder_path(opts.out.as_deref(), label, TOY_SOURCE, TOY_TARGET);
    create_dir(&dir)?;
    let _lock = RunLock::acquire(&dir)?;
    write_json(&dir.join(RECIPE_FILE), &RunRecord::new(Recipe::Toy(recipe.clone()), opts))?;
    let mut trained = Vec::new();
    for &method in methods {
        let cfg = ToyRunConfig::new(recipe, method);
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        let params = ParamStore::new(cfg.train.seed);
        let model = cfg.build_model(&params, device)?;
        let info = WeightsInfo {
            input: cfg.input_description(),
            config: RunConfig::Toy(cfg.clone()),
            classes: vec!["0".into(), "1".into()],
        };
        let run = MethodRun {
            kind: RunKind::Toy,
            train: &cfg.train,
            select: Selection::Last,
            config: &info.config,
            info: &info,
        };
        let (summary, curve) = train_and_evaluate(&run, &model, &params, &domains, &sub, device, opts)?;
        trained.push(TrainedToy { method, model, summary, curve });
    }
    write_report(&dir, &data, &data_cfg, &trained, device)?;
    Ok(trained.into_iter().map(|t| t.summary).collect())
}

fn write_report(
    dir: &Path,
    data: &RotatedMoons,
    cfg: &ToyRunConfig,
    trained: &[TrainedToy],
    device: &Device,
) -> Result<()> {
    let mut all_points = raw_points(&data.source_test, false);
    all_points.extend(raw_points(&data.target_test, true));
    let extent = plots::extent_of(&all_points, 0.5);
    let resolution = 120;
    let mut boundary_panels = Vec::new();
    let mut pca_panels = Vec::new();
    for t in trained {
        let s = &t.summary;
        boundary_panels.push(BoundaryPanel {
            title: format!("{}: target acc {}", s.method, percent(s.target_acc)),
            extent,
            resolution,
            class1_probability: grid_probabilities(&t.model, extent, resolution, device)?,
            points: all_points.clone(),
        });
        pca_panels.push(ScatterPanel {
            title: format!("{}: feature PCA, domain acc {}", s.method, percent(s.domain_acc)),
            points: feature_pca(&t.model, data, device)?,
            by_domain: true,
        });
    }
    plots::decision_boundaries(&dir.join("decision_boundaries.png"), &boundary_panels)?;
    plots::scatter_panels(&dir.join("features_pca.png"), &pca_panels)?;

    let mut report = Report::new(&format!("Rotated moons: {TOY_SOURCE} -> {TOY_TARGET}"));
    report.paragraph(&format!(
        "Source: two interleaving moons ({} points, noise {}); target: the same generator with another seed, rotated by {} degrees. \
         Seed {}. Accuracies on held-out test sets of {} points each; the domain accuracy is the model's own domain classifier \
         on source test + target test (50 % means it cannot tell the domains apart). Target labels are used for this evaluation only.",
        data.source_train.len(),
        cfg.data.noise,
        cfg.data.angle_degrees,
        cfg.train.seed,
        data.source_test.len(),
    ));
    report.table(
        &["method", "source acc", "target acc", "target ARI", "domain acc", "steps", "seconds"],
        &trained
            .iter()
            .map(|t| {
                let s = &t.summary;
                vec![
                    s.method.clone(),
                    percent(s.source_acc),
                    percent(s.target_acc),
                    format!("{:.3}", s.target_ari),
                    percent(s.domain_acc),
                    s.steps.to_string(),
                    format!("{:.1}", s.seconds),
                ]
            })
            .collect::<Vec<_>>(),
    );
    report.heading("Decision boundaries");
    report.paragraph("Background: the predicted class (blue 0, orange 1). Circles: source test points; triangles: target test points; colour: true class.");
    report.image("decision boundaries", "decision_boundaries.png");
    report.heading("Features");
    report.paragraph("PCA (2 components) of the feature layer over source and target test points, coloured by domain.");
    report.image("feature PCA", "features_pca.png");
    report.heading("Training curves");
    for t in trained {
        let rel = if trained.len() > 1 { format!("{}/curves.png", t.method.as_str()) } else { "curves.png".into() };
        let last = t.curve.last().copied();
        report.paragraph(&format!(
            "**{}**: final label loss {:.3}, domain loss {:.3}, lambda {:.3}.",
            t.method.as_str(),
            last.map_or(f64::NAN, |r| r.label_loss),
            last.map_or(f64::NAN, |r| r.domain_loss),
            last.map_or(f64::NAN, |r| r.lambda)
        ));
        report.image(&format!("{} curves", t.method.as_str()), &rel);
    }
    report.write(&dir.join(REPORT_FILE))?;
    Ok(())
}
