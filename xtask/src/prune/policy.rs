//! `anymatix/prune.yml`: named removal rules and the keep patterns that override them.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::platform::{Os, Platform};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<RuleFile>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    system_libraries: SystemLibrariesFile,
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

#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub keep_patterns: Vec<String>,
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
        let system = &file.system_libraries;
        Ok(Policy {
            rules,
            keep_patterns: file.keep,
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
