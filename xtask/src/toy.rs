//! The 2D-toy experiment (rotated moons): source-only and DANN on the same data and seed, with
//! decision boundaries and feature PCA side by side.
use crate::experiment::{DomainData, RunOptions, train_and_evaluate};
use crate::run_dir;
use crate::train::{MethodChoice, RunSummary, TOY_SOURCE, TOY_TARGET, TrainArgs};
use adapt_datasets::toy::{Points2d, RotatedMoons, RotatedMoonsConfig};
use adapt_eval::plots::{self, BoundaryPanel, DomainPoint, ScatterPanel};
use adapt_eval::report::{Report, percent};
use adapt_eval::{Pca, predict};
use adapt_models::ParamStore;
use adapt_models::toy::{ToyConfig, ToyDann, toy_dann};
use adapt_train::optim::SgdSettings;
use adapt_train::{Method, StepMetrics, TrainConfig};
use anyhow::{Result, bail};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Everything that defines one toy run; written to `config.toml` so it can be re-run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyRunConfig {
    pub data: RotatedMoonsConfig,
    pub model: ToyConfig,
    pub train: TrainConfig,
}

/// The toy preset: batches of 64 source + 64 target points (of 150 each), 3000 steps, lr 0.05
/// annealed as in the paper, the paper's lambda schedule.
pub fn preset(args: &TrainArgs, method: Method) -> ToyRunConfig {
    ToyRunConfig {
        data: RotatedMoonsConfig { seed: args.seed, ..Default::default() },
        model: ToyConfig::default(),
        train: TrainConfig {
            method,
            steps: args.steps.unwrap_or(3000),
            batch_size: args.batch_size.unwrap_or(64),
            seed: args.seed,
            sgd: SgdSettings { lr: args.lr.unwrap_or(0.05), ..SgdSettings::default() },
            log_every: 25,
            ..TrainConfig::default()
        },
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

fn train_one(
    cfg: &ToyRunConfig,
    data: &DomainData,
    dir: &Path,
    device: &Device,
    opts: &RunOptions,
) -> Result<TrainedToy> {
    let params = ParamStore::new(cfg.train.seed);
    let model = toy_dann(&cfg.model, params.var_builder(DType::F32, device))?;
    let (summary, curve) =
        train_and_evaluate(&model, &params, &cfg.train, &toml::to_string_pretty(cfg)?, data, dir, device, opts)?;
    Ok(TrainedToy { method: cfg.train.method, model, summary, curve })
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

pub fn run(args: &TrainArgs, device: &Device) -> Result<Vec<RunSummary>> {
    let methods = match args.method {
        MethodChoice::Compare => vec![Method::SourceOnly, Method::Dann],
        MethodChoice::SourceOnly => vec![Method::SourceOnly],
        MethodChoice::Dann => vec![Method::Dann],
        MethodChoice::Gta => bail!("--method gta is dispatched before the DANN experiments"),
    };
    let label = if methods.len() > 1 { "compare" } else { methods[0].as_str() };
    let dir = run_dir::create(args.out.as_deref(), label, TOY_SOURCE, TOY_TARGET)?;
    args.save(&dir)?;
    let data = RotatedMoons::generate(&preset(args, Method::Dann).data)?;
    let domains = DomainData {
        source_name: TOY_SOURCE.into(),
        target_name: TOY_TARGET.into(),
        source_train: Arc::new(data.source_train.clone()),
        // 150 source points: too few to hold any out; the toy reports its last step.
        source_val: None,
        target_train: Arc::new(data.target_train.clone()),
        source_test: Arc::new(data.source_test.clone()),
        target_test: Arc::new(data.target_test.clone()),
    };
    let mut trained = Vec::new();
    for &method in &methods {
        let cfg = preset(args, method);
        let sub = if methods.len() > 1 { dir.join(method.as_str()) } else { dir.clone() };
        trained.push(train_one(&cfg, &domains, &sub, device, &args.run_options())?);
    }

    let mut all_points = raw_points(&data.source_test, false);
    all_points.extend(raw_points(&data.target_test, true));
    let extent = plots::extent_of(&all_points, 0.5);
    let resolution = 120;
    let mut boundary_panels = Vec::new();
    let mut pca_panels = Vec::new();
    for t in &trained {
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
            points: feature_pca(&t.model, &data, device)?,
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
        preset(args, Method::Dann).data.noise,
        preset(args, Method::Dann).data.angle_degrees,
        args.seed,
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
    for t in &trained {
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
    report.write(&dir.join("report.md"))?;
    Ok(trained.into_iter().map(|t| t.summary).collect())
}
