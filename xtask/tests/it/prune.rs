//! Pruning by a policy: what each rule takes and keep patterns save, dry runs, links never
//! followed, and every platform's pruned fixture tree as reviewers read it.
use std::path::Path;

use support::write_file as write;
use walkdir::WalkDir;
use xtask::model::platform::Platform;
use xtask::stages::prune::{prune, Policy, Totals};
use xtask::util::tree::listing;

const POLICY: &str = "\
rules:
  - {name: caches, reason: r, match: dir, patterns: ['**/__pycache__']}
  - {name: tests, reason: r, match: dir, patterns: ['**/tests']}
  - {name: archives, reason: r, match: file, patterns: ['**/*.a']}
  - {name: off, reason: r, match: file, patterns: ['**/*.txt'], enabled: false}
keep:
  - '**/*.so'
";

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

/// What reviewers read per platform: the rules' figures, the linkage check and the pruned
/// tree (kind, mode, size; native binaries' sizes depend on the compiler, so they show `-`).
fn pruned_fixture_snapshot(platform: Platform) {
    let dir = tempfile::tempdir().unwrap();
    support::binaries::platform_tree(platform, dir.path());
    let policy = Policy::load(&xtask::project_root().join("anymatix/prune.yml")).unwrap();
    let report = prune(dir.path(), &policy, platform, false).unwrap();
    let mut lines = vec![format!("# {platform}: removed by each rule (files, bytes)")];
    for rule in &report.rules {
        lines.push(format!(
            "{} {} {}",
            rule.rule, rule.removed.files, rule.removed.bytes
        ));
    }
    let l = &report.linkage;
    lines.push(format!(
        "# native libraries: {} binaries; found {} in the tree, {} from the system, {} by name; {} missing",
        l.binaries, l.resolved_in_tree, l.resolved_by_system, l.resolved_by_name, l.missing.len()
    ));
    lines.push("# the pruned tree: kind mode size path".to_string());
    for entry in WalkDir::new(dir.path())
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let rel = xtask::util::tree::rel_path(dir.path(), entry.path());
        let (kind, size) = if meta.is_dir() {
            ("dir ", "-".to_string())
        } else if meta.file_type().is_symlink() {
            let target = fs_err::read_link(entry.path()).unwrap();
            lines.push(format!("link {rel} -> {}", target.display()));
            continue;
        } else if is_native(entry.path()) {
            ("bin ", "-".to_string())
        } else {
            ("file", meta.len().to_string())
        };
        lines.push(format!("{kind} {:o} {size:>4} {rel}", mode(&meta)));
    }
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        snapshot_suffix => platform.name(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!("pruned_fixture_tree", lines.join("\n") + "\n");
    });
}

fn is_native(path: &Path) -> bool {
    let bytes = fs_err::read(path).unwrap();
    bytes.starts_with(b"\x7fELF")
        || bytes.starts_with(b"MZ")
        || bytes.starts_with(&0xfeed_facf_u32.to_le_bytes())
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode(_: &std::fs::Metadata) -> u32 {
    0
}

#[test]
fn pruned_fixture_linux_x86_64() {
    pruned_fixture_snapshot(Platform::LinuxX86_64);
}

#[test]
fn pruned_fixture_linux_aarch64() {
    pruned_fixture_snapshot(Platform::LinuxAarch64);
}

#[test]
fn pruned_fixture_macos_arm64() {
    pruned_fixture_snapshot(Platform::MacosArm64);
}

#[test]
fn pruned_fixture_macos_x86_64() {
    pruned_fixture_snapshot(Platform::MacosX86_64);
}

#[test]
fn pruned_fixture_windows_x86_64() {
    pruned_fixture_snapshot(Platform::WindowsX86_64);
}

#[cfg(unix)]
#[test]
fn symlinks_are_removed_as_links_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "tests/precious.py", "do not touch");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pkg/__init__.py", "");
    std::os::unix::fs::symlink(outside.path().join("tests"), dir.path().join("pkg/tests")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("pkg/outside")).unwrap();
    let policy = Policy::parse(POLICY).unwrap();
    prune(dir.path(), &policy, Platform::LinuxX86_64, false).unwrap();
    assert!(outside.path().join("tests/precious.py").is_file());
    // A link inside a folder removed whole goes as a link; its target stays.
    write(dir.path(), "pkg/sub/tests/a.py", "");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("pkg/sub/tests/escape")).unwrap();
    prune(dir.path(), &policy, Platform::LinuxX86_64, false).unwrap();
    assert!(!dir.path().join("pkg/sub/tests").exists());
    assert!(outside.path().join("tests/precious.py").is_file());
    // Neither link is a directory to the walk, so the tests rule does not take them.
    assert_eq!(
        listing(dir.path()).unwrap(),
        [
            "dir pkg",
            "file pkg/__init__.py",
            "link pkg/outside",
            "dir pkg/sub",
            "link pkg/tests"
        ]
    );
}
