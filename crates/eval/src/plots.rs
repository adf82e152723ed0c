//! Plots as PNG files (plotters' bitmap backend, fonts embedded from the `dejavu` crate so no
//! system font is needed).
use crate::error::{EvalError, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // Registration only fails on a malformed font, and these bytes are compiled in.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Plot { path: path.to_path_buf(), message: e.to_string() }
}

/// Colours of the classes (tab10) and of the domains.
pub const CLASS_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
pub const SOURCE_COLOR: RGBColor = RGBColor(31, 119, 180);
pub const TARGET_COLOR: RGBColor = RGBColor(214, 39, 40);

/// A labelled point of one domain.
#[derive(Debug, Clone, Copy)]
pub struct DomainPoint {
    pub x: f64,
    pub y: f64,
    pub label: u32,
    pub is_target: bool,
}

/// One panel of [`decision_boundaries`]: a model's class-1 probability on a regular grid, and the
/// points to draw over it.
pub struct BoundaryPanel {
    pub title: String,
    /// `(x_min, x_max, y_min, y_max)` of the grid.
    pub extent: (f64, f64, f64, f64),
    /// Grid resolution per axis.
    pub resolution: usize,
    /// Row-major `resolution x resolution` probabilities, `y` rows from bottom to top.
    pub class1_probability: Vec<f32>,
    pub points: Vec<DomainPoint>,
}

/// The grid points (cell centres) a [`BoundaryPanel`] needs probabilities for, in its order.
pub fn grid_points(extent: (f64, f64, f64, f64), resolution: usize) -> Vec<[f32; 2]> {
    let (x0, x1, y0, y1) = extent;
    let (dx, dy) = ((x1 - x0) / resolution as f64, (y1 - y0) / resolution as f64);
    let mut pts = Vec::with_capacity(resolution * resolution);
    for j in 0..resolution {
        for i in 0..resolution {
            pts.push([(x0 + (i as f64 + 0.5) * dx) as f32, (y0 + (j as f64 + 0.5) * dy) as f32]);
        }
    }
    pts
}

/// A square extent around `points` with a margin.
pub fn extent_of(points: &[DomainPoint], margin: f64) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for p in points {
        x0 = x0.min(p.x);
        x1 = x1.max(p.x);
        y0 = y0.min(p.y);
        y1 = y1.max(p.y);
    }
    if !x0.is_finite() {
        return (-1.0, 1.0, -1.0, 1.0);
    }
    (x0 - margin, x1 + margin, y0 - margin, y1 + margin)
}

