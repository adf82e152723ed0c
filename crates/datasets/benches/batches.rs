//! Batches per second of gathering 64 shuffled 3x28x28 images (the source half of a DANN MNIST ->
//! MNIST-M step) with [`Rows::gather`], the copy the training sampler makes for every batch. A
//! training step takes ~40-80 ms for 128 images, so the gather must run well over 10x that rate:
//! thousands of batches per second.
use adapt_datasets::{ImageDataset, Rows, Split};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::hint::black_box;

fn dataset(n: usize) -> ImageDataset {
    let px: Vec<u8> = (0..n * 3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    ImageDataset::from_u8("bench", Split::Train, &px, (0..n as u32).map(|i| i % 10).collect(), [3, 28, 28]).unwrap()
}

fn bench_batches(c: &mut Criterion) {
    let ds = dataset(60_000);
    let mut order: Vec<usize> = (0..ds.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(0));
    let mut group = c.benchmark_group("batches");
    group.throughput(Throughput::Elements(1));
    group.bench_function("gather_64x3x28x28", |b| {
        let mut batches = order.chunks_exact(64).cycle();
        b.iter(|| black_box(ds.gather(batches.next().expect("the cycle is endless"))))
    });
    group.finish();
}

criterion_group!(benches, bench_batches);
criterion_main!(benches);
