//! Clones each repo at its rev: shallow for tags and branches, by commit where the server allows.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::progress::Reporter;

#[derive(Debug, Clone, Serialize)]
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
    let refs = cmd!(sh, "git ls-remote --heads --tags {url}")
        .quiet()
        .read()
        .with_context(|| {
            format!("cannot reach the git repository {url}: check the URL and your access to it")
        })?;
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
        cmd!(sh, "git -c advice.detachedHead=false clone --quiet --depth 1 --branch {rev} --single-branch {url} {dest}")
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

fn clone_commit(sh: &Shell, reporter: &Reporter, url: &str, rev: &str, dest: &Path) -> Result<()> {
    cmd!(sh, "git init --quiet {dest}").quiet().run()?;
    // A full commit id can be fetched alone (GitHub and protocol v2 servers allow it); otherwise
    // fall back to the whole history and look for it there.
    let shallow = rev.len() == 40
        && cmd!(sh, "git -C {dest} fetch --quiet --depth 1 {url} {rev}")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok();
    if !shallow {
        reporter.detail(format!("git fetch {url} (full history, to find {rev})"));
        cmd!(
            sh,
            "git -C {dest} fetch --quiet --tags {url} +refs/heads/*:refs/remotes/origin/*"
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
    let resolved = cmd!(sh, "git -C {dest} rev-parse --verify --quiet {target}")
        .quiet()
        .ignore_stderr()
        .read();
    let Ok(commit) = resolved else {
        bail!("rev `{rev}` not found in {url}: no branch, tag or commit has that name; check the rev in the manifest");
    };
    let commit = commit.trim();
    cmd!(
        sh,
        "git -c advice.detachedHead=false -C {dest} checkout --quiet --detach {commit}"
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
