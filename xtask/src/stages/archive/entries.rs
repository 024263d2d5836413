//! The tree as zip entries: every file, folder and link, named under the root and sorted; what a
//! zip cannot hold faithfully is refused here, before anything is written.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use walkdir::WalkDir;

use crate::util::tree::rel_path;

pub enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: String },
}

pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub mode: u32,
    pub kind: Kind,
}

pub fn collect(tree: &Path, root: &str) -> Result<Vec<Entry>> {
    if !tree.is_dir() {
        bail!("{} is not a folder", tree.display());
    }
    let mut entries = Vec::new();
    // Every file a zip cannot hold faithfully, named together before anything is written.
    let mut refused = Vec::new();
    for item in WalkDir::new(tree).follow_links(false) {
        let item = item.with_context(|| format!("cannot walk {}", tree.display()))?;
        let path = item.path();
        let meta = path.symlink_metadata()?;
        let rel = path.strip_prefix(tree).unwrap_or(path);
        if rel.to_str().is_none() {
            refused.push(format!(
                "{}: its name is not valid UTF-8, so it would be unpacked under another name; \
                 rename it",
                path.display()
            ));
            continue;
        }
        let rel = rel_path(tree, path);
        let name = if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        };
        let mode = unix_mode(&meta);
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            let target = symlink_target(tree, path, &rel)?;
            if std::fs::metadata(path).is_err() {
                refused.push(format!(
                    "{}: a symlink to {} that resolves to nothing (missing, or a loop); \
                     remove it or point it at a file in the tree",
                    path.display(),
                    fs_err::read_link(path)?.display()
                ));
                continue;
            }
            Kind::Symlink { target }
        } else if file_type.is_file() {
            Kind::File { size: meta.len() }
        } else {
            refused.push(format!(
                "{}: a {}, which a zip cannot hold (reading it could wait forever); remove it",
                path.display(),
                special_kind(&file_type)
            ));
            continue;
        };
        let name = if matches!(kind, Kind::Dir) {
            format!("{name}/")
        } else {
            name
        };
        entries.push(Entry {
            name,
            path: path.to_path_buf(),
            mode,
            kind,
        });
    }
    if !refused.is_empty() {
        let shown = refused.len().min(20);
        let more = match refused.len() - shown {
            0 => String::new(),
            n => format!("\n  ... and {n} more"),
        };
        bail!(
            "{} holds {} that a zip cannot hold faithfully; nothing was written:\n  {}{more}",
            tree.display(),
            if refused.len() == 1 {
                "a file".to_string()
            } else {
                format!("{} files", refused.len())
            },
            refused[..shown].join("\n  ")
        );
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[cfg(unix)]
fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "named pipe (FIFO)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "special file"
}

/// A link's target, which must be relative and stay inside the tree: the zip has to work wherever
/// it is unpacked, and extracting tools rightly refuse links that leave the folder.
fn symlink_target(tree: &Path, link: &Path, rel: &str) -> Result<String> {
    let target = fs_err::read_link(link)?;
    let text = target.to_string_lossy().replace('\\', "/");
    let mut depth: Vec<&str> = rel.split('/').collect();
    depth.pop();
    let escapes = target.is_absolute()
        || target.components().any(|c| match c {
            Component::ParentDir => depth.pop().is_none(),
            Component::Normal(_) => {
                depth.push("");
                false
            }
            Component::CurDir => false,
            _ => true,
        });
    if escapes {
        bail!(
            "{} is a symlink to {} outside the tree {}: it would break once unpacked elsewhere",
            link.display(),
            target.display(),
            tree.display()
        );
    }
    Ok(text)
}

#[cfg(unix)]
fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else {
        0o644
    }
}
