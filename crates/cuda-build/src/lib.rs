//! `cargo xtask build-cuda`: the CUDA build of the runner (and, with `--tests`, the CUDA test
//! binaries) on a machine with no GPU and no CUDA toolkit. A development tool, not published:
//! [`BuildCudaArgs`] are the command's flags, [`build`] carries them out and returns [`Built`].
//!
//! What it installs, all outside the repository, under `--cache` (default
//! `~/.cache/adapt-cuda`):
//! * a Python virtual environment `venv/` holding NVIDIA's CUDA wheels from PyPI
//!   (`cuda-toolkit[nvcc,cccl,cudart,cublas,curand,nvrtc]` of the chosen release): nvcc and its
//!   headers for candle-kernels' PTX and static library, and the cuBLAS, cuRAND, NVRTC and CUDA
//!   runtime libraries that the binary links to. Their tree `nvidia/cu13` is used as `CUDA_HOME`.
//! * in `$CUDA_HOME/lib/stubs`: a link stub `libcuda.so` (soname `libcuda.so.1`, every driver
//!   function cudarc declares, each returning an error; the real one comes with the GPU's driver
//!   at run time), built with `cc`, and the unversioned names (`libcublas.so`, ...) the linker
//!   looks for, as links to the wheels' versioned libraries.
//!
//! * in `$CUDA_HOME/xtask-bin`: an `nvcc` wrapper, first on `PATH`, that compiles candle-kernels'
//!   quantized GGUF / mixture-of-experts sources (`src/moe/*.cu`, `src/mmvq_gguf.cu`,
//!   `src/mmq_gguf/*.cu`: fifteen heavy template files, most of the build's time, for kernels
//!   adapt never calls) as an empty file, so their static library `libmoe.a` is empty. Nothing
//!   can call into it unnoticed: a call from anything the binary keeps would be an unresolved
//!   symbol and fail the link. `--all-kernels` builds them (in the target folder `cuda-all-kernels`).
//!
//! Then `cargo build -p xtask --features cuda` runs with `CUDA_HOME`/`CUDA_PATH` there, nvcc on
//! `PATH`, `CUDA_COMPUTE_CAP` and `CUDARC_CUDA_VERSION` set, in its own target folder (default
//! `$CARGO_TARGET_DIR/cuda`, so the CPU build's artefacts stay as they are). The binary needs at
//! run time the GPU driver (`libcuda.so.1`, R580 or newer for CUDA 13.0's PTX) and the
//! libraries' sonames on `LD_LIBRARY_PATH`, e.g. from a PyTorch install's `nvidia/cu13/lib`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Why the CUDA build could not be made. Every message names the flag, file or tool concerned.
#[derive(Debug, thiserror::Error)]
pub enum CudaBuildError {
    /// A flag's value that cannot work, or something the build needs that is missing or wrong.
    #[error("{0}")]
    Invalid(String),
    /// A file or folder operation failed; `what` says which (the error is part of the message,
    /// not a `source()`, so that printing the chain does not repeat it).
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

pub type Result<T> = std::result::Result<T, CudaBuildError>;

/// `Invalid` with a formatted message, returned from the current function.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err(CudaBuildError::Invalid(format!($($t)*)))
    };
}

/// `Invalid` with a formatted message.
macro_rules! invalid {
    ($($t:tt)*) => {
        CudaBuildError::Invalid(format!($($t)*))
    };
}

/// Says what was being done when a file operation failed.
trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| CudaBuildError::Io { what: what(), error })
    }
}

