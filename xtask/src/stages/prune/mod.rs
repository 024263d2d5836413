//! Removes what the environment does not need at run time, by the rules of a [`Policy`].
//!
//! One sorted walk decides every path; nothing is followed through a symlink (a link is removed
//! as a link, never what it points at) and nothing outside the tree is touched. Keep patterns win
//! over any rule: a kept path inside a removed directory stays, with the folders that hold it.

pub mod linkage;
pub mod page;
pub mod policy;
pub mod windows_dlls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use walkdir::WalkDir;

use crate::model::platform::Platform;
use crate::model::system::Ceiling;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;
use crate::util::tree::rel_path;
use crate::util::units::human_bytes;
use policy::Matches;
pub use policy::Policy;

/// Copies the installed environment by hard links into the tree that is pruned, so pruning
/// never damages it.
#[derive(Debug, Clone)]
pub struct LinkTree {
    pub from: PathBuf,
    pub to: PathBuf,
}

impl LinkTree {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        let copied = crate::util::tree::link_copy(&self.from, &self.to)?;
        if copied > 0 {
            tools.reporter.note(format!(
                "{copied} files copied: hard links cannot be made here (another filesystem?)"
            ));
        }
        Ok(())
    }
}

impl Describe for LinkTree {
    fn title(&self) -> String {
        "Copy the environment to prune it".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copy {} to {} by hard links (pruning the copy leaves the environment whole)",
            self.from.display(),
            self.to.display()
        )
    }

    fn inputs(&self, _: &mut Inputs) {}
}

/// Prunes the tree by the policy, checks every native library and what the binaries need of the
/// system, and writes the HTML size report.
#[derive(Debug, Clone)]
pub struct Prune {
    pub platform: Platform,
    pub tree: PathBuf,
    pub policy: Arc<Policy>,
    /// Where the policy was read from, to name it.
    pub policy_path: PathBuf,
    /// The prune page (the zip's size report), written here and published with the zip.
    pub page: PathBuf,
    /// The zip's name, for the page's title.
    pub zip_name: String,
    /// The platform's variant the zip is, named in the report.
    pub variant: Option<String>,
    /// The newest system the kept binaries may ask for.
    pub requires_at_most: Ceiling,
}

impl Prune {
    pub fn run(&self, tools: &Tools) -> Result<Pruned> {
        let report = prune(&self.tree, &self.policy, self.platform, false)?;
        let reporter = &tools.reporter;
        for line in report.summary() {
            reporter.note(line);
        }
        page::write(
            &self.page,
            &page::page_data(
                &self.zip_name,
                self.platform,
                self.variant.as_deref(),
                &report,
                &self.policy,
            ),
        )?;
        reporter.note(format!(
            "size report (the prune page): {}",
            self.page.display()
        ));
        report.linkage.check_ceiling(
            &self.requires_at_most,
            &format!("platforms.{}.requires_at_most", self.platform),
        )?;
        Ok(report)
    }
}

