//! The distribution's definition (`anymatix/distribution.yml`) and version (`version.yml`), as data.
//!
//! Parsing is strict: an unknown key, a bad value or an unknown platform is an error that
//! names the file and the line, since a silently ignored typo would ship the wrong thing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::platform::Platform;
use crate::model::smoke::{Smoke, SmokeCheck};
use crate::model::system::Ceiling;

mod variants;
pub use variants::{Variant, VariantInfo, VariantSection};

pub const DEFAULT_MINIFORGE_BASE_URL: &str = "https://github.com/conda-forge/miniforge/releases";
/// conda-forge, as conda names it by URL.
pub const DEFAULT_CONDA_CHANNEL: &str = "https://conda.anaconda.org/conda-forge";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    #[serde(default)]
    pub installer: Installer,
    /// Installed into the base with its own mamba from conda-forge (e.g. `python=3.12`).
    #[serde(default)]
    pub conda_packages: Vec<String>,
    #[serde(default)]
    pub pip: PipSources,
    #[serde(default)]
    pub python_packages: Vec<String>,
    #[serde(default)]
    pub platforms: BTreeMap<Platform, PlatformSection>,
    #[serde(default)]
    pub repos: Vec<Repo>,
    #[serde(default)]
    pub smoke: Smoke,
    /// Installed packages the zip leaves out (removed from it as pip uninstalls them).
    #[serde(default)]
    pub leave_out: Vec<LeaveOut>,
    /// Packages the product depends on that no pip run by the unpacked zip may change: the zip
    /// carries their exact versions (and those of the packages they pin with `==`).
    #[serde(default)]
    pub protected: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installer {
    #[serde(default)]
    pub release: Release,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The conda channel `conda_packages` come from (a mirror's URL, or a local one in tests).
    #[serde(default = "default_channel")]
    pub channel: String,
}

impl Default for Installer {
    fn default() -> Self {
        Installer {
            release: Release::Latest,
            base_url: default_base_url(),
            channel: default_channel(),
        }
    }
}

fn default_channel() -> String {
    DEFAULT_CONDA_CHANNEL.to_string()
}

fn default_base_url() -> String {
    DEFAULT_MINIFORGE_BASE_URL.to_string()
}

/// Which Miniforge release: the newest, or a pinned tag such as `26.3.2-3`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Release {
    #[default]
    Latest,
    Tag(String),
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Latest => f.write_str("latest"),
            Release::Tag(tag) => f.write_str(tag),
        }
    }
}

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "latest" {
            return Ok(Release::Latest);
        }
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return Err(serde::de::Error::custom(format!(
                "installer.release must be `latest` or a Miniforge tag such as `26.3.2-3`, not `{s}`"
            )));
        }
        Ok(Release::Tag(s))
    }
}

/// Where pip looks for packages; each key optional so mirrors and offline wheelhouses work.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipSources {
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    /// URLs or local folders; a relative folder is taken from the manifest's directory.
    #[serde(default)]
    pub find_links: Vec<String>,
    #[serde(default)]
    pub no_index: bool,
}

impl PipSources {
    /// As pip's (and uv's, which spells them alike) command-line options.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(index) = &self.index_url {
            args.extend(["--index-url".to_string(), index.clone()]);
        }
        for url in &self.extra_index_urls {
            args.extend(["--extra-index-url".to_string(), url.clone()]);
        }
        for link in &self.find_links {
            args.extend(["--find-links".to_string(), link.clone()]);
        }
        if self.no_index {
            args.push("--no-index".to_string());
        }
        args
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSection {
    #[serde(default)]
    pub python_packages: Vec<String>,
    #[serde(default)]
    pub pip_args: Vec<String>,
    #[serde(default)]
    pub conda_packages: Vec<String>,
    /// The newest system the zip may ask for (glibc, libstdc++, macOS, Windows): a binary that
    /// needs more fails the build, naming it. On Linux, pip is also kept to wheels within it.
    #[serde(default)]
    pub requires_at_most: Ceiling,
    #[serde(default)]
    pub leave_out: Vec<LeaveOut>,
    #[serde(default)]
    pub protected: Vec<String>,
    /// Requirements of the repos' requirements files this platform does without (a package with
    /// no wheel for it), each with why, and the nodes ComfyUI then cannot import.
    #[serde(default)]
    pub skip_requirements: Vec<SkippedRequirement>,
    /// The zips this platform is built as, each what it adds to this entry; one is the default.
    #[serde(default)]
    pub variants: variants::Variants,
    /// The variant `*_for` follow, when not the default (see `Distribution::for_variant`).
    #[serde(skip)]
    chosen: Option<String>,
}