/// The flags of `cargo xtask build-cuda`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildCudaArgs {
    /// Where the wheels' virtual environment and the link stubs go.
    #[arg(long, env = "ADAPT_CUDA_CACHE")]
    pub cache: Option<PathBuf>,
    /// CUDA release of the wheels (13.x; the PTX it writes needs a driver of that release or
    /// newer: 13.0 runs on R580 drivers).
    #[arg(long, default_value = "13.0")]
    pub cuda_version: String,
    /// GPU compute capability the kernels are compiled for (90: H100 / H200).
    #[arg(long, default_value_t = 90)]
    pub compute_cap: u32,
    /// The Python that creates the virtual environment.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// Cargo target folder of the CUDA build (default: `cuda` inside the CPU build's).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Also build the CUDA test binaries (`tests/generic_path.rs`, the ops on the GPU against the
    /// fast CPU kernels) and print their paths.
    #[arg(long)]
    pub tests: bool,
    /// Copy the binaries into this folder (e.g. an ignored folder of the repository that travels
    /// to a GPU machine), stripped of debug information.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Also compile candle-kernels' quantized GGUF / MoE kernels (unused by adapt; slow), instead
    /// of leaving their static library empty.
    #[arg(long)]
    pub all_kernels: bool,
}

/// The candle-kernels sources of `libmoe.a` (quantized GGUF and MoE kernels), as `sh` patterns.
const PRUNED: &str = "*/moe/*.cu|moe/*.cu|*/mmvq_gguf.cu|mmvq_gguf.cu|*/mmq_gguf/*.cu|mmq_gguf/*.cu";

/// The wheels' extras: nvcc and its headers, and the libraries the binary links.
const WHEEL_EXTRAS: &str = "nvcc,cccl,cudart,cublas,curand,nvrtc";

/// The libraries cudarc and candle-kernels link to (besides libcuda), by soname prefix.
const LINKED: [&str; 5] = ["libnvrtc.so.", "libcublas.so.", "libcublasLt.so.", "libcurand.so.", "libcudart.so."];

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The CUDA runner binary.
    pub binary: PathBuf,
    pub binary_mb: f64,
    /// The CUDA test binaries (with `--tests`).
    pub tests: Vec<PathBuf>,
    /// The stripped copies in `--bundle`.
    pub bundled: Vec<PathBuf>,
    pub cuda_version: (u32, u32),
    pub compute_cap: u32,
    pub all_kernels: bool,
    /// The wheels' CUDA tree the build used as `CUDA_HOME`.
    pub cuda_home: PathBuf,
    pub target_dir: PathBuf,
    pub seconds: f64,
    /// What the GPU machine needs to run the binary, in a sentence.
    pub runtime: String,
}

impl Built {
    /// The binaries, the release and the run-time needs, one line each.
    pub fn lines(&self) -> Vec<String> {
        let (major, minor) = self.cuda_version;
        let mut lines = vec![format!("binary: {} ({:.1} MiB)", self.binary.display(), self.binary_mb)];
        lines.extend(self.tests.iter().map(|t| format!("test binary: {}", t.display())));
        lines.extend(self.bundled.iter().map(|b| format!("bundled: {}", b.display())));
        lines.push(format!("CUDA {major}.{minor}, compute capability {}, {:.0} s", self.compute_cap, self.seconds));
        lines.push(self.runtime.clone());
        lines
    }

    /// The JSON object `cargo xtask build-cuda --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let (major, minor) = self.cuda_version;
        serde_json::json!({
            "binary": self.binary,
            "binary_mb": (self.binary_mb * 10.0).round() / 10.0,
            "tests": self.tests,
            "bundled": self.bundled,
            "cuda_version": format!("{major}.{minor}"),
            "compute_cap": self.compute_cap,
            "all_kernels": self.all_kernels,
            "cuda_home": self.cuda_home,
            "target_dir": self.target_dir,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "runtime": self.runtime,
        })
    }
}

