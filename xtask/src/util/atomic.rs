//! Files that appear whole or not at all: written beside their final name, then renamed.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_beside(path, contents, None)
}

/// Writes `contents` to a temporary file beside `path`, with `permissions` (else 0644), then
/// renames it over `path`.
fn write_beside(
    path: &Path,
    contents: &[u8],
    permissions: Option<std::fs::Permissions>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("a file name is needed")?
        .to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(contents)?;
    match permissions {
        Some(permissions) => fs_err::set_permissions(temp.path(), permissions)?,
        None => make_readable(temp.path())?,
    }
    temp.persist(path)
        .map_err(|e| anyhow!(e.error))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Temporary files are created private (0600); what we publish is an ordinary file (0644).
pub fn make_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Removes what an interrupted earlier run left for `name` in `dir` (`.NAME.XXXX.partial`),
/// which nothing ever trusts but which would otherwise pile up.
pub fn sweep_partials(dir: &Path, name: &str) -> Result<()> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(());
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&prefix) && file_name.ends_with(".partial") {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Replaces `path` with `contents` as a new file with the old one's permissions. Never writes
/// into the old file: the build tree is a hard-linked copy of the installed environment, and
/// writing through a link would change the environment too.
pub fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    let permissions = fs_err::metadata(path)?.permissions();
    write_beside(path, contents, Some(permissions))
}
