//! The `image-folder` target: a user's class-folder tree (torchvision's `ImageFolder` layout,
//! optionally split into `train/` and `test/`, or a flat folder), read through
//! [`adapt_datasets::image_folder::scan_image_source`] and
//! [`adapt_datasets::image_folder::load_image_source`].
//!
//! Every fixture image is RGB of one size (at most 4x4, so nothing is resized), written as PNG or
//! BMP with the `image` crate; the expected load is computed from the written pixels and the
//! loader's documented order (by file name, all-digit stems as numbers). BMP has no checksum, so
//! its bytes are not flipped: a changed pixel would be a different valid file.
use super::dataset::{fix_ihdr_crc, pick, write};
use crate::mutate::{self, Kind};
use crate::{Case, Rng, Target, dataset_fingerprint, fingerprint};
use adapt_datasets::image_folder::{FolderOptions, ImageSource, SourceScan, load_image_source, scan_image_source};
use adapt_datasets::{ImageDataset, Split};
use rand::Rng as _;
use std::path::{Path, PathBuf};

/// Class-folder trees, split trees and flat folders of tiny PNG and BMP images.
pub struct ImageFolder;

/// The limits every case loads with: small, so that "over the limit" stays a small case.
pub(super) fn options() -> FolderOptions {
    FolderOptions { classes: None, max_pixels: 4096, max_side: 64, max_images: 20 }
}

/// The fingerprint of a scan and the load that followed it: layout, classes, both splits'
/// pixels and labels, their paths, and the scan's count and stored shape.
pub(super) fn source_fp(scan: &SourceScan, src: &ImageSource, max_side: usize) -> u64 {
    fingerprint(&(
        src.layout.as_str(),
        &src.classes,
        src.labelled,
        dataset_fingerprint(&src.train),
        src.test.as_ref().map(dataset_fingerprint),
        &src.train_paths,
        &src.test_paths,
        scan.len(),
        scan.stored_shape(max_side),
        scan.classes == src.classes,
    ))
}

/// One image of an expected load: HWC RGB pixels, label, path relative to the root.
pub(super) type Item = (Vec<u8>, u32, PathBuf);

/// What [`source_fp`] gives for a correct load of these images (`train`, `test`: HWC RGB pixels,
/// labels and paths, in load order), all `[3, h, w]`.
pub(super) fn expected_fp(
    layout: &str,
    classes: &[String],
    labelled: bool,
    train: &[Item],
    test: Option<&[Item]>,
    [h, w]: [usize; 2],
) -> u64 {
    let ds = |items: &[Item], split| {
        let px: Vec<u8> =
            items.iter().flat_map(|(hwc, _, _)| (0..3).flat_map(move |c| (0..h * w).map(move |p| hwc[p * 3 + c]))).collect();
        let labels = items.iter().map(|i| i.1).collect();
        dataset_fingerprint(&ImageDataset::from_u8("fixture", split, &px, labels, [3, h, w]).expect("sizes agree"))
    };
    let paths = |items: &[Item]| items.iter().map(|i| i.2.clone()).collect::<Vec<_>>();
    fingerprint(&(
        layout,
        classes,
        labelled,
        ds(train, Split::Train),
        test.map(|t| ds(t, Split::Test)),
        &paths(train),
        &test.map(paths).unwrap_or_default(),
        train.len() + test.map_or(0, <[_]>::len),
        [3, h, w],
        true,
    ))
}

/// `hwc` (RGB, or grey when `grey`) encoded as PNG or BMP.
pub(super) fn encode(w: usize, h: usize, hwc: &[u8], grey: bool, bmp: bool) -> Vec<u8> {
    let img = if grey {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w as u32, h as u32, hwc.to_vec()).expect("sizes"))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w as u32, h as u32, hwc.to_vec()).expect("sizes"))
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let format = if bmp { image::ImageFormat::Bmp } else { image::ImageFormat::Png };
    img.write_to(&mut out, format).expect("in memory");
    out.into_inner()
}

/// One image of the fixture.
struct Img {
    k: usize,
    class: usize,
    test: bool,
    /// Folders between the class folder and the file.
    sub: PathBuf,
    /// HWC RGB, what a load gives.
    hwc: Vec<u8>,
    bmp: bool,
    /// Stored as grey (the load replicates it to RGB).
    grey: bool,
    /// Left out of the expected load (deleted, or replaced by a folder).
    gone: bool,
}

impl Img {
    fn file(&self) -> String {
        format!("{:03}.{}", self.k, if self.bmp { "bmp" } else { "png" })
    }
}

