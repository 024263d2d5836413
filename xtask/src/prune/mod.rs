//! Removes what the environment does not need at run time, by the rules of a [`Policy`].
//!
//! One sorted walk decides every path; nothing is followed through a symlink (a link is removed
//! as a link, never what it points at) and nothing outside the tree is touched. Keep patterns win
//! over any rule: a kept path inside a removed directory stays, with the folders that hold it.

#[cfg(test)]
pub mod fixtures;
pub mod linkage;
pub mod policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use walkdir::WalkDir;

use crate::platform::Platform;
use crate::tree::rel_path;
use policy::Matches;
pub use policy::Policy;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleOutcome {
    pub rule: String,
    pub removed: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub before: Totals,
    pub after: Totals,
    /// Every rule in force, in policy order, with what it removed (files counts files and links).
    pub rules: Vec<RuleOutcome>,
    /// Each removed file (or link) and its rule; for the linkage check, not for manifest.json.
    #[serde(skip)]
    pub removed: Vec<linkage::Removed>,
    /// The native libraries of the kept tree, all resolved.
    pub linkage: linkage::LinkageReport,
}

#[derive(Clone, Copy)]
enum Inherited {
    Nothing,
    Keep,
    Remove(usize),
}

/// Prunes `tree` for `platform`. Decides first, then checks that every kept binary still finds
/// its libraries, and only then deletes: a policy that would break a binary fails, naming it, and
/// leaves the tree as it was. With `dry_run`, decides, checks and counts but changes nothing.
pub fn prune(
    tree: &Path,
    policy: &Policy,
    platform: Platform,
    dry_run: bool,
) -> Result<PruneReport> {
    let (mut report, files, dirs) = decide(tree, policy, platform)?;
    report.linkage = linkage::check(
        tree,
        platform,
        policy.system_libraries(platform.os()),
        &report.removed,
    )?;
    let missing = report.linkage.missing.len();
    if missing > 0 {
        bail!(
            "pruning would break {missing} native library link(s):\n{}Change the rule, or add a keep pattern, in the prune policy.",
            report.linkage.describe_missing()
        );
    }
    if !dry_run {
        for file in &files {
            // remove_file on a symlink removes the link itself.
            fs_err::remove_file(file)?;
        }
        // Deepest first; a folder that still holds something kept stays.
        for dir in dirs.iter().rev() {
            if fs_err::read_dir(dir)?.next().is_none() {
                fs_err::remove_dir(dir)?;
            }
        }
    }
    Ok(report)
}

type Decision = (PruneReport, Vec<PathBuf>, Vec<PathBuf>);

/// One sorted walk: what each rule removes, and the files and folders to delete.
fn decide(tree: &Path, policy: &Policy, platform: Platform) -> Result<Decision> {
    let rules: Vec<usize> = (0..policy.rules.len())
        .filter(|&i| policy.rules[i].applies_to(platform))
        .collect();
    let mut removed: BTreeMap<usize, Totals> =
        rules.iter().map(|&i| (i, Totals::default())).collect();
    let mut before = Totals::default();
    let mut files_to_remove: Vec<PathBuf> = Vec::new();
    let mut removed_files: Vec<linkage::Removed> = Vec::new();
    let mut dirs_to_remove: Vec<PathBuf> = Vec::new();
    // (depth, what the directory at that depth passes to what is inside it)
    let mut stack: Vec<(usize, Inherited)> = Vec::new();

    let walk = WalkDir::new(tree)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        while stack
            .last()
            .is_some_and(|(depth, _)| *depth >= entry.depth())
        {
            stack.pop();
        }
        let inherited = stack.last().map_or(Inherited::Nothing, |(_, i)| *i);
        let rel = rel_path(tree, entry.path());
        let is_dir = entry.file_type().is_dir();
        let matching_rule = |want: &[Matches]| {
            rules.iter().copied().find(|&i| {
                want.contains(&policy.rules[i].matches) && policy.rules[i].is_match(&rel)
            })
        };

        if is_dir {
            let passes = match inherited {
                Inherited::Keep => Inherited::Keep,
                _ if policy.is_kept(&rel) => Inherited::Keep,
                Inherited::Remove(rule) => Inherited::Remove(rule),
                Inherited::Nothing => match matching_rule(&[Matches::Dir, Matches::Any]) {
                    Some(rule) => Inherited::Remove(rule),
                    None => Inherited::Nothing,
                },
            };
            if let Inherited::Remove(_) = passes {
                dirs_to_remove.push(entry.path().to_path_buf());
            }
            stack.push((entry.depth(), passes));
            continue;
        }

        let size = entry
            .metadata()
            .with_context(|| format!("cannot read {}", entry.path().display()))?
            .len();
        before.add(size);
        let rule = match inherited {
            Inherited::Keep => None,
            _ if policy.is_kept(&rel) => None,
            Inherited::Remove(rule) => Some(rule),
            Inherited::Nothing => matching_rule(&[Matches::File, Matches::Any]),
        };
        if let Some(rule) = rule {
            removed.get_mut(&rule).expect("rule in force").add(size);
            files_to_remove.push(entry.path().to_path_buf());
            removed_files.push(linkage::Removed {
                path: rel,
                rule: policy.rules[rule].name.clone(),
            });
        }
    }

    let total_removed = removed.values().fold(Totals::default(), |mut acc, t| {
        acc.files += t.files;
        acc.bytes += t.bytes;
        acc
    });
    let report = PruneReport {
        before,
        after: Totals {
            files: before.files - total_removed.files,
            bytes: before.bytes - total_removed.bytes,
        },
        rules: removed
            .into_iter()
            .map(|(i, removed)| RuleOutcome {
                rule: policy.rules[i].name.clone(),
                removed,
            })
            .collect(),
        removed: removed_files,
        linkage: linkage::LinkageReport::default(),
    };
    Ok((report, files_to_remove, dirs_to_remove))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::listing;

    const POLICY: &str = "\
rules:
  - {name: caches, reason: r, match: dir, patterns: ['**/__pycache__']}
  - {name: tests, reason: r, match: dir, patterns: ['**/tests']}
  - {name: archives, reason: r, match: file, patterns: ['**/*.a']}
  - {name: off, reason: r, match: file, patterns: ['**/*.txt'], enabled: false}
