//! The Hub path, offline: a Hugging Face cache folder (`HF_HOME/hub/datasets--OWNER--NAME/refs/main`
//! + `snapshots/REV/...`) holding parquet files in the Hub's schema loads without network.
//!
//! One test function, because it sets process-wide environment variables. Without the `hub`
//! feature the same loads are errors that name the feature.
mod common;
use adapt_datasets::registry::{DatasetId, load_id};
use adapt_datasets::{DatasetError, Split};
use common::*;

#[cfg(feature = "hub")]
#[test]
fn datasets_in_the_hf_cache_load_offline() {
    let root = tmp("hub");
    let hf_home = root.join("hf");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let repo = hf_home.join("hub/datasets--ylecun--mnist");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    let labels: Vec<i64> = vec![5, 0, 4, 1, 9];
    write_hub_parquet(
        &repo.join(format!("snapshots/{rev}/mnist/train-00000-of-00001.parquet")),
        &grey_pngs(5, 28),
        &labels,
    );
    let usps = hf_home.join("hub/datasets--flwrlabs--usps");
    std::fs::create_dir_all(usps.join("refs")).unwrap();
    std::fs::write(usps.join("refs/main"), rev).unwrap();
    write_hub_parquet(
        &usps.join(format!("snapshots/{rev}/data/test-00000-of-00001.parquet")),
        &grey_pngs(3, 16),
        &[7, 8, 9],
    );

    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("HF_HOME", &hf_home);
        std::env::remove_var("HF_HUB_CACHE");
        std::env::remove_var("HUGGINGFACE_HUB_CACHE");
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    // A data directory without dataset folders, so the Hub path is taken.
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();

    let ds = load_id(DatasetId::Mnist, Split::Train, Some(&data)).unwrap();
    assert_eq!(ds.shape(), [5, 1, 28, 28]);
    assert_eq!(ds.labels, vec![5, 0, 4, 1, 9]);
    assert_eq!(ds.origin, "hf://datasets/ylecun/mnist");
    for i in 0..5 {
        assert_eq!(ds.image(i)[300], pixel(i, 300) as f32);
    }
    let u = load_id(DatasetId::Usps, Split::Test, Some(&data)).unwrap();
    assert_eq!((u.shape(), u.labels.clone()), ([3, 1, 16, 16], vec![7, 8, 9]));

    // Not cached + offline: a NotFound error that says why, without touching the network.
    let e = load_id(DatasetId::Mnist, Split::Test, Some(&data)).unwrap_err();
    assert!(matches!(e, DatasetError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains("ylecun/mnist"), "{msg}");
    let e = load_id(DatasetId::Svhn, Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(e.contains("ufldl-stanford/svhn"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[cfg(not(feature = "hub"))]
#[test]
fn without_the_hub_feature_hub_and_parquet_data_are_errors_naming_it() {
    let root = tmp("no-hub");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let e = load_id(DatasetId::Mnist, Split::Train, Some(&data)).unwrap_err();
    assert!(matches!(e, DatasetError::FeatureDisabled { feature: "hub", .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("`hub` feature") && msg.contains("ylecun/mnist"), "{msg}");
    // Parquet files are recognised by name, so a placeholder is enough to take the parquet path.
    let shard = data.join("mnist/mnist/train-00000-of-00001.parquet");
    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
    std::fs::write(&shard, b"PAR1").unwrap();
    let msg = load_id(DatasetId::Mnist, Split::Train, Some(&data)).unwrap_err().to_string();
    assert!(msg.contains("`hub` feature") && msg.contains("train-00000-of-00001.parquet"), "{msg}");
    // The original formats still load.
    write_mnist(&data.join("mnist"), 3, 28, true);
    assert_eq!(load_id(DatasetId::Mnist, Split::Train, Some(&data)).unwrap().len(), 3);
    std::fs::remove_dir_all(&root).unwrap();
}