const CLASSES: [&str; 5] = ["ant", "bee", "cow", "dog", "elk"];

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Classes,
    Split,
    Flat,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Classes => "class-folders",
            Layout::Split => "split-class-folders",
            Layout::Flat => "flat",
        }
    }
}

/// Relative path of an image's folder below the root.
fn folder_of(layout: Layout, classes: &[String], im: &Img) -> PathBuf {
    match layout {
        Layout::Flat => PathBuf::new(),
        Layout::Classes => PathBuf::from(&classes[im.class]).join(&im.sub),
        Layout::Split => PathBuf::from(if im.test { "test" } else { "train" }).join(&classes[im.class]).join(&im.sub),
    }
}

/// The correct outcome for the images still present: the expected fingerprint, or the names a
/// clear error gives (a class folder left empty, a flat folder left without images).
fn outcome(layout: Layout, classes: &[String], imgs: &[Img], [h, w]: [usize; 2]) -> (Option<u64>, Vec<String>) {
    let item = |im: &Img| {
        let label = if layout == Layout::Flat { 0 } else { im.class as u32 };
        (im.hwc.clone(), label, folder_of(layout, classes, im).join(im.file()))
    };
    let split = |test: bool| -> Vec<Item> {
        let mut v: Vec<&Img> = imgs.iter().filter(|i| !i.gone && i.test == test).collect();
        v.sort_by_key(|i| i.k);
        v.into_iter().map(item).collect()
    };
    let train = split(false);
    if layout == Layout::Flat {
        if train.is_empty() {
            return (None, vec!["data".into()]);
        }
        return (Some(expected_fp(layout.name(), &[], false, &train, None, [h, w])), vec![]);
    }
    // A class folder exists where an image was written (in train/ or test/); it must still hold
    // one.
    for test in [false, true] {
        for (c, name) in classes.iter().enumerate() {
            let written = imgs.iter().any(|i| i.test == test && i.class == c);
            let left = imgs.iter().any(|i| i.test == test && i.class == c && !i.gone);
            if written && !left {
                return (None, vec![name.clone()]);
            }
        }
    }
    let test = split(true);
    let test = (layout == Layout::Split && !test.is_empty()).then_some(test);
    (Some(expected_fp(layout.name(), classes, true, &train, test.as_deref(), [h, w])), vec![])
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) {
    let _ = std::os::unix::fs::symlink(target, link);
}

#[cfg(not(unix))]
fn symlink(_target: &Path, link: &Path) {
    let _ = std::fs::write(link, b"");
}

