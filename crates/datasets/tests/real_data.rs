//! Loads the real shared data when `ADAPT_DATA_DIR` points at it; prints "skipped: no data"
//! otherwise, or fails naming the folder with `ADAPT_REQUIRE_DATA=1`. The expected histograms were computed from the real files (and agree with the
//! PROVENANCE notes of the shared copy).
mod common;
use adapt_datasets::{Preprocess, Rows, Split, load, preprocess};
use common::{find_real_data, real_data};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[test]
fn missing_data_names_the_folder_looked_in() {
    let e = find_real_data(Some("/nonexistent".into()), &["mnist"]).unwrap_err();
    assert!(e.contains("/nonexistent"), "{e}");
    assert!(find_real_data(None, &["mnist"]).unwrap_err().contains("ADAPT_DATA_DIR"));
    let dir = common::tmp("real-data-helper");
    std::fs::create_dir_all(dir.join("mnist")).unwrap();
    assert_eq!(find_real_data(Some(dir.clone().into()), &["mnist"]).unwrap(), dir);
    let e = find_real_data(Some(dir.clone().into()), &["mnist", "usps"]).unwrap_err();
    assert!(e.contains(&dir.join("usps").display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_full_counts_and_histograms() {
    let Some(dir) = real_data(&["mnist"]) else { return };
    let train = load("mnist", Split::Train, Some(&dir)).unwrap();
    assert_eq!(train.shape(), [60000, 1, 28, 28]);
    assert_eq!(train.label_histogram(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(train.pixel_range(), (0.0, 255.0));
    let mean = train.images.iter().map(|v| *v as f64).sum::<f64>() / train.images.len() as f64;
    assert!((mean - 33.32).abs() < 0.01, "{mean}");
    assert!(train.partial.is_none());
    let test = load("mnist", Split::Test, Some(&dir)).unwrap();
    assert_eq!(test.shape(), [10000, 1, 28, 28]);
    assert_eq!(test.label_histogram(10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}

#[test]
fn mnist_m_partial_train_and_full_test() {
    let Some(dir) = real_data(&["mnist", "mnist_m"]) else { return };
    let train = load("mnist_m", Split::Train, Some(&dir)).unwrap();
    assert_eq!(train.shape(), [30000, 3, 32, 32]);
    let p = train.partial.expect("the shared train folder is partial");
    assert_eq!((p.loaded, p.listed), (30000, 59001));
    assert_eq!(train.label_histogram(10), [2961, 3423, 2948, 3073, 2926, 2709, 2975, 3107, 2875, 3003]);
    let test = load("mnist-m", Split::Test, Some(&dir)).unwrap();
    assert_eq!(test.shape(), [9001, 3, 32, 32]);
    assert!(test.partial.is_none());
    assert_eq!(test.label_histogram(10), [878, 1016, 933, 908, 890, 807, 856, 914, 880, 919]);
    let mean = test.images.iter().map(|v| *v as f64).sum::<f64>() / test.images.len() as f64;
    assert!((mean - 113.6).abs() < 0.1, "{mean}");
    // MNIST-M image i is made from MNIST image i: the labels agree.
    let mnist = load("mnist", Split::Test, Some(&dir)).unwrap();
    assert_eq!(test.labels[..], mnist.labels[..9001]);
}

/// MNIST-M's 32x32 images hold MNIST's digits unscaled at offset (2, 2), as masks of every
/// non-zero pixel: the ink (pixels far from the image's median colour) overlaps MNIST image `i`
/// placed there best, better than at any shifted offset or bilinearly enlarged to 32. This is
/// what makes the digit pipeline crop MNIST-M to 28 rather than resize it.
#[test]
fn mnist_m_digits_are_mnist_padded_by_two() {
    let Some(dir) = real_data(&["mnist", "mnist_m"]) else { return };
    let mm = load("mnist-m", Split::Test, Some(&dir)).unwrap();
    let mnist = load("mnist", Split::Test, Some(&dir)).unwrap();
    let n = 200;
    let ink: Vec<Vec<bool>> = (0..n)
        .map(|i| {
            let img = mm.image(i);
            let median: Vec<f32> = (0..3)
                .map(|c| {
                    let mut v = img[c * 1024..(c + 1) * 1024].to_vec();
                    v.sort_by(f32::total_cmp);
                    v[512]
                })
                .collect();
            (0..1024).map(|p| (0..3).map(|c| (img[c * 1024 + p] - median[c]).abs()).sum::<f32>() > 60.0).collect()
        })
        .collect();
    let mean_iou = |digit: &dyn Fn(usize) -> Vec<bool>| {
        (0..n)
            .map(|i| {
                let d = digit(i);
                let both = d.iter().zip(&ink[i]).filter(|(a, b)| **a && **b).count();
                let any = d.iter().zip(&ink[i]).filter(|(a, b)| **a || **b).count();
                both as f64 / any.max(1) as f64
            })
            .sum::<f64>()
            / n as f64
    };
    let digits = &mnist;
    let at = |oy: usize, ox: usize| {
        move |i: usize| {
            let mut m = vec![false; 1024];
            for (p, v) in digits.image(i).iter().enumerate() {
                m[(p / 28 + oy) * 32 + p % 28 + ox] = *v > 0.0;
            }
            m
        }
    };
    let padded = mean_iou(&at(2, 2));
    for (oy, ox) in [(1, 2), (3, 2), (2, 1), (2, 3), (0, 0), (4, 4)] {
        let shifted = mean_iou(&at(oy, ox));
        assert!(padded > shifted + 0.05, "offset (2, 2) IoU {padded:.3} vs ({oy}, {ox}) {shifted:.3}");
    }
    let mut enlarged = mnist.clone();
    preprocess::resize(&mut enlarged, 32, 32).unwrap();
    let resized = mean_iou(&|i| enlarged.image(i).iter().map(|v| *v > 0.0).collect());
    assert!(padded > resized + 0.03, "padded IoU {padded:.3} vs resized {resized:.3}");
}

#[cfg(feature = "generators")]
#[test]
fn bsds500_has_200_photos_and_generation_works_on_them() {
    use adapt_datasets::mnist_m_gen;
    let Some(dir) = real_data(&["mnist", "bsds500"]) else { return };
    let photos = mnist_m_gen::list_photos(&dir.join("bsds500")).unwrap();
    assert_eq!(photos.len(), 200);
    let decoded = mnist_m_gen::load_photos(&photos[..3]).unwrap();
    assert!(decoded.iter().all(|p| p.width == 481 && p.height == 321));
    let mnist = load("mnist", Split::Test, Some(&dir)).unwrap();
    let cfg = mnist_m_gen::MnistMConfig { count: 16, seed: 1, ..Default::default() };
    let g = mnist_m_gen::generate(&mnist, &decoded, &cfg).unwrap();
    assert_eq!(g.shape(), [16, 3, 32, 32]);
    assert_eq!(g.labels[..], mnist.labels[..16]);
}

#[test]
fn paper_pipeline_mnist_to_mnist_m() {
    let Some(dir) = real_data(&["mnist", "mnist_m"]) else { return };
    // MNIST padded to 32 and made RGB, MNIST-M as is, both /255, mean of both train sets removed.
    let mut src = load("mnist", Split::Train, Some(&dir)).unwrap();
    let mut tgt = load("mnist-m", Split::Train, Some(&dir)).unwrap();
    Preprocess { pad_to: Some(32), to_rgb: true, scale: true, ..Default::default() }.apply(&mut src).unwrap();
    Preprocess::unit().apply(&mut tgt).unwrap();
    let mean = preprocess::channel_mean(&[&src, &tgt]).unwrap();
    preprocess::subtract_mean(&mut src, &mean).unwrap();
    preprocess::subtract_mean(&mut tgt, &mean).unwrap();
    assert_eq!(src.shape(), [60000, 3, 32, 32]);
    // The copy the training sampler makes for every batch: 64 rows at shuffled positions.
    let mut order: Vec<usize> = (0..src.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(0));
    let t = std::time::Instant::now();
    for rows in order.chunks_exact(64).take(1000) {
        let (x, y) = src.gather(rows);
        assert_eq!((x.len(), y.len()), (64 * 3 * 32 * 32, 64));
    }
    let per = t.elapsed().as_secs_f64() / 1000.0;
    println!("real MNIST 64x3x32x32 batches: {:.1} us/batch", per * 1e6);
    assert!(per < 4e-3, "a batch must take far less than a 40 ms training step");
}
