//! Images from a path: every layout (class folders, split class folders, flat, ImageList, CSV),
//! colour types and bit depths, resizing, every refused input (each error must name the file and
//! the problem), and export -> load round trips, on generated images and on the real digit data
//! when `ADAPT_DATA_DIR` points at it.
use adapt_datasets::image_folder::list::{parse_csv_list, parse_image_list};
use adapt_datasets::{
    FolderLayout, FolderOptions, ImageDataset, Split, export_class_folders, load_image_source, preprocess,
    scan_image_source,
};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use std::path::{Path, PathBuf};

/// A fresh, empty temporary folder unique to this test.
fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("adapt-imgfolder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.canonicalize().unwrap()
}

/// A grey PNG of `w x h` whose pixel (x, y) is `f(x, y)`.
fn grey(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)])).save(path).unwrap();
}

/// A grey PNG of one value.
fn flat_grey(path: &Path, side: u32, v: u8) {
    grey(path, side, side, |_, _| v);
}

fn rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(w, h, |x, y| Rgb(f(x, y))).save(path).unwrap();
}

fn opts() -> FolderOptions {
    FolderOptions::default()
}

fn err_of<T: std::fmt::Debug>(r: adapt_datasets::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

/// The error names `file` and says `problem`.
fn assert_names(e: &str, file: &Path, problem: &str) {
    assert!(e.contains(&file.display().to_string()), "error does not name {}: {e}", file.display());
    assert!(e.contains(problem), "error does not say '{problem}': {e}");
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn paths(v: &[PathBuf]) -> Vec<String> {
    v.iter().map(|p| p.display().to_string()).collect()
}

/// The first pixel of each image.
fn firsts(ds: &ImageDataset) -> Vec<f32> {
    (0..ds.len()).map(|i| ds.image(i)[0]).collect()
}

#[test]
fn class_folders_label_by_sorted_folder_and_order_by_file_name() {
    let d = tmp("classes");
    flat_grey(&d.join("dog/1.png"), 4, 10);
    flat_grey(&d.join("cat/2.png"), 4, 20);
    flat_grey(&d.join("dog/deeper/3.PNG"), 4, 30);
    flat_grey(&d.join("cat/10.png"), 4, 100);
    flat_grey(&d.join("cat/b.png"), 4, 200);
    flat_grey(&d.join("cat/a.png"), 4, 201);
    flat_grey(&d.join("dog/010.png"), 4, 101);
    // Ignored: non-image files, hidden entries (a resource fork that is not an image at all).
    std::fs::write(d.join("README.md"), "about").unwrap();
    std::fs::write(d.join(".DS_Store"), "x").unwrap();
    std::fs::write(d.join("cat/._2.png"), "not a png").unwrap();
    std::fs::write(d.join("dog/notes.txt"), "x").unwrap();
    std::fs::create_dir_all(d.join(".ipynb_checkpoints")).unwrap();
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(src.layout, FolderLayout::ClassFolders);
    assert_eq!(src.root, d);
    assert_eq!(src.classes, s(&["cat", "dog"]));
    assert!(src.labelled && src.test.is_none());
    // Numbers before names; 10 and 010 tie as numbers and are ordered by path.
    assert_eq!(
        paths(&src.train_paths),
        ["dog/1.png", "cat/2.png", "dog/deeper/3.PNG", "cat/10.png", "dog/010.png", "cat/a.png", "cat/b.png"]
    );
    assert_eq!(src.train.labels, [1, 0, 1, 0, 1, 0, 0]);
    assert_eq!(firsts(&src.train), [10.0, 20.0, 30.0, 100.0, 101.0, 201.0, 200.0]);
    assert_eq!(src.train.shape(), [7, 1, 4, 4]);
    assert_eq!(src.train.split, Split::Train);
    assert_eq!(src.train.name, d.file_name().unwrap().to_str().unwrap());
    assert_eq!(src.train.origin, d.display().to_string());
    assert_eq!(src.conversions, ["2 files without an image extension ignored (the first: README.md)"]);
    src.check_source().unwrap();
    src.check_target(&src.classes).unwrap();
    // The scan alone sees the same images without decoding them.
    let scan = scan_image_source(&d, &opts()).unwrap();
    assert_eq!(scan.len(), 7);
    assert_eq!(scan.stored_shape(64), [1, 4, 4]);
    assert_eq!((scan.train[0].width, scan.train[0].height, scan.train[0].colour), (4, 4, false));
}

#[test]
fn given_classes_fix_the_label_indices() {
    let d = tmp("given");
    flat_grey(&d.join("b/1.png"), 2, 1);
    flat_grey(&d.join("a/2.png"), 2, 2);
    let o = FolderOptions { classes: Some(s(&["x", "b", "a"])), ..opts() };
    let src = load_image_source(&d, &o).unwrap();
    assert_eq!(src.classes, s(&["x", "b", "a"]));
    assert_eq!(src.train.labels, [1, 2]);
    // Class 'x' has no image: fine for a target, not for a source.
    src.check_target(&s(&["x", "b", "a"])).unwrap();
    assert_names(&err_of(src.check_source()), &d, "class 'x' has no training images");
    let o = FolderOptions { classes: Some(s(&["a", "c"])), ..opts() };
    assert_names(&err_of(load_image_source(&d, &o)), &d.join("b"), "class 'b' is not one of the given classes (a, c)");
    // Loaded with its own classes, a target must be relabelled into the source's.
    let mut own = load_image_source(&d, &opts()).unwrap();
    assert_names(&err_of(own.check_target(&s(&["a", "c"]))), &d, "class 'b' is not one of the source's classes");
    assert!(err_of(own.check_target(&s(&["c", "b", "a"]))).contains("FolderOptions::classes"));
    own.relabel(&s(&["c", "b", "a"])).unwrap();
    assert_eq!(own.train.labels, [1, 2]);
    own.check_target(&s(&["c", "b", "a"])).unwrap();
}

#[test]
fn split_class_folders_share_the_training_classes() {
    let d = tmp("split");
    flat_grey(&d.join("train/a/1.png"), 3, 1);
    flat_grey(&d.join("train/b/2.png"), 3, 2);
    flat_grey(&d.join("train/c/3.png"), 3, 3);
    flat_grey(&d.join("test/b/5.png"), 3, 5);
    flat_grey(&d.join("test/c/4.png"), 3, 4);
    std::fs::create_dir_all(d.join("val")).unwrap();
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(src.layout, FolderLayout::SplitClassFolders);
    assert_eq!(src.classes, s(&["a", "b", "c"]));
    assert_eq!(src.train.labels, [0, 1, 2]);
    assert_eq!(paths(&src.train_paths), ["train/a/1.png", "train/b/2.png", "train/c/3.png"]);
    let test = src.test.as_ref().unwrap();
    assert_eq!(test.split, Split::Test);
    assert_eq!(test.labels, [2, 1]);
    assert_eq!(firsts(test), [4.0, 5.0]);
    assert_eq!(paths(&src.test_paths), ["test/c/4.png", "test/b/5.png"]);
    src.check_source().unwrap();
    // A test class the training split lacks.
    flat_grey(&d.join("test/zebra/9.png"), 3, 9);
    let e = err_of(load_image_source(&d, &opts()));
    assert_names(&e, &d.join("test/zebra"), "class 'zebra' is not one of the training split's classes (a, b, c)");
    std::fs::remove_dir_all(d.join("test/zebra")).unwrap();
    // An image directly in train/.
    flat_grey(&d.join("train/stray.png"), 3, 9);
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("train/stray.png"), "image directly in");
}

#[test]
fn a_folder_of_images_alone_is_flat_and_unlabelled() {
    let d = tmp("flat");
    for i in [3u8, 1, 2] {
        flat_grey(&d.join(format!("img{i}.jpg.png")), 5, i);
    }
    std::fs::create_dir_all(d.join("empty_sub")).unwrap();
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(src.layout, FolderLayout::Flat);
    assert!(!src.labelled);
    assert!(src.classes.is_empty());
    assert_eq!(src.train.labels, [0, 0, 0]);
    assert_eq!(firsts(&src.train), [1.0, 2.0, 3.0]);
    assert!(err_of(src.check_source()).contains("unlabelled"));
    src.check_target(&s(&["a", "b"])).unwrap();
    let o = FolderOptions { classes: Some(s(&["a", "b"])), ..opts() };
    assert_eq!(load_image_source(&d, &o).unwrap().classes, s(&["a", "b"]));
}

#[test]
fn image_lists_keep_line_order_and_resolve_labels() {
    let d = tmp("list");
    flat_grey(&d.join("imgs/z 1.png"), 2, 1);
    flat_grey(&d.join("imgs/a.png"), 2, 2);
    flat_grey(&d.join("imgs/m.png"), 2, 3);
    let list = d.join("list.txt");
    std::fs::write(&list, "\u{feff}# comment\nimgs/z 1.png  dog\r\n\n./imgs/a.png cat\nimgs/x/../m.png\tdog\n")
        .unwrap();
    let src = load_image_source(&list, &opts()).unwrap();
    assert_eq!(src.layout, FolderLayout::ImageList);
    assert_eq!(src.root, list);
    assert_eq!(src.train.name, "list");
    assert_eq!(src.classes, s(&["cat", "dog"]));
    assert_eq!(src.train.labels, [1, 0, 1]);
    assert_eq!(firsts(&src.train), [1.0, 2.0, 3.0]);
    assert_eq!(paths(&src.train_paths), ["imgs/z 1.png", "imgs/a.png", "imgs/m.png"]);
    // Integer labels: indices, classes "0".."N-1".
    std::fs::write(&list, "imgs/a.png 2\nimgs/m.png 0\n").unwrap();
    let src = load_image_source(&list, &opts()).unwrap();
    assert_eq!(src.classes, s(&["0", "1", "2"]));
    assert_eq!(src.train.labels, [2, 0]);
    assert!(err_of(src.check_source()).contains("class '1' has no training images"));
    // Given classes: a name or an index.
    let o = FolderOptions { classes: Some(s(&["cat", "dog", "emu"])), ..opts() };
    std::fs::write(&list, "imgs/a.png emu\nimgs/m.png 0\n").unwrap();
    assert_eq!(load_image_source(&list, &o).unwrap().train.labels, [2, 0]);
    std::fs::write(&list, "imgs/a.png emu\nimgs/m.png 3\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &o)), &list, "line 2: label '3' is neither one of the classes");
    std::fs::write(&list, "imgs/a.png owl\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &o)), &list, "line 1: label 'owl'");
    // Unlabelled.
    std::fs::write(&list, "imgs/a.png\nimgs/m.png\n").unwrap();
    let src = load_image_source(&list, &opts()).unwrap();
    assert!(!src.labelled);
    assert_eq!(src.train.labels, [0, 0]);
    // Lines must agree.
    std::fs::write(&list, "imgs/a.png\nimgs/m.png 1\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &opts())), &list, "line 2 has a label and line 1 has none");
    // An unlabelled path with a space would make a file name the label.
    std::fs::write(&list, "imgs/z 1.png\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &opts())), &list, "label '1.png' looks like a file name");
}

#[test]
fn csv_lists_find_their_columns_by_name() {
    let d = tmp("csv");
    flat_grey(&d.join("a,b.png"), 2, 1);
    flat_grey(&d.join("q\"uote.png"), 2, 2);
    flat_grey(&d.join("plain.png"), 2, 3);
    let csv = d.join("data.csv");
    std::fs::write(&csv, "id,Label,PATH\n1,cat,\"a,b.png\"\n\n2,dog,\"q\"\"uote.png\"\r\n3, cat ,plain.png\n").unwrap();
    let src = load_image_source(&csv, &opts()).unwrap();
    assert_eq!(src.layout, FolderLayout::Csv);
    assert_eq!(src.classes, s(&["cat", "dog"]));
    assert_eq!(src.train.labels, [0, 1, 0]);
    assert_eq!(firsts(&src.train), [1.0, 2.0, 3.0]);
    std::fs::write(&csv, "path\nplain.png\na,b.png\n").unwrap();
    // `a,b.png` unquoted is two fields: `a` (missing) and `b.png` (ignored).
    assert_names(&err_of(load_image_source(&csv, &opts())), &csv, "line 3:");
    std::fs::write(&csv, "path,other\nplain.png,x\n\"a,b.png\",y\n").unwrap();
    let src = load_image_source(&csv, &opts()).unwrap();
    assert!(!src.labelled);
    assert_eq!(firsts(&src.train), [3.0, 1.0]);
    std::fs::write(&csv, "file,label\nplain.png,1\n").unwrap();
    assert_names(
        &err_of(load_image_source(&csv, &opts())),
        &csv,
        "line 1: the header (file,label) has no `path` column",
    );
    std::fs::write(&csv, "path,label\nplain.png,\n").unwrap();
    assert_names(&err_of(load_image_source(&csv, &opts())), &csv, "line 2: empty label");
    std::fs::write(&csv, "path,label\n\"plain.png\"x,1\n").unwrap();
    assert_names(&err_of(load_image_source(&csv, &opts())), &csv, "line 2: text after a closing quote");
    std::fs::write(&csv, "path,label\n\"plain.png,1\n").unwrap();
    assert_names(&err_of(load_image_source(&csv, &opts())), &csv, "line 2: a quoted field is not closed");
    // The parsers on their own: a quoted field spanning lines keeps its start line.
    let e = parse_csv_list(&b"path,label,note\nx,3,\"multi\nline\"\ny,4,z\n"[..], Path::new("l.csv"), 10).unwrap();
    assert_eq!((e[0].line, e[0].path.as_str(), e[1].line), (2, "x", 4));
    let e = parse_image_list(&b"a b c 7\n"[..], Path::new("l.txt"), 10).unwrap();
    assert_eq!((e[0].path.as_str(), e[0].label.as_deref()), ("a b c", Some("7")));
}

#[test]
fn list_paths_stay_inside_the_lists_folder() {
    let d = tmp("escape");
    let inner = d.join("inner");
    flat_grey(&inner.join("ok.png"), 2, 1);
    flat_grey(&d.join("outside.png"), 2, 2);
    let list = inner.join("list.txt");
    let check = |text: &str, problem: &str| {
        std::fs::write(&list, text).unwrap();
        assert_names(&err_of(load_image_source(&list, &opts())), &list, problem);
    };
    check("ok.png 0\n/etc/passwd 1\n", "line 2: '/etc/passwd' is an absolute path");
    check("ok.png 0\n../outside.png 1\n", "line 2: '../outside.png' leads outside the list's folder");
    check("ok.png 0\nsub/../../outside.png 1\n", "leads outside");
    check("ok.png 0\nmissing.png 1\n", "line 2: ");
    check("ok.png 0\nmissing.png 1\n", "no such file");
    check("ok.png 0\n./ok.png 1\n", "line 2: ok.png is listed again (first on line 1)");
    check("ok.png 0\n. 1\n", "does not name a file");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.join("outside.png"), inner.join("link.png")).unwrap();
        check("ok.png 0\nlink.png 1\n", "line 2: 'link.png' resolves to");
        check("ok.png 0\nlink.png 1\n", "through a symbolic link, outside the list's folder");
    }
    // An image named by a list that is not an image: the file, and the list line.
    std::fs::write(inner.join("bad.png"), "not an image").unwrap();
    std::fs::write(&list, "ok.png 0\nbad.png 1\n").unwrap();
    let e = err_of(load_image_source(&list, &opts()));
    assert_names(&e, &inner.join("bad.png"), "not an image of a supported format");
    assert!(e.contains(&format!("named on line 2 of {}", list.display())), "{e}");
}

#[test]
fn colour_types_and_bit_depths_are_converted_and_recorded() {
    let d = tmp("colour");
    // All grey: 1 channel; 16-bit scaled to 8; alpha dropped.
    grey(&d.join("g/a/1.png"), 2, 2, |x, _| if x == 0 { 0 } else { 255 });
    ImageBuffer::<Luma<u16>, _>::from_fn(2, 2, |x, _| Luma([if x == 0 { 0x8080 } else { 0xffff }]))
        .save(d.join("g/a/2.png"))
        .unwrap();
    std::fs::create_dir_all(d.join("g/b")).unwrap();
    ImageBuffer::<image::LumaA<u8>, _>::from_fn(2, 2, |_, _| image::LumaA([77, 10])).save(d.join("g/b/3.png")).unwrap();
    let src = load_image_source(&d.join("g"), &opts()).unwrap();
    assert_eq!(src.train.shape(), [3, 1, 2, 2]);
    assert_eq!(src.train.image(0), [0.0, 255.0, 0.0, 255.0]);
    assert_eq!(src.train.image(1), [128.0, 255.0, 128.0, 255.0]);
    assert_eq!(src.train.image(2), [77.0; 4]);
    let c = src.conversions.join("; ");
    assert!(c.contains("alpha channel dropped from 1 images"), "{c}");
    assert!(c.contains("1 images of more than 8 bits per sample scaled to 8 bits"), "{c}");
    assert!(!c.contains("replicated"), "{c}");
    // Mixed: 3 channels, grey replicated; RGBA's alpha dropped without compositing.
    rgb(&d.join("m/a/1.png"), 2, 1, |x, _| [10 + x as u8, 20, 30]);
    grey(&d.join("m/a/2.png"), 2, 1, |_, _| 99);
    std::fs::create_dir_all(d.join("m/b")).unwrap();
    RgbaImage::from_fn(2, 1, |_, _| Rgba([1, 2, 3, 0])).save(d.join("m/b/3.png")).unwrap();
    ImageBuffer::<Rgb<u16>, _>::from_fn(2, 1, |_, _| Rgb([0, 0x8080, 0xffff])).save(d.join("m/b/4.png")).unwrap();
    let src = load_image_source(&d.join("m"), &opts()).unwrap();
    assert_eq!(src.train.shape(), [4, 3, 1, 2]);
    assert_eq!(src.train.image(0), [10.0, 11.0, 20.0, 20.0, 30.0, 30.0]);
    assert_eq!(src.train.image(1), [99.0; 6]);
    assert_eq!(src.train.image(2), [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
    assert_eq!(src.train.image(3), [0.0, 0.0, 128.0, 128.0, 255.0, 255.0]);
    let c = src.conversions.join("; ");
    assert!(c.contains("1 grey images replicated to 3 channels (the other 3 are colour)"), "{c}");
    assert!(c.contains("alpha channel dropped from 1 images"), "{c}");
    assert!(c.contains("1 images of more than 8 bits"), "{c}");
    let scan = scan_image_source(&d.join("m"), &opts()).unwrap();
    assert_eq!(scan.stored_shape(64), [3, 1, 2]);
}

#[test]
fn every_supported_format_decodes() {
    let d = tmp("formats");
    let img = RgbImage::from_fn(4, 3, |x, y| Rgb([(x * 40) as u8, (y * 60) as u8, 200]));
    let g = GrayImage::from_fn(4, 3, |x, y| Luma([(x * 10 + y * 50) as u8]));
    for (name, fmt) in [
        ("a/0.png", image::ImageFormat::Png),
        ("a/1.BMP", image::ImageFormat::Bmp),
        ("a/2.tif", image::ImageFormat::Tiff),
        ("a/3.TIFF", image::ImageFormat::Tiff),
        ("a/4.webp", image::ImageFormat::WebP),
        ("b/5.gif", image::ImageFormat::Gif),
    ] {
        std::fs::create_dir_all(d.join(name).parent().unwrap()).unwrap();
        img.save_with_format(d.join(name), fmt).unwrap();
    }
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(src.train.shape(), [6, 3, 3, 4]);
    let want: Vec<f32> = (0..3).flat_map(|c| img.pixels().map(move |p| p.0[c] as f32)).collect();
    for i in 0..5 {
        assert_eq!(src.train.image(i), &want[..], "{}", src.train_paths[i].display());
    }
    // GIF is palette-quantised: close, not exact.
    let diff = src.train.image(5).iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 16.0, "gif differs by {diff}");
    // JPEG is lossy: close to the original.
    let j = tmp("jpeg");
    for (i, ext) in ["jpg", "JPEG"].iter().enumerate() {
        std::fs::create_dir_all(j.join("c")).unwrap();
        image::DynamicImage::ImageLuma8(g.clone())
            .save_with_format(j.join(format!("c/{i}.{ext}")), image::ImageFormat::Jpeg)
            .unwrap();
    }
    let src = load_image_source(&j, &opts()).unwrap();
    assert_eq!(src.train.shape(), [2, 1, 3, 4]);
    let diff = src.train.image(0).iter().zip(g.pixels()).map(|(a, b)| (a - b.0[0] as f32).abs()).fold(0f32, f32::max);
    assert!(diff <= 12.0, "jpeg differs by {diff}");
}

#[test]
fn images_are_resized_to_the_most_frequent_size_and_max_side() {
    let d = tmp("sizes");
    for i in 0..3 {
        flat_grey(&d.join(format!("a/{i}.png")), 8, 50);
    }
    grey(&d.join("b/3.png"), 4, 2, |_, _| 90);
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(src.train.shape(), [4, 1, 8, 8]);
    assert!(src.train.image(3).iter().all(|&v| (v - 90.0).abs() < 1e-4), "{:?}", src.train.image(3));
    let c = src.conversions.join("; ");
    assert!(c.contains("1 of 4 images resized bilinearly to 8x8 (height x width), the most frequent size"), "{c}");
    assert!(c.contains("8x8: 3, 2x4: 1"), "{c}");
    // Enlarging is exactly the crate's bilinear resize (half-pixel centres, clamped borders).
    let e = tmp("enlarge");
    for i in 0..2 {
        flat_grey(&e.join(format!("a/{i}.png")), 4, 0);
    }
    grey(&e.join("b/9.png"), 2, 2, |x, y| [[0, 100], [200, 250]][y as usize][x as usize]);
    let src = load_image_source(&e, &opts()).unwrap();
    let mut small = ImageDataset::from_u8("s", Split::Train, &[0, 100, 200, 250], vec![0], [1, 2, 2]).unwrap();
    preprocess::resize(&mut small, 4, 4).unwrap();
    for (a, b) in src.train.image(2).iter().zip(&small.images) {
        assert!((a - b).abs() < 1e-4, "{:?} vs {:?}", src.train.image(2), small.images);
    }
    // Ties go to the larger area.
    let t = tmp("tie");
    flat_grey(&t.join("a/0.png"), 4, 1);
    flat_grey(&t.join("b/1.png"), 6, 1);
    assert_eq!(load_image_source(&t, &opts()).unwrap().train.shape(), [2, 1, 6, 6]);
    // Longest side over max_side: everything shrinks, the other side rounded; shrinking is
    // antialiased (a 1-pixel checkerboard averages out instead of aliasing).
    let m = tmp("maxside");
    for i in 0..2 {
        grey(&m.join(format!("a/{i}.png")), 100, 50, |x, y| if (x + y) % 2 == 0 { 0 } else { 200 });
    }
    let o = FolderOptions { max_side: 10, ..opts() };
    let src = load_image_source(&m, &o).unwrap();
    assert_eq!(src.train.shape(), [2, 1, 5, 10]);
    assert!(src.train.images.iter().all(|&v| (v - 100.0).abs() < 1.0), "{:?}", &src.train.images[..10]);
    let c = src.conversions.join("; ");
    assert!(
        c.contains(
            "all 2 images resized bilinearly (antialiased) from 50x100 down to 5x10 (longest side limited to 10)"
        ),
        "{c}"
    );
    assert_eq!(scan_image_source(&m, &o).unwrap().stored_shape(10), [1, 5, 10]);
    grey(&m.join("a/2.png"), 3, 7, |_, _| 1);
    assert_eq!(load_image_source(&m, &FolderOptions { max_side: 64, ..opts() }).unwrap().train.shape(), [3, 1, 32, 64]);
}

#[test]
fn bad_images_are_named_with_their_problem() {
    let d = tmp("badimg");
    flat_grey(&d.join("a/0.png"), 4, 1);
    flat_grey(&d.join("b/1.png"), 4, 1);
    let bad = d.join("b/2.png");
    std::fs::write(&bad, b"this is no image at all").unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &bad, "not an image of a supported format");
    assert_names(&err_of(scan_image_source(&d, &opts())), &bad, "not an image of a supported format");
    // A valid header with truncated pixel data: found when decoding.
    let mut png = Vec::new();
    GrayImage::from_fn(64, 64, |x, y| Luma([(x * y) as u8]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(&bad, &png[..png.len() / 2]).unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &bad, "cannot decode the image");
    // A PNG header that declares 0 pixels.
    std::fs::write(&bad, png_header(0, 5)).unwrap();
    let e = err_of(load_image_source(&d, &opts()));
    assert!(e.contains(&bad.display().to_string()) && (e.contains("0 pixels") || e.contains("image header")), "{e}");
    // Over the pixel limit, from the header.
    flat_grey(&bad, 4, 1);
    let o = FolderOptions { max_pixels: 15, ..opts() };
    assert_names(&err_of(load_image_source(&d, &o)), &d.join("a/0.png"), "4x4 = 16 pixels, more than the limit of 15");
    // A PNG whose header claims 100000 x 100000 is refused before anything is decoded.
    std::fs::write(&bad, png_header(100_000, 100_000)).unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &bad, "more than the limit of 50000000");
    std::fs::remove_file(&bad).unwrap();
    load_image_source(&d, &opts()).unwrap();
}

/// A PNG signature and IHDR chunk (8-bit grey) declaring `w x h`, with a correct CRC, and no data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    // An empty IDAT: the decoder reads the header up to the first data chunk.
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"IDAT");
    out.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn bad_folders_are_named_with_their_problem() {
    let d = tmp("badfolder");
    flat_grey(&d.join("a/0.png"), 2, 1);
    std::fs::create_dir_all(d.join("b/sub")).unwrap();
    std::fs::write(d.join("b/readme.txt"), "x").unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("b"), "class folder holds no images");
    flat_grey(&d.join("b/1.png"), 2, 1);
    flat_grey(&d.join("stray.png"), 2, 1);
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("stray.png"), "image directly in");
    std::fs::remove_file(d.join("stray.png")).unwrap();
    // Split folders other than train/ + test/ are not taken for classes.
    let splits = tmp("valsplit");
    for sp in ["train", "val", "test"] {
        flat_grey(&splits.join(format!("{sp}/a/0.png")), 2, 1);
        flat_grey(&splits.join(format!("{sp}/b/1.png")), 2, 1);
    }
    let e = err_of(load_image_source(&splits, &opts()));
    assert_names(&e, &splits.join("test"), "looks like a split folder holding class folders, next to train, val");
    std::fs::remove_dir_all(splits.join("val")).unwrap();
    assert_eq!(load_image_source(&splits, &opts()).unwrap().layout, FolderLayout::SplitClassFolders);
    flat_grey(&splits.join("test/direct.png"), 2, 1);
    std::fs::remove_dir_all(splits.join("test/a")).unwrap();
    std::fs::remove_dir_all(splits.join("test/b")).unwrap();
    let e = err_of(load_image_source(&splits, &opts()));
    assert_names(&e, &splits.join("test/direct.png"), "which must hold class folders");
    // Too many images.
    let o = FolderOptions { max_images: 1, ..opts() };
    assert_names(&err_of(scan_image_source(&d, &o)), &d, "holds more than 1 images");
    // One class is not a source.
    let one = tmp("oneclass");
    flat_grey(&one.join("a/0.png"), 2, 1);
    let src = load_image_source(&one, &opts()).unwrap();
    assert_names(&err_of(src.check_source()), &one, "has 1 class");
    // Nothing at all.
    let empty = tmp("empty");
    std::fs::write(empty.join("notes.txt"), "x").unwrap();
    assert_names(&err_of(load_image_source(&empty, &opts())), &empty, "holds no images");
    let missing = empty.join("nothing-here");
    assert_names(&err_of(load_image_source(&missing, &opts())), &missing, "no such file or folder");
    let png = d.join("a/0.png");
    assert_names(&err_of(load_image_source(&png, &opts())), &png, "is an image, not a folder or a list file");
}

