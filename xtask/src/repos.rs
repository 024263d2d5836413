//! Clones each repo at its rev: shallow for tags and branches, by commit where the server allows.
//! Every URL, path and rev goes after `--` or `--end-of-options`, so none is read as an option.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::progress::Reporter;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkout {
    pub name: String,
    pub url: String,
    pub rev: String,
    pub commit: String,
    pub path: String,
}

/// Clones `url` at `rev` (a tag, branch or commit) into `dest`; returns the checked-out commit.
/// With `locked`, the result must be that commit: the rev is used while it still points there
/// (the same shallow checkout as the build that wrote the lock), the commit itself otherwise.
pub fn clone(
    sh: &Shell,
    reporter: &Reporter,
    url: &str,
    rev: &str,
    locked: Option<&str>,
    dest: &Path,
) -> Result<String> {
    if dest.exists() {
        bail!(
            "{} already exists: two repos overlap, or a previous step wrote there",
            dest.display()
        );
    }
    if let Some(parent) = dest.parent() {
        fs_err::create_dir_all(parent)?;
    }
    // Never wait for a password prompt: in CI nobody answers it.
    let _prompt = sh.push_env("GIT_TERMINAL_PROMPT", "0");
    reporter.detail(format!("git ls-remote --heads --tags {url}"));
    let refs = list_refs(sh, url)?;
    let named = refs.lines().any(|line| {
        let name = line.split_whitespace().nth(1).unwrap_or("");
        name == format!("refs/heads/{rev}") || name == format!("refs/tags/{rev}")
    });
    let points_at = |commit: &str| {
        refs.lines().any(|line| {
            let mut fields = line.split_whitespace();
            let (sha, name) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
            sha == commit
                && [
                    format!("refs/heads/{rev}"),
                    format!("refs/tags/{rev}"),
                    format!("refs/tags/{rev}^{{}}"),
                ]
                .contains(&name.to_string())
        })
    };

    if let Some(commit) = locked.filter(|c| !points_at(c)) {
        reporter.note(format!(
            "{rev} has moved since the lock: checking out the locked {commit}"
        ));
        clone_commit(sh, reporter, url, commit, dest)?;
    } else if named {
        reporter.detail(format!(
            "git clone --depth 1 --branch {rev} {url} {}",
            dest.display()
        ));
        cmd!(sh, "git -c advice.detachedHead=false clone --quiet --depth 1 --branch {rev} --single-branch -- {url} {dest}")
            .quiet()
            .run()
            .with_context(|| format!("cannot clone {url} at {rev}"))?;
    } else if looks_like_commit(rev) {
        clone_commit(sh, reporter, url, rev, dest)?;
    } else {
        bail!(
            "rev `{rev}` not found in {url}: it is neither a branch nor a tag there (nor a commit id); \
             check the rev in the manifest with `git ls-remote {url}`"
        );
    }
    let commit = cmd!(sh, "git -C {dest} rev-parse HEAD").quiet().read()?;
    let commit = commit.trim().to_string();
    if let Some(locked) = locked {
        if commit != locked {
            bail!("{url} checked out {commit}, but the lock says {locked}: build with --update to accept the change");
        }
    }
    Ok(commit)
}

/// The commit `rev` names in `url` now (a tag's commit, not the tag object), without cloning:
/// what a build would check out, so an installed environment is reused only while a branch has
/// not moved.
pub fn remote_commit(sh: &Shell, url: &str, rev: &str) -> Result<String> {
    if rev.len() == 40 && looks_like_commit(rev) {
        return Ok(rev.to_ascii_lowercase());
    }
    let _prompt = sh.push_env("GIT_TERMINAL_PROMPT", "0");
    let refs = list_refs(sh, url)?;
    let names = [
        format!("refs/heads/{rev}"),
        format!("refs/tags/{rev}^{{}}"),
        format!("refs/tags/{rev}"),
    ];
    for name in &names {
        let found = refs.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (sha, ref_name) = (fields.next()?, fields.next()?);
            (ref_name == name).then(|| sha.to_string())
        });
        if let Some(sha) = found {
            return Ok(sha);
        }
    }
    if looks_like_commit(rev) {
        // A short commit id: only a clone can expand it, and it names one commit anyway.
        return Ok(rev.to_string());
    }
    bail!(
        "rev `{rev}` not found in {url}: it is neither a branch nor a tag there (nor a commit id); \
         check the rev in the manifest with `git ls-remote {url}`"
    )
}