/// Installs what is missing and builds, as the module documentation says; `log` sees each step
/// as it starts. Every flag is checked, and Python found, before anything is installed.
pub fn build(args: &BuildCudaArgs, log: &dyn Fn(&str)) -> Result<Built> {
    let t0 = Instant::now();
    let (major, minor) = parse_version(&args.cuda_version)?;
    if !(50..=120).contains(&args.compute_cap) {
        bail!("--compute-cap {}: expected a compute capability such as 80, 89 or 90", args.compute_cap);
    }
    let root = workspace_root()?;
    let cache = match &args.cache {
        Some(c) => std::path::absolute(c).ctx(|| format!("--cache {}", c.display()))?,
        None => home()?.join(".cache").join("adapt-cuda"),
    };
    if cache.starts_with(&root) {
        bail!("--cache {}: must lie outside the repository {}", cache.display(), root.display());
    }
    let target_dir = match &args.target_dir {
        Some(t) => t.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join(if args.all_kernels { "cuda-all-kernels" } else { "cuda" }),
    };

    let cuda_home = install_wheels(&args.python, &cache, major, minor, log)?;
    let stubs = cuda_home.join("lib").join("stubs");
    write_link_stubs(&root, &cuda_home, &stubs, log)?;

    let mut bin_dirs = vec![cuda_home.join("bin")];
    if !args.all_kernels {
        bin_dirs.insert(0, write_nvcc_wrapper(&cuda_home)?);
    }
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let inherited = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let path = std::env::join_paths(bin_dirs.iter().cloned().chain(inherited)).map_err(|e| invalid!("PATH: {e}"))?;
    let cargo_cmd = |sub: &[&str]| {
        let mut c = Command::new(&cargo);
        c.args(sub).current_dir(&root);
        c.env("CUDA_HOME", &cuda_home).env("CUDA_PATH", &cuda_home).env("PATH", &path);
        c.env("CUDA_COMPUTE_CAP", args.compute_cap.to_string());
        c.env("CUDARC_CUDA_VERSION", format!("{major}0{minor}0"));
        c.env("CARGO_TARGET_DIR", &target_dir);
        c
    };
    log(&format!(
        "cargo build -p xtask --features cuda (CUDA {major}.{minor}, sm_{}, target {}{}); the first build compiles \
         candle's kernels with nvcc (long on few cores)",
        args.compute_cap,
        target_dir.display(),
        if args.all_kernels { ", all kernels" } else { ", quantized GGUF / MoE kernels left out" }
    ));
    let binary =
        cargo_artifacts(cargo_cmd(&["build", "-p", "xtask", "--features", "cuda", "--bin", "xtask"]), "build")?
            .into_iter()
            .next()
            .ok_or_else(|| invalid!("cargo build -p xtask --features cuda reported no binary"))?;
    let mut tests = Vec::new();
    if args.tests {
        log("cargo test --no-run -p adapt --features cuda --test generic_path");
        tests = cargo_artifacts(
            cargo_cmd(&["test", "--no-run", "-p", "adapt", "--features", "cuda", "--test", "generic_path"]),
            "test --no-run",
        )?;
    }
    let mut bundled = Vec::new();
    if let Some(dir) = &args.bundle {
        std::fs::create_dir_all(dir).ctx(|| format!("--bundle {}: cannot create the folder", dir.display()))?;
        for (src, name) in std::iter::once((&binary, "xtask".to_string())).chain(tests.iter().map(|t| {
            let stem = t.file_name().and_then(|n| n.to_str()).unwrap_or("test");
            (t, stem.split('-').next().unwrap_or(stem).to_string())
        })) {
            bundled.push(copy_stripped(src, &dir.join(&name))?);
        }
    }
    let binary_mb = std::fs::metadata(&binary).map(|m| m.len() as f64 / (1 << 20) as f64).unwrap_or(f64::NAN);
    Ok(Built {
        binary,
        binary_mb,
        tests,
        bundled,
        cuda_version: (major, minor),
        compute_cap: args.compute_cap,
        all_kernels: args.all_kernels,
        cuda_home,
        target_dir,
        seconds: t0.elapsed().as_secs_f64(),
        runtime: runtime_needs(major),
    })
}

fn parse_version(v: &str) -> Result<(u32, u32)> {
    let parsed = v.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        // cudarc 0.19 knows 13.0 to 13.4; the wheels' tree is `nvidia/cu13` from 13.0 on.
        Some((13, minor)) if minor <= 4 => Ok((13, minor)),
        _ => bail!("--cuda-version {v}: expected a CUDA 13 release known to cudarc 0.19 (13.0 ... 13.4)"),
    }
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| invalid!("HOME is not set: give --cache"))
}

