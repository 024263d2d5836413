//! Benchmark: `cargo xtask archive` against `zip -9 -r -y` (and `7z a -tzip -mx=9` when
//! installed) on the same tree, in one run: time, size and peak memory, with ratios to zip -9.
//! The tree: a copy of the host's CPython prefix as `anymatix/python/` with real wheels added
//! when PyPI answers, grown with vendored copies of its site-packages to at least 1 GB.
//! Goals on 2 cores: at most 0.25 of zip -9's time, at most 0.99 of its size, under 300 MB.
//!
//!     cargo bench --bench archive

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
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
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let HostPython {
        executable: python,
        prefix,
        version,
    } = HostPython::find();
    let tree = work.path().join("anymatix");
    println!("building the tree from {} ...", prefix.display());
    copy(&prefix, &tree.join("python"));
    let site = tree.join(format!("python/lib/python{version}/site-packages"));
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
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
    while tree_size(&tree).1 < MIN_BYTES {
        copies += 1;
        copy(
            &site,
            &tree.join(format!("ComfyUI/custom_nodes/vendored-{copies}")),
        );
    }
    let (files, bytes) = tree_size(&tree);
    println!(
        "tree: {files} files, {:.2} GB ({copies} vendored site-packages copies)",
        bytes as f64 / 1e9
    );

    let xtask = xtask_binary().display().to_string();
    let tree_arg = tree.to_str().unwrap();
    let out = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let mut tools: Vec<(&str, String, Vec<String>)> = vec![
        (
            "xtask archive (every core)",
            out("ours.zip"),
            vec![
                xtask.clone(),
                "archive".into(),
                tree_arg.into(),
                out("ours.zip"),
            ],
        ),
        (
            "xtask archive --threads 1",
            out("ours1.zip"),
            vec![
                xtask.clone(),
                "archive".into(),
                tree_arg.into(),
                out("ours1.zip"),
                "--threads".into(),
                "1".into(),
            ],
        ),
        (
            "zip -9 -r -y",
            out("zip9.zip"),
            ["zip", "-9", "-r", "-y", "-q", &out("zip9.zip"), "anymatix"]
                .map(String::from)
                .to_vec(),
        ),
    ];
    if Command::new("7z").arg("i").output().is_ok() {
        tools.push((
            "7z a -tzip -mx=9",
            out("7z.zip"),
            [
                "7z",
                "a",
                "-tzip",
                "-mx=9",
                "-bd",
                "-bso0",
                &out("7z.zip"),
                "anymatix",
            ]
            .map(String::from)
            .to_vec(),
        ));
    } else {
        println!("(7z not installed: apt-get install p7zip-full to compare with it)");
    }
    let runs: Vec<Run> = tools
        .iter()
        .map(|(tool, zip, argv)| measure(tool, Path::new(zip), argv, work.path()))
        .collect();
    let same = std::fs::read(out("ours.zip")).unwrap() == std::fs::read(out("ours1.zip")).unwrap();
    println!("same bytes from every core and from one: {same}");

    let reference = runs
        .iter()
        .find(|r| r.tool.starts_with("zip -9"))
        .map(|r| (r.seconds, r.bytes))
        .unwrap();
    println!(
        "{:<28} {:>9} {:>12} {:>9} {:>10} {:>10}",
        "tool", "seconds", "bytes", "peak MiB", "time/zip9", "size/zip9"
    );
    for r in &runs {
        println!(
            "{:<28} {:>9.1} {:>12} {:>9} {:>10.2} {:>10.3}",
            r.tool,
            r.seconds,
            r.bytes,
            r.peak_kib
                .map_or("-".to_string(), |k| format!("{:.0}", k as f64 / 1024.0)),
            r.seconds / reference.0,
            r.bytes as f64 / reference.1 as f64
        );
    }
}

/// Runs one tool from the work folder, under GNU time (for its peak memory) when it is there.
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
    let status = cmd.current_dir(dir).status().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert!(status.success(), "{tool} failed");
    let peak_kib = std::fs::read_to_string(&peak)
        .ok()
        .and_then(|t| t.trim().lines().last()?.trim().parse().ok());
    Run {
        tool: tool.to_string(),
        seconds,
        bytes: std::fs::metadata(zip).unwrap().len(),
        peak_kib,
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
