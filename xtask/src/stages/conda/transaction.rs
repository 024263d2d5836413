//! The transaction conda answers to `install --dry-run --json`, and how the tool carries it out.
//! conda's answer (`conda/cli/common.py`, `stdout_json_success`) is
//! `{"actions": {"FETCH": [<record>…], "LINK": [<dist>…], "UNLINK": [<dist>…], "PREFIX": …},
//! "dry_run": true, "success": true}`: each LINK and UNLINK entry its `dist_fields_dump()`
//! (`dist_name` is `name-version-build`), each FETCH entry a package's whole record (`url`, `fn`,
//! `sha256`, `depends`…); an environment that already has everything answers without `actions`,
//! and a failure with `error`. conda unlinks first, then links in the order it gives (each
//! package after what it depends on), and so does the tool.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::model::platform::Platform;
use crate::stages::conda::{link, major_minor, Linker};
use crate::util::digest;
use crate::util::tools::Tools;

/// A package as LINK and UNLINK name it.
#[derive(Debug, Clone, Deserialize)]
pub struct Dist {
    pub dist_name: String,
    pub name: String,
}

/// What conda answered.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Whole records of the packages to download (every one linked, as the solve's package
    /// cache holds none).
    pub fetch: Vec<Value>,
    pub link: Vec<Dist>,
    pub unlink: Vec<Dist>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Actions {
    #[serde(default)]
    fetch: Vec<Value>,
    #[serde(default)]
    link: Vec<Dist>,
    #[serde(default)]
    unlink: Vec<Dist>,
}

/// Reads conda's `--json` answer; its error, when it gives one, is the error.
pub fn parse(stdout: &str) -> Result<Transaction> {
    let value: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "conda's answer is not JSON: {}",
            stdout.chars().take(400).collect::<String>()
        )
    })?;
    if let Some(error) = value.get("error").or_else(|| value.get("message")) {
        if value.get("success") != Some(&Value::Bool(true)) {
            bail!("{}", error.as_str().unwrap_or(&error.to_string()));
        }
    }
    if value.get("success") != Some(&Value::Bool(true)) {
        bail!("conda's answer does not say it succeeded: {value}");
    }
    let actions: Actions = match value.get("actions") {
        Some(actions) => serde_json::from_value(actions.clone())
            .context("conda's `actions` are not as conda writes them")?,
        None => Actions::default(),
    };
    Ok(Transaction {
        fetch: actions.fetch,
        link: actions.link,
        unlink: actions.unlink,
    })
}

/// Where the packages come from and where they go.
pub struct Sources<'a> {
    pub platform: Platform,
    pub prefix: &'a Path,
    /// The target installer's `pkgs/`: packages the base had, which a changed Python relinks.
    pub payload_pkgs: &'a Path,
    /// Downloaded packages, named as their record's `fn`.
    pub pkgs_dir: &'a Path,
    pub offline: bool,
}

/// What carrying out the transaction did.
#[derive(Debug, Default)]
pub struct Applied {
    pub unlinked: usize,
    pub linked: usize,
    pub from_installer: usize,
    pub scripts: usize,
}

/// Unlinks, then links, what `transaction` says, then writes the linked packages' console
/// scripts. A package with a post-link script is refused, as the base's are.
pub fn apply(tools: &Tools, transaction: &Transaction, sources: &Sources) -> Result<Applied> {
    let mut applied = Applied::default();
    for dist in &transaction.unlink {
        unlink(sources.prefix, dist)?;
        applied.unlinked += 1;
    }
    let target = link::Target {
        platform: sources.platform,
        prefix: sources.prefix.to_path_buf(),
        prefix_text: sources.prefix.to_string_lossy().into_owned(),
        python: installed_python(sources.prefix)?,
    };
    let mut linker = Linker::new(target, sources.pkgs_dir.join(".unpacked"));
    for dist in &transaction.link {
        let record = transaction
            .fetch
            .iter()
            .find(|r| file_stem(r) == Some(dist.dist_name.as_str()))
            .with_context(|| {
                format!(
                    "conda links {} but lists no record to download it by",
                    dist.dist_name
                )
            })?;
        let (file, from_installer) = package_file(tools, record, sources)
            .with_context(|| format!("the package {} of conda's solve", dist.dist_name))?;
        applied.from_installer += usize::from(from_installer);
        linker.link(&file, &dist.dist_name, record)?;
        applied.linked += 1;
    }
    applied.scripts = linker.finish()?.1;
    Ok(applied)
}