/// The workspace root (two folders above this crate's).
fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root =
        manifest.ancestors().nth(2).ok_or_else(|| invalid!("{} has no grandparent folder", manifest.display()))?;
    if !root.join("Cargo.toml").is_file() {
        bail!("build-cuda runs from the adapt repository ({} holds no Cargo.toml)", root.display());
    }
    Ok(root.to_path_buf())
}

/// Runs `cmd`, returning its output, or an error naming `what` with the end of its stderr.
fn checked(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd.output().map_err(|e| invalid!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({}):\n{}", out.status, tail.join("\n"));
    }
    Ok(out)
}

/// Creates the virtual environment and installs the wheels unless a stamp says they are there;
/// returns the wheels' CUDA tree.
fn install_wheels(python: &Path, cache: &Path, major: u32, minor: u32, log: &dyn Fn(&str)) -> Result<PathBuf> {
    let venv = cache.join("venv");
    let vpython = venv.join("bin").join("python");
    let spec = format!("cuda-toolkit[{WHEEL_EXTRAS}]=={major}.{minor}.*");
    let stamp = venv.join("adapt-cuda.stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == spec) && vpython.exists() {
        log(&format!("wheels already installed ({spec} in {})", venv.display()));
    } else {
        let version = Command::new(python).arg("--version").output();
        match version {
            Ok(o) if o.status.success() => {}
            Ok(o) => bail!(
                "{} --version failed ({}): build-cuda needs Python 3 to install NVIDIA's CUDA wheels",
                python.display(),
                o.status
            ),
            Err(e) => bail!(
                "cannot run {} ({e}): build-cuda needs Python 3 (give --python) to install NVIDIA's CUDA wheels",
                python.display()
            ),
        }
        std::fs::create_dir_all(cache).ctx(|| format!("cannot create the cache folder {}", cache.display()))?;
        if !vpython.exists() {
            log(&format!("creating the virtual environment {}", venv.display()));
            checked(
                Command::new(python).args(["-m", "venv"]).arg(&venv),
                &format!(
                    "{} -m venv {} (on Debian/Ubuntu: apt-get install python3-venv)",
                    python.display(),
                    venv.display()
                ),
            )?;
        }
        log(&format!("pip install {spec} (about 1 GB from PyPI)"));
        checked(
            Command::new(&vpython).args(["-m", "pip", "install", "--disable-pip-version-check", "-q", &spec]),
            &format!("pip install {spec} into {} (needs access to PyPI)", venv.display()),
        )?;
        write_atomic(&stamp, spec.as_bytes())?;
    }
    // The wheels' shared tree: <venv>/lib/pythonX.Y/site-packages/nvidia/cu13.
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).ctx(|| format!("cannot list {}", lib.display()))?;
    let mut found = None;
    for e in entries {
        let tree = e
            .ctx(|| format!("cannot list {}", lib.display()))?
            .path()
            .join("site-packages")
            .join("nvidia")
            .join(format!("cu{major}"));
        if tree.join("bin").join("nvcc").is_file() {
            found = Some(tree);
        }
    }
    let tree = found.ok_or_else(|| {
        invalid!(
            "no nvidia/cu{major}/bin/nvcc under {}: the wheels are incomplete (remove {} and rerun)",
            lib.display(),
            stamp.display()
        )
    })?;
    let out = checked(Command::new(tree.join("bin").join("nvcc")).arg("--version"), "nvcc --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains(&format!("release {major}.{minor},")) {
        bail!("{} is not CUDA {major}.{minor}: {}", tree.join("bin/nvcc").display(), text.trim());
    }
    Ok(tree)
}

