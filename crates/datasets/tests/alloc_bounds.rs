//! Sizes a file declares are bounded before anything is allocated for them:
//! a zlib bomb inside a `.mat`, a PNG declaring 12000x12000 pixels, IDX dimensions a gzip file
//! cannot hold, a gzip bomb in a USPS text file. Each is an error naming the file, reached with
//! a few megabytes allocated, where the unbounded loaders inflated or reserved hundreds.
mod common;
use adapt_datasets::memory::{CountingAlloc, counting_available, measure};
use adapt_datasets::{Split, load};
use common::*;
use std::io::Write;
use std::path::Path;

#[global_allocator]
static ALLOC: CountingAlloc<std::alloc::System> = CountingAlloc::new(std::alloc::System);

const MB: usize = 1 << 20;

/// Loads `name` from `data` and returns the error text and the peak bytes allocated meanwhile.
fn failing_load(data: &Path, name: &str) -> (String, usize) {
    let (r, peak) = measure(usize::MAX, || load(name, Split::Train, Some(data)));
    (r.expect_err("the bomb loaded").to_string(), peak)
}

fn zlib_of_zeros(header: &[u8], zeros: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(header).unwrap();
    let chunk = vec![0u8; MB];
    for _ in 0..zeros / MB {
        z.write_all(&chunk).unwrap();
    }
    z.finish().unwrap()
}

fn mat_with_compressed(z: &[u8]) -> Vec<u8> {
    let mut b = mat_file(&[], false);
    b.extend_from_slice(&15u32.to_le_bytes());
    b.extend_from_slice(&(z.len() as u32).to_le_bytes());
    b.extend_from_slice(z);
    b
}

#[test]
fn declared_sizes_are_bounded_before_allocation() {
    assert!(counting_available(), "the counting allocator is not installed");
    let data = tmp("alloc");
    std::fs::create_dir_all(data.join("svhn")).unwrap();
    let mat = data.join("svhn/train_32x32.mat");

    // A matrix X of 2x2x3x1 bytes whose element claims 512 MB, all of which the stream inflates to.
    let x = mat_matrix("X", &[2, 2, 3, 1], &MatValues::U8(vec![1; 12]));
    let mut header = x[..x.len() - 16].to_vec(); // tag, flags, dims, name and the data tag
    let declared = 512 * MB as u32;
    header[4..8].copy_from_slice(&declared.to_le_bytes());
    let z = zlib_of_zeros(&header, 512 * MB);
    std::fs::write(&mat, mat_with_compressed(&z)).unwrap();
    let (e, peak) = failing_load(&data, "svhn");
    assert!(e.contains("train_32x32.mat") && e.contains("declares 536870912 bytes") && e.contains("need"), "{e}");
    assert!(peak < 16 * MB, "the zlib bomb allocated {} MB before the error", peak / MB);

    // A size no compressed element of this length can inflate to: refused before inflating.
    let mut tag = 14u32.to_le_bytes().to_vec();
    tag.extend_from_slice(&0xffff_fff0u32.to_le_bytes());
    std::fs::write(&mat, mat_with_compressed(&zlib_of_zeros(&tag, 0))).unwrap();
    let (e, peak) = failing_load(&data, "svhn");
    assert!(e.contains("train_32x32.mat") && e.contains("more than its"), "{e}");
    assert!(peak < MB, "{peak}");

    // A PNG whose header says 12000x12000 RGB (432 MB decoded): refused from the header.
    let root = data.join("mnist_m");
    write_ganin(&root, "train", 2, 2);
    let png_path = root.join("mnist_m_train/00000001.png");
    let mut png_bytes = std::fs::read(&png_path).unwrap();
    png_bytes[16..20].copy_from_slice(&12000u32.to_be_bytes());
    png_bytes[20..24].copy_from_slice(&12000u32.to_be_bytes());
    let crc = {
        let mut c = flate2::Crc::new();
        c.update(&png_bytes[12..29]);
        c.sum()
    };
    png_bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&png_path, &png_bytes).unwrap();
    let (e, peak) = failing_load(&data, "mnist-m");
    assert!(e.contains("00000001.png") && e.contains("limit"), "{e}");
    assert!(peak < 16 * MB, "the PNG header allocated {} MB before the error", peak / MB);

    // IDX dimensions of 4 GB in a gzip file of a few bytes.
    let mnist = data.join("mnist");
    write_mnist(&mnist, 2, 28, true);
    std::fs::write(mnist.join("train-images-idx3-ubyte.gz"), gzip(&idx(&[65536, 256, 256], &[0; 64]))).unwrap();
    let (e, peak) = failing_load(&data, "mnist");
    assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains("more data than"), "{e}");
    assert!(peak < MB, "{peak}");

    // A gzipped USPS text that inflates to 300 MB: stopped at the text bound.
    std::fs::create_dir_all(data.join("usps")).unwrap();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let spaces = vec![b' '; MB];
    for _ in 0..300 {
        z.write_all(&spaces).unwrap();
    }
    std::fs::write(data.join("usps/zip.train.gz"), z.finish().unwrap()).unwrap();
    let (e, peak) = failing_load(&data, "usps");
    assert!(e.contains("zip.train.gz") && e.contains("inflates past"), "{e}");
    assert!(peak < 80 * MB, "the gzip bomb allocated {} MB before the error", peak / MB);
    std::fs::remove_dir_all(&data).unwrap();
}