/// `fn` without its extension: conda's `dist_name`.
fn file_stem(record: &Value) -> Option<&str> {
    let name = record.get("fn")?.as_str()?;
    name.strip_suffix(".conda")
        .or_else(|| name.strip_suffix(".tar.bz2"))
}

/// The package file of `record`: the installer's own where it has it, else the download cache's,
/// else downloaded; each checked against the record's sha256. Whether it was the installer's.
fn package_file(tools: &Tools, record: &Value, sources: &Sources) -> Result<(PathBuf, bool)> {
    let field = |key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .with_context(|| format!("its record has no `{key}`"))
    };
    let (name, sha256, url) = (field("fn")?, field("sha256")?, field("url")?);
    if name.contains(['/', '\\']) {
        bail!("its record's `fn` is not a file name: {name}");
    }
    let in_installer = sources.payload_pkgs.join(name);
    if in_installer.is_file() && digest::sha256_file(&in_installer)? == sha256 {
        return Ok((in_installer, true));
    }
    let cached = sources.pkgs_dir.join(name);
    if cached.is_file() && digest::sha256_file(&cached)? == sha256 {
        return Ok((cached, false));
    }
    if sources.offline {
        bail!(
            "--offline, and {} is not in {}: build once online",
            name,
            sources.pkgs_dir.display()
        );
    }
    tools
        .downloader
        .download_verified(url, sha256, &cached, &tools.reporter)?;
    Ok((cached, false))
}

/// Removes a linked package: every file its record lists, the folders that leaves empty, the
/// record.
fn unlink(prefix: &Path, dist: &Dist) -> Result<()> {
    let record_path = prefix
        .join("conda-meta")
        .join(format!("{}.json", dist.dist_name));
    let record: Value = serde_json::from_slice(&fs_err::read(&record_path).with_context(|| {
        format!(
            "conda unlinks {}, which the prefix has no record of",
            dist.dist_name
        )
    })?)
    .with_context(|| format!("{} is not JSON", record_path.display()))?;
    let files = record.get("files").and_then(Value::as_array);
    for rel in files.into_iter().flatten().filter_map(Value::as_str) {
        let path = prefix.join(rel);
        if path.symlink_metadata().is_ok() {
            fs_err::remove_file(&path)?;
        }
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != prefix) {
            if fs_err::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    fs_err::remove_file(&record_path)?;
    Ok(())
}

/// `X.Y` of the python the prefix's records have, if any.
fn installed_python(prefix: &Path) -> Result<Option<String>> {
    let meta = prefix.join("conda-meta");
    for entry in fs_err::read_dir(&meta)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("python-") {
            if rest.starts_with(|c: char| c.is_ascii_digit()) {
                return Ok(Some(major_minor(rest)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condas_answer_is_read_and_its_error_named() {
        let answer = r#"{"actions": {"FETCH": [{"fn": "python-3.12.8-h9_cpython.conda",
            "url": "https://x/osx-64/python-3.12.8-h9_cpython.conda", "sha256": "ab"}],
            "LINK": [{"base_url": "https://x", "build_number": 0, "build_string": "h9_cpython",
            "channel": "x", "dist_name": "python-3.12.8-h9_cpython", "name": "python",
            "platform": "osx-64", "version": "3.12.8"}],
            "UNLINK": [{"dist_name": "python-3.13.1-h0_cpython", "name": "python"}],
            "PREFIX": "/p"}, "dry_run": true, "prefix": "/p", "success": true}"#;
        let t = parse(answer).unwrap();
        assert_eq!(t.link[0].dist_name, "python-3.12.8-h9_cpython");
        assert_eq!(t.unlink[0].name, "python");
        assert_eq!(file_stem(&t.fetch[0]), Some("python-3.12.8-h9_cpython"));
        let done =
            parse(r#"{"message": "All requested packages already installed.", "success": true}"#);
        assert!(done.unwrap().link.is_empty());
        let err = parse(r#"{"error": "PackagesNotFoundError: python=3.99", "exception_name": "PackagesNotFoundError"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("python=3.99"), "{err}");
        assert!(parse("Traceback (most recent call last)").is_err());
    }
}
