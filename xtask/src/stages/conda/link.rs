//! conda's link step, done for a target platform that need not be this machine's: each file of
//! an unpacked package put into the prefix (hard-linked from the package, or written anew where a
//! prefix placeholder is replaced), `noarch: python` packages laid out where the target's Python
//! looks, and the package's record written to `conda-meta/`. What conda does beyond that on its
//! own platform (compiling `noarch` bytecode, post-link scripts, menu shortcuts) is not done: the
//! bytecode stage compiles what the product imports, and scripts are named so a build can refuse.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memchr::memmem;
use serde_json::{json, Value};

use crate::model::platform::Platform;
use crate::stages::conda::package::{PathEntry, Unpacked};
use crate::util::codesign;

/// Where and for what the packages are linked.
#[derive(Debug, Clone)]
pub struct Target {
    pub platform: Platform,
    /// The prefix on this machine.
    pub prefix: PathBuf,
    /// What a prefix placeholder becomes: the prefix as the build knows it (the relocate stage
    /// then lists every file still holding it, as it does for a native build's).
    pub prefix_text: String,
    /// `X.Y` of the prefix's Python, where `noarch: python` files go on macOS and Linux.
    pub python: Option<String>,
}

/// What linking one package did.
#[derive(Debug)]
pub struct Linked {
    pub name: String,
    /// `name = module:function` console scripts, written once every package is linked.
    pub entry_points: Vec<String>,
    /// A post-link script the package carries, which conda would run on the target.
    pub post_link: Option<String>,
    /// The files it put in the prefix, relative, `/`-separated.
    pub files: Vec<String>,
}

/// Links `package` into the target's prefix; `record` is its `repodata_record.json` (url,
/// channel, digests) as the installer shipped it.
pub fn link(package: &Unpacked, target: &Target, record: &Value) -> Result<Linked> {
    let noarch_python = package.index.noarch.as_deref() == Some("python");
    let mut files = Vec::new();
    let mut paths_data = Vec::new();
    for entry in &package.paths {
        let dest_rel = if noarch_python {
            noarch_python_path(&entry.path, target)?
        } else {
            entry.path.clone()
        };
        let source = package.dir.join(&entry.path);
        let dest = target.prefix.join(&dest_rel);
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        match entry.path_type.as_str() {
            "directory" => fs_err::create_dir_all(&dest)?,
            "softlink" | "hardlink" => {
                put_file(&source, &dest, entry, target).with_context(|| {
                    format!(
                        "cannot link {} of {} into {}",
                        entry.path,
                        package.index.name,
                        target.prefix.display()
                    )
                })?
            }
            other => bail!(
                "{} of {}: unknown path_type `{other}` in info/paths.json",
                entry.path,
                package.index.name
            ),
        }
        paths_data.push(json!({
            "_path": dest_rel,
            "path_type": entry.path_type,
            "sha256": entry.sha256,
        }));
        files.push(dest_rel);
    }
    let post_link = package
        .paths
        .iter()
        .map(|p| p.path.as_str())
        .find(|p| is_post_link(p, &package.index.name))
        .map(str::to_string);
    write_record(package, record, &files, paths_data, target)?;
    Ok(Linked {
        name: package.index.name.clone(),
        entry_points: package.entry_points.clone(),
        post_link,
        files,
    })
}

/// Where a `noarch: python` file goes on the target.
fn noarch_python_path(path: &str, target: &Target) -> Result<String> {
    let windows = target.platform.is_windows();
    if let Some(rest) = path.strip_prefix("site-packages/") {
        return Ok(if windows {
            format!("Lib/site-packages/{rest}")
        } else {
            let python = target.python.as_deref().context(
                "a noarch: python package is linked before python itself (no python in the list)",
            )?;
            format!("lib/python{python}/site-packages/{rest}")
        });
    }
    if let Some(rest) = path.strip_prefix("python-scripts/") {
        return Ok(if windows {
            format!("Scripts/{rest}")
        } else {
            format!("bin/{rest}")
        });
    }
    Ok(path.to_string())
}

fn is_post_link(path: &str, name: &str) -> bool {
    [
        format!("Scripts/.{name}-post-link.bat"),
        format!("bin/.{name}-post-link.sh"),
    ]
    .iter()
    .any(|p| p == path)
}

