//! Benchmark: `cargo xtask prune` against `find … -delete` doing the same removals, in one run,
//! on a tree of at least 50,000 files: a copy of the host's CPython prefix laid out as
//! `anymatix/python/`, with real wheels added when PyPI answers. Prints times and the ratio.
//! Goal: no slower than find, while also checking every native library and writing the report.
//!
//!     cargo bench --bench prune

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use std::time::{Duration, Instant};
use support::installer::HostPython;
use support::{copy_tree as copy, xtask_binary};

const MIN_FILES: usize = 50_000;
const ROUNDS: usize = 3;

fn main() {
    let work = tempfile::tempdir().unwrap();
    let HostPython {
        executable: python,
        prefix,
        version,
    } = HostPython::find();
    println!(
        "building the tree from {} (Python {version}) ...",
        prefix.display()
    );
    let template = work.path().join("template/anymatix");
    copy(&prefix, &template.join("python"));
    bundle_libraries(&template.join("python"), &version);
    add_wheels(
        &python,
        &template.join(format!("python/lib/python{version}/site-packages")),
    );
    // Reach the size the goal is set for by adding a vendored copy of the stdlib, as
    // custom nodes sometimes carry whole libraries.
    let mut copies = 0;
    while count_files(&template) < MIN_FILES {
        copies += 1;
        copy(
            &prefix.join(format!("lib/python{version}")),
            &template.join(format!("ComfyUI/custom_nodes/vendored-{copies}/lib")),
        );
    }
    let files = count_files(&template);
    println!("tree: {files} files ({copies} vendored stdlib copies added)");

    // Interleaved rounds on fresh copies, each after `sync`, so neither side inherits the
    // other's unwritten journal; medians are reported.
    let report = work.path().join("report.html");
    let xtask = xtask_binary().display().to_string();
    let (mut ours, mut find) = (Vec::new(), Vec::new());
    let (mut ours_left, mut find_left) = (Default::default(), Default::default());
    for round in 0..ROUNDS {
        for side in if round % 2 == 0 {
            ["ours", "find"]
        } else {
            ["find", "ours"]
        } {
            let tree = work.path().join(side).join("anymatix");
            let _ = std::fs::remove_dir_all(tree.parent().unwrap());
            copy(&template, &tree);
            count_files(&tree); // the same page-cache state for both: every entry read once
            Command::new("sync").status().unwrap();
            if side == "ours" {
                ours.push(time(|| {
                    let out = Command::new(&xtask)
                        .args([
                            "prune",
                            tree.to_str().unwrap(),
                            "--platform",
                            "linux-x86_64",
                            "--report",
                        ])
                        .arg(&report)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }));
                ours_left = listing(&tree);
            } else {
                find.push(time(|| find_prune(&tree, &version)));
                find_left = listing(&tree);
            }
        }
    }
    let (ours, find) = (median(ours), median(find));
    let differ = ours_left.symmetric_difference(&find_left).count();
    println!(
        "xtask prune (with linkage check and HTML report): {:>6.2} s median of {ROUNDS}, {} files kept",
        ours.as_secs_f64(),
        ours_left.len()
    );
    println!(
        "find -delete / rm -rf (same rules):                {:>6.2} s median of {ROUNDS}, {} files kept",
        find.as_secs_f64(),
        find_left.len()
    );
    println!(
        "ratio xtask / find: {:.2} (goal: at most 1.00)",
        ours.as_secs_f64() / find.as_secs_f64()
    );
    println!("paths kept by one and not the other: {differ}");
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn add_wheels(python: &Path, site: &Path) {
    let status = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(site)
        .args(["--upgrade", "numpy", "scipy", "pillow"])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("(PyPI did not answer: measuring without the extra wheels)");
    }
}

/// Like conda, carry the libraries the interpreter's extension modules link (the host's CPython
/// may take libffi or libssl from the system), so the linkage check has a complete tree.
fn bundle_libraries(prefix: &Path, version: &str) {
    let script = format!(
        r#"for so in "{p}"/lib/python{version}/lib-dynload/*.so; do ldd "$so" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {{ print $3 }}'; done   | sort -u | grep -v -E '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libutil|libresolv|libpython[^/]*)\.so'   | while read -r lib; do cp -nL "$lib" "{p}/lib/" || true; done"#,
        p = prefix.display()
    );
    let status = Command::new("bash").arg("-c").arg(script).status().unwrap();
    assert!(status.success());
}

fn count_files(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter(|e| e.as_ref().is_ok_and(|e| !e.file_type().is_dir()))
        .count()
}

fn listing(root: &Path) -> std::collections::BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The default policy's removals as a find expression, the way one would write them by hand.
fn find_prune(tree: &Path, version: &str) {
    let t = tree.to_str().unwrap();
    let stdlib = format!("{t}/python/lib/python{version}");
    let script = format!(
        r#"set -e
find "{t}" -depth -type d \( -name __pycache__ -o -name tests -o -name test -o -name man -o -name doc \
  -o -name docs -o -name examples -o -name .git \) -exec rm -rf {{}} +
find "{t}" -type f \( -name '*.a' -o -name '*.js.map' -o \( \( -name '*.h' -o -name '*.hpp' \) \
  ! -path "{t}/python/include/*" ! -path '*/torch/include/*' \) \) -delete
rm -rf "{t}"/python/pkgs/* "{t}"/python/envs "{stdlib}/idlelib" "{stdlib}/turtledemo" "{stdlib}/tkinter" \
  "{stdlib}/ensurepip" "{stdlib}/distutils" "{stdlib}/lib2to3"
find "{t}/python" -maxdepth 2 -path '*/conda-meta/*.json' -delete
"#
    );
    let status = Command::new("bash").arg("-c").arg(script).status().unwrap();
    assert!(status.success());
}