/// A repo's requirement a platform does without.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedRequirement {
    /// The requirement's name as the file spells it (compared as pip does: case, `-_.` alike).
    pub name: String,
    /// Why the platform does without it (for the reviewer, and written where it is skipped).
    pub reason: String,
    /// Node files ComfyUI then fails to import (`nodes_glsl.py`): their `IMPORT FAILED: <file>`
    /// line is expected from this platform's zip, not a failure of its smoke commands.
    #[serde(default)]
    pub import_failures: Vec<String>,
}

/// An installed package the zip leaves out: a name, or a name and why that is safe, which a
/// package that another kept package requires must give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LeaveOutSpec")]
pub struct LeaveOut {
    pub name: String,
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a package name, or {name: NAME, reason: WHY IT IS SAFE}"
)]
enum LeaveOutSpec {
    Name(String),
    Entry(LeaveOutEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaveOutEntry {
    name: String,
    reason: Option<String>,
}

impl From<LeaveOutSpec> for LeaveOut {
    fn from(spec: LeaveOutSpec) -> LeaveOut {
        match spec {
            LeaveOutSpec::Name(name) => LeaveOut { name, reason: None },
            LeaveOutSpec::Entry(e) => LeaveOut {
                name: e.name,
                reason: e.reason.filter(|r| !r.trim().is_empty()),
            },
        }
    }
}

/// A leave_out entry with the key it was given under, for errors that name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOutEntry {
    pub key: String,
    #[serde(flatten)]
    pub entry: LeaveOut,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    pub name: String,
    pub url: String,
    /// A tag, branch or commit.
    pub rev: String,
    /// Where the checkout goes, relative to `anymatix/`.
    pub path: String,
    /// A requirements file inside the checkout, resolved together with everything else.
    pub requirements: Option<String>,
}

impl Distribution {
    pub fn load(path: &Path) -> Result<Distribution> {
        let text = read_input(path, "manifest")?;
        let mut manifest: Distribution = serde_yaml_ng::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), locate_platform_key(&text, e))
        })?;
        manifest
            .validate()
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        manifest.pip.find_links = manifest
            .pip
            .find_links
            .iter()
            .map(|link| resolve_local(base, link))
            .collect();
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        let mut names = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for repo in &self.repos {
            if repo.name.is_empty() || repo.url.is_empty() || repo.rev.is_empty() {
                bail!("repo `{}`: name, url and rev must not be empty", repo.name);
            }
            check_relative(&repo.path)
                .with_context(|| format!("repo `{}`: bad path `{}`", repo.name, repo.path))?;
            if let Some(req) = &repo.requirements {
                check_relative(req).with_context(|| {
                    format!("repo `{}`: bad requirements path `{req}`", repo.name)
                })?;
            }
            if names.insert(repo.name.as_str(), ()).is_some() {
                bail!("two repos are named `{}`", repo.name);
            }
            if let Some(other) = paths.insert(repo.path.trim_end_matches('/'), &repo.name) {
                bail!(
                    "repos `{other}` and `{}` both go to path `{}`",
                    repo.name,
                    repo.path
                );
            }
            if repo.path.trim_end_matches('/') == "python" || repo.path.starts_with("python/") {
                bail!(
                    "repo `{}`: path `{}` is inside python/, which is the Miniforge prefix",
                    repo.name,
                    repo.path
                );
            }
        }
        for module in &self.smoke.imports {
            let valid = !module.is_empty()
                && module.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                });
            if !valid {
                bail!("smoke.imports: `{module}` is not a Python module name");
            }
        }
        for check in &self.smoke.checks {
            if check.name.trim().is_empty() || check.code.trim().is_empty() {
                bail!("smoke.checks: each check needs a name and code");
            }
        }
        for command in &self.smoke.commands {
            let name = &command.name;
            if name.trim().is_empty() || command.run.is_empty() {
                bail!("smoke.commands: each command needs a name and a `run` list");
            }
            if let Some(cwd) = &command.cwd {
                check_relative(cwd)
                    .with_context(|| format!("smoke.commands `{name}`: bad cwd `{cwd}`"))?;
            }
            if command.timeout == 0 {
                bail!("smoke.commands `{name}`: timeout must be at least 1 second");
            }
        }
        self.refuse_options()?;
        self.check_variants()?;
        for variant in self.all_variants() {
            let view = self.for_variant(&variant);
            view.check_left_out(variant.platform)?;
            view.check_protected(variant.platform)?;
        }
        for (platform, section) in &self.platforms {
            for (kind, _) in section.requires_at_most.limits() {
                if kind.os() != platform.os() {
                    bail!(
                        "platforms.{platform}.requires_at_most: `{}` does not apply to {platform} \
                         (glibc and glibcxx are for Linux, macos for macOS, windows for Windows)",
                        kind.name()
                    );
                }
            }
        }
        Ok(())
    }

    fn check_left_out(&self, platform: Platform) -> Result<()> {
        let mut seen = BTreeMap::new();
        for left in self.leave_out_for(platform) {
            let name = normalise_package_name(&left.entry.name);
            if !is_package_name(&name) {
                bail!(
                    "{}: `{}` is not a package name (names only: no versions, extras or paths)",
                    left.key,
                    left.entry.name
                );
            }
            if let Some(other) = seen.insert(name, left.key.clone()) {
                bail!(
                    "{}: `{}` is already left out under {other}",
                    left.key,
                    left.entry.name
                );
            }
        }
        Ok(())
    }

    fn check_protected(&self, platform: Platform) -> Result<()> {
        let left_out: BTreeMap<String, String> = self
            .leave_out_for(platform)
            .into_iter()
            .map(|l| (normalise_package_name(&l.entry.name), l.key))
            .collect();
        let mut seen = BTreeMap::new();
        for (key, name) in self.protected_for(platform) {
            let normal = normalise_package_name(&name);
            if !is_package_name(&normal) {
                bail!(
                    "{key}: `{name}` is not a package name (names only: the zip carries the \
                     versions the build installed)"
                );
            }
            if let Some(other) = seen.insert(normal.clone(), key.clone()) {
                bail!("{key}: `{name}` is already protected under {other}");
            }
            if let Some(left) = left_out.get(&normal) {
                bail!("{key}: `{name}` is protected, yet {left} leaves it out of the zip");
            }
        }
        Ok(())
    }

    /// Packages, sources and revs reach pip, mamba and git as arguments: one that starts with
    /// `-` would be read as an option (`--index-url=…` among the packages switches the index).
    fn refuse_options<'a>(&'a self) -> Result<()> {
        let mut values: Vec<(String, &str)> = Vec::new();
        let mut add = |key: String, list: &'a [String]| {
            for value in list {
                values.push((key.clone(), value.as_str()));
            }
        };
        add("python_packages".into(), &self.python_packages);
        add("conda_packages".into(), &self.conda_packages);
        add("pip.extra_index_urls".into(), &self.pip.extra_index_urls);
        add("pip.find_links".into(), &self.pip.find_links);
        for (platform, section) in &self.platforms {
            add(
                format!("platforms.{platform}.python_packages"),
                &section.python_packages,
            );
            add(
                format!("platforms.{platform}.conda_packages"),
                &section.conda_packages,
            );
            for (name, variant) in &section.variants {
                add(
                    format!("platforms.{platform}.variants.{name}.python_packages"),
                    &variant.python_packages,
                );
            }
        }
        if let Some(index) = &self.pip.index_url {
            values.push(("pip.index_url".into(), index));
        }
        values.push(("installer.base_url".into(), &self.installer.base_url));
        for repo in &self.repos {
            for (field, value) in [("name", &repo.name), ("url", &repo.url), ("rev", &repo.rev)] {
                values.push((format!("repos `{}`: {field}", repo.name), value));
            }
        }
        for (key, value) in values {
            if value.trim_start().starts_with('-') {
                bail!(
                    "{key}: `{value}` starts with `-`, so the program it is passed to would read it \
                     as an option. Packages and sources are names and URLs; put pip options in \
                     platforms.<platform>.pip_args and indexes under pip:"
                );
            }
        }
        Ok(())
    }

    /// Everything pip installs for `platform`, in order: shared packages, then the platform's.
    pub fn python_packages_for(&self, platform: Platform) -> Vec<String> {
        let mut all = self.python_packages.clone();
        if let Some(section) = self.platforms.get(&platform) {
            all.extend(section.python_packages.iter().cloned());
        }
        if let Some((_, variant)) = self.chosen(platform) {
            all.extend(variant.python_packages.iter().cloned());
        }
        all
    }

    /// pip's options for `platform`: the platform's, then its variant's.
    pub fn pip_args_for(&self, platform: Platform) -> Vec<String> {
        let mut all = self
            .platforms
            .get(&platform)
            .map(|s| s.pip_args.clone())
            .unwrap_or_default();
        if let Some((_, variant)) = self.chosen(platform) {
            all.extend(variant.pip_args.iter().cloned());
        }
        all
    }

    /// The newest system `platform`'s zip may ask for: the platform's limits, with those its
    /// variant names in their place.
    pub fn requires_at_most(&self, platform: Platform) -> Ceiling {
        let own = self
            .platforms
            .get(&platform)
            .map(|s| s.requires_at_most.clone())
            .unwrap_or_default();
        match self.chosen(platform) {
            Some((_, variant)) => variants::merge_ceiling(&own, &variant.requires_at_most),
            None => own,
        }
    }

    /// What must work in `platform`'s zip: `smoke`, with the checks its variant adds.
    pub fn smoke_for(&self, platform: Platform) -> Smoke {
        let mut smoke = self.smoke.clone();
        smoke.checks.extend(self.variant_checks(platform));
        let expected: Vec<String> = self
            .skip_requirements_for(platform)
            .iter()
            .flat_map(|s| &s.import_failures)
            .map(|file| format!("IMPORT FAILED: {file}"))
            .collect();
        for command in &mut smoke.commands {
            command.expected.extend(expected.iter().cloned());
        }
        smoke
    }

    /// The repos' requirements `platform` does without.
    pub fn skip_requirements_for(&self, platform: Platform) -> &[SkippedRequirement] {
        self.platforms
            .get(&platform)
            .map_or(&[], |s| s.skip_requirements.as_slice())
    }

    /// What `platform`'s zip leaves out: the shared entries, then the platform's, each with the
    /// key it came from.
    pub fn leave_out_for(&self, platform: Platform) -> Vec<LeftOutEntry> {
        let shared = self.leave_out.iter().map(|e| ("leave_out".to_string(), e));
        let own = self.platforms.get(&platform).into_iter().flat_map(|s| {
            s.leave_out
                .iter()
                .map(move |e| (format!("platforms.{platform}.leave_out"), e))
        });
        let variant = self.chosen(platform).into_iter().flat_map(|(name, v)| {
            v.leave_out
                .iter()
                .map(move |e| (format!("platforms.{platform}.variants.{name}.leave_out"), e))
        });
        shared
            .chain(own)
            .chain(variant)
            .map(|(key, entry)| LeftOutEntry {
                key,
                entry: entry.clone(),
            })
            .collect()
    }

    /// What `platform`'s zip protects: the shared names, then the platform's, each with the key
    /// it came from.
    pub fn protected_for(&self, platform: Platform) -> Vec<(String, String)> {
        let shared = self
            .protected
            .iter()
            .map(|name| ("protected".to_string(), name.clone()));
        let own = self.platforms.get(&platform).into_iter().flat_map(|s| {
            s.protected
                .iter()
                .map(move |name| (format!("platforms.{platform}.protected"), name.clone()))
        });
        let variant = self.chosen(platform).into_iter().flat_map(|(variant, v)| {
            v.protected.iter().map(move |name| {
                (
                    format!("platforms.{platform}.variants.{variant}.protected"),
                    name.clone(),
                )
            })
        });
        shared.chain(own).chain(variant).collect()
    }

    pub fn conda_packages_for(&self, platform: Platform) -> Vec<String> {
        let mut all = self.conda_packages.clone();
        if let Some(section) = self.platforms.get(&platform) {
            all.extend(section.conda_packages.iter().cloned());
        }
        all
    }
}

