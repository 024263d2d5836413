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

/// Copies the tree at `from` to `to` (which must not exist) by hard links: instant and free of
/// space on one filesystem, a plain copy where links cannot be made (another filesystem).
/// Links stay links. Returns how many files were copied rather than linked.
///
/// What is done to the copy afterwards must only delete files or replace them with new ones
/// (`atomic::replace`), never write into them: that would write into `from` too.
pub fn link_copy(from: &Path, to: &Path) -> Result<u64> {
    if to.exists() {
        anyhow::bail!("{} already exists", to.display());
    }
    let mut copied = 0;
    // Folder modes are set last: a read-only folder must first receive its files.
    let mut folders = Vec::new();
    for entry in WalkDir::new(from).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", from.display()))?;
        let dest = to.join(entry.path().strip_prefix(from).expect("below the root"));
        let kind = entry.file_type();
        if kind.is_dir() {
            fs_err::create_dir_all(&dest)?;
            folders.push((dest, entry.metadata()?.permissions()));
        } else if kind.is_symlink() {
            copy_link(entry.path(), &dest)?;
        } else if std::fs::hard_link(entry.path(), &dest).is_err() {
            fs_err::copy(entry.path(), &dest)?;
            copied += 1;
        }
    }
    for (folder, permissions) in folders.into_iter().rev() {
        fs_err::set_permissions(folder, permissions)?;
    }
    Ok(copied)
}

pub fn copy_link(link: &Path, dest: &Path) -> Result<()> {
    let target = fs_err::read_link(link)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, dest)
        .with_context(|| format!("cannot create the link {}", dest.display()))?;
    #[cfg(windows)]
    {
        let resolved = link.parent().map(|p| p.join(&target));
        let made = if resolved.is_some_and(|r| r.is_dir()) {
            std::os::windows::fs::symlink_dir(&target, dest)
        } else {
            std::os::windows::fs::symlink_file(&target, dest)
        };
        made.with_context(|| format!("cannot create the link {}", dest.display()))?;
    }
    Ok(())
}

/// What a tree holds, sorted, `<kind> <path>` per line: how tests compare trees.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_copy_can_be_pruned_and_rewritten_without_touching_the_original() {
        let t = tempfile::tempdir().unwrap();
        let env = t.path().join("env");
        fs_err::create_dir_all(env.join("bin")).unwrap();
        fs_err::create_dir_all(env.join("tests")).unwrap();
        fs_err::write(env.join("bin/tool"), "#!/build/python\n").unwrap();
        fs_err::write(env.join("tests/t.py"), "assert True\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("tool", env.join("bin/tool-link")).unwrap();
        let before = listing(&env).unwrap();

        let dist = t.path().join("dist");
        assert_eq!(link_copy(&env, &dist).unwrap(), 0, "all hard links");
        assert_eq!(listing(&dist).unwrap(), before);
        #[cfg(unix)]
        assert_eq!(
            fs_err::read_link(dist.join("bin/tool-link")).unwrap(),
            Path::new("tool")
        );

        fs_err::remove_dir_all(dist.join("tests")).unwrap();
        crate::util::atomic::replace(&dist.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        assert_eq!(listing(&env).unwrap(), before);
        assert_eq!(
            fs_err::read_to_string(env.join("bin/tool")).unwrap(),
            "#!/build/python\n"
        );
        assert_eq!(
            fs_err::read_to_string(dist.join("bin/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert!(
            link_copy(&env, &dist).is_err(),
            "never into an existing folder"
        );
    }
}
