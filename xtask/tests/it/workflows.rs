//! The GitHub workflows cannot run here, so they are checked against the tool itself: the build
//! matrix is the one `cargo xtask matrix` derives from the distribution (every platform and
//! variant, each on its native runner), and every `run:` step calls cargo (no build logic hidden
//! in YAML).

use std::path::Path;

use serde_yaml_ng::Value;
use xtask::model::distribution::Distribution;
use xtask::model::platform::Platform;

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
fn the_build_matrix_is_every_variant_on_its_platforms_own_runner() {
    let portable = workflow("portable.yml");
    let plan = &portable["jobs"]["plan"];
    assert!(
        runs(plan).contains(&"cargo xtask matrix --github-output".to_string()),
        "the plan job prints the matrix"
    );
    let build = &portable["jobs"]["build"];
    assert_eq!(build["needs"].as_str(), Some("plan"));
    assert_eq!(
        build["strategy"]["matrix"].as_str(),
        Some("${{ fromJSON(needs.plan.outputs.matrix) }}"),
        "the matrix is the distribution's, not a second list"
    );
    assert_eq!(build["runs-on"].as_str(), Some("${{ matrix.runner }}"));
    let build_run = runs(build)
        .into_iter()
        .find(|r| r.starts_with("cargo xtask portable"))
        .expect("the build job runs portable");
    assert!(
        build_run.contains("--platform \"$PLATFORM\"")
            && build_run.contains("--variant \"$VARIANT\""),
        "{build_run}"
    );
    assert_eq!(
        build["env"]["VARIANT"].as_str(),
        Some("${{ matrix.variant }}")
    );

    // What `cargo xtask matrix` gives for the default distribution: each platform's variants,
    // each on the platform's native runner.
    let distribution = Distribution::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/distribution.yml"),
    )
    .unwrap();
    let jobs = xtask::commands::matrix::matrix(&distribution).include;
    let mut platforms: Vec<String> = Vec::new();
    for job in &jobs {
        let native = match job.platform.as_str() {
            "linux-x86_64" => job.runner == "ubuntu-latest",
            "linux-aarch64" => job.runner == "ubuntu-24.04-arm",
            "macos-arm64" => {
                ["macos-15", "macos-26", "macos-latest"].contains(&job.runner.as_str())
            }
            "macos-x86_64" => ["macos-15-intel", "macos-26-intel"].contains(&job.runner.as_str()),
            "windows-x86_64" => job.runner == "windows-latest",
            other => panic!("the matrix names {other}, which the tool does not know"),
        };
        assert!(
            native,
            "{} runs on {}, not its native runner",
            job.id, job.runner
        );
        let suffix = if job.variant.is_empty()
            || distribution
                .variant(job.platform.parse().unwrap(), Some(&job.variant))
                .unwrap()
                .default
        {
            String::new()
        } else {
            format!("-{}", job.variant)
        };
        assert_eq!(job.id, format!("{}{suffix}", job.platform));
        platforms.push(job.platform.clone());
    }
    platforms.dedup();
    assert_eq!(platforms, known_platforms());
    let variants = jobs.len();
    assert!(
        variants > 5,
        "{variants} jobs: the default distribution has variants"
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
