//! The cheap pass: walking a folder (or reading a list), resolving labels and reading every
//! image's header, with no pixel decoded.
use super::decode::{self, Header};
use super::{FolderLayout, FolderOptions, expand_home, has_image_extension, list, quoted};
use crate::files::{EntryKind, entry_kind};
use crate::raw::{format_err, io_err};
use crate::{DatasetError, Result};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One image found by a scan, with what its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedImage {
    /// Relative to [`SourceScan::base`].
    pub path: PathBuf,
    /// Index into [`SourceScan::classes`] (0 for unlabelled data).
    pub label: u32,
    /// The list file's line the image was named on (lists only).
    pub line: Option<usize>,
    pub width: u32,
    pub height: u32,
    /// The file stores colour (RGB) samples, not only grey ones.
    pub colour: bool,
    /// The file has an alpha channel.
    pub alpha: bool,
    /// The file has more than 8 bits per sample.
    pub deep: bool,
}

/// What [`scan_image_source`] found: everything [`super::load_image_source`] needs except pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceScan {
    /// Canonical path of the folder or list file.
    pub root: PathBuf,
    /// The folder image paths are relative to: `root` for a folder, the list file's folder for a
    /// list.
    pub base: PathBuf,
    pub layout: FolderLayout,
    /// As [`super::ImageSource::classes`].
    pub classes: Vec<String>,
    pub labelled: bool,
    /// The training split (the whole data without split folders), in load order.
    pub train: Vec<ScannedImage>,
    /// `DIR/test` of [`FolderLayout::SplitClassFolders`].
    pub test: Option<Vec<ScannedImage>>,
    /// Files the scan skipped (regular files without an image extension), in words with a
    /// count; [`super::ImageSource::conversions`] starts with these.
    pub notes: Vec<String>,
}

