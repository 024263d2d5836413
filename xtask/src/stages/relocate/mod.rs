//! Makes the tree work wherever it is unpacked. pip writes the build's absolute python path into
//! every console script: on macOS and Linux its `#!` line, which becomes a `/bin/sh` trampoline
//! that runs the python beside the script (as conda-pack does); on Windows the `#!` line inside
//! each `Scripts\*.exe` launcher, which becomes one relative to the launcher (see `launcher`).
//! Any other file that still holds the build path is listed, so manifest.json says what might
//! not move.

pub mod launcher;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use walkdir::WalkDir;

use crate::model::platform::Platform;
use crate::stages::describe::{Describe, Stage};
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;
use crate::util::tree::rel_path;

/// Rewrites the `#!` lines in `tree` that hold the path the environment was installed at
/// (`installed_at`), and lists what else holds it.
#[derive(Debug, Clone)]
pub struct Relocate {
    pub platform: Platform,
    pub tree: PathBuf,
    pub installed_at: PathBuf,
}

impl Relocate {
    pub fn run(&self, tools: &Tools) -> Result<Relocated> {
        let mut paths = vec![self.installed_at.to_string_lossy().into_owned()];
        if let Ok(canonical) = self.installed_at.canonicalize() {
            paths.push(canonical.to_string_lossy().into_owned());
        }
        let report = relocate(&self.tree, &paths, self.platform)?;
        let reporter = &tools.reporter;
        reporter.note(format!(
            "{} scripts and launchers now find the python beside them; {} other files still hold the build path",
            report.rewritten.len(),
            report.remaining.len()
        ));
        for file in &report.remaining {
            reporter.note(format!("  {} ({})", file.path, file.kind));
        }
        Ok(report)
    }
}

impl Describe for Relocate {
    fn title(&self) -> String {
        "Relocate".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "relocate: rewrite the #! lines of the scripts and launchers in {} that name {}, list what else does",
            self.tree.display(),
            self.installed_at.display()
        )
    }

    fn inputs(&self, _: &mut Inputs) {}
}

/// Larger files are data or binaries; none of what pip or conda writes with paths is this big.
const MAX_TEXT: u64 = 1 << 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Relocated {
    /// Scripts whose `#!` line now finds the python beside them.
    pub rewritten: Vec<String>,
    /// Files that still hold the build path, and what kind they are.
    pub remaining: Vec<Remaining>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Remaining {
    pub path: String,
    pub kind: String,
}

/// Rewrites and audits `tree`, whose absolute path at build time is in `build_paths` (as given
/// and canonical; either may appear). On macOS and Linux, `#!` scripts are rewritten; on Windows,
/// pip's `.exe` launchers.
pub fn relocate(tree: &Path, build_paths: &[String], platform: Platform) -> Result<Relocated> {
    let windows = platform.is_windows();
    let mut variants: Vec<String> = build_paths.to_vec();
    if windows {
        // Windows tools write either separator; canonical paths carry a `\\?\` prefix.
        for path in build_paths {
            variants.push(path.replace('\\', "/"));
            if let Some(plain) = path.strip_prefix(r"\\?\") {
                variants.push(plain.to_string());
                variants.push(plain.replace('\\', "/"));
            }
        }
    }
    let needles: Vec<&[u8]> = variants
        .iter()
        .map(|p| p.as_bytes())
        .filter(|n| !n.is_empty())
        .collect();
    let mut report = Relocated::default();
    let mut records: Vec<std::path::PathBuf> = Vec::new();
    for entry in WalkDir::new(tree).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        if !entry.file_type().is_file() || entry.metadata()?.len() > MAX_TEXT {
            continue;
        }
        if entry.file_name() == "RECORD"
            && entry
                .path()
                .parent()
                .is_some_and(|p| p.to_string_lossy().ends_with(".dist-info"))
        {
            records.push(entry.path().to_path_buf());
        }
        let bytes = fs_err::read(entry.path())?;
        let rel = rel_path(tree, entry.path());
        // Every launcher is looked at, not only those that hold the build path: one naming any
        // other absolute python would fail elsewhere too.
        let holds_build_path = needles.iter().any(|n| contains(&bytes, n));
        let outcome = if windows {
            relocate_launcher(&bytes, &rel, &variants)
        } else {
            Ok(match trampoline(&bytes, &rel, &needles) {
                Some(rewritten) if holds_build_path => Rewrite::New(rewritten),
                _ => Rewrite::NotOne,
            })
        };
        match outcome {
            Ok(Rewrite::New(rewritten)) => {
                crate::util::atomic::replace(entry.path(), &rewritten)?;
                report.rewritten.push(rel);
            }
            Ok(Rewrite::AlreadyRelative) => {}
            Ok(Rewrite::NotOne) if holds_build_path => {
                let kind = kind_of(&rel, &bytes);
                report.remaining.push(Remaining { path: rel, kind });
            }
            Ok(Rewrite::NotOne) => {}
            Err(why) => report.remaining.push(Remaining {
                path: rel,
                kind: format!("launcher not rewritten: {why:#}"),
            }),
        }
    }
    update_records(tree, &records, &report.rewritten)?;
    Ok(report)
}

