//! The GitHub workflows cannot run here, so they are checked against the tool itself: the build
//! matrix covers exactly the platforms `cargo xtask` knows, each on its native runner, and every
//! `run:` step calls cargo (no build logic hidden in YAML).

use std::path::Path;

use serde_yaml_ng::Value;
use xtask::platform::Platform;

fn workflow(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.github/workflows")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The platforms the tool knows.
fn known_platforms() -> Vec<String> {
    Platform::ALL.iter().map(|p| p.name().to_string()).collect()
}

fn runs(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    match value {
        Value::Mapping(map) => {
            for (key, v) in map {
                if key.as_str() == Some("run") {
                    found.push(v.as_str().expect("run is a string").to_string());
                } else {
                    found.extend(runs(v));
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| found.extend(runs(v))),
        _ => {}
    }
    found
}

#[test]
fn the_build_matrix_is_every_platform_on_its_own_runner() {
    let portable = workflow("portable.yml");
    let matrix = portable["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap();
    let mut platforms: Vec<String> = Vec::new();
    for entry in matrix {
        let platform = entry["platform"].as_str().unwrap();
        let runner = entry["runner"].as_str().unwrap();
        let native = match platform {
            "linux-x86_64" => runner == "ubuntu-latest",
            "linux-aarch64" => runner == "ubuntu-24.04-arm",
            "macos-arm64" => ["macos-14", "macos-15", "macos-latest"].contains(&runner),
            "macos-x86_64" => runner == "macos-15-intel",
            "windows-x86_64" => runner == "windows-latest",
            other => panic!("the matrix names {other}, which the tool does not know"),
        };
        assert!(native, "{platform} runs on {runner}, not its native runner");
        platforms.push(platform.to_string());
    }
    let mut known = known_platforms();
    known.sort();
    platforms.sort();
    assert_eq!(platforms, known);
    assert_eq!(
        portable["jobs"]["build"]["runs-on"].as_str(),
        Some("${{ matrix.runner }}")
    );
}

#[test]
fn triggers_artifacts_and_release() {
    let portable = workflow("portable.yml");
    let on = &portable["on"];
    assert_eq!(on["push"]["tags"][0].as_str(), Some("v*"));
    assert!(on["workflow_dispatch"]["inputs"]["version"].is_mapping());
    let steps = portable["jobs"]["build"]["steps"].as_sequence().unwrap();
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("the build uploads its artifacts");
    let paths = upload["with"]["path"].as_str().unwrap();
    for wanted in [
        "anymatix-*.zip",
        "anymatix-*.zip.*",
        "anymatix-*.prune.html",
    ] {
        assert!(
            paths.lines().any(|l| l.trim().ends_with(wanted)),
            "{wanted} is not uploaded: {paths}"
        );
    }
    let cache = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/cache@"))
        })
        .expect("the download and pip caches are kept");
    assert!(cache["with"]["path"]
        .as_str()
        .unwrap()
        .contains("target/portable/cache"));
    let release = &portable["jobs"]["release"];
    assert_eq!(release["needs"].as_str(), Some("build"));
    assert_eq!(release["if"].as_str(), Some("github.ref_type == 'tag'"));
    assert_eq!(release["permissions"]["contents"].as_str(), Some("write"));
    assert!(runs(release)
        .iter()
        .any(|r| r.starts_with("cargo xtask release")));
    assert_eq!(portable["permissions"]["contents"].as_str(), Some("read"));
}

#[test]
fn every_run_step_calls_cargo() {
    for name in ["portable.yml", "ci.yml"] {
        let all = runs(&workflow(name));
        assert!(!all.is_empty(), "{name} runs nothing");
        for run in all {
            assert!(
                run.trim().starts_with("cargo ") && !run.trim().contains('\n'),
                "{name}: `{run}` is not a single cargo command"
            );
        }
    }
    let ci = workflow("ci.yml");
    assert!(runs(&ci).iter().any(|r| r.starts_with("cargo xtask ci")));
}
