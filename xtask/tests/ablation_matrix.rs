//! `cargo xtask ablation matrix` on two small fixture datasets: every cell is trained, the table
//! has the default command's column (the label-free choice per seed), and a second call reuses the
//! finished runs instead of training them again.
mod common;
use common::{digits_data_dir, tmp, xtask};

#[test]
fn the_matrix_reports_each_column_and_the_default_choice_and_reuses_finished_runs() {
    let root = tmp("matrix");
    let data = root.join("data");
    digits_data_dir(&data, 200);
    let out = root.join("matrix");
    let args = [
        "--json",
        "ablation",
        "matrix",
        "--quiet",
        "--seeds",
        "1",
        "--steps",
        "50",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let r = xtask(&args);
    assert!(r.ok, "matrix failed: {}", r.stderr);
    let md = std::fs::read_to_string(out.join("matrix.md")).unwrap();
    assert!(md.contains("| default (label-free choice) |"), "{md}");
    for pair in ["mnist -> usps", "usps -> mnist"] {
        let row = md.lines().find(|l| l.starts_with(&format!("| {pair} |"))).unwrap_or_else(|| panic!("{md}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // source-only, paper, recommended, default: each a "mean ± std" of one seed.
        for c in &cells[2..6] {
            assert!(c.ends_with("± 0.0"), "{pair}: cell '{c}' in {row}");
        }
        // The default is one of the two runs of the recommended folder, and "kept" says which.
        let kept = cells[6] == "1/1";
        assert_eq!(cells[5], if kept { cells[4] } else { cells[2] }, "{row}");
    }
    let summary = out.join("mnist-usps/seed0/recommended/dann/summary.json");
    let written = std::fs::metadata(&summary).unwrap().modified().unwrap();
    let again = xtask(&args);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(std::fs::metadata(&summary).unwrap().modified().unwrap(), written, "a finished run was trained again");
    assert_eq!(std::fs::read_to_string(out.join("matrix.md")).unwrap(), md);

    // --pairs: only the pairs named, from the same finished runs.
    let mut one: Vec<&str> = args.to_vec();
    one.extend(["--pairs", "usps:mnist"]);
    let r = xtask(&one);
    assert!(r.ok, "{}", r.stderr);
    let only = std::fs::read_to_string(out.join("matrix.md")).unwrap();
    let row = |md: &str, pair: &str| md.lines().find(|l| l.starts_with(&format!("| {pair} |"))).map(str::to_string);
    assert_eq!(row(&only, "usps -> mnist"), row(&md, "usps -> mnist"));
    assert_eq!(row(&only, "mnist -> usps"), None, "{only}");
    assert_eq!(std::fs::metadata(&summary).unwrap().modified().unwrap(), written);
    for (bad, says) in [("usps-mnist", "SOURCE:TARGET"), ("usps:usps", "itself"), ("usps:nope", "nope")] {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--pairs", bad]);
        let r = xtask(&a);
        assert!(!r.ok && r.stderr.contains(says), "--pairs {bad}: {}", r.stderr);
    }
    std::fs::remove_dir_all(&root).ok();
}