/// One file: its bytes with the prefix in place of the placeholder, or a hard link to the
/// unpacked package's own file (a copy where links cannot be made).
fn put_file(source: &Path, dest: &Path, entry: &PathEntry, target: &Target) -> Result<()> {
    if dest.symlink_metadata().is_ok() {
        fs_err::remove_file(dest)?;
    }
    let Some(placeholder) = &entry.prefix_placeholder else {
        // A package's symlink is followed: Windows prefixes get the file itself.
        if source.is_symlink() && target.platform.is_windows() {
            fs_err::copy(source, dest)?;
        } else if source.is_symlink() {
            crate::util::tree::copy_link(source, dest)?;
        } else if std::fs::hard_link(source, dest).is_err() {
            fs_err::copy(source, dest)?;
        }
        return Ok(());
    };
    let bytes = fs_err::read(source)?;
    let replaced = match entry.file_mode.as_deref() {
        Some("binary") => replace_binary(
            &bytes,
            placeholder.as_bytes(),
            target.prefix_text.as_bytes(),
        )
        .with_context(|| format!("binary prefix of {}", entry.path))?,
        _ => {
            // conda writes `/` in text files on Windows too: no backslash needs escaping.
            let prefix = if target.platform.is_windows() {
                target.prefix_text.replace('\\', "/")
            } else {
                target.prefix_text.clone()
            };
            replace_text(&bytes, placeholder.as_bytes(), prefix.as_bytes())
        }
    };
    // macOS refuses code whose pages no longer match its signature: conda signs such a file
    // again (`codesign -s - -f`); here its ad-hoc signature is re-hashed.
    let mut replaced = replaced;
    if target.platform.is_macos() && replaced != bytes && codesign::is_macho(&replaced) {
        codesign::resign_adhoc(&mut replaced)
            .with_context(|| format!("{} changed by its prefix", entry.path))?;
    }
    fs_err::write(dest, replaced)?;
    let mode = fs_err::metadata(source)?.permissions();
    fs_err::set_permissions(dest, mode)?;
    Ok(())
}

/// Every occurrence of `from` replaced by `to`.
pub fn replace_text(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    let finder = memmem::Finder::new(from);
    while let Some(at) = finder.find(rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// conda's binary replacement: within each NUL-ended string holding `from`, `from` becomes `to`
/// and the string is padded with NULs to its old length, so no offset in the file moves. A
/// prefix longer than the placeholder cannot fit, and is an error.
pub fn replace_binary(bytes: &[u8], from: &[u8], to: &[u8]) -> Result<Vec<u8>> {
    let mut out = bytes.to_vec();
    let finder = memmem::Finder::new(from);
    let mut at = 0;
    while let Some(found) = finder.find(&out[at..]) {
        let start = at + found;
        let end = out[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(out.len(), |n| start + n);
        let replaced = replace_text(&out[start..end], from, to);
        if replaced.len() > end - start {
            bail!(
                "the prefix ({} bytes) is longer than the placeholder ({} bytes) it replaces",
                to.len(),
                from.len()
            );
        }
        out[start..start + replaced.len()].copy_from_slice(&replaced);
        out[start + replaced.len()..end].fill(0);
        at = end.max(start + 1);
    }
    Ok(out)
}

/// `conda-meta/<name>-<version>-<build>.json`, as conda writes it: the installer's record of the
/// package, its files and how each was linked.
fn write_record(
    package: &Unpacked,
    record: &Value,
    files: &[String],
    paths_data: Vec<Value>,
    target: &Target,
) -> Result<()> {
    let index = &package.index;
    let mut meta = match record {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for (key, value) in [
        ("name", json!(index.name)),
        ("version", json!(index.version)),
        ("build", json!(index.build)),
        ("depends", json!(index.depends)),
        ("files", json!(files)),
        (
            "paths_data",
            json!({"paths": paths_data, "paths_version": 1}),
        ),
        ("link", json!({"source": "", "type": 1})),
        ("requested_spec", json!("")),
    ] {
        meta.insert(key.to_string(), value);
    }
    let dir = target.prefix.join("conda-meta");
    fs_err::create_dir_all(&dir)?;
    let name = format!("{}-{}-{}.json", index.name, index.version, index.build);
    let text = serde_json::to_string_pretty(&Value::Object(meta))?;
    fs_err::write(dir.join(name), text + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_prefixes_are_padded_to_keep_every_offset() {
        let placeholder = b"/opt/placeholder_placeholder_placeholder";
        let mut data = b"head\0".to_vec();
        data.extend_from_slice(placeholder);
        data.extend_from_slice(b"/lib:x\0tail");
        let out = replace_binary(&data, placeholder, b"/p").unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out.starts_with(b"head\0/p/lib:x\0\0"));
        assert!(out.ends_with(b"\0tail"));
        let err = replace_binary(&data, placeholder, &[b'x'; 64]).unwrap_err();
        assert!(
            err.to_string().contains("longer than the placeholder"),
            "{err}"
        );
    }

    #[test]
    fn noarch_python_goes_where_the_targets_python_looks() {
        let mut target = Target {
            platform: Platform::WindowsX86_64,
            prefix: "/p".into(),
            prefix_text: "/p".into(),
            python: Some("3.13".into()),
        };
        let at = |t: &Target, p: &str| noarch_python_path(p, t).unwrap();
        assert_eq!(
            at(&target, "site-packages/pip/__init__.py"),
            "Lib/site-packages/pip/__init__.py"
        );
        assert_eq!(at(&target, "python-scripts/x"), "Scripts/x");
        target.platform = Platform::MacosArm64;
        assert_eq!(
            at(&target, "site-packages/pip/__init__.py"),
            "lib/python3.13/site-packages/pip/__init__.py"
        );
        assert_eq!(at(&target, "info/x"), "info/x");
    }
}