impl Describe for Prune {
    fn title(&self) -> String {
        "Prune".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "prune {} by the rules in {}, check every native library, its page in {}",
            self.tree.display(),
            self.policy_path.display(),
            self.page.display()
        )?;
        let limits: Vec<String> = self
            .requires_at_most
            .limits()
            .map(|(kind, version)| format!("{kind} {version}"))
            .collect();
        if !limits.is_empty() {
            write!(
                f,
                "\n      no binary may need more than {}",
                limits.join(", ")
            )?;
        }
        let policy = &self.policy;
        for rule in policy.rules.iter().filter(|r| r.applies_to(self.platform)) {
            write!(
                f,
                "\n      rule {}: {}",
                rule.name,
                rule.patterns.join(", ")
            )?;
            write!(f, "\n        ({})", rule.reason)?;
        }
        write!(f, "\n      keep: {}", policy.keep_patterns.join(", "))?;
        let optional: Vec<&str> = policy
            .optional
            .iter()
            .filter(|o| o.applies_to(self.platform))
            .map(|o| o.name.as_str())
            .collect();
        if !optional.is_empty() {
            write!(
                f,
                "\n      missing libraries expected (optional_libraries): {}",
                optional.join(", ")
            )?;
        }
        if policy.strict_linkage {
            write!(f, "\n      strict_linkage: any missing library fails")?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("prune policy", self.policy.digest.clone());
        let limits: Vec<String> = self
            .requires_at_most
            .limits()
            .map(|(kind, version)| format!("{} {version}", kind.name()))
            .collect();
        inputs.set("requires at most", limits.join(", "));
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
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
pub struct Pruned {
    pub before: Totals,
    pub after: Totals,
    /// Every rule in force, in policy order, with what it removed (files counts files and links).
    pub rules: Vec<RuleOutcome>,
    /// Where the kept size goes: the largest folders that are not mere wrappers of one child.
    pub largest_kept: Vec<FolderSize>,
    /// Each kept file (or link) and its size; for the linkage check and the report's treemap.
    #[serde(skip)]
    pub kept_files: Vec<linkage::Kept>,
    /// Each removed file (or link) and its rule; for the linkage check, not for manifest.json.
    #[serde(skip)]
    pub removed: Vec<linkage::Removed>,
    /// The native libraries of the kept tree, all resolved.
    pub linkage: linkage::LinkageReport,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FolderSize {
    pub path: String,
    pub bytes: u64,
}

impl Pruned {
    /// The terminal summary: what each rule removed, the totals, where the size goes, and the
    /// native-library check.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!("{:<34} {:>8} {:>11}", "rule", "files", "removed")];
        for rule in &self.rules {
            lines.push(format!(
                "{:<34} {:>8} {:>11}",
                rule.rule,
                rule.removed.files,
                human_bytes(rule.removed.bytes)
            ));
        }
        lines.push(format!(
            "before {} in {} files; after {} in {} files ({:.1}% of the bytes removed)",
            human_bytes(self.before.bytes),
            self.before.files,
            human_bytes(self.after.bytes),
            self.after.files,
            100.0 * (self.before.bytes - self.after.bytes) as f64 / self.before.bytes.max(1) as f64
        ));
        lines.push("largest kept folders:".to_string());
        for folder in &self.largest_kept {
            lines.push(format!(
                "  {:>11}  {}",
                human_bytes(folder.bytes),
                folder.path
            ));
        }
        let l = &self.linkage;
        lines.push(format!(
            "native libraries: {} binaries; needed libraries found: {} in the tree, {} from the system, {} by name only",
            l.binaries, l.resolved_in_tree, l.resolved_by_system, l.resolved_by_name
        ));
        let mut optional: BTreeMap<&str, (usize, HashSet<&str>)> = BTreeMap::new();
        for m in l.optional() {
            let entry = optional
                .entry(m.optional.as_deref().unwrap_or_default())
                .or_default();
            entry.0 += 1;
            entry.1.insert(&m.file);
        }
        for (name, (links, files)) in &optional {
            lines.push(format!(
                "  absent as the policy expects ({name}): {links} link(s) of {} plugin file(s)",
                files.len()
            ));
        }
        let unexplained: Vec<_> = l.unexplained().collect();
        if !unexplained.is_empty() {
            lines.push(format!(
                "  WARNING: {} needed librar{} missing from the environment, not pruned and not known to the policy:",
                unexplained.len(),
                if unexplained.len() == 1 { "y is" } else { "ies are" }
            ));
            for line in linkage::LinkageReport::describe(unexplained).lines() {
                lines.push(format!("  {line}"));
            }
            lines.push(
                "  The zip may fail where these are loaded: add them to the environment, or explain them under optional_libraries in the prune policy (strict_linkage: true fails on them)."
                    .to_string(),
            );
        }
        if !l.requires.is_empty() {
            lines.push(format!(
                "needs of the system: {}",
                l.requirement_lines().join("; ")
            ));
        }
        lines
    }
}

/// The `n` largest folders, leaving out any whose bytes are mostly (over half) in one child
/// folder (`python/` when `python/lib/` holds 99% of it), so the list points at where size is.
fn largest_folders(bytes: &HashMap<String, u64>, n: usize) -> Vec<FolderSize> {
    let mut largest_child: HashMap<&str, u64> = HashMap::new();
    for (path, size) in bytes {
        if let Some((parent, _)) = path.rsplit_once('/') {
            let entry = largest_child.entry(parent).or_default();
            *entry = (*entry).max(*size);
        }
    }
    let mut folders: Vec<FolderSize> = bytes
        .iter()
        .filter(|(path, size)| largest_child.get(path.as_str()).copied().unwrap_or(0) * 2 <= **size)
        .map(|(path, size)| FolderSize {
            path: path.clone(),
            bytes: *size,
        })
        .collect();
    folders.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    folders.truncate(n);
    folders
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
pub fn prune(tree: &Path, policy: &Policy, platform: Platform, dry_run: bool) -> Result<Pruned> {
    let (mut report, deletion) = decide(tree, policy, platform)?;
    report.linkage = linkage::check(tree, platform, policy, &report.kept_files, &report.removed)?;
    let linkage = &report.linkage;
    let broken: Vec<_> = linkage.broken().collect();
    if !broken.is_empty() {
        bail!(
            "{} native library link(s) would be broken by pruning:\n{}\
             Change the rule, or add a keep pattern, in the prune policy.",
            broken.len(),
            linkage::LinkageReport::describe(broken)
        );
    }
    if policy.strict_linkage && !linkage.missing.is_empty() {
        bail!(
            "{} native library link(s) are missing from the environment, and the prune policy \
             sets strict_linkage:\n{}\
             Pruning removed none of them. Add them to the environment, list them under \
             system_libraries if every target system has them, or turn strict_linkage off to \
             let optional_libraries explain them.",
            linkage.missing.len(),
            linkage::LinkageReport::describe(&linkage.missing)
        );
    }
    if !dry_run {
        remove(&deletion)?;
    }
    Ok(report)
}

/// What pruning deletes, grouped so that it is quick: whole folders where nothing inside is
/// kept, single files elsewhere, and the folders to remove once emptied.
#[derive(Default)]
struct Deletion {
    whole_dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    emptied_dirs: Vec<PathBuf>,
}

/// Deletes on every core (unlinking is most of pruning's time): each worker takes the next
/// folder or file. Then the emptied folders, deepest first; one that still holds something
/// kept stays.
fn remove(deletion: &Deletion) -> Result<()> {
    enum Item<'a> {
        Dir(&'a Path),
        File(&'a Path),
    }
    let items: Vec<Item> = deletion
        .whole_dirs
        .iter()
        .map(|d| Item::Dir(d))
        .chain(deletion.files.iter().map(|f| Item::File(f)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match items.get(i) {
                            None => return Ok(()),
                            // Never follows symlinks: std removes a link inside as a link.
                            Some(Item::Dir(dir)) => fs_err::remove_dir_all(dir)?,
                            // remove_file on a symlink removes the link itself.
                            Some(Item::File(file)) => fs_err::remove_file(file)?,
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a deleting thread panicked"))
    })?;
    for dir in deletion.emptied_dirs.iter().rev() {
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
            other => other.with_context(|| format!("cannot remove {}", dir.display()))?,
        }
    }
    Ok(())
}

type Decision = (Pruned, Deletion);

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// One sorted walk: what each rule removes, and the files and folders to delete.
fn decide(tree: &Path, policy: &Policy, platform: Platform) -> Result<Decision> {
    let rules: Vec<usize> = (0..policy.rules.len())
        .filter(|&i| policy.rules[i].applies_to(platform))
        .collect();
    let mut removed: BTreeMap<usize, Totals> =
        rules.iter().map(|&i| (i, Totals::default())).collect();
    let mut before = Totals::default();
    let mut removed_files: Vec<linkage::Removed> = Vec::new();
    let mut kept_bytes: HashMap<String, u64> = HashMap::new();
    let mut kept_files: Vec<linkage::Kept> = Vec::new();
    // Removed folders, each with whether something inside is kept (then it is emptied file by
    // file instead of removed whole).
    let mut removed_dirs: Vec<RemovedDir> = Vec::new();
    // Files to remove, with the innermost removed folder they are in.
    let mut files_in: Vec<(PathBuf, Option<usize>)> = Vec::new();
    // (depth, what the folder at that depth passes to what is inside it, its removed_dirs index)
    let mut stack: Vec<(usize, Inherited, Option<usize>)> = Vec::new();

    let walk = WalkDir::new(tree)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        while stack
            .last()
            .is_some_and(|(depth, _, _)| *depth >= entry.depth())
        {
            stack.pop();
        }
        let inherited = stack.last().map_or(Inherited::Nothing, |(_, i, _)| *i);
        let innermost_removed = stack.iter().rev().find_map(|(_, _, index)| *index);
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
            let index = match passes {
                Inherited::Remove(_) => {
                    removed_dirs.push(RemovedDir {
                        path: entry.path().to_path_buf(),
                        partial: false,
                        parent: innermost_removed,
                    });
                    Some(removed_dirs.len() - 1)
                }
                Inherited::Keep => {
                    mark_partial(&stack, &mut removed_dirs);
                    None
                }
                Inherited::Nothing => None,
            };
            stack.push((entry.depth(), passes, index));
            continue;
        }

        let metadata = entry
            .metadata()
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        let size = metadata.len();
        before.add(size);
        let rule = match inherited {
            Inherited::Keep => None,
            _ if policy.is_kept(&rel) => None,
            Inherited::Remove(rule) => Some(rule),
            Inherited::Nothing => matching_rule(&[Matches::File, Matches::Any]),
        };
        if let Some(rule) = rule {
            removed.get_mut(&rule).expect("rule in force").add(size);
            files_in.push((entry.path().to_path_buf(), innermost_removed));
            removed_files.push(linkage::Removed {
                path: rel,
                rule: policy.rules[rule].name.clone(),
            });
        } else {
            mark_partial(&stack, &mut removed_dirs);
            let maybe_binary = entry.file_type().is_file()
                && linkage::maybe_binary(
                    platform.os(),
                    &entry.file_name().to_string_lossy(),
                    is_executable(&metadata),
                );
            kept_files.push(linkage::Kept {
                path: rel.clone(),
                size,
                maybe_binary,
            });
            // Every folder above a kept file holds its bytes.
            let mut end = rel.len();
            while let Some(slash) = rel[..end].rfind('/') {
                *kept_bytes.entry(rel[..slash].to_string()).or_default() += size;
                end = slash;
            }
        }
    }

    let total_removed = removed.values().fold(Totals::default(), |mut acc, t| {
        acc.files += t.files;
        acc.bytes += t.bytes;
        acc
    });
    let report = Pruned {
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
        largest_kept: largest_folders(&kept_bytes, 10),
        kept_files,
        removed: removed_files,
        linkage: linkage::LinkageReport::default(),
    };
    // A folder with nothing kept inside goes whole (the outermost such); every other removed file
    // goes alone, and the folders that still hold something stay.
    let is_whole = |index: Option<usize>| index.is_some_and(|i| !removed_dirs[i].partial);
    let mut deletion = Deletion::default();
    for (path, index) in files_in {
        if !is_whole(index) {
            deletion.files.push(path);
        }
    }
    for dir in &removed_dirs {
        match (dir.partial, is_whole(dir.parent)) {
            (false, false) => deletion.whole_dirs.push(dir.path.clone()),
            (true, _) => deletion.emptied_dirs.push(dir.path.clone()),
            (false, true) => {}
        }
    }
    Ok((report, deletion))
}

/// Something inside the removed folders on the stack is kept: none of them can go whole.
fn mark_partial(stack: &[(usize, Inherited, Option<usize>)], removed_dirs: &mut [RemovedDir]) {
    for index in stack.iter().filter_map(|(_, _, index)| *index) {
        removed_dirs[index].partial = true;
    }
}

struct RemovedDir {
    path: PathBuf,
    /// Something inside is kept.
    partial: bool,
    /// The removed folder it is in, if any.
    parent: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_folders_skip_wrappers_of_one_child() {
        let sizes: HashMap<String, u64> = [
            ("python", 100),
            ("python/lib", 95),
            ("python/lib/site-packages", 90),
            ("python/lib/site-packages/torch", 40),
            ("python/lib/site-packages/numpy", 30),
            ("python/lib/site-packages/numpy/core", 10),
            ("ComfyUI", 5),
        ]
        .into_iter()
        .map(|(p, b)| (p.to_string(), b))
        .collect();
        let names: Vec<String> = largest_folders(&sizes, 4)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            names,
            [
                "python/lib/site-packages",
                "python/lib/site-packages/torch",
                "python/lib/site-packages/numpy",
                "python/lib/site-packages/numpy/core"
            ]
        );
    }
}
