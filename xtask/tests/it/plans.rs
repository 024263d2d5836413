//! The dry-run plan of every platform, on any host: what a reviewer reads to see the Windows
//! installer's command line or the macOS torch pins change without owning either machine.

use std::path::Path;
use std::process::Command;

fn plan(platform: &str) -> String {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(support::xtask_binary())
        .args([
            "portable",
            "--platform",
            platform,
            "--dry-run",
            "--version",
            "0.0.0-plan",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    String::from_utf8(result.stdout)
        .unwrap()
        .replace(&out.path().display().to_string(), "<out>")
        .replace(&root.display().to_string(), "<repo>")
}

fn check(platform: &str) {
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        snapshot_suffix => platform,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("dry_run_plan", plan(platform));
    });
}

#[test]
fn plan_linux_x86_64() {
    check("linux-x86_64");
}

#[test]
fn plan_linux_aarch64() {
    check("linux-aarch64");
}

#[test]
fn plan_macos_arm64() {
    check("macos-arm64");
}

#[test]
fn plan_macos_x86_64() {
    check("macos-x86_64");
}

#[test]
fn plan_windows_x86_64() {
    check("windows-x86_64");
}
