//! Paths inside a tree, as the archive and the policy see them: relative, `/`-separated.

use std::path::Path;

use anyhow::{Context, Result};
use walkdir::WalkDir;

/// `path` relative to `root`, with `/` separators on every platform.
pub fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// `a/b/../c` → `a/c`; `None` if it climbs out of the tree.
pub fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Files (and links) and their bytes under `root`, not following links.
pub fn stats(root: &Path) -> Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in WalkDir::new(root).follow_links(false) {
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        if !entry.file_type().is_dir() {
            files += 1;
            bytes += entry.metadata()?.len();
        }
    }
    Ok((files, bytes))
}

/// A sorted listing, `<kind> <path>` per line, for tests.
#[cfg(test)]
pub fn listing(root: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let entry = entry?;
        let kind = if entry.file_type().is_dir() {
            "dir"
        } else if entry.file_type().is_symlink() {
            "link"
        } else {
            "file"
        };
        lines.push(format!("{kind} {}", rel_path(root, entry.path())));
    }
    Ok(lines)
}
