//! What the end-to-end tests share: where the real data is.
#![allow(dead_code)]
use std::path::Path;

/// The real data folder of `ADAPT_DATA_DIR` when it holds every dataset folder named in
/// `datasets` (`mnist`, `mnist_m`, `usps`, ...), as the `--data-dir` argument. Otherwise the test
/// has nothing to run on: it prints "skipped: ..." and gets `None`, or, with
/// `ADAPT_REQUIRE_DATA=1` (as CI sets it), panics naming the folder it looked in, so that a broken
/// data path cannot pass as a skip.
pub fn real_data(datasets: &[&str]) -> Option<String> {
    match find_real_data(std::env::var("ADAPT_DATA_DIR").ok(), datasets) {
        Ok(dir) => Some(dir),
        Err(why) if data_required() => panic!("ADAPT_REQUIRE_DATA is set, but {why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The decision of [`real_data`] for a given `ADAPT_DATA_DIR` value: the folder, or why there is
/// no data, naming the folder looked in.
pub fn find_real_data(dir: Option<String>, datasets: &[&str]) -> Result<String, String> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Err("no data: ADAPT_DATA_DIR is not set (or not UTF-8)".into());
    };
    if !Path::new(&dir).is_dir() {
        return Err(format!("no data: ADAPT_DATA_DIR {dir} is not a folder"));
    }
    match datasets.iter().map(|name| Path::new(&dir).join(name)).find(|folder| !folder.is_dir()) {
        Some(folder) => Err(format!("no data: {} is not a folder", folder.display())),
        None => Ok(dir),
    }
}

/// Whether `ADAPT_REQUIRE_DATA` asks for missing data to fail (any value but empty and `0`).
fn data_required() -> bool {
    std::env::var_os("ADAPT_REQUIRE_DATA").is_some_and(|v| !v.is_empty() && v != "0")
}