#[cfg(unix)]
#[test]
fn links_loops_and_names_are_checked() {
    use std::os::unix::ffi::OsStrExt;
    let d = tmp("links");
    flat_grey(&d.join("a/0.png"), 2, 1);
    flat_grey(&d.join("b/1.png"), 2, 1);
    // A linked folder elsewhere is followed.
    let other = tmp("links-other");
    flat_grey(&other.join("2.png"), 2, 7);
    std::os::unix::fs::symlink(&other, d.join("b/linked")).unwrap();
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!(paths(&src.train_paths), ["a/0.png", "b/1.png", "b/linked/2.png"]);
    // A loop.
    std::os::unix::fs::symlink(&d, d.join("a/loop")).unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("a/loop"), "symbolic link loop");
    std::fs::remove_file(d.join("a/loop")).unwrap();
    // The same folder twice.
    std::os::unix::fs::symlink(&other, d.join("a/again")).unwrap();
    assert!(err_of(load_image_source(&d, &opts())).contains("reached twice through symbolic links"));
    std::fs::remove_file(d.join("a/again")).unwrap();
    // A dangling link with an image name.
    std::os::unix::fs::symlink(d.join("none.png"), d.join("a/gone.png")).unwrap();
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("a/gone.png"), "dangling symbolic link");
    std::fs::remove_file(d.join("a/gone.png")).unwrap();
    // A non-UTF-8 name.
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    flat_grey(&d.join("a").join(name), 2, 1);
    let e = err_of(load_image_source(&d, &opts()));
    assert_names(&e, &d.join("a").join(name), "name is not valid UTF-8");
    assert!(e.contains("caf\u{fffd}.png"), "{e}");
}