/// `version.yml`: the version that goes into zip names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    version: String,
}

pub fn load_version(path: &Path) -> Result<String> {
    let text = read_input(path, "version file")?;
    let file: VersionFile =
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))?;
    check_version(&file.version).with_context(|| format!("{}", path.display()))?;
    Ok(file.version)
}

/// A version goes into a file name, so only characters that are safe there.
pub fn check_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !ok {
        bail!("version `{version}` must be made of letters, digits and . _ + - (it names the zip)");
    }
    Ok(())
}

/// serde_yaml points a bad map key at the start of its map; point at the key's own line instead.
fn locate_platform_key(text: &str, error: serde_yaml_ng::Error) -> String {
    let message = error.to_string();
    let Some(name) = message
        .split_once("unknown platform `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name)
    else {
        return message;
    };
    let line = text.lines().position(|line| {
        let key = line.trim_start().trim_start_matches(['"', '\'']);
        key.strip_prefix(name).is_some_and(|rest| {
            rest.trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':')
        })
    });
    match (line, message.rsplit_once(" at line ")) {
        (Some(line), Some((head, _))) => format!("{head} at line {}", line + 1),
        _ => message,
    }
}

/// A package name as PEP 503 compares them: lower case, runs of `-`, `_` and `.` as one `-`.
/// A normalised package name: letters, digits and single dashes inside.
fn is_package_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub fn normalise_package_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn read_input(path: &Path, what: &str) -> Result<String> {
    match fs_err::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{what} not found: {} (check the path, or pass another with its flag)",
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn check_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.contains('\\') || path.starts_with('/') {
        bail!("must be a relative path with / separators");
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("must not contain `..` or `.`");
    }
    Ok(())
}