/// The link stub for `libcuda.so` and the unversioned names of the wheels' libraries.
fn write_link_stubs(root: &Path, cuda_home: &Path, stubs: &Path, log: &dyn Fn(&str)) -> Result<()> {
    std::fs::create_dir_all(stubs).ctx(|| format!("cannot create {}", stubs.display()))?;
    let lib = cuda_home.join("lib");
    for prefix in LINKED {
        let versioned = std::fs::read_dir(&lib)
            .ctx(|| format!("cannot list {}", lib.display()))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|n| n.strip_prefix(prefix).is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
            .min_by_key(String::len)
            .ok_or_else(|| invalid!("{} holds no {prefix}N: the wheels are incomplete", lib.display()))?;
        let name = &prefix[..prefix.len() - 1];
        let link = stubs.join(name);
        let target = Path::new("..").join(&versioned);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = stubs.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).ctx(|| format!("cannot create {}", link.display()))?;
    }
    // Every driver function cudarc's bindings load by name.
    let driver = cudarc_driver_bindings(root)?;
    let text = std::fs::read_to_string(&driver).ctx(|| format!("cannot read {}", driver.display()))?;
    let mut names: Vec<&str> = text
        .split("load::<_F>(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|n| n.starts_with("cu") && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < 100 {
        bail!("{}: found only {} driver functions; not cudarc's driver bindings", driver.display(), names.len());
    }
    let mut c = String::from(
        "/* Link stub for libcuda.so.1, written by `cargo xtask build-cuda`: the real library comes with\n   the GPU driver. Each function returns CUDA_ERROR_STUB_LIBRARY (34). */\n",
    );
    for n in &names {
        let _ = writeln!(c, "int {n}(void) {{ return 34; }}");
    }
    let source = stubs.join("libcuda_stub.c");
    let so = stubs.join("libcuda.so");
    if std::fs::read_to_string(&source).is_ok_and(|s| s == c) && so.is_file() {
        return Ok(());
    }
    log(&format!("writing the libcuda.so link stub ({} functions) in {}", names.len(), stubs.display()));
    write_atomic(&source, c.as_bytes())?;
    let tmp = stubs.join(".libcuda.so.tmp");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    checked(
        Command::new(&cc).args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"]).arg(&tmp).arg(&source),
        &format!("{} -shared (the libcuda.so link stub; set CC to a C compiler)", cc.to_string_lossy()),
    )?;
    std::fs::rename(&tmp, &so).ctx(|| format!("cannot create {}", so.display()))?;
    Ok(())
}