keep:
  - '**/*.so'
";

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        write(t, "pkg/__init__.py", "x");
        write(t, "pkg/__pycache__/m.pyc", "0123");
        write(t, "pkg/tests/test_a.py", "abc");
        write(t, "pkg/tests/_native.so", "ELF");
        write(t, "pkg/testing/__init__.py", "keep");
        write(t, "pkg/libx.a", "archive");
        write(t, "pkg/notes.txt", "n");
        dir
    }

    #[test]
    fn rules_remove_and_keep_wins() {
        let dir = fixture();
        let policy = Policy::parse(POLICY).unwrap();
        let report = prune(dir.path(), &policy, Platform::LinuxX86_64, false).unwrap();
        assert_eq!(
            listing(dir.path()).unwrap(),
            [
                "dir pkg",
                "file pkg/__init__.py",
                "file pkg/notes.txt",
                "dir pkg/testing",
                "file pkg/testing/__init__.py",
                "dir pkg/tests",
                "file pkg/tests/_native.so",
            ]
        );
        let by_rule: Vec<(String, u64, u64)> = report
            .rules
            .iter()
            .map(|r| (r.rule.clone(), r.removed.files, r.removed.bytes))
            .collect();
        assert_eq!(
            by_rule,
            [
                ("caches".to_string(), 1, 4),
                ("tests".to_string(), 1, 3),
                ("archives".to_string(), 1, 7)
            ]
        );
        assert_eq!(
            report.before,
            Totals {
                files: 7,
                bytes: 23
            }
        );
        assert_eq!(report.after, Totals { files: 4, bytes: 9 });
    }

    #[test]
    fn dry_run_changes_nothing_and_counts_the_same() {
        let dir = fixture();
        let before = listing(dir.path()).unwrap();
        let policy = Policy::parse(POLICY).unwrap();
        let dry = prune(dir.path(), &policy, Platform::LinuxX86_64, true).unwrap();
        assert_eq!(listing(dir.path()).unwrap(), before);
        let real = prune(dir.path(), &policy, Platform::LinuxX86_64, false).unwrap();
        assert_eq!(dry.after, real.after);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_removed_as_links_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "tests/precious.py", "do not touch");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pkg/__init__.py", "");
        std::os::unix::fs::symlink(outside.path().join("tests"), dir.path().join("pkg/tests"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("pkg/outside")).unwrap();
        let policy = Policy::parse(POLICY).unwrap();
        prune(dir.path(), &policy, Platform::LinuxX86_64, false).unwrap();
        assert!(outside.path().join("tests/precious.py").is_file());
        // Neither link is a directory to the walk, so the tests rule does not take them.
        assert_eq!(
            listing(dir.path()).unwrap(),
            [
                "dir pkg",
                "file pkg/__init__.py",
                "link pkg/outside",
                "link pkg/tests"
            ]
        );
    }
}