fn blend(a: RGBColor, b: RGBColor, t: f64) -> RGBColor {
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Side-by-side decision boundaries: background shaded by the model's class-1 probability, the
/// 0.5 level clearly visible as the colour change; source points as circles, target points as
/// triangles, coloured by their true class.
pub fn decision_boundaries(path: &Path, panels: &[BoundaryPanel]) -> Result<()> {
    register_fonts();
    let root = BitMapBackend::new(path, (560 * panels.len().max(1) as u32, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    let light = [RGBColor(198, 219, 239), RGBColor(253, 208, 162)];
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let (x0, x1, y0, y1) = panel.extent;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| plot_err(path, e))?;
        let r = panel.resolution;
        if panel.class1_probability.len() != r * r {
            return Err(plot_err(path, format!("{} probabilities for a {r}x{r} grid", panel.class1_probability.len())));
        }
        let (dx, dy) = ((x1 - x0) / r as f64, (y1 - y0) / r as f64);
        chart
            .draw_series(panel.class1_probability.iter().enumerate().map(|(k, &p)| {
                let (i, j) = ((k % r) as f64, (k / r) as f64);
                // Sharpen around 0.5 so the boundary reads at a glance.
                let t = (1.0 / (1.0 + (-(p as f64 - 0.5) * 12.0).exp())).clamp(0.0, 1.0);
                Rectangle::new(
                    [(x0 + i * dx, y0 + j * dy), (x0 + (i + 1.0) * dx, y0 + (j + 1.0) * dy)],
                    blend(light[0], light[1], t).filled(),
                )
            }))
            .map_err(|e| plot_err(path, e))?;
        chart.configure_mesh().disable_mesh().draw().map_err(|e| plot_err(path, e))?;
        let color = |l: u32| CLASS_COLORS[l as usize % CLASS_COLORS.len()];
        chart
            .draw_series(
                panel
                    .points
                    .iter()
                    .filter(|p| !p.is_target)
                    .map(|p| Circle::new((p.x, p.y), 3, color(p.label).filled())),
            )
            .map_err(|e| plot_err(path, e))?
            .label("source")
            .legend(|(x, y)| Circle::new((x, y), 3, BLACK.filled()));
        chart
            .draw_series(
                panel
                    .points
                    .iter()
                    .filter(|p| p.is_target)
                    .map(|p| TriangleMarker::new((p.x, p.y), 4, color(p.label).stroke_width(1))),
            )
            .map_err(|e| plot_err(path, e))?
            .label("target")
            .legend(|(x, y)| TriangleMarker::new((x, y), 4, BLACK.stroke_width(1)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// One panel of [`scatter_panels`].
pub struct ScatterPanel {
    pub title: String,
    pub points: Vec<DomainPoint>,
    /// Colour by domain (true) or by class (false).
    pub by_domain: bool,
}

/// Side-by-side 2D scatter plots (PCA or t-SNE of features), coloured by domain or class.
pub fn scatter_panels(path: &Path, panels: &[ScatterPanel]) -> Result<()> {
    register_fonts();
    let root = BitMapBackend::new(path, (520 * panels.len().max(1) as u32, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let (x0, x1, y0, y1) = extent_of(&panel.points, 0.05);
        let pad = ((x1 - x0).max(y1 - y0) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_err(path, e))?;
        chart.configure_mesh().disable_mesh().draw().map_err(|e| plot_err(path, e))?;
        if panel.by_domain {
            for (is_target, color, name) in [(false, SOURCE_COLOR, "source"), (true, TARGET_COLOR, "target")] {
                chart
                    .draw_series(
                        panel
                            .points
                            .iter()
                            .filter(|p| p.is_target == is_target)
                            .map(|p| Circle::new((p.x, p.y), 2, color.mix(0.6).filled())),
                    )
                    .map_err(|e| plot_err(path, e))?
                    .label(name)
                    .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| plot_err(path, e))?;
        } else {
            chart
                .draw_series(panel.points.iter().map(|p| {
                    let c = CLASS_COLORS[p.label as usize % CLASS_COLORS.len()];
                    Circle::new((p.x, p.y), 2, c.mix(0.7).filled())
                }))
                .map_err(|e| plot_err(path, e))?;
        }
    }
    root.present().map_err(|e| plot_err(path, e))
}

/// One curve of [`curves`].
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Training curves: one chart per group, each with its series against the step.
pub fn curves(path: &Path, groups: &[(String, Vec<Series>)]) -> Result<()> {
    register_fonts();
    let root = BitMapBackend::new(path, (480 * groups.len().max(1) as u32, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let areas = root.split_evenly((1, groups.len().max(1)));
    for ((title, series), area) in groups.iter().zip(areas.iter()) {
        let all = series.iter().flat_map(|s| s.points.iter());
        let (mut x1, mut y0, mut y1) = (1f64, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in all {
            if y.is_finite() {
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_err(path, e))?;
        chart.configure_mesh().x_desc("step").draw().map_err(|e| plot_err(path, e))?;
        for (k, s) in series.iter().enumerate() {
            let color = CLASS_COLORS[k % CLASS_COLORS.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_plot_writes_a_png_and_checks_the_grid() {
        let dir = std::env::temp_dir().join(format!("adapt-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let extent = (-2.0, 2.0, -2.0, 2.0);
        let probs: Vec<f32> = grid_points(extent, 20).iter().map(|p| if p[0] > 0.0 { 0.9 } else { 0.1 }).collect();
        let points = vec![
            DomainPoint { x: 1.0, y: 1.0, label: 1, is_target: false },
            DomainPoint { x: -1.0, y: 0.5, label: 0, is_target: true },
        ];
        let panel = BoundaryPanel { title: "t".into(), extent, resolution: 20, class1_probability: probs, points };
        let path = dir.join("b.png");
        decision_boundaries(&path, &[panel]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let bad = BoundaryPanel {
            title: "t".into(),
            extent,
            resolution: 20,
            class1_probability: vec![0.5; 3],
            points: vec![],
        };
        let e = decision_boundaries(&dir.join("c.png"), &[bad]).unwrap_err().to_string();
        assert!(e.contains("c.png"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
