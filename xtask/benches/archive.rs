//! Benchmark: `cargo xtask archive` (default and `--compression best`, with 1, 2 and every
//! thread) against `zip -9 -r -y` and 7-Zip's `-tzip -mx=9` on the same trees, in one run: time,
//! size and peak memory, with ratios to zip -9 and to 7-Zip.
//!
//! Trees (`ANYMATIX_BENCH_TREES`, comma-separated, default `large,standin`):
//! - `large`: real CUDA libraries (Triton's, cuRAND's, cuFFT's and cuSPARSE's, from PyPI's Linux
//!   wheels), at least 1 GB in a few large files, as most of the real product's bytes are;
//! - `standin`: the host's CPython prefix as `anymatix/python/` with real wheels added, grown with
//!   vendored copies of its site-packages to at least 1 GB of small files;
//! - `ANYMATIX_BENCH_TREE=DIR` adds any folder (such as a real build's pruned tree).
//!
//! `ANYMATIX_BENCH_NO_7Z=1` leaves 7-Zip out (it takes about 4x zip -9's time).
//!
//!     cargo bench --bench archive

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::installer::HostPython;
use support::{copy_tree as copy, xtask_binary};

const MIN_BYTES: u64 = 1 << 30;

struct Run {
    tool: String,
    seconds: f64,
    bytes: u64,
    peak_kib: Option<u64>,
    zip: PathBuf,
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let wanted = std::env::var("ANYMATIX_BENCH_TREES").unwrap_or("large,standin".into());
    let mut trees: Vec<(String, PathBuf)> = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let tree = work.path().join(name).join("anymatix");
        match name {
            "large" => large_tree(&tree, work.path()),
            "standin" => standin_tree(&tree),
            other => panic!("ANYMATIX_BENCH_TREES: unknown tree {other} (large, standin)"),
        }
        trees.push((name.to_string(), tree));
    }
    if let Some(dir) = std::env::var_os("ANYMATIX_BENCH_TREE") {
        trees.push(("given".into(), PathBuf::from(dir)));
    }
    for (name, tree) in &trees {
        bench(name, tree, &work.path().join(format!("{name}-out")));
    }
}