impl Target for ImageFolder {
    fn name(&self) -> &'static str {
        "image-folder"
    }

    fn make(&self, rng: &mut Rng, dir: &Path) -> Case {
        let root = dir.join("data");
        let op = rng.random_range(0..23);
        let layout = match op {
            8 | 19 => Layout::Split,
            9 => Layout::Flat,
            _ => pick(rng, &[Layout::Classes, Layout::Classes, Layout::Split, Layout::Flat]),
        };
        let nc = rng.random_range(2..=4usize);
        let mut classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
        while classes.len() > nc {
            classes.remove(rng.random_range(0..classes.len()));
        }
        let (h, w) = (rng.random_range(1..=4usize), rng.random_range(1..=4usize));
        let mut imgs: Vec<Img> = Vec::new();
        for c in 0..nc {
            let trains = rng.random_range(1..=2);
            let tests = if layout == Layout::Split { rng.random_range(0..=2) } else { 0 };
            for t in 0..trains + tests {
                imgs.push(Img {
                    k: 0,
                    class: c,
                    test: t >= trains,
                    sub: PathBuf::new(),
                    hwc: mutate::garbage(rng, h * w * 3),
                    bmp: rng.random_bool(0.3),
                    grey: false,
                    gone: false,
                });
            }
        }
        // File numbers in a random order across classes, so the expected order is not by class.
        let mut ks: Vec<usize> = (0..imgs.len()).map(|i| i * 3 + rng.random_range(0..3)).collect();
        for i in (1..ks.len()).rev() {
            ks.swap(i, rng.random_range(0..=i));
        }
        for (im, k) in imgs.iter_mut().zip(ks) {
            im.k = k;
        }
        let j = rng.random_range(0..imgs.len());
        let mut what = String::new();
        let mut names: Vec<String> = Vec::new();
        let mut forced: Option<(Option<u64>, Vec<String>)> = None;
        match op {
            2 | 11 => imgs[j].bmp = false,
            3 => {}
            10 => {
                let depth = rng.random_range(1..=40);
                imgs[j].sub = (0..depth).map(|d| format!("d{d}")).collect();
                what = format!("{} nested {depth} folders deep", imgs[j].file());
            }
            16 => {
                let g = mutate::garbage(rng, h * w);
                imgs[j].hwc = g.iter().flat_map(|&v| [v, v, v]).collect();
                imgs[j].grey = true;
                what = format!("{} stored grey among colour images", imgs[j].file());
            }
            _ => {}
        }
        let file_j = imgs[j].file();
        let path_of = |im: &Img| root.join(folder_of(layout, &classes, im)).join(im.file());
        let mut encoded: Vec<Vec<u8>> = imgs
            .iter()
            .map(|im| {
                let stored: Vec<u8> = if im.grey { im.hwc.iter().step_by(3).copied().collect() } else { im.hwc.clone() };
                encode(w, h, &stored, im.grey, im.bmp)
            })
            .collect();
        let bytes = &mut encoded[j];
        match op {
            1 => {
                let (t, k) = mutate::truncate(rng, bytes);
                *bytes = t;
                what = format!("{file_j} truncated at byte {k}");
                // Damage the decoder never reads (the end chunk) may load the very pixels.
                names.push(file_j.clone());
            }
            2 => {
                let k = mutate::flip(rng, bytes, 0..usize::MAX);
                what = format!("{file_j}: byte {k} flipped");
                // Damage the decoder never reads (the end chunk) may load the very pixels.
                names.push(file_j.clone());
            }
            3 => {
                let (pw, ph) = pick(rng, &[(0u32, 1u32), (1, 0), (0, 0), (65, 64), (100, 100), (65535, 65535), (1 << 20, 1)]);
                if imgs[j].bmp {
                    bytes[18..22].copy_from_slice(&pw.to_le_bytes());
                    bytes[22..26].copy_from_slice(&ph.to_le_bytes());
                } else {
                    bytes[16..20].copy_from_slice(&pw.to_be_bytes());
                    bytes[20..24].copy_from_slice(&ph.to_be_bytes());
                    fix_ihdr_crc(bytes);
                }
                what = format!("{file_j}: header declares {pw}x{ph}");
                forced = Some((None, vec![file_j.clone()]));
            }
            _ => {}
        }
        let _ = std::fs::create_dir_all(&root);
        for (im, b) in imgs.iter().zip(&encoded) {
            write(&path_of(im), b);
        }
        let class_root = |test: bool| match layout {
            Layout::Split => root.join(if test { "test" } else { "train" }),
            _ => root.clone(),
        };
        match op {
            4 if layout != Layout::Flat => {
                let empty = class_root(false).join("yak");
                let _ = std::fs::create_dir_all(&empty);
                if rng.random_bool(0.5) {
                    write(&empty.join("notes.txt"), b"no images here\n");
                }
                what = "an empty class folder yak".into();
                forced = Some((None, vec!["yak".into()]));
            }
            5 if layout != Layout::Flat => {
                let at = if layout == Layout::Split && rng.random_bool(0.5) { root.clone() } else { class_root(false) };
                write(&at.join("999.png"), &encode(w, h, &mutate::garbage(rng, h * w * 3), false, false));
                what = format!("stray image 999.png in {}", at.display());
                forced = Some((None, vec!["999.png".into()]));
            }
            6 => {
                #[cfg(unix)]
                {
                    use std::os::unix::ffi::OsStrExt;
                    let from = path_of(&imgs[j]);
                    let (odd, named) = if rng.random_bool(0.5) {
                        let name = [&[0xffu8][..], file_j.as_bytes()].concat();
                        (from.with_file_name(std::ffi::OsStr::from_bytes(&name)), format!("\u{fffd}{file_j}"))
                    } else {
                        let folder = from.parent().expect("in a folder").join(std::ffi::OsStr::from_bytes(b"x\xfe"));
                        let _ = std::fs::create_dir_all(&folder);
                        (folder.join(&file_j), "x\u{fffd}".to_string())
                    };
                    let _ = std::fs::rename(&from, &odd);
                    what = format!("{} renamed to a non-UTF-8 name", file_j);
                    forced = Some((None, vec![named]));
                }
            }
            7 => {
                let at = root.join(folder_of(layout, &classes, &imgs[j]));
                // Never above `dir`: the walk would then read the other cases' folders.
                let choices: &[&str] = if layout == Layout::Flat { &[".", ".."] } else { &[".", "..", "../.."] };
                let target = pick(rng, choices);
                symlink(Path::new(target), &at.join("loop"));
                what = format!("symbolic link loop -> {target}");
                forced = Some((None, vec!["loop".into()]));
            }
            8 => {
                write(&root.join("test").join("yak").join("998.png"), &encode(w, h, &mutate::garbage(rng, h * w * 3), false, false));
                what = "class yak present only in test".into();
                forced = Some((None, vec!["yak".into()]));
            }
            11 if layout != Layout::Flat => {
                let other = imgs.iter().find(|i| i.class != imgs[j].class && i.test == imgs[j].test).map(|i| i.class);
                if let Some(o) = other {
                    let at = class_root(imgs[j].test).join(&classes[o]).join("alias");
                    symlink(&Path::new("..").join(&classes[imgs[j].class]), &at);
                    what = format!("{}/alias -> ../{}", classes[o], classes[imgs[j].class]);
                    forced = Some((None, vec!["alias".into(), classes[imgs[j].class].clone()]));
                }
            }
            12 => {
                let kind = Kind::pick(rng);
                what = mutate::replace_with(&path_of(&imgs[j]), kind, &encoded[j]);
                match kind {
                    Kind::LinkToCopy => {}
                    Kind::Missing | Kind::Directory if what.ends_with(&format!("{kind:?}")) => imgs[j].gone = true,
                    _ => forced = Some((None, vec![file_j.clone()])),
                }
            }
            13 => {
                let at = root.join(folder_of(layout, &classes, &imgs[j]));
                let junk = pick(rng, &[".DS_Store", "._000.png", "README.txt", "labels.csv", ".ipynb_checkpoints/x.png"]);
                write(&at.join(junk), &mutate::garbage(rng, 40));
                what = format!("{junk} beside the images");
            }
            15 => {
                let at = root.join(folder_of(layout, &classes, &imgs[j]));
                write(&at.join("997.png"), b"this is not a PNG\n");
                what = "a text file named 997.png".into();
                forced = Some((None, vec!["997.png".into()]));
            }
            17 => {
                let _ = std::fs::remove_dir_all(&root);
                match rng.random_range(0..3) {
                    0 => what = "folder missing".into(),
                    1 => {
                        let _ = std::fs::create_dir_all(&root);
                        what = "empty folder".into();
                    }
                    _ => {
                        symlink(&dir.join("elsewhere"), &root);
                        what = "folder is a dangling link".into();
                    }
                }
                forced = Some((None, vec!["data".into()]));
            }
            19 => {
                write(&root.join("val").join(&classes[0]).join("996.png"), &encode(w, h, &mutate::garbage(rng, h * w * 3), false, false));
                what = "a val/ split beside train/ and test/".into();
                forced = Some((None, vec!["val".into()]));
            }
            20 => {
                let at = root.join(folder_of(layout, &classes, &imgs[j]));
                let png = encode(w, h, &mutate::garbage(rng, h * w * 3), false, false);
                for m in 0..=options().max_images {
                    write(&at.join(format!("{}.png", 500 + m)), &png);
                }
                what = format!("more than {} images", options().max_images);
                forced = Some((None, vec!["data".into(), "max_images".into()]));
            }
            21 => what = "valid folder".into(),
            22 => {
                // The same file under a second name elsewhere in the tree would load twice.
                let other = imgs.iter().position(|i| i.class != imgs[j].class || layout == Layout::Flat).unwrap_or(j);
                let at = root.join(folder_of(layout, &classes, &imgs[other])).join("dup.png");
                let original = path_of(&imgs[j]);
                if rng.random_bool(0.5) {
                    symlink(&original, &at);
                    what = format!("dup.png links to {file_j}");
                } else {
                    let _ = std::fs::hard_link(&original, &at);
                    what = format!("dup.png is a hard link of {file_j}");
                }
                forced = Some((None, vec!["dup.png".into()]));
            }
            _ => {}
        }
        if what.is_empty() {
            what = format!("valid {} folder", layout.name());
        }
        what = format!("{} ({} classes, {} images): {what}", layout.name(), nc, imgs.len());
        let (expect, n) = forced.unwrap_or_else(|| outcome(layout, &classes, &imgs, [h, w]));
        names.extend(n);
        Case { what, expect, names }
    }

    fn load(&self, dir: &Path) -> Result<u64, String> {
        let root = dir.join("data");
        let opts = options();
        let scan = scan_image_source(&root, &opts).map_err(|e| e.to_string())?;
        let src = load_image_source(&root, &opts).map_err(|e| e.to_string())?;
        Ok(source_fp(&scan, &src, opts.max_side))
    }
}