/// Writes `$CUDA_HOME/xtask-bin/nvcc` (see the module docs) and the empty source it compiles in
/// place of a pruned one; returns its folder. It sits one level below `CUDA_HOME` because
/// candle-kernels' build derives the CUDA root from nvcc's location.
fn write_nvcc_wrapper(cuda_home: &Path) -> Result<PathBuf> {
    let dir = cuda_home.join("xtask-bin");
    std::fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
    let empty = dir.join("empty.cu");
    write_atomic(&empty, b"// compiled by xtask-bin/nvcc in place of a pruned candle-kernels source\n")?;
    let real = cuda_home.join("bin").join("nvcc");
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let script = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask build-cuda`: nvcc, except that candle-kernels' quantized GGUF / MoE\n\
         # sources (unused by adapt) are compiled as an empty file. See crates/cuda-build/src/lib.rs.\n\
         for a in \"$@\"; do\n\
         \x20   shift\n\
         \x20   case \"$a\" in\n\
         \x20       {PRUNED}) set -- \"$@\" {empty} ;;\n\
         \x20       *) set -- \"$@\" \"$a\" ;;\n\
         \x20   esac\n\
         done\n\
         exec {real} \"$@\"\n",
        empty = quote(&empty),
        real = quote(&real),
    );
    let wrapper = dir.join("nvcc");
    let tmp = dir.join(".nvcc.tmp");
    std::fs::write(&tmp, script).ctx(|| format!("cannot write {}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .ctx(|| format!("cannot make {} executable", tmp.display()))?;
    std::fs::rename(&tmp, &wrapper).ctx(|| format!("cannot create {}", wrapper.display()))?;
    Ok(dir)
}

/// `src/driver/sys/mod.rs` of the cudarc version in Cargo.lock, in cargo's registry sources.
fn cudarc_driver_bindings(root: &Path) -> Result<PathBuf> {
    let lock_path = root.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).ctx(|| format!("cannot read {}", lock_path.display()))?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"cudarc\""))
        .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"')))
        .ok_or_else(|| invalid!("{} names no cudarc package", lock_path.display()))?;
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => home()?.join(".cargo"),
    };
    let registry = cargo_home.join("registry").join("src");
    let mut tried = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&registry) {
        for e in entries.flatten() {
            let p = e.path().join(format!("cudarc-{version}")).join("src/driver/sys/mod.rs");
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p);
        }
    }
    bail!(
        "cudarc {version}'s sources are not in {} (run `cargo fetch` first); looked for {:?}",
        registry.display(),
        tried
    )
}

/// Runs a cargo command with JSON messages; the paths of the executables it produced.
fn cargo_artifacts(mut cmd: Command, what: &str) -> Result<Vec<PathBuf>> {
    cmd.arg("--message-format=json-render-diagnostics");
    cmd.stderr(std::process::Stdio::inherit());
    let out = cmd.output().map_err(|e| invalid!("cargo {what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("cargo {what} --features cuda failed ({}); its errors are above", out.status);
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && v["reason"] == "compiler-artifact"
            && let Some(exe) = v["executable"].as_str()
        {
            exes.push(PathBuf::from(exe));
        }
    }
    Ok(exes)
}

/// Copies `src` to `dst` (temp + rename) without debug information (`strip`, when there is one).
fn copy_stripped(src: &Path, dst: &Path) -> Result<PathBuf> {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).ctx(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
    // Without `strip` the copy keeps its debug information: larger, still correct.
    let _ = Command::new("strip").arg("--strip-debug").arg(&tmp).status();
    std::fs::rename(&tmp, dst).ctx(|| format!("cannot create {}", dst.display()))?;
    Ok(dst.to_path_buf())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).ctx(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("cannot create {}", path.display()))
}

/// What the GPU machine needs to run the binary.
fn runtime_needs(major: u32) -> String {
    format!(
        "run time: an NVIDIA driver supporting CUDA {major}.0 or newer (libcuda.so.1; R580+), and on LD_LIBRARY_PATH \
         libcudart.so.{major}, libcublas.so.{major}, libcublasLt.so.{major}, libcurand.so.10, libnvrtc.so.{major}; \
         with PyTorch for CUDA {major} installed: \
         export LD_LIBRARY_PATH=\"$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], \"cu{major}\", \"lib\"))'):$LD_LIBRARY_PATH\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cuda_13_releases_cudarc_knows_are_accepted() {
        assert_eq!(parse_version("13.0").unwrap(), (13, 0));
        assert_eq!(parse_version("13.4").unwrap(), (13, 4));
        for bad in ["12.4", "13.5", "13", "thirteen", "13.x"] {
            let e = parse_version(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--cuda-version {bad}:")) && e.contains("13.0 ... 13.4"), "{e}");
        }
    }

    #[test]
    fn the_workspace_root_is_the_repository_holding_this_crate() {
        let root = workspace_root().unwrap();
        assert!(root.join("crates/cuda-build/Cargo.toml").is_file(), "{}", root.display());
    }

    #[test]
    fn the_report_lists_every_binary_and_rounds_its_figures() {
        let built = Built {
            binary: "/t/xtask".into(),
            binary_mb: 123.456,
            tests: vec!["/t/generic_path-1".into()],
            bundled: vec!["/b/xtask".into(), "/b/generic_path".into()],
            cuda_version: (13, 0),
            compute_cap: 90,
            all_kernels: false,
            cuda_home: "/c".into(),
            target_dir: "/t".into(),
            seconds: 61.26,
            runtime: runtime_needs(13),
        };
        let lines = built.lines();
        assert_eq!(lines[0], "binary: /t/xtask (123.5 MiB)");
        assert_eq!(lines[1], "test binary: /t/generic_path-1");
        assert_eq!(&lines[2..4], ["bundled: /b/xtask", "bundled: /b/generic_path"]);
        assert_eq!(lines[4], "CUDA 13.0, compute capability 90, 61 s");
        assert!(lines[5].contains("libcublas.so.13") && lines[5].contains("R580"), "{}", lines[5]);
        let json = built.to_json();
        assert_eq!((json["binary_mb"].as_f64(), json["seconds"].as_f64()), (Some(123.5), Some(61.3)));
        assert_eq!(json["cuda_version"], "13.0");
    }
}