/// pip's RECORD lists each installed file with its sha256 and size; a rewritten script gets its
/// new ones, so the record stays true and does not carry the build path's traces (the old hash
/// depended on where the build ran, which made the zip differ between build folders).
fn update_records(tree: &Path, records: &[std::path::PathBuf], rewritten: &[String]) -> Result<()> {
    if rewritten.is_empty() {
        return Ok(());
    }
    for record in records {
        let site = record
            .parent()
            .and_then(Path::parent)
            .context("a RECORD is in a .dist-info folder")?;
        let site_rel = rel_path(tree, site);
        let text = fs_err::read_to_string(record)?;
        let mut changed = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let Some((path, _)) = line.split_once(',') else {
                    return line.to_string();
                };
                let target = crate::util::tree::normalise(&format!("{site_rel}/{path}"));
                match target.filter(|t| rewritten.contains(t)) {
                    Some(target) => match fs_err::read(tree.join(&target)) {
                        Ok(bytes) => {
                            changed = true;
                            format!(
                                "{path},sha256={},{}",
                                crate::util::digest::record_digest(&bytes),
                                bytes.len()
                            )
                        }
                        Err(_) => line.to_string(),
                    },
                    None => line.to_string(),
                }
            })
            .collect();
        if changed {
            crate::util::atomic::replace(record, (lines.join("\n") + "\n").as_bytes())?;
        }
    }
    Ok(())
}

/// A script whose `#!` names a python inside the tree gets a first line that any shell runs and
/// python skips: `'''exec' "<dir of this script>/<python>" "$0" "$@"` opens a string literal in
/// python that the next line closes.
fn trampoline(bytes: &[u8], rel: &str, needles: &[&[u8]]) -> Option<Vec<u8>> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let first = std::str::from_utf8(&bytes[..end])
        .ok()?
        .trim_end_matches('\r');
    let interpreter = first.strip_prefix("#!")?.trim();
    // The interpreter alone: no arguments, as pip writes it.
    if interpreter.contains(char::is_whitespace) {
        return None;
    }
    let inside = needles.iter().find_map(|n| {
        let n = std::str::from_utf8(n).ok()?;
        interpreter.strip_prefix(n)?.strip_prefix('/')
    })?;
    let name = inside.rsplit('/').next()?;
    if !name.starts_with("python") {
        return None;
    }
    let relative = relative_path(rel, inside);
    let mut out =
        format!("#!/bin/sh\n'''exec' \"$(dirname -- \"$0\")/{relative}\" \"$0\" \"$@\"\n' '''\n")
            .into_bytes();
    out.extend_from_slice(&bytes[end + 1..]);
    Some(out)
}

/// An `.exe` with a zip appended: a distlib launcher, or meant to be one.
fn is_launcher_candidate(rel: &str, bytes: &[u8]) -> bool {
    rel.to_ascii_lowercase().ends_with(".exe")
        && bytes.starts_with(b"MZ")
        && bytes[bytes.len().saturating_sub(22 + 0xffff)..]
            .windows(4)
            .any(|w| w == b"PK\x05\x06")
}

/// What relocation makes of a file.
enum Rewrite {
    New(Vec<u8>),
    /// A launcher that already finds its python relative to itself.
    AlreadyRelative,
    /// Neither a script nor a launcher that can be rewritten.
    NotOne,
}

