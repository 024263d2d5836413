//! Installed packages the zip leaves out (`leave_out` in distribution.yml), removed from the
//! zip's tree the way `pip uninstall` removes them: every file their RECORD lists (modules,
//! data, console scripts), the bytecode of those modules, folders left empty, and the
//! `.dist-info` itself. Before anything is removed, the tree's own python tells which kept
//! package requires one of them (markers evaluated as pip evaluates them, extras aside): that is
//! refused unless the entry says why it is safe. The installed environment is untouched: the
//! tree is its hard-linked copy, and only links are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::distribution::{normalise_package_name, LeftOutEntry};
use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::runner::Runner;
use crate::util::tools::Tools;
use crate::util::tree::{normalise, rel_path};
use crate::util::units::human_bytes;

/// What a package left out took with it, for manifest.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub name: String,
    pub version: String,
    pub files: u64,
    pub bytes: u64,
    /// Kept packages that require it (allowed only with a reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Asks the tree's python what is installed and which kept package requires one of the
/// packages named in argv[1] (a JSON list of normalised names).
const REQUIREMENTS: &str = r#"import json, re, sys, sysconfig
from importlib.metadata import distributions
try:
    from pip._vendor.packaging.requirements import Requirement
except ImportError:
    from packaging.requirements import Requirement

def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

leaving = set(json.loads(sys.argv[1]))
installed, required = {}, []
for dist in distributions():
    name = dist.metadata["Name"]
    if not name:
        continue
    installed[canon(name)] = [name, dist.version]
    if canon(name) in leaving:
        continue
    for text in dist.requires or []:
        req = Requirement(text)
        if canon(req.name) not in leaving:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            required.append([name, dist.version, text, canon(req.name)])
print(json.dumps({"site": sysconfig.get_paths()["purelib"], "installed": installed,
                  "required": required}))
"#;

#[derive(Debug, Deserialize)]
struct Installed {
    site: PathBuf,
    /// Normalised name → (name, version).
    installed: BTreeMap<String, (String, String)>,
    /// (kept package, its version, the requirement, the normalised name it requires).
    required: Vec<(String, String, String, String)>,
}

/// Leaves the distribution's `leave_out` packages out of the zip's tree.
#[derive(Debug, Clone)]
pub struct LeaveOutPackages {
    pub platform: Platform,
    pub runner: Runner,
    /// The zip's tree (`anymatix/`), a hard-linked copy of the environment.
    pub tree: PathBuf,
    pub entries: Vec<LeftOutEntry>,
}

impl LeaveOutPackages {
    pub fn run(&self, tools: &Tools) -> Result<Vec<LeftOut>> {
        let python = self
            .tree
            .join("python")
            .join(self.platform.python_in_prefix());
        let names: Vec<String> = self
            .entries
            .iter()
            .map(|e| normalise_package_name(&e.entry.name))
            .collect();
        let names_json = serde_json::to_string(&names)?;
        self.runner.prepare(&tools.reporter, &python)?;
        let out = super::ask_python(&tools.sh, &self.runner, &python, REQUIREMENTS, &names_json)?;
        let mut found: Installed = serde_json::from_str(&out)
            .with_context(|| format!("the installed packages, as python told them: {out}"))?;
        found.site = self.runner.host_path(&found.site.to_string_lossy());
        let plan = check(&self.entries, &found, self.platform)?;
        let dist_infos = dist_infos(&found.site)?;
        let mut left = Vec::new();
        for (entry, (name, version), required_by) in plan {
            let Some(dist_info) = dist_infos.get(&normalise_package_name(&name)) else {
                bail!(
                    "{name} is installed, yet no .dist-info in {} names it (was it installed by \
                     conda?): it cannot be left out as pip would uninstall it",
                    found.site.display()
                );
            };
            let (files, bytes) = uninstall(&self.tree, &found.site, dist_info, &name)?;
            tools.reporter.note(format!(
                "left out {name} {version}: {files} files, {}{}",
                human_bytes(bytes),
                if required_by.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (required by {}; {} gives the reason why that is safe)",
                        required_by.join(", "),
                        entry.key
                    )
                }
            ));
            left.push(LeftOut {
                name,
                version,
                files,
                bytes,
                required_by,
                reason: entry.entry.reason.clone(),
            });
        }
        Ok(left)
    }
}

type Checked<'a> = Vec<(&'a LeftOutEntry, (String, String), Vec<String>)>;