fn resolve_local(base: &Path, link: &str) -> String {
    if link.contains("://") || Path::new(link).is_absolute() {
        return link.to_string();
    }
    let joined: PathBuf = base.join(link);
    joined.to_string_lossy().into_owned()
}

impl Distribution {
    /// The options of `pip_args` and `pip:` that name where packages come from and still mean the
    /// same on a user's machine: index URLs over http(s). Find-links folders and --no-index are the
    /// build machine's own.
    pub fn carried_indexes(&self, platform: Platform) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let web = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if let Some(url) = self.pip.index_url.as_deref().filter(|u| web(u)) {
            found.push(("index-url".to_string(), url.to_string()));
        }
        for url in self.pip.extra_index_urls.iter().filter(|u| web(u)) {
            found.push(("extra-index-url".to_string(), url.clone()));
        }
        let args = self.pip_args_for(platform);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            for option in ["index-url", "extra-index-url"] {
                let flag = format!("--{option}");
                let value = if *arg == flag {
                    it.clone().next().cloned()
                } else {
                    arg.strip_prefix(&format!("{flag}=")).map(str::to_string)
                };
                if let Some(url) = value.filter(|u| web(u)) {
                    found.retain(|(key, _)| !(option == "index-url" && key == "index-url"));
                    found.push((option.to_string(), url));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