/// A pip launcher whose `#!` names a python inside the tree gets one relative to itself; one
/// that names any other python, or cannot be taken apart, is an error saying why.
fn relocate_launcher(bytes: &[u8], rel: &str, build_paths: &[String]) -> Result<Rewrite> {
    if !is_launcher_candidate(rel, bytes) {
        return Ok(Rewrite::NotOne);
    }
    let Some(parsed) = launcher::parse(bytes)? else {
        return Ok(Rewrite::NotOne);
    };
    if parsed.interpreter.starts_with(launcher::LAUNCHER_DIR) {
        return Ok(Rewrite::AlreadyRelative);
    }
    let interpreter = launcher::interpreter_path(parsed.interpreter);
    let inside = build_paths.iter().find_map(|path| {
        let path = launcher::interpreter_path(path.trim_start_matches(r"\\?\"));
        let rest = interpreter.get(path.len()..)?;
        // Windows paths compare without case.
        (interpreter[..path.len()].eq_ignore_ascii_case(&path))
            .then(|| rest.strip_prefix('/'))
            .flatten()
    });
    let Some(target) = inside else {
        anyhow::bail!("its #! names {}, outside the tree", parsed.interpreter);
    };
    let relative = launcher::relative_interpreter(rel, target, parsed.gui)?;
    Ok(Rewrite::New(launcher::with_interpreter(&parsed, &relative)))
}

/// The path from the folder of `from` to `to`, both relative to the tree.
fn relative_path(from: &str, to: &str) -> String {
    let from_dir: Vec<&str> =
        from.split('/').collect::<Vec<_>>()[..from.matches('/').count()].to_vec();
    let to_parts: Vec<&str> = to.split('/').collect();
    let common = from_dir
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<&str> = vec![".."; from_dir.len() - common];
    parts.extend(&to_parts[common..]);
    parts.join("/")
}

fn kind_of(rel: &str, bytes: &[u8]) -> String {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let lower = name.to_ascii_lowercase();
    let kind = if name.ends_with(".pth") {
        ".pth file"
    } else if lower.ends_with("-script.py") || lower.ends_with("-script.pyw") {
        "conda entry-point script"
    } else if lower.ends_with(".bat") || lower.ends_with(".cmd") {
        "batch file"
    } else if rel.ends_with("conda-meta/history") {
        "conda's install history"
    } else if bytes.starts_with(b"MZ") {
        "Windows program"
    } else if name.starts_with("_sysconfigdata") {
        "sysconfig data"
    } else if name.ends_with(".pc") {
        "pkg-config file"
    } else if bytes.starts_with(b"#!") {
        "script"
    } else {
        "text"
    };
    kind.to_string()
}

/// memchr's SIMD search: this runs over every small file of the tree (a gigabyte or more).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_tree_files() {
        assert_eq!(
            relative_path("python/bin/tool", "python/bin/python3.12"),
            "python3.12"
        );
        assert_eq!(
            relative_path("ComfyUI/run.py", "python/bin/python3"),
            "../python/bin/python3"
        );
    }

    #[cfg(unix)]
    #[test]
    fn console_scripts_find_the_python_beside_them_after_a_move() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("build/anymatix");
        std::fs::create_dir_all(tree.join("python/bin")).unwrap();
        // A stand-in python: prints the script it was asked to run and its first argument.
        let python = tree.join("python/bin/python3.12");
        std::fs::write(&python, "#!/bin/sh\necho \"python ran $1 with $2\"\n").unwrap();
        let script = tree.join("python/bin/tool");
        let original = format!("#!{}\nimport sys\nprint('tool')\n", python.display());
        std::fs::write(&script, &original).unwrap();
        std::fs::write(
            tree.join("python/site.pth"),
            format!("{}/extra\n", tree.display()),
        )
        .unwrap();
        for file in [&python, &script] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let report = relocate(
            &tree,
            &[tree.to_string_lossy().into_owned()],
            Platform::LinuxX86_64,
        )
        .unwrap();
        assert_eq!(report.rewritten, ["python/bin/tool"]);
        assert_eq!(
            report.remaining,
            [Remaining {
                path: "python/site.pth".into(),
                kind: ".pth file".into()
            }]
        );
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.ends_with("import sys\nprint('tool')\n"), "{text}");

        // Moved elsewhere (a space in the path, too), the script still finds its python.
        let moved = dir.path().join("new home/anymatix");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&tree, &moved).unwrap();
        let out = std::process::Command::new(moved.join("python/bin/tool"))
            .arg("hello")
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            printed.trim(),
            format!(
                "python ran {} with hello",
                moved.join("python/bin/tool").display()
            )
        );
    }
}