impl SourceScan {
    /// Number of images over both splits.
    pub fn len(&self) -> usize {
        self.train.len() + self.test.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[channels, height, width]` the images will be stored at when loaded with `max_side`
    /// (see [`super::load_image_source`]).
    pub fn stored_shape(&self, max_side: usize) -> [usize; 3] {
        let plan = decode::plan(self.images(), max_side);
        [plan.channels, plan.height, plan.width]
    }

    /// Every image, training split first.
    pub(crate) fn images(&self) -> impl Iterator<Item = &ScannedImage> + Clone {
        self.train.iter().chain(self.test.iter().flatten())
    }
}

/// Scans the folder or list file at `path` (`~` expanded): its layout, classes and labels, and
/// every image's header, decoding no pixels. This is the whole validation of a source: what
/// passes here fails later only if a file's pixel data is corrupt or the files change.
pub fn scan_image_source(path: &Path, opts: &FolderOptions) -> Result<SourceScan> {
    if opts.max_side == 0 || opts.max_pixels == 0 || opts.max_images == 0 {
        return Err(DatasetError::InvalidParameters(format!(
            "folder options must be positive: max_side {}, max_pixels {}, max_images {}",
            opts.max_side, opts.max_pixels, opts.max_images
        )));
    }
    if let Some(c) = &opts.classes {
        check_class_names(c)?;
    }
    let path = expand_home(path);
    let kind = entry_kind(&path);
    let root = match kind {
        EntryKind::Directory | EntryKind::Regular(_) => path.canonicalize().map_err(|e| io_err(&path, e))?,
        EntryKind::Missing => return Err(format_err(&path, "no such file or folder")),
        other => return Err(format_err(&path, format!("{}, not a folder of images or a list file", other.describe()))),
    };
    let found = if kind == EntryKind::Directory {
        scan_folder(&root, opts)?
    } else {
        if has_image_extension(&root) {
            return Err(format_err(
                &root,
                "is an image, not a folder or a list file: give the folder holding it, or a list naming it",
            ));
        }
        list::scan_list(&root, opts)?
    };
    let base = if kind == EntryKind::Directory {
        root.clone()
    } else {
        root.parent().map(Path::to_path_buf).unwrap_or_else(|| root.clone())
    };
    let train = read_headers(&base, &root, found.train, opts.max_pixels)?;
    let test = found.test.map(|t| read_headers(&base, &root, t, opts.max_pixels)).transpose()?;
    Ok(SourceScan {
        root,
        base,
        layout: found.layout,
        classes: found.classes,
        labelled: found.labelled,
        train,
        test,
        notes: found.notes,
    })
}

/// An image path (relative to the base folder), its label and its list line.
pub(crate) type Item = (PathBuf, u32, Option<usize>);

/// Layout, classes and the per-split images of a folder or list, before headers are read.
pub(crate) struct Found {
    pub layout: FolderLayout,
    pub classes: Vec<String>,
    pub labelled: bool,
    pub train: Vec<Item>,
    pub test: Option<Vec<Item>>,
    /// What was skipped, in words (see [`SourceScan::notes`]).
    pub notes: Vec<String>,
}

/// Reads every header (in parallel: opening tens of thousands of files dominates a scan) and
/// reports the first failing image in load order, so the error does not depend on scheduling.
fn read_headers(base: &Path, root: &Path, items: Vec<Item>, max_pixels: u64) -> Result<Vec<ScannedImage>> {
    let headers: Vec<std::result::Result<Header, String>> =
        items.par_iter().map(|(rel, _, _)| decode::read_header(&base.join(rel), max_pixels)).collect();
    items
        .into_iter()
        .zip(headers)
        .map(|((path, label, line), h)| match h {
            Ok(h) => Ok(ScannedImage {
                path,
                label,
                line,
                width: h.width,
                height: h.height,
                colour: h.colour,
                alpha: h.alpha,
                deep: h.deep,
            }),
            Err(problem) => Err(format_err(&base.join(&path), with_line(problem, line, root))),
        })
        .collect()
}

/// `problem`, plus the list line that named the image where there is one.
pub(crate) fn with_line(problem: String, line: Option<usize>, root: &Path) -> String {
    match line {
        Some(n) => format!("{problem} (named on line {n} of {})", root.display()),
        None => problem,
    }
}

/// Class names must be usable as folder names and unique.
pub(crate) fn check_class_names(classes: &[String]) -> Result<()> {
    for (i, c) in classes.iter().enumerate() {
        if c.is_empty() || c.chars().any(char::is_control) {
            return Err(DatasetError::InvalidParameters(format!(
                "class name {c:?} (class {i}) is empty or holds a control character"
            )));
        }
        if let Some(j) = classes[..i].iter().position(|k| k == c) {
            return Err(DatasetError::InvalidParameters(format!("class '{c}' is listed twice (classes {j} and {i})")));
        }
    }
    Ok(())
}

/// A folder's images, direct and in its subfolders, as reached (symbolic links followed).
struct Node {
    images: Vec<PathBuf>,
    dirs: Vec<(String, Node)>,
}

impl Node {
    fn count(&self) -> usize {
        self.images.len() + self.dirs.iter().map(|(_, d)| d.count()).sum::<usize>()
    }

    fn flatten(self, out: &mut Vec<PathBuf>) {
        out.extend(self.images);
        for (_, d) in self.dirs {
            d.flatten(out);
        }
    }

    /// Whether any image lies in a subfolder (not directly here).
    fn has_image_folders(&self) -> bool {
        self.dirs.iter().any(|(_, d)| d.count() > 0)
    }
}

/// Walks folders, following symbolic links, with a visited set of canonical folders so that a
/// loop (or a folder reached twice, which would load its images twice) is an error, not a hang.
struct Walker {
    max_images: usize,
    images: usize,
    /// Canonical folder -> the path it was first reached by.
    visited: HashMap<PathBuf, PathBuf>,
    /// Canonical folders from the root down to the one being read.
    stack: Vec<PathBuf>,
    root: PathBuf,
    /// Regular files skipped for their extension, and the first of them.
    ignored: usize,
    ignored_example: Option<PathBuf>,
    /// Identity (device, inode) of every image file -> the path it was first reached by.
    files: HashMap<(u64, u64), PathBuf>,
}

/// The identity of the file `path` leads to, where the platform gives one (Unix): two paths
/// with one identity are one file, reached through a symbolic or a hard link.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl Walker {
    fn node(&mut self, dir: &Path) -> Result<Node> {
        let canon = dir.canonicalize().map_err(|e| io_err(dir, e))?;
        if self.stack.contains(&canon) {
            return Err(format_err(
                dir,
                format!("symbolic link loop: this folder is {}, one of its own ancestors", canon.display()),
            ));
        }
        if let Some(first) = self.visited.get(&canon) {
            return Err(format_err(
                dir,
                format!(
                    "is the same folder as {} (reached twice through symbolic links; its images would load twice)",
                    first.display()
                ),
            ));
        }
        self.visited.insert(canon.clone(), dir.to_path_buf());
        self.stack.push(canon);
        let mut images = Vec::new();
        let mut dirs = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| io_err(dir, e))?;
        entries.sort();
        for name in entries {
            // Hidden entries: `.DS_Store`, macOS `._x.png` resource forks, `.ipynb_checkpoints`.
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = dir.join(&name);
            let kind = entry_kind(&path);
            let image = has_image_extension(&path);
            let utf8 = name.to_str();
            match kind {
                EntryKind::Directory => {
                    let Some(n) = utf8 else { return Err(non_utf8(&path)) };
                    let n = n.to_string();
                    let sub = self.node(&path)?;
                    dirs.push((n, sub));
                }
                EntryKind::Regular(_) if image => {
                    if utf8.is_none() {
                        return Err(non_utf8(&path));
                    }
                    self.images += 1;
                    if self.images > self.max_images {
                        return Err(format_err(
                            &self.root,
                            format!(
                                "holds more than {} images (the limit, FolderOptions::max_images)",
                                self.max_images
                            ),
                        ));
                    }
                    // One file under two names would load twice, under two labels when the
                    // names lie in two class folders.
                    if let Some(id) = file_id(&path)
                        && let Some(first) = self.files.insert(id, path.clone())
                    {
                        return Err(format_err(
                            &path,
                            format!(
                                "is the same file as {} (reached twice through a symbolic or hard link; it would \
                                 load twice)",
                                first.display()
                            ),
                        ));
                    }
                    images.push(path);
                }
                EntryKind::DanglingLink if image => {
                    return Err(format_err(&path, "dangling symbolic link (its target does not exist)"));
                }
                EntryKind::Regular(_) => {
                    self.ignored += 1;
                    if self.ignored_example.is_none() {
                        self.ignored_example = Some(path);
                    }
                }
                EntryKind::DanglingLink | EntryKind::Missing => {}
                other if image => return Err(format_err(&path, format!("{}, not an image file", other.describe()))),
                _ => {}
            }
        }
        self.stack.pop();
        Ok(Node { images, dirs })
    }
}

fn non_utf8(path: &Path) -> DatasetError {
    format_err(path, "name is not valid UTF-8 (shown here with replacement characters); rename it")
}

fn scan_folder(root: &Path, opts: &FolderOptions) -> Result<Found> {
    let mut walker = Walker {
        max_images: opts.max_images,
        images: 0,
        visited: HashMap::new(),
        stack: Vec::new(),
        root: root.to_path_buf(),
        ignored: 0,
        ignored_example: None,
        files: HashMap::new(),
    };
    let top = walker.node(root)?;
    let notes: Vec<String> = walker
        .ignored_example
        .iter()
        .map(|first| {
            let first = first.strip_prefix(root).unwrap_or(first);
            format!("{} files without an image extension ignored (the first: {})", walker.ignored, first.display())
        })
        .collect();
    let mut found = folder_layout(root, top, opts)?;
    found.notes = notes;
    Ok(found)
}

fn folder_layout(root: &Path, top: Node, opts: &FolderOptions) -> Result<Found> {
    let bearing: Vec<&str> = top.dirs.iter().filter(|(_, d)| d.count() > 0).map(|(n, _)| n.as_str()).collect();
    if !top.images.is_empty() {
        if !bearing.is_empty() {
            return Err(format_err(
                &top.images[0],
                format!(
                    "image directly in {} next to class folders ({}): move it into a class folder, or the \
                     class folders out for an unlabelled flat folder",
                    root.display(),
                    bearing.join(", ")
                ),
            ));
        }
        let train = sorted_items(root, top.images.into_iter().map(|p| (p, 0)).collect());
        let classes = opts.classes.clone().unwrap_or_default();
        return Ok(Found {
            layout: FolderLayout::Flat,
            classes,
            labelled: false,
            train,
            test: None,
            notes: Vec::new(),
        });
    }
    if bearing.is_empty() {
        return Err(format_err(
            root,
            format!(
                "holds no images (looked for {} files in it and its subfolders)",
                super::IMAGE_EXTENSIONS.join(", ")
            ),
        ));
    }
    let is_split = bearing.iter().all(|n| *n == "train" || *n == "test")
        && top.dirs.iter().any(|(n, d)| n == "train" && d.has_image_folders());
    if !is_split {
        // `train/ val/ test/` with class folders inside is a split layout this loader does not
        // read as such; taken as class folders its labels would be the split names.
        if let Some((name, _)) = top.dirs.iter().find(|(n, d)| is_split_name(n) && d.has_image_folders()) {
            return Err(format_err(
                &root.join(name),
                format!(
                    "looks like a split folder holding class folders, next to {}: only train/ and test/ \
                     are read as splits; give the split's own folder, or keep only train/ and test/",
                    bearing.iter().filter(|n| *n != name).copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let groups = class_groups(root, top)?;
        let (classes, train) = label_groups(root, groups, None, opts)?;
        return Ok(Found {
            layout: FolderLayout::ClassFolders,
            classes,
            labelled: true,
            train,
            test: None,
            notes: Vec::new(),
        });
    }
    let mut train_node = None;
    let mut test_node = None;
    for (name, node) in top.dirs {
        match name.as_str() {
            "train" => train_node = Some(node),
            // A test/ holding class folders is a test split even when they are empty, so that an
            // empty one is the error it is in train/, not a split silently dropped.
            "test" if node.count() > 0 || !node.dirs.is_empty() => test_node = Some(node),
            _ => {}
        }
    }
    let train_dir = root.join("train");
    let groups = class_groups(&train_dir, train_node.expect("split layouts have a train folder"))?;
    let (classes, train) = label_groups(root, groups, None, opts)?;
    let test = match test_node {
        Some(node) => {
            let test_dir = root.join("test");
            let groups = class_groups(&test_dir, node)?;
            Some(label_groups(root, groups, Some(&classes), opts)?.1)
        }
        None => None,
    };
    Ok(Found { layout: FolderLayout::SplitClassFolders, classes, labelled: true, train, test, notes: Vec::new() })
}

/// Folder names that name a split rather than a class.
fn is_split_name(name: &str) -> bool {
    ["train", "test", "val", "valid", "validation", "extra", "dev"].iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// The class folders of `dir` with their images: no image may lie directly in `dir`, and every
/// class folder must hold one.
fn class_groups(dir: &Path, node: Node) -> Result<Vec<(String, Vec<PathBuf>)>> {
    if let Some(first) = node.images.first() {
        let names: Vec<&str> = node.dirs.iter().filter(|(_, d)| d.count() > 0).map(|(n, _)| n.as_str()).collect();
        let problem = if names.is_empty() {
            format!("image directly in {}, which must hold class folders: move it into a class folder", dir.display())
        } else {
            format!(
                "image directly in {} next to class folders ({}): move it into a class folder",
                dir.display(),
                names.join(", ")
            )
        };
        return Err(format_err(first, problem));
    }
    let mut out = Vec::with_capacity(node.dirs.len());
    for (name, sub) in node.dirs {
        if sub.count() == 0 {
            return Err(format_err(&dir.join(&name), "class folder holds no images"));
        }
        let mut images = Vec::with_capacity(sub.count());
        sub.flatten(&mut images);
        out.push((name, images));
    }
    Ok(out)
}

/// Labels the class groups (already sorted by name) and orders their images. `train_classes`
/// (for a test split) is the class list the groups must be a subset of; else the classes are
/// the groups' names, or `opts.classes` when given.
fn label_groups(
    root: &Path,
    groups: Vec<(String, Vec<PathBuf>)>,
    train_classes: Option<&[String]>,
    opts: &FolderOptions,
) -> Result<(Vec<String>, Vec<Item>)> {
    let classes: Vec<String> = match (train_classes, &opts.classes) {
        (Some(c), _) => c.to_vec(),
        (None, Some(c)) => c.clone(),
        (None, None) => groups.iter().map(|(n, _)| n.clone()).collect(),
    };
    let mut labelled = Vec::new();
    for (name, images) in groups {
        let Some(label) = classes.iter().position(|c| *c == name) else {
            let folder = images[0].parent().map(Path::to_path_buf).unwrap_or_default();
            let whose = if train_classes.is_some() { "the training split's" } else { "the given" };
            let folder = class_folder(&folder, &name);
            return Err(format_err(
                &folder,
                format!("class {} is not one of {whose} classes ({})", quoted(&[name.as_str()]), classes.join(", ")),
            ));
        };
        labelled.extend(images.into_iter().map(|p| (p, label as u32)));
    }
    Ok((classes, sorted_items(root, labelled)))
}

/// The class folder `name` that `path` (a folder below it) lies in.
fn class_folder(path: &Path, name: &str) -> PathBuf {
    path.ancestors().find(|a| a.file_name().is_some_and(|f| f == name)).unwrap_or(path).to_path_buf()
}

/// Paths relative to `root`, in load order: by file name (all-digit stems as numbers), ties by
/// the relative path.
fn sorted_items(root: &Path, images: Vec<(PathBuf, u32)>) -> Vec<Item> {
    let mut items: Vec<Item> =
        images.into_iter().map(|(p, l)| (p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p), l, None)).collect();
    items.sort_by(|a, b| name_order(&a.0, &b.0));
    items
}

/// The load order of two relative paths (see [`sorted_items`]).
pub(crate) fn name_order(a: &Path, b: &Path) -> Ordering {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (sa, sb) = (stem(a), stem(b));
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let by_stem = match (numeric(&sa), numeric(&sb)) {
        (true, true) => {
            // Compared as numbers of any length: leading zeros dropped, then shorter is smaller.
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => sa.cmp(&sb),
    };
    by_stem.then_with(|| a.cmp(b))
}