#[test]
fn one_file_under_two_names_is_refused() {
    // In a folder: a symbolic link and a hard link in another class folder would load the image
    // twice, under two labels.
    let d = tmp("twice");
    flat_grey(&d.join("a/0.png"), 2, 1);
    flat_grey(&d.join("b/1.png"), 2, 9);
    std::os::unix::fs::symlink(d.join("b/1.png"), d.join("a/dup.png")).unwrap();
    let e = err_of(load_image_source(&d, &opts()));
    assert_names(&e, &d.join("b/1.png"), "is the same file as");
    assert!(e.contains("a/dup.png"), "{e}");
    std::fs::remove_file(d.join("a/dup.png")).unwrap();
    std::fs::hard_link(d.join("b/1.png"), d.join("a/dup.png")).unwrap();
    assert!(err_of(load_image_source(&d, &opts())).contains("reached twice through a symbolic or hard link"));
    std::fs::remove_file(d.join("a/dup.png")).unwrap();
    // A link to a file outside the tree is one name of it: it loads.
    let other = tmp("twice-other");
    flat_grey(&other.join("7.png"), 2, 7);
    std::os::unix::fs::symlink(other.join("7.png"), d.join("a/7.png")).unwrap();
    assert_eq!(paths(&load_image_source(&d, &opts()).unwrap().train_paths), ["a/0.png", "b/1.png", "a/7.png"]);
    // In a list: a link beside its target, each on its own line.
    let l = tmp("twice-list");
    flat_grey(&l.join("img/0.png"), 2, 1);
    std::os::unix::fs::symlink("0.png", l.join("img/alias.png")).unwrap();
    std::fs::write(l.join("list.txt"), "img/0.png 0\nimg/alias.png 1\n").unwrap();
    let e = err_of(load_image_source(&l.join("list.txt"), &opts()));
    assert_names(&e, &l.join("list.txt"), "line 2: img/alias.png is the same file as img/0.png on line 1");
    // Alone, the link loads under its own name.
    std::fs::write(l.join("list.txt"), "img/alias.png 0\n").unwrap();
    assert_eq!(paths(&load_image_source(&l.join("list.txt"), &opts()).unwrap().train_paths), ["img/alias.png"]);
    for f in [d, other, l] {
        let _ = std::fs::remove_dir_all(f);
    }
}

