//! Proxy A-distance and t-SNE of your own features: any `[n, dim]` f32 rows from two domains,
//! here two Gaussian clouds, first far apart, then nearly on top of each other. The A-distance
//! (2 for separable domains, 0 for indistinguishable ones) is larger for the larger shift; the
//! t-SNE plots of both are written to one PNG.
//!
//! `cargo run --example analyse_your_features -- [OUT.png]`
use adapt_eval::plots::{DomainPoint, ScatterPanel, scatter_panels};
use adapt_eval::{TsneConfig, proxy_a_distance, tsne};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// `n` rows of `dim` features, class `i % 2` centred at `class_gap * class`, shifted by `shift`.
fn cloud(n: usize, dim: usize, shift: f32, class_gap: f32, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, 1.0).expect("unit normal");
    (0..n)
        .flat_map(|i| (0..dim).map(move |_| (i, ())))
        .map(|(i, _)| noise.sample(&mut rng) + shift + class_gap * (i % 2) as f32)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| std::env::temp_dir().join("adapt_features_tsne.png").display().to_string());
    let (n, dim) = (300, 32);
    let source = cloud(n, dim, 0.0, 3.0, 1);
    let mut panels = Vec::new();
    for (title, shift) in [("target shifted by 2", 2.0), ("target shifted by 0.1", 0.1)] {
        let target = cloud(n, dim, shift, 3.0, 2);
        let a = proxy_a_distance(&source, &target, dim, 0)?;
        println!("{title}: proxy A-distance {:.2} (domain classifier test error {:.3})", a.a_distance, a.test_error);
        let mut all = source.clone();
        all.extend(&target);
        let coords = tsne(&all, dim, &TsneConfig { seed: 0, ..TsneConfig::default() })?;
        let points = coords
            .iter()
            .enumerate()
            .map(|(i, c)| DomainPoint { x: c[0], y: c[1], label: (i % n % 2) as u32, is_target: i >= n })
            .collect();
        panels.push(ScatterPanel {
            title: format!("{title}: A-distance {:.2}", a.a_distance),
            points,
            by_domain: true,
        });
    }
    scatter_panels(std::path::Path::new(&out), &panels)?;
    println!("t-SNE plot: {out}");
    Ok(())
}