fn bench(name: &str, tree: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let (files, bytes) = tree_size(tree);
    println!(
        "\n== tree `{name}`: {files} files, {:.2} GB ({})",
        bytes as f64 / 1e9,
        tree.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let xtask = xtask_binary().display().to_string();
    let tree_arg = tree.to_str().unwrap().to_string();
    let parent = tree.parent().unwrap();
    let folder = tree.file_name().unwrap().to_str().unwrap().to_string();
    let zip_at = |file: &str| out.join(file).to_str().unwrap().to_string();
    let ours = |file: &str, extra: &[&str]| {
        let mut argv = vec![
            xtask.clone(),
            "archive".into(),
            tree_arg.clone(),
            zip_at(file),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    };
    let mut tools: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut thread_counts = vec![1, 2];
    if cores > 2 {
        thread_counts.push(cores);
    }
    for threads in &thread_counts {
        let file = format!("default-{threads}.zip");
        tools.push((
            format!("xtask default, {threads} thread(s)"),
            zip_at(&file),
            ours(&file, &["--threads", &threads.to_string()]),
        ));
    }
    tools.push((
        format!("xtask best, {cores} thread(s)"),
        zip_at("best.zip"),
        ours("best.zip", &["--compression", "best"]),
    ));
    tools.push((
        "zip -9 -r -y".into(),
        zip_at("zip9.zip"),
        ["zip", "-9", "-r", "-y", "-q", &zip_at("zip9.zip"), &folder]
            .map(String::from)
            .to_vec(),
    ));
    let seven = ["7zz", "7z"]
        .into_iter()
        .find(|t| Command::new(t).arg("i").output().is_ok());
    match (seven, std::env::var_os("ANYMATIX_BENCH_NO_7Z")) {
        (Some(seven), None) => tools.push((
            format!("{seven} a -tzip -mx=9"),
            zip_at("7z.zip"),
            [
                seven,
                "a",
                "-tzip",
                "-mx=9",
                "-bd",
                "-bso0",
                &zip_at("7z.zip"),
                &folder,
            ]
            .map(String::from)
            .to_vec(),
        )),
        (None, _) => println!("(7-Zip not installed: apt-get install 7zip to compare with it)"),
        (_, Some(_)) => println!("(7-Zip left out: ANYMATIX_BENCH_NO_7Z)"),
    }
    let runs: Vec<Run> = tools
        .iter()
        .map(|(tool, zip, argv)| measure(tool, Path::new(zip), argv, parent))
        .collect();

    let defaults: Vec<&Run> = runs
        .iter()
        .filter(|r| r.tool.starts_with("xtask default"))
        .collect();
    let first = std::fs::read(&defaults[0].zip).unwrap();
    let same = defaults
        .iter()
        .all(|r| std::fs::read(&r.zip).unwrap() == first);
    println!("same bytes for every thread count: {same}");
    let one = defaults[0].seconds;
    for r in &defaults[1..] {
        println!("{}: {:.2}x faster than 1 thread", r.tool, one / r.seconds);
    }
    let reference = |prefix: &str| runs.iter().find(|r| r.tool.starts_with(prefix));
    let zip9 = reference("zip -9").unwrap();
    let seven = reference("7z");
    println!(
        "{:<30} {:>9} {:>13} {:>9} {:>10} {:>10} {:>9}",
        "tool", "seconds", "bytes", "peak MiB", "time/zip9", "size/zip9", "size/7z"
    );
    for r in &runs {
        println!(
            "{:<30} {:>9.1} {:>13} {:>9} {:>10.3} {:>10.4} {:>9}",
            r.tool,
            r.seconds,
            r.bytes,
            r.peak_kib
                .map_or("-".to_string(), |k| format!("{:.0}", k as f64 / 1024.0)),
            r.seconds / zip9.seconds,
            r.bytes as f64 / zip9.bytes as f64,
            seven.map_or("-".to_string(), |s| format!(
                "{:.4}",
                r.bytes as f64 / s.bytes as f64
            )),
        );
    }
    for r in &runs {
        let _ = std::fs::remove_file(&r.zip);
    }
}

/// Real CUDA libraries from PyPI's Linux wheels, unpacked: a few files of hundreds of MB.
fn large_tree(tree: &Path, work: &Path) {
    let wheels = work.join("wheels");
    println!("downloading CUDA wheels from PyPI (pip's cache keeps them) ...");
    let wheels = support::pip_download(
        &wheels,
        &[
            "triton==3.5.1",
            "nvidia-curand-cu12==10.3.9.90",
            "nvidia-cufft-cu12==11.3.3.83",
            "nvidia-cusparse-cu12==12.5.8.93",
        ],
        &[
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_17_x86_64",
        ],
        "3.11",
    );
    let site = tree.join("python/lib/python3.11/site-packages");
    std::fs::create_dir_all(&site).unwrap();
    for wheel in wheels {
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&site)
            .status()
            .unwrap();
        assert!(status.success(), "cannot unpack {}", wheel.display());
    }
    let (_, bytes) = tree_size(tree);
    assert!(
        bytes >= MIN_BYTES,
        "the CUDA wheels hold only {bytes} bytes"
    );
}

/// The host's CPython with real wheels, grown with vendored copies to at least 1 GB.
fn standin_tree(tree: &Path) {
    let HostPython {
        executable: python,
        prefix,
        version,
    } = HostPython::find();
    println!("building the stand-in tree from {} ...", prefix.display());
    copy(&prefix, &tree.join("python"));
    let site = tree.join(format!("python/lib/python{version}/site-packages"));
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--upgrade"])
        .arg("--target")
        .arg(&site)
        .args([
            "numpy",
            "scipy",
            "pillow",
            "transformers",
            "tokenizers",
            "safetensors",
        ])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("(PyPI did not answer: no extra wheels)");
    }
    let mut copies = 0;
    while tree_size(tree).1 < MIN_BYTES {
        copies += 1;
        copy(
            &site,
            &tree.join(format!("ComfyUI/custom_nodes/vendored-{copies}")),
        );
    }
}

/// Runs one tool from the tree's parent folder, under GNU time (for its peak memory) when it is
/// there.
fn measure(tool: &str, zip: &Path, argv: &[String], dir: &Path) -> Run {
    let _ = std::fs::remove_file(zip);
    let peak = zip.with_extension("peak");
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M", "-o"]).arg(&peak).args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let start = Instant::now();
    let status = cmd
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert!(status.success(), "{tool} failed");
    let peak_kib = std::fs::read_to_string(&peak)
        .ok()
        .and_then(|t| t.trim().lines().last()?.trim().parse().ok());
    println!("  {tool}: {seconds:.1} s");
    Run {
        tool: tool.to_string(),
        seconds,
        bytes: std::fs::metadata(zip).unwrap().len(),
        peak_kib,
        zip: zip.to_path_buf(),
    }
}

fn tree_size(root: &Path) -> (usize, u64) {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map_or(0, |m| m.len()))
        })
}
