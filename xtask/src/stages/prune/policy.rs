//! `anymatix/prune.yml`: named removal rules and the keep patterns that override them.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::model::platform::{Os, Platform};
use crate::stages::bytecode::Bytecode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<RuleFile>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    system_libraries: SystemLibrariesFile,
    #[serde(default)]
    optional_libraries: Vec<OptionalFile>,
    /// Fail on any library missing from the environment, even one listed as optional.
    #[serde(default)]
    strict_linkage: bool,
    /// What bytecode the zip ships (after the rules took every cache away).
    #[serde(default)]
    bytecode: Bytecode,
}

/// Libraries that some shipped binaries link but no wheel ships, because those binaries are
/// plugins loaded only when a feature is configured. Matched by the binary's path and the
/// library's name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionalFile {
    name: String,
    reason: String,
    #[serde(default)]
    platforms: Option<Vec<Platform>>,
    /// Globs over tree paths, as rules use them.
    binaries: Vec<String>,
    /// Globs over the names the binaries ask for.
    libraries: Vec<String>,
}

/// Libraries each platform provides itself, as globs over the names binaries ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemLibrariesFile {
    #[serde(default)]
    linux: Vec<String>,
    #[serde(default)]
    macos: Vec<String>,
    #[serde(default)]
    windows: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    reason: String,
    #[serde(rename = "match")]
    matches: Matches,
    patterns: Vec<String>,
    #[serde(default)]
    platforms: Option<Vec<Platform>>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// What kind of path a rule removes. A directory rule takes the directory with all inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matches {
    Dir,
    File,
    Any,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub reason: String,
    pub matches: Matches,
    pub patterns: Vec<String>,
    pub enabled: bool,
    platforms: Option<Vec<Platform>>,
    set: GlobSet,
}

impl Rule {
    pub fn applies_to(&self, platform: Platform) -> bool {
        self.enabled
            && self
                .platforms
                .as_ref()
                .is_none_or(|platforms| platforms.contains(&platform))
    }

    pub fn is_match(&self, rel: &str) -> bool {
        self.set.is_match(rel)
    }
}

/// A known missing library (see `OptionalFile`).
#[derive(Debug)]
pub struct Optional {
    pub name: String,
    pub reason: String,
    platforms: Option<Vec<Platform>>,
    binaries: GlobSet,
    libraries: GlobSet,
}

impl Optional {
    pub fn applies_to(&self, platform: Platform) -> bool {
        self.platforms
            .as_ref()
            .is_none_or(|platforms| platforms.contains(&platform))
    }

    pub fn covers(&self, platform: Platform, binary: &str, library: &str) -> bool {
        self.applies_to(platform)
            && self.binaries.is_match(binary)
            && self
                .libraries
                .is_match(library.rsplit(['/', '\\']).next().unwrap_or(library))
    }
}

#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub keep_patterns: Vec<String>,
    pub optional: Vec<Optional>,
    /// Any library missing from the environment fails the prune, optional or not.
    pub strict_linkage: bool,
    pub bytecode: Bytecode,
    /// The sha256 of the policy's text: what a zip was pruned by.
    pub digest: String,
    keep: GlobSet,
    system_linux: GlobSet,
    system_macos: GlobSet,
    system_windows: GlobSet,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy> {
        let text = fs_err::read_to_string(path)
            .context("cannot read the prune policy (pass another with --policy)")?;
        Policy::parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Policy> {
        let file: PolicyFile = serde_yaml_ng::from_str(text)?;
        let mut rules = Vec::new();
        for rule in file.rules {
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                bail!("two rules are named `{}`", rule.name);
            }
            if rule.patterns.is_empty() {
                bail!("rule `{}` has no patterns", rule.name);
            }
            let set = glob_set(&rule.patterns).map_err(|e| {
                // Point at the line that holds the bad pattern, as YAML errors do.
                let bad = rule.patterns.iter().find(|p| glob(p).is_err());
                let line = bad.and_then(|p| text.lines().position(|l| l.contains(p.as_str())));
                match line {
                    Some(line) => e.context(format!("rule `{}` at line {}", rule.name, line + 1)),
                    None => e.context(format!("rule `{}`", rule.name)),
                }
            })?;
            rules.push(Rule {
                name: rule.name,
                reason: rule.reason,
                matches: rule.matches,
                patterns: rule.patterns,
                enabled: rule.enabled,
                platforms: rule.platforms,
                set,
            });
        }
        let keep = glob_set(&file.keep).context("keep")?;
        let mut optional = Vec::new();
        for entry in file.optional_libraries {
            if optional.iter().any(|o: &Optional| o.name == entry.name) {
                bail!("two optional_libraries entries are named `{}`", entry.name);
            }
            if entry.binaries.is_empty() || entry.libraries.is_empty() {
                bail!(
                    "optional_libraries `{}` needs both binaries and libraries",
                    entry.name
                );
            }
            let context = || format!("optional_libraries `{}`", entry.name);
            optional.push(Optional {
                binaries: glob_set(&entry.binaries).with_context(context)?,
                libraries: name_set(&entry.libraries, false).with_context(context)?,
                name: entry.name,
                reason: entry.reason,
                platforms: entry.platforms,
            });
        }
        let system = &file.system_libraries;
        Ok(Policy {
            digest: crate::util::digest::sha256_hex(text.as_bytes()),
            rules,
            keep_patterns: file.keep,
            optional,
            strict_linkage: file.strict_linkage,
            bytecode: file.bytecode,
            keep,
            system_linux: name_set(&system.linux, false).context("system_libraries.linux")?,
            system_macos: name_set(&system.macos, false).context("system_libraries.macos")?,
            // Windows looks DLL names up case-insensitively.
            system_windows: name_set(&system.windows, true).context("system_libraries.windows")?,
        })
    }

    /// The libraries `os` provides itself, which binaries may need without the tree holding them.
    pub fn system_libraries(&self, os: Os) -> &GlobSet {
        match os {
            Os::Linux => &self.system_linux,
            Os::Macos => &self.system_macos,
            Os::Windows => &self.system_windows,
        }
    }

    pub fn is_kept(&self, rel: &str) -> bool {
        self.keep.is_match(rel)
    }

    /// The optional_libraries entry that expects `binary` to miss `library`, if any.
    pub fn optional_for(
        &self,
        platform: Platform,
        binary: &str,
        library: &str,
    ) -> Option<&Optional> {
        self.optional
            .iter()
            .find(|o| o.covers(platform, binary, library))
    }
}

