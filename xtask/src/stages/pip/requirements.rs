//! The repos' requirements as a platform installs them: where the distribution's
//! `skip_requirements` name some for the platform (a package with no wheel for it, such as
//! ComfyUI 0.33's optional `comfy-angle` on Intel Macs), pip and uv read a copy of each file with
//! those lines commented out, saying why. The repo's own file is left as it is. A name that no
//! file has is an error, so an entry does not outlive the requirement it was written for.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::model::distribution::{normalise_package_name, SkippedRequirement};
use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::progress::Reporter;

/// Writes the copies of the requirements files without the skipped requirements.
#[derive(Debug, Clone)]
pub struct SkipRequirements {
    pub platform: Platform,
    /// Each repo's requirements file, and where its copy goes.
    pub files: Vec<(PathBuf, PathBuf)>,
    pub skip: Vec<SkippedRequirement>,
}

impl SkipRequirements {
    pub fn run(&self, reporter: &Reporter) -> Result<()> {
        let mut found = BTreeSet::new();
        for (from, to) in &self.files {
            let text = fs_err::read_to_string(from)?;
            let (copy, skipped) = without(&text, &self.skip, self.platform);
            found.extend(skipped);
            if let Some(dir) = to.parent() {
                fs_err::create_dir_all(dir)?;
            }
            fs_err::write(to, copy)?;
        }
        let unused: Vec<&str> = self
            .skip
            .iter()
            .map(|s| s.name.as_str())
            .filter(|name| !found.contains(&normalise_package_name(name)))
            .collect();
        if !unused.is_empty() {
            let read = if self.files.is_empty() {
                "no repo has a requirements file".to_string()
            } else {
                let files: Vec<String> = self
                    .files
                    .iter()
                    .map(|(from, _)| from.display().to_string())
                    .collect();
                format!("read: {}", files.join(", "))
            };
            bail!(
                "platforms.{}.skip_requirements names {}, which no repo's requirements file has \
                 ({read}): remove the entry from the distribution",
                self.platform,
                unused.join(", "),
            );
        }
        reporter.note(format!(
            "{} does without {}",
            self.platform,
            self.skip
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        Ok(())
    }
}

impl Describe for SkipRequirements {
    fn title(&self) -> String {
        "Skip requirements".into()
    }

    fn stage(&self) -> Stage {
        Stage::Env
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.skip.iter().map(|s| s.name.as_str()).collect();
        write!(
            f,
            "copy the repos' requirements without {} (skip_requirements of {}):",
            names.join(", "),
            self.platform
        )?;
        for (from, to) in &self.files {
            write!(f, "\n      {} -> {}", from.display(), to.display())?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        for skipped in &self.skip {
            inputs.set(
                format!("skip requirement {}", skipped.name),
                skipped.reason.clone(),
            );
        }
    }
}

/// The files pip and uv read for `repos` (each a repo's name and its requirements file): the
/// files themselves, or, where `skip` names any, their copies in `dir` and the step that writes
/// them.
pub fn skipping(
    platform: Platform,
    skip: &[SkippedRequirement],
    repos: Vec<(String, PathBuf)>,
    dir: &Path,
) -> (Option<SkipRequirements>, Vec<PathBuf>) {
    if skip.is_empty() {
        return (None, repos.into_iter().map(|(_, file)| file).collect());
    }
    let files: Vec<(PathBuf, PathBuf)> = repos
        .into_iter()
        .map(|(repo, file)| (file, dir.join(format!("{repo}-requirements.txt"))))
        .collect();
    let read = files.iter().map(|(_, to)| to.clone()).collect();
    let step = SkipRequirements {
        platform,
        files,
        skip: skip.to_vec(),
    };
    (Some(step), read)
}

/// `text` with each line whose requirement `skip` names commented out; and the (normalized)
/// names it found.
pub fn without(
    text: &str,
    skip: &[SkippedRequirement],
    platform: Platform,
) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let name = requirement_name(line);
        match skip
            .iter()
            .find(|s| name.as_deref() == Some(normalise_package_name(&s.name).as_str()))
        {
            Some(skipped) => {
                found.push(normalise_package_name(&skipped.name));
                out.push_str(&format!(
                    "# skipped on {platform} (skip_requirements: {}): {line}\n",
                    skipped.reason
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    (out, found)
}

/// The normalized name a requirement line starts with (`comfy_angle>=1; …` → `comfy-angle`), or
/// none for comments, options and blank lines.
fn requirement_name(line: &str) -> Option<String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('-') {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(line.len());
    Some(normalise_package_name(&line[..end])).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_requirement_is_commented_out_with_its_reason() {
        let skip = [SkippedRequirement {
            name: "Comfy_Angle".into(),
            reason: "no wheel for Intel Macs".into(),
            import_failures: vec![],
        }];
        let text = "torch\n#non essential dependencies:\nPyOpenGL>=3.1.8\ncomfy-angle\n\
                    comfy.angle[x]>=1 ; sys_platform != 'linux'\ncomfy-angle-extra\n--extra-index-url x\n";
        let (out, found) = without(text, &skip, Platform::MacosX86_64);
        assert_eq!(found, ["comfy-angle", "comfy-angle"]);
        let kept: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            kept,
            [
                "torch",
                "PyOpenGL>=3.1.8",
                "comfy-angle-extra",
                "--extra-index-url x"
            ]
        );
        assert!(out.contains(
            "# skipped on macos-x86_64 (skip_requirements: no wheel for Intel Macs): comfy-angle\n"
        ));
        assert_eq!(requirement_name("# comfy-angle"), None);
    }

    #[test]
    fn an_entry_no_requirements_file_has_is_refused_naming_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("requirements.txt");
        fs_err::write(&from, "torch\ncomfy-angle\n").unwrap();
        let entry = |name: &str| SkippedRequirement {
            name: name.into(),
            reason: "none".into(),
            import_failures: vec![],
        };
        let step = |files: Vec<(PathBuf, PathBuf)>, name: &str| SkipRequirements {
            platform: Platform::MacosX86_64,
            files,
            skip: vec![entry(name)],
        };
        let reporter = Reporter::new(false);
        let copy = dir.path().join("copy/ComfyUI-requirements.txt");
        step(vec![(from.clone(), copy.clone())], "comfy-angle")
            .run(&reporter)
            .unwrap();
        assert!(fs_err::read_to_string(&copy)
            .unwrap()
            .contains("# skipped on"));

        let stale = step(vec![(from.clone(), copy)], "pyopengl")
            .run(&reporter)
            .unwrap_err()
            .to_string();
        assert!(
            stale.contains("skip_requirements names pyopengl"),
            "{stale}"
        );
        assert!(
            stale.contains(&format!("read: {}", from.display())),
            "{stale}"
        );

        let no_files = step(vec![], "comfy-angle")
            .run(&reporter)
            .unwrap_err()
            .to_string();
        assert!(
            no_files.contains("no repo has a requirements file"),
            "{no_files}"
        );
    }
}
