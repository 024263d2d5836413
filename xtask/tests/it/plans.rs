//! The dry-run plan of every platform and variant, on any host: what a reviewer reads to see the
//! Windows installer's command line or the macOS torch pins change without owning either
//! machine. One snapshot per zip, named as the zip is (`dry_run_plan@linux-x86_64-cpu.snap`).

use std::path::Path;
use std::process::Command;

/// Every variant's plan of `platform`, one after the other.
fn plans(platform: &str) -> String {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(support::xtask_binary())
        .args([
            "portable",
            "--platform",
            platform,
            "--variant",
            "all",
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

/// Snapshots each of `platform`'s plans under its zip's `<platform>[-<variant>]`; returns those.
fn check(platform: &str) -> Vec<String> {
    let all = plans(platform);
    let mut ids = Vec::new();
    for plan in all
        .split("\n\nPlan for ")
        .map(|p| p.trim_start_matches("Plan for "))
    {
        let zip = plan.split_whitespace().next().unwrap();
        let id = zip
            .strip_prefix("anymatix-0.0.0-plan-")
            .and_then(|rest| rest.strip_suffix(".zip"))
            .unwrap_or_else(|| panic!("a plan of an unexpected zip: {zip}"))
            .to_string();
        insta::with_settings!({
            snapshot_path => "../../../snapshots",
            prepend_module_to_snapshot => false,
            snapshot_suffix => id.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("dry_run_plan", format!("Plan for {}", plan.trim_end()));
        });
        ids.push(id);
    }
    ids
}

/// Each zip of the default distribution has its plan snapshotted: the ids `cargo xtask matrix`
/// gives CI.
#[test]
fn every_variant_of_the_distribution_has_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let github_output = dir.path().join("github-output");
    std::fs::write(&github_output, "earlier=1\n").unwrap();
    let out = Command::new(support::xtask_binary())
        .args(["matrix", "--github-output"])
        .env("GITHUB_OUTPUT", &github_output)
        .output()
        .unwrap();
    assert!(out.status.success());
    let matrix: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // As a workflow step's outputs: appended, one line each; `verify` holds the jobs whose zip
    // is checked on another runner than the one that built it.
    let written = std::fs::read_to_string(&github_output).unwrap();
    let built = format!("earlier=1\nmatrix={}", String::from_utf8_lossy(&out.stdout));
    assert!(written.starts_with(&built), "{written}");
    let verify = written[built.len()..]
        .strip_prefix("verify=")
        .and_then(|v| v.strip_suffix('\n'))
        .expect("a verify= line");
    let verify: serde_json::Value = serde_json::from_str(verify).unwrap();
    let to_verify = verify["include"].as_array().unwrap();
    assert!(!to_verify.is_empty());
    assert!(to_verify
        .iter()
        .all(|job| job["verify_runner"] != "" && job["build_runner"] != job["verify_runner"]));
    let mut wanted: Vec<String> = matrix["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| format!("dry_run_plan@{}.snap", job["id"].as_str().unwrap()))
        .collect();
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots");
    let mut found: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dry_run_plan@") && n.ends_with(".snap"))
        .collect();
    wanted.sort();
    found.sort();
    assert_eq!(found, wanted, "one plan snapshot per zip, none left over");
}

#[test]
fn plan_linux_x86_64() {
    assert_eq!(
        check("linux-x86_64"),
        [
            "linux-x86_64",
            "linux-x86_64-cpu",
            "linux-x86_64-nvidia-cu126"
        ]
    );
}

#[test]
fn plan_linux_aarch64() {
    assert_eq!(
        check("linux-aarch64"),
        ["linux-aarch64", "linux-aarch64-nvidia"]
    );
}

#[test]
fn plan_macos_arm64() {
    assert_eq!(check("macos-arm64"), ["macos-arm64"]);
}

#[test]
fn plan_macos_x86_64() {
    assert_eq!(check("macos-x86_64"), ["macos-x86_64"]);
}

#[test]
fn plan_windows_x86_64() {
    assert_eq!(
        check("windows-x86_64"),
        [
            "windows-x86_64",
            "windows-x86_64-cpu",
            "windows-x86_64-nvidia-cu126"
        ]
    );
}