/// Globs over `/`-separated paths relative to the tree: `*` stays within one folder, `**` spans any.
fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern)?);
    }
    Ok(builder.build()?)
}

/// Globs over library names (or, for macOS, install paths): `*` may span `/` here.
fn name_set(patterns: &[String], case_insensitive: bool) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .build()
            .with_context(|| format!("bad pattern `{pattern}`"))?;
        builder.add(glob);
    }
    Ok(builder.build()?)
}

fn glob(pattern: &str) -> Result<Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .with_context(|| format!("bad pattern `{pattern}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_match_exactly() {
        let policy = Policy::parse(
            "rules:\n  - {name: tests, reason: r, match: dir, patterns: ['**/tests', '**/test']}\n",
        )
        .unwrap();
        let rule = &policy.rules[0];
        assert!(rule.is_match("python/lib/python3.11/site-packages/pkg/tests"));
        assert!(rule.is_match("tests"));
        assert!(!rule.is_match("python/lib/python3.11/site-packages/torch/testing"));
        assert!(!rule.is_match("python/lib/python3.11/unittest"));
        assert!(!rule.is_match("pkg/tests_helpers"));
    }

    #[test]
    fn star_stays_within_a_folder() {
        let policy = Policy::parse(
            "rules:\n  - {name: meta, reason: r, match: file, patterns: ['python/conda-meta/*.json']}\n",
        )
        .unwrap();
        assert!(policy.rules[0].is_match("python/conda-meta/zlib-1.3.json"));
        assert!(!policy.rules[0].is_match("python/conda-meta/sub/x.json"));
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let err = Policy::parse("rules:\n  - {name: a, reason: r, match: dir, patterns: ['a[']}\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("bad pattern `a[`"), "{err:#}");
        let err = Policy::parse("rules: []\nkeeps: []\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `keeps`"),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = Policy::parse(
            "rules:\n  - {name: a, reason: r, match: dir, patterns: [a], platforms: [amiga]}\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown platform `amiga`"),
            "{err:#}"
        );
    }

    #[test]
    fn optional_libraries_match_binary_path_and_library_name() {
        let policy = Policy::parse(
            "rules: []\noptional_libraries:\n  - name: mpi\n    reason: plugin\n    platforms: [linux-x86_64]\n    binaries: ['**/nvshmem/lib/nvshmem_bootstrap_*.so*']\n    libraries: ['libmpi.so.*']\n",
        )
        .unwrap();
        let plugin =
            "python/lib/python3.12/site-packages/nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.3";
        let core = "python/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so";
        assert_eq!(
            policy
                .optional_for(Platform::LinuxX86_64, plugin, "libmpi.so.40")
                .map(|o| o.name.as_str()),
            Some("mpi")
        );
        assert!(policy
            .optional_for(Platform::LinuxX86_64, core, "libmpi.so.40")
            .is_none());
        assert!(policy
            .optional_for(Platform::LinuxX86_64, plugin, "libfabric.so.1")
            .is_none());
        assert!(policy
            .optional_for(Platform::LinuxAarch64, plugin, "libmpi.so.40")
            .is_none());
        assert!(!policy.strict_linkage);
        let err = Policy::parse(
            "rules: []\noptional_libraries:\n  - {name: a, reason: r, binaries: [], libraries: [x]}\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("needs both"), "{err:#}");
    }

    #[test]
    fn rules_can_be_off_or_for_some_platforms() {
        let policy = Policy::parse(
            "rules:\n  - {name: a, reason: r, match: dir, patterns: [a], enabled: false}\n  - {name: b, reason: r, match: dir, patterns: [b], platforms: [windows-x86_64]}\n",
        )
        .unwrap();
        assert!(!policy.rules[0].applies_to(Platform::LinuxX86_64));
        assert!(policy.rules[1].applies_to(Platform::WindowsX86_64));
        assert!(!policy.rules[1].applies_to(Platform::LinuxX86_64));
    }
}
