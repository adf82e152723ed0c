//! Batches per second of the shuffling batch iterator for 64-image 3x28x28 batches (the size of a
//! DANN MNIST -> MNIST-M step). A training step takes ~40-80 ms for 128 images, so the iterator
//! must deliver well over 10x that rate: thousands of batches per second.
use adapt_datasets::{BatchIter, ImageDataset, Split};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn dataset(n: usize) -> ImageDataset {
    let px: Vec<u8> = (0..n * 3 * 28 * 28).map(|i| (i % 251) as u8).collect();
    ImageDataset::from_u8("bench", Split::Train, &px, (0..n as u32).map(|i| i % 10).collect(), [3, 28, 28]).unwrap()
}

fn bench_batches(c: &mut Criterion) {
    let ds = dataset(60_000);
    let mut group = c.benchmark_group("batches");
    group.throughput(Throughput::Elements(1));
    group.bench_function("next_into_64x3x28x28", |b| {
        let mut it = BatchIter::new(&ds, 64, 0).unwrap().drop_last(true);
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        b.iter(|| {
            it.next_into(&mut images, &mut labels).unwrap();
            black_box((&images, &labels));
        })
    });
    group.bench_function("iterator_64x3x28x28", |b| {
        let mut it = BatchIter::new(&ds, 64, 0).unwrap().drop_last(true);
        b.iter(|| black_box(it.next().unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench_batches);
criterion_main!(benches);
