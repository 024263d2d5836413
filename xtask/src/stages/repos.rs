//! Clones each repo at its rev: shallow for tags and branches, by commit where the server allows.
//! Every URL, path and rev goes after `--` or `--end-of-options`, so none is read as an option.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::progress::Reporter;
use crate::util::tools::Tools;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkout {
    pub name: String,
    pub url: String,
    pub rev: String,
    pub commit: String,
    pub path: String,
}

/// Clones a repo at its rev into the environment.
#[derive(Debug, Clone)]
pub struct CloneRepo {
    pub name: String,
    pub url: String,
    /// Where it is cloned from: `url`, or the mirror `fetch` made of it when offline.
    pub from: String,
    pub rev: String,
    /// The locked commit, when building `--locked`.
    pub locked_commit: Option<String>,
    pub dest: PathBuf,
    /// The checkout's requirements file, which must be there.
    pub requirements: Option<PathBuf>,
    /// The environment's `anymatix/`, which `dest` is recorded relative to.
    pub tree: PathBuf,
}

impl CloneRepo {
    pub fn run(&self, tools: &Tools) -> Result<Checkout> {
        let reporter = &tools.reporter;
        let commit = clone(
            &tools.sh,
            reporter,
            &self.from,
            &self.rev,
            self.locked_commit.as_deref(),
            &self.dest,
        )?;
        reporter.note(format!("{} at {commit}", self.name));
        if let Some(req) = &self.requirements {
            if !req.is_file() {
                bail!(
                    "repo {} at {} has no requirements file {}",
                    self.name,
                    self.rev,
                    req.display()
                );
            }
        }
        Ok(Checkout {
            name: self.name.clone(),
            url: self.url.clone(),
            rev: self.rev.clone(),
            commit,
            path: crate::util::tree::rel_path(&self.tree, &self.dest),
        })
    }
}

impl Describe for CloneRepo {
    fn title(&self) -> String {
        format!("Clone {}", self.name)
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "clone {}: {} at {}", self.name, self.url, self.rev)?;
        if let Some(commit) = &self.locked_commit {
            write!(f, " (locked: {commit})")?;
        }
        if self.from != self.url {
            write!(f, "\n      from {}", self.from)?;
        }
        write!(f, "\n      into {}", self.dest.display())?;
        if let Some(req) = &self.requirements {
            write!(f, "\n      requirements: {}", req.display())?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        // Where it is cloned from (the server or fetch's mirror of it) is not an input; the
        // commit its rev names is added when the build starts (see `remote_commit`).
        let key = format!("repo {}", self.name);
        inputs.set(
            key.clone(),
            format!("{} at {} into {}", self.url, self.rev, self.dest.display()),
        );
        if let Some(commit) = &self.locked_commit {
            inputs.set(format!("{key}: locked commit"), commit.clone());
        }
        if let Some(req) = &self.requirements {
            inputs.set(format!("{key}: requirements"), req.display().to_string());
        }
    }
}

/// `fetch`: a bare mirror of a repo in the cache, and its requirements file at the rev.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub name: String,
    pub url: String,
    pub rev: String,
    pub locked_commit: Option<String>,
    pub mirror: PathBuf,
    /// The requirements file's path in the repo, and where to write it.
    pub requirements: Option<(String, PathBuf)>,
}

impl Mirror {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        let (sh, reporter) = (&tools.sh, &tools.reporter);
        mirror(sh, reporter, &self.url, &self.mirror)?;
        let commit = match &self.locked_commit {
            Some(locked) => mirror_commit(sh, &self.mirror, locked).with_context(|| {
                format!("the locked commit of {} is not in {}", self.name, self.url)
            })?,
            None => mirror_commit(sh, &self.mirror, &self.rev)?,
        };
        reporter.note(format!("{}: {} is {commit}", self.name, self.rev));
        if let Some((path, out)) = &self.requirements {
            let text = file_at(sh, &self.mirror, &commit, path)?;
            fs_err::write(out, text + "\n")?;
        }
        Ok(())
    }
}

impl Describe for Mirror {
    fn title(&self) -> String {
        format!("Mirror {}", self.name)
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mirror {}: {} into {}",
            self.name,
            self.url,
            self.mirror.display()
        )?;
        match &self.locked_commit {
            Some(commit) => write!(f, "\n      at {} (locked: {commit})", self.rev)?,
            None => write!(f, "\n      at {}", self.rev)?,
        }
        if let Some((path, out)) = &self.requirements {
            write!(f, "\n      its {path} into {}", out.display())?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set(
            format!("mirror {}", self.name),
            format!("{} at {}", self.url, self.rev),
        );
    }
}

/// `file://` URL of a local path, which git clones like a remote (shallow clones work).
pub fn file_url(path: &Path) -> String {
    let path = path.to_string_lossy().replace('\\', "/");
    if path.starts_with('/') {
        format!("file://{path}")
    } else {
        format!("file:///{path}")
    }
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