#[test]
fn a_csv_header_with_a_control_character_is_refused() {
    // Before, `path,\0label` found no label column and the list loaded as unlabelled.
    let file = Path::new("list.csv");
    let e = err_of(parse_csv_list(&b"path,\0label\nimg/0.png,a\n"[..], file, 10));
    assert_names(&e, file, "line 1: header field 2 holds a control character");
    let ok = parse_csv_list(&b"path,label\nimg/0.png,a\n"[..], file, 10).unwrap();
    assert_eq!(ok[0].label.as_deref(), Some("a"));
}

#[test]
fn an_empty_class_folder_in_test_is_refused_not_dropped() {
    let d = tmp("empty-test");
    flat_grey(&d.join("train/a/0.png"), 2, 1);
    flat_grey(&d.join("train/b/1.png"), 2, 2);
    std::fs::create_dir_all(d.join("test/a")).unwrap();
    // Before, a test/ whose class folders were all empty was ignored: the split vanished.
    assert_names(&err_of(load_image_source(&d, &opts())), &d.join("test/a"), "class folder holds no images");
    // An empty test/ with no class folder at all is still no test split.
    std::fs::remove_dir(d.join("test/a")).unwrap();
    let src = load_image_source(&d, &opts()).unwrap();
    assert_eq!((src.layout, src.test.is_none()), (FolderLayout::SplitClassFolders, true));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn long_lists_are_refused_while_streaming() {
    let d = tmp("longlist");
    flat_grey(&d.join("0.png"), 2, 1);
    let list = d.join("list.txt");
    let text: String = (0..10).map(|i| format!("img{i}.png 0\n")).collect();
    std::fs::write(&list, text).unwrap();
    let o = FolderOptions { max_images: 4, ..opts() };
    assert_names(&err_of(load_image_source(&list, &o)), &list, "lists more than 4 images");
    assert!(err_of(load_image_source(&list, &o)).contains("stopped reading at line 5"));
    // A line too long to be a list's.
    std::fs::write(&list, vec![b'a'; 100_000]).unwrap();
    assert_names(&err_of(load_image_source(&list, &opts())), &list, "line 1 is longer than");
    std::fs::write(&list, b"0.png 1\n\xff\xfe 2\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &opts())), &list, "line 2 is not UTF-8 text");
    std::fs::write(&list, "# only a comment\n").unwrap();
    assert_names(&err_of(load_image_source(&list, &opts())), &list, "lists no images");
}

/// A deterministic dataset of `n` images.
fn synthetic(split: Split, n: usize, [c, h, w]: [usize; 3], classes: u32) -> ImageDataset {
    let px: Vec<u8> = (0..n * c * h * w).map(|p| ((p * 37 + p / 7) % 256) as u8).collect();
    let labels = (0..n as u32).map(|i| (i * 7 + 3) % classes).collect();
    ImageDataset::from_u8("synthetic", split, &px, labels, [c, h, w]).unwrap()
}

fn assert_same(loaded: &ImageDataset, orig: &ImageDataset) {
    assert_eq!(loaded.shape(), orig.shape());
    assert_eq!(loaded.labels, orig.labels);
    assert!(loaded.images == orig.images, "pixels differ");
}

#[test]
fn exports_load_back_exactly() {
    let d = tmp("export");
    let classes = s(&["0", "1", "2"]);
    let train = synthetic(Split::Train, 30, [3, 5, 7], 3);
    let test = synthetic(Split::Test, 12, [3, 5, 7], 2);
    let out = d.join("nested/out");
    let summary = export_class_folders(&[&train, &test], &classes, &out).unwrap();
    assert_eq!(summary.images, 42);
    assert_eq!(summary.splits, [(Split::Train, 30), (Split::Test, 12)]);
    assert_eq!(summary.per_class, [16, 16, 10]);
    assert!(out.join("train/0/0000000.png").is_file() && out.join("train/1/0000001.png").is_file());
    assert!(!out.join("test/2").exists(), "no folder for a class without images");
    let src = load_image_source(&out, &FolderOptions { classes: Some(classes.clone()), ..opts() }).unwrap();
    assert_eq!(src.layout, FolderLayout::SplitClassFolders);
    assert_same(&src.train, &train);
    assert_same(src.test.as_ref().unwrap(), &test);
    assert!(src.conversions.is_empty());
    // Grey, and one split loaded on its own.
    let g = synthetic(Split::Test, 25, [1, 4, 4], 3);
    export_class_folders(&[&g], &classes, &d.join("grey")).unwrap();
    assert_same(&load_image_source(&d.join("grey/test"), &opts()).unwrap().train, &g);
    // Refusals, before anything is written.
    let e = err_of(export_class_folders(&[&g], &classes, &d.join("grey")));
    assert_names(&e, &d.join("grey"), "exists and is not empty");
    let mut scaled = g.clone();
    scaled.images[20] = 0.5;
    assert!(err_of(export_class_folders(&[&scaled], &classes, &d.join("x"))).contains("image 1 holds the value 0.5"));
    assert!(err_of(export_class_folders(&[&g, &g], &classes, &d.join("x"))).contains("both the test split"));
    assert!(err_of(export_class_folders(&[&g], &s(&["0", "1"]), &d.join("x"))).contains("has label 2"));
    assert!(
        err_of(export_class_folders(&[&g], &s(&["0", "a/b", "2"]), &d.join("x"))).contains("cannot be a folder name")
    );
    assert!(!d.join("x").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    // An existing empty folder is filled.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    export_class_folders(&[&g], &classes, &d.join("empty")).unwrap();
}

#[test]
fn two_thousand_images_load() {
    let d = tmp("many");
    let ds = synthetic(Split::Train, 2000, [1, 28, 28], 10);
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    export_class_folders(&[&ds], &classes, &d.join("out")).unwrap();
    let t = std::time::Instant::now();
    let src = load_image_source(&d.join("out/train"), &opts()).unwrap();
    println!("loaded 2000 28x28 PNGs in {:.2} s", t.elapsed().as_secs_f64());
    assert_same(&src.train, &ds);
    assert_eq!(src.train_paths[1999], Path::new(&format!("{}/0001999.png", ds.labels[1999])));
}

#[test]
fn paths_are_told_from_dataset_names() {
    use adapt_datasets::DataRef;
    let is_path = |s: &str| matches!(DataRef::parse(s), DataRef::Path(_));
    for p in ["./x", "a/b", "a\\b", "~", "~/data", ".hidden", "/abs"] {
        assert!(is_path(p), "{p}");
    }
    for n in ["mnist", "mnist-m", "usps", "syn_digits"] {
        assert!(!is_path(n), "{n}");
    }
    let d = tmp("names");
    let here = d.join("mnist");
    std::fs::create_dir_all(&here).unwrap();
    assert!(is_path(here.to_str().unwrap()));
}

/// The real data folder, or `None` (printing "skipped: no data") when `ADAPT_DATA_DIR` is unset;
/// with `ADAPT_REQUIRE_DATA=1` an unset or missing folder fails the test instead.
fn data_dir() -> Option<PathBuf> {
    let require = std::env::var("ADAPT_REQUIRE_DATA").is_ok_and(|v| v == "1");
    match std::env::var_os("ADAPT_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(d) => {
            let d = PathBuf::from(d);
            assert!(!require || d.is_dir(), "ADAPT_REQUIRE_DATA=1 but ADAPT_DATA_DIR {} is not a folder", d.display());
            Some(d)
        }
        None => {
            assert!(!require, "ADAPT_REQUIRE_DATA=1 but ADAPT_DATA_DIR (the data folder) is not set");
            println!("skipped: no data");
            None
        }
    }
}

/// The first `n` images of `ds`.
fn head(ds: &ImageDataset, n: usize) -> ImageDataset {
    let n = n.min(ds.len());
    ImageDataset { images: ds.images[..n * ds.image_len()].to_vec(), labels: ds.labels[..n].to_vec(), ..ds.clone() }
}

fn real_round_trip(name: &str, n: Option<usize>, shape: [usize; 3]) {
    let Some(dir) = data_dir() else { return };
    let full = adapt_datasets::load(name, Split::Test, Some(&dir)).unwrap();
    let ds = n.map_or_else(|| full.clone(), |n| head(&full, n));
    assert_eq!(ds.shape()[1..], shape);
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let out = tmp(&format!("real-{name}"));
    let t = std::time::Instant::now();
    export_class_folders(&[&ds], &classes, &out.join("export")).unwrap();
    let exported = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let src = load_image_source(&out.join("export/test"), &opts()).unwrap();
    println!("{name}: exported {} images in {exported:.2} s, loaded in {:.2} s", ds.len(), t.elapsed().as_secs_f64());
    assert_eq!(src.layout, FolderLayout::ClassFolders);
    assert_eq!(src.classes, classes);
    assert!(src.conversions.is_empty(), "{:?}", src.conversions);
    assert_same(&src.train, &ds);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn mnist_test_set_round_trips_through_a_folder() {
    real_round_trip("mnist", None, [1, 28, 28]);
}

#[test]
fn usps_round_trips_through_a_folder() {
    real_round_trip("usps", Some(500), [1, 16, 16]);
}

#[test]
fn mnist_m_round_trips_through_a_folder() {
    real_round_trip("mnist-m", Some(500), [3, 32, 32]);
}