/// Keeps a bare mirror of `url` at `mirror`: cloned the first time (under a temporary name,
/// renamed when complete), fetched after. `--offline` builds clone from it.
pub fn mirror(sh: &Shell, reporter: &Reporter, url: &str, mirror: &Path) -> Result<()> {
    let _prompt = sh.push_env("GIT_TERMINAL_PROMPT", "0");
    if mirror.join("HEAD").is_file() {
        reporter.detail(format!(
            "git --git-dir {} remote update --prune",
            mirror.display()
        ));
        cmd!(sh, "git --git-dir {mirror} remote set-url -- origin {url}")
            .quiet()
            .run()?;
        cmd!(sh, "git --git-dir {mirror} remote update --prune")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("cannot update the mirror of {url}"))?;
        return Ok(());
    }
    let partial = mirror.with_extension("partial");
    if partial.exists() {
        fs_err::remove_dir_all(&partial)?;
    }
    if let Some(parent) = mirror.parent() {
        fs_err::create_dir_all(parent)?;
    }
    reporter.detail(format!("git clone --mirror {url} {}", mirror.display()));
    cmd!(sh, "git clone --quiet --mirror -- {url} {partial}")
        .quiet()
        .run()
        .with_context(|| {
            format!("cannot mirror the git repository {url}: check the URL and your access to it")
        })?;
    fs_err::rename(&partial, mirror)?;
    Ok(())
}

/// The commit `rev` (branch, tag or commit) names in a mirror.
pub fn mirror_commit(sh: &Shell, mirror: &Path, rev: &str) -> Result<String> {
    let target = format!("{rev}^{{commit}}");
    let commit = cmd!(
        sh,
        "git --git-dir {mirror} rev-parse --verify --quiet --end-of-options {target}"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .map_err(|_| {
        anyhow::anyhow!(
            "rev `{rev}` not found in the mirror {}: no branch, tag or commit has that name",
            mirror.display()
        )
    })?;
    Ok(commit.trim().to_string())
}

/// A file's content at a commit of a mirror.
pub fn file_at(sh: &Shell, mirror: &Path, commit: &str, path: &str) -> Result<String> {
    let object = format!("{commit}:{path}");
    cmd!(sh, "git --git-dir {mirror} show --end-of-options {object}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("{} has no {path} at {commit}", mirror.display()))
}

fn list_refs(sh: &Shell, url: &str) -> Result<String> {
    cmd!(sh, "git ls-remote --heads --tags -- {url}")
        .quiet()
        .read()
        .with_context(|| {
            format!("cannot reach the git repository {url}: check the URL and your access to it")
        })
}

fn clone_commit(sh: &Shell, reporter: &Reporter, url: &str, rev: &str, dest: &Path) -> Result<()> {
    cmd!(sh, "git init --quiet -- {dest}").quiet().run()?;
    // A full commit id can be fetched alone (GitHub and protocol v2 servers allow it); otherwise
    // fall back to the whole history and look for it there.
    let shallow = rev.len() == 40
        && cmd!(sh, "git -C {dest} fetch --quiet --depth 1 -- {url} {rev}")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok();
    if !shallow {
        reporter.detail(format!("git fetch {url} (full history, to find {rev})"));
        cmd!(
            sh,
            "git -C {dest} fetch --quiet --tags -- {url} +refs/heads/*:refs/remotes/origin/*"
        )
        .quiet()
        .run()
        .with_context(|| format!("cannot fetch {url}"))?;
    }
    let target = if shallow {
        "FETCH_HEAD".to_string()
    } else {
        format!("{rev}^{{commit}}")
    };
    let resolved = cmd!(
        sh,
        "git -C {dest} rev-parse --verify --quiet --end-of-options {target}"
    )
    .quiet()
    .ignore_stderr()
    .read();
    let Ok(commit) = resolved else {
        bail!("rev `{rev}` not found in {url}: no branch, tag or commit has that name; check the rev in the manifest");
    };
    let commit = commit.trim();
    cmd!(
        sh,
        "git -c advice.detachedHead=false -C {dest} checkout --quiet --detach --end-of-options {commit}"
    )
    .quiet()
    .run()
    .with_context(|| format!("cannot check out {rev} of {url}"))?;
    Ok(())
}

fn looks_like_commit(rev: &str) -> bool {
    (7..=40).contains(&rev.len()) && rev.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_are_hex_of_seven_to_forty() {
        assert!(looks_like_commit("0123abc"));
        assert!(looks_like_commit(&"a".repeat(40)));
        assert!(!looks_like_commit("v0.3.10"));
        assert!(!looks_like_commit("abc"));
    }
}
