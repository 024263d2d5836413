//! Benchmark: what `packages.sh` spends to keep the environment's state before a change, and
//! to undo one, against a plain copy of the same tree (`cp -a`), in one run.
//!
//! The tree is an unpacked environment's `python/` the size of the real product's (46,621 files,
//! 5.5 GB in site-packages): the host's CPython prefix with a site-packages grown to that many
//! files and bytes (most small, a few hundred megabytes each as the CUDA libraries are), or any
//! folder given with `ANYMATIX_BENCH_TREE=DIR` (an unpacked real product's `anymatix/python`).
//! Keeping and restoring run the zip's own code (`anymatix/tools/anymatix_packages/states.py`)
//! with the host's python; between them a change like an install replaces a large library and
//! adds a package.
//!
//!     cargo bench --bench package_states

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::installer::HostPython;

const FILES: usize = 46_621;
const BYTES: u64 = 5_500_000_000;
const LARGE_FILES: usize = 24;

/// Keeps or restores as the tool does: a walk of the tree, then the state linked and its
/// listing recorded; a restore that puts each differing file in place with a rename.
const DRIVER: &str = r#"import os, sys, time
from anymatix_packages import states
action, tree, state = sys.argv[1:4]
started = time.monotonic()
if action == "keep":
    states.keep(tree, state, states.walk(tree))
else:
    states.restore(state, tree, by_inode=os.name != "nt")
print(time.monotonic() - started)
"#;

fn main() {
    let work = tempfile::tempdir_in(
        std::env::var_os("ANYMATIX_BENCH_WORK").map_or_else(std::env::temp_dir, PathBuf::from),
    )
    .unwrap();
    let host = HostPython::find();
    let tree = match std::env::var_os("ANYMATIX_BENCH_TREE") {
        Some(given) => PathBuf::from(given),
        None => {
            let tree = work.path().join("anymatix/python");
            grown_prefix(&host, &tree);
            tree
        }
    };
    let (files, bytes) = size(&tree);
    println!(
        "python/ at {}: {files} files, {:.2} GB",
        tree.display(),
        bytes as f64 / 1e9
    );
    let tools = xtask::project_root().join("anymatix/tools");
    let state = work.path().join("state");
    let run = |action: &str| -> f64 {
        let out = Command::new(&host.executable)
            .args(["-c", DRIVER, action])
            .arg(&tree)
            .arg(&state)
            .env("PYTHONPATH", &tools)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };

    let keep = run("keep");
    // A change, as an install makes one: a large library replaced, a package added.
    let largest = largest_file(&tree);
    let replaced = std::fs::read(&largest).unwrap();
    std::fs::remove_file(&largest).unwrap();
    std::fs::write(&largest, &replaced[..replaced.len() / 2]).unwrap();
    for i in 0..200 {
        support::write_file(
            &tree,
            &format!("added_package/module{i}.py"),
            format!("X = {i}\n"),
        );
    }
    let undo = run("restore");
    assert_eq!(
        std::fs::read(&largest).unwrap(),
        replaced,
        "undo restored the library"
    );
    assert!(
        !tree.join("added_package").exists(),
        "undo removed the added package"
    );

    let copy_to = work.path().join("plain copy");
    let started = Instant::now();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&copy_to)
        .status()
        .unwrap();
    assert!(status.success());
    let copy = started.elapsed().as_secs_f64();

    println!(
        "keep a state (hard links):     {keep:>7.2} s   {:.3}x of a copy",
        keep / copy
    );
    println!(
        "undo a change (restore):       {undo:>7.2} s   {:.3}x of a copy",
        undo / copy
    );
    println!("plain copy of the tree (cp -a): {copy:>6.2} s   1x");
}

/// The host's prefix, with a site-packages of FILES files and BYTES bytes in all.
fn grown_prefix(host: &HostPython, tree: &Path) {
    support::copy_tree(&host.prefix, tree);
    let (files, bytes) = size(tree);
    let site = tree.join("lib/grown-site-packages");
    let small_files = FILES.saturating_sub(files + LARGE_FILES).max(1);
    let small_size = 24_000u64;
    let large_size =
        BYTES.saturating_sub(bytes + small_files as u64 * small_size) / LARGE_FILES as u64;
    let chunk = support::noise(1 << 20, 7);
    for i in 0..LARGE_FILES {
        let path = site.join(format!("nvidia/lib{i}/libcuda-stand-in-{i}.so"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut left = large_size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut file, &chunk[..n]).unwrap();
            left -= n as u64;
        }
    }
    for i in 0..small_files {
        support::write_file(
            &site,
            &format!("package{}/module{}.py", i / 200, i % 200),
            &chunk[i % 1000..i % 1000 + small_size as usize],
        );
    }
}

fn size(tree: &Path) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(tree) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            files += 1;
            bytes += entry.metadata().unwrap().len();
        }
    }
    (files, bytes)
}

fn largest_file(tree: &Path) -> PathBuf {
    walkdir::WalkDir::new(tree)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path()
}
