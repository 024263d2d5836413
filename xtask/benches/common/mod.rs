//! What both benchmarks need: the host's CPython, and copies of trees.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's python executable, its prefix and its `X.Y` version.
pub fn host_python() -> (PathBuf, PathBuf, String) {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable); print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python3 on PATH");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().into(),
        lines.next().unwrap().into(),
        lines.next().unwrap().into(),
    )
}

/// `cp -a`: the tree as it is, links and modes included.
pub fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}
