//! End to end on real digits (needs ADAPT_DATA_DIR): MNIST -> MNIST-M must show the domain gap
//! that motivates adaptation.
use clap::Parser;
use xtask::cli::{Cli, run};

#[test]
fn source_only_mnist_to_mnist_m_shows_the_domain_gap() {
    let Ok(data) = std::env::var("ADAPT_DATA_DIR") else {
        eprintln!("skipped: no data (set ADAPT_DATA_DIR)");
        return;
    };
    let out = std::env::temp_dir().join(format!("adapt-e2e-digits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cli = Cli::parse_from([
        "xtask",
        "--json",
        "train",
        "--quiet",
        "--method",
        "source-only",
        "--source",
        "mnist",
        "--target",
        "mnist-m",
        "--steps",
        "300",
        "--data-dir",
        &data,
        "--out",
        out.to_str().unwrap(),
    ]);
    let value = run(cli).expect("digit run").expect("figures");
    let r = &value["runs"][0];
    let (s, t) = (r["source_acc"].as_f64().unwrap(), r["target_acc"].as_f64().unwrap());
    assert_eq!(r["method"], "source-only");
    assert!(s > 0.75, "source accuracy after 300 steps: {s}");
    assert!(t < s - 0.2, "MNIST-M accuracy {t} should be far below MNIST's {s}");
    assert!(t > 0.1, "MNIST-M accuracy {t} at or below chance: the pipeline is broken");
    for f in ["report.md", "features_pca.png", "curves.png", "config.toml", "model.safetensors", "metrics.jsonl"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    std::fs::remove_dir_all(&out).ok();
}