/// Each entry with its installed name and version and the kept packages that require it; every
/// entry that names nothing installed, or that a kept package requires without a reason, is an
/// error, all named at once.
fn check<'a>(
    entries: &'a [LeftOutEntry],
    found: &Installed,
    platform: Platform,
) -> Result<Checked<'a>> {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for entry in entries {
        let name = normalise_package_name(&entry.entry.name);
        let Some(installed) = found.installed.get(&name) else {
            let similar: Vec<&str> = found
                .installed
                .values()
                .map(|(n, _)| n.as_str())
                .filter(|n| {
                    let n = normalise_package_name(n);
                    n.contains(&name) || name.contains(&n)
                })
                .collect();
            problems.push(format!(
                "{}: `{}` is not installed for {platform}, so there is nothing to leave out{}",
                entry.key,
                entry.entry.name,
                if similar.is_empty() {
                    String::new()
                } else {
                    format!(" (installed with a similar name: {})", similar.join(", "))
                }
            ));
            continue;
        };
        let required_by: BTreeSet<String> = found
            .required
            .iter()
            .filter(|(_, _, _, target)| *target == name)
            .map(|(kept, version, requirement, _)| format!("{kept} {version} (`{requirement}`)"))
            .collect();
        let required_by: Vec<String> = required_by.into_iter().collect();
        if !required_by.is_empty() && entry.entry.reason.is_none() {
            problems.push(format!(
                "{}: `{}` is required by {}, which the zip keeps: leaving it out could break \
                 them. If it is safe, say why: {{name: {}, reason: ...}}",
                entry.key,
                entry.entry.name,
                required_by.join(", "),
                entry.entry.name
            ));
            continue;
        }
        checked.push((entry, installed.clone(), required_by));
    }
    if !problems.is_empty() {
        bail!(
            "cannot leave these packages out:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(checked)
}

/// Removes the installed package `name`, whose metadata is `dist_info`, from `tree` as pip
/// uninstalls it. Returns the files and bytes removed.
fn uninstall(tree: &Path, site: &Path, dist_info: &Path, name: &str) -> Result<(u64, u64)> {
    let record = dist_info.join("RECORD");
    let text = fs_err::read_to_string(&record).with_context(|| {
        format!("{name} has no RECORD, so what it installed is not known: it cannot be left out")
    })?;
    let site_rel = rel_path(tree, site);
    let (mut files, mut bytes) = (0, 0);
    let mut folders = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let listed = record_path(line);
        let Some(rel) = normalise(&format!("{site_rel}/{listed}")).filter(|r| !r.is_empty()) else {
            bail!("{}: `{listed}` points outside the tree", record.display());
        };
        let path = tree.join(&rel);
        if path.starts_with(dist_info) {
            continue;
        }
        let mut remove = vec![path.clone()];
        // Its bytecode, wherever it was compiled (pip removes it too).
        if let (Some(stem), Some(parent)) = (
            rel.strip_suffix(".py").and_then(|r| r.rsplit('/').next()),
            path.parent(),
        ) {
            if let Ok(cached) = fs_err::read_dir(parent.join("__pycache__")) {
                for pyc in cached.filter_map(Result::ok) {
                    let file = pyc.file_name().to_string_lossy().into_owned();
                    if file.starts_with(&format!("{stem}.")) && file.ends_with(".pyc") {
                        remove.push(pyc.path());
                    }
                }
            }
        }
        for path in remove {
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            fs_err::remove_file(&path)?;
            files += 1;
            bytes += meta.len();
            if let Some(parent) = path.parent() {
                folders.insert(parent.to_path_buf());
            }
        }
    }
    let (info_files, info_bytes) = crate::util::tree::stats(dist_info)?;
    fs_err::remove_dir_all(dist_info)?;
    files += info_files;
    bytes += info_bytes;
    // Folders emptied by it, deepest first, up to (not including) site-packages or the tree.
    let mut folders: Vec<PathBuf> = folders.into_iter().collect();
    folders.sort_by_key(|f| std::cmp::Reverse(f.components().count()));
    for folder in folders {
        let mut folder = folder.as_path();
        while folder != site && folder != tree && folder.starts_with(tree) {
            let empty = fs_err::read_dir(folder).map(|mut d| d.next().is_none());
            if !matches!(empty, Ok(true)) {
                break;
            }
            fs_err::remove_dir(folder)?;
            folder = folder.parent().unwrap_or(tree);
        }
    }
    Ok((files, bytes))
}

/// Every `.dist-info` folder in `site`, by the normalised name its METADATA gives.
fn dist_infos(site: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    for entry in fs_err::read_dir(site)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".dist-info") || !path.is_dir() {
            continue;
        }
        let Ok(metadata) = fs_err::read_to_string(path.join("METADATA")) else {
            continue;
        };
        let named = metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Name:"))
            .map(normalise_package_name);
        if let Some(named) = named {
            found.insert(named, path);
        }
    }
    Ok(found)
}

/// The path of one RECORD line (a CSV row: path, hash, size; the path quoted when it holds a
/// comma or a quote).
fn record_path(line: &str) -> String {
    let Some(quoted) = line.strip_prefix('"') else {
        return line.split(',').next().unwrap_or(line).to_string();
    };
    let mut path = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                path.push('"');
                continue;
            }
            break;
        }
        path.push(c);
    }
    path
}

impl Describe for LeaveOutPackages {
    fn title(&self) -> String {
        "Leave out packages".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leave out of {} as pip uninstalls them (refused where a kept package requires one \
             and no reason is given):",
            self.tree.display()
        )?;
        for entry in &self.entries {
            write!(f, "\n      {} ({})", entry.entry.name, entry.key)?;
            if let Some(reason) = &entry.entry.reason {
                write!(f, "\n        ({reason})")?;
            }
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set(
            "leave out",
            serde_json::to_string(&self.entries).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_give_their_paths() {
        assert_eq!(
            record_path("pkg/__init__.py,sha256=abc,12"),
            "pkg/__init__.py"
        );
        assert_eq!(
            record_path("\"odd, name \"\"quoted\"\".py\",sha256=abc,12"),
            "odd, name \"quoted\".py"
        );
        assert_eq!(record_path("../../../bin/tool,,"), "../../../bin/tool");
    }
}
