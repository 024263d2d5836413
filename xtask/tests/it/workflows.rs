//! The GitHub workflows cannot run here, so they are checked against the tool itself: the build
//! matrix is the one `cargo xtask matrix` derives from the distribution (every platform and
//! variant, built on its route's runner, verified on its own where built on another), and every
//! `run:` step calls cargo (no build logic hidden in YAML).

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
fn every_variant_is_built_on_its_route_and_verified_on_its_own_platform() {
    let portable = workflow("portable.yml");
    let plan = &portable["jobs"]["plan"];
    assert!(
        runs(plan).contains(&"cargo xtask matrix --github-output".to_string()),
        "the plan job prints the matrices"
    );
    let build = &portable["jobs"]["build"];
    assert_eq!(build["needs"].as_str(), Some("plan"));
    assert_eq!(
        build["strategy"]["matrix"].as_str(),
        Some("${{ fromJSON(needs.plan.outputs.matrix) }}"),
        "the matrix is the distribution's, not a second list"
    );
    assert_eq!(
        build["runs-on"].as_str(),
        Some("${{ matrix.build_runner }}")
    );
    let build_run = runs(build)
        .into_iter()
        .find(|r| r.starts_with("cargo xtask portable"))
        .expect("the build job runs portable");
    assert!(
        build_run.contains("--platform \"$PLATFORM\"")
            && build_run.contains("--variant \"$VARIANT\"")
            && build_run.contains("--route \"$ROUTE\""),
        "{build_run}"
    );
    for (key, value) in [
        ("VARIANT", "${{ matrix.variant }}"),
        ("ROUTE", "${{ matrix.route }}"),
    ] {
        assert_eq!(build["env"][key].as_str(), Some(value), "{key}");
    }
    assert!(
        runs(build)
            .iter()
            .any(|r| r.contains("--install-cross-tools")),
        "a cross build installs its tools"
    );
    // A zip built on another platform is verified on its own, from the uploaded artifact.
    let verify = &portable["jobs"]["verify"];
    assert_eq!(
        verify["strategy"]["matrix"].as_str(),
        Some("${{ fromJSON(needs.plan.outputs.verify) }}")
    );
    assert_eq!(
        verify["runs-on"].as_str(),
        Some("${{ matrix.verify_runner }}")
    );
    assert_eq!(
        verify["needs"],
        serde_yaml_ng::from_str::<Value>("[plan, build]").unwrap()
    );
    assert!(runs(verify).contains(&"cargo xtask verify target/verify".to_string()));

    // What `cargo xtask matrix` gives for the default distribution: each platform's variants,
    // built on Linux x86_64 where the cross route is used, verified on the platform's own runner.
    let distribution = Distribution::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/distribution.yml"),
    )
    .unwrap();
    let matrix = xtask::commands::matrix::matrix(&distribution);
    let to_verify = xtask::commands::matrix::verify_matrix(&matrix).include;
    let jobs = matrix.include;
    let mut platforms: Vec<String> = Vec::new();
    for job in &jobs {
        let native_runner = match job.platform.as_str() {
            "linux-x86_64" => "ubuntu-latest",
            "linux-aarch64" => "ubuntu-24.04-arm",
            "macos-arm64" => "macos-15",
            "macos-x86_64" => "macos-15-intel",
            "windows-x86_64" => "windows-latest",
            other => panic!("the matrix names {other}, which the tool does not know"),
        };
        match job.route.as_str() {
            "native" => {
                assert_eq!(job.build_runner, native_runner, "{}", job.id);
                assert_eq!(job.verify_runner, "", "{}: its build verified it", job.id);
            }
            "cross" => {
                assert_eq!(job.build_runner, "ubuntu-latest", "{}", job.id);
                assert_eq!(job.verify_runner, native_runner, "{}", job.id);
                assert!(to_verify.iter().any(|v| v.id == job.id), "{}", job.id);
            }
            other => panic!("{}: route {other}", job.id),
        }
        assert!(!job.why.is_empty(), "{}", job.id);
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
    let route_of = |platform: &str| {
        jobs.iter()
            .find(|j| j.platform == platform)
            .map(|j| j.route.clone())
            .unwrap()
    };
    // Windows and both macOS on Linux (macOS x86_64's python=3.12 solved there by conda for
    // osx-64); Linux ARM natively, on a runner as cheap.
    assert_eq!(route_of("windows-x86_64"), "cross");
    assert_eq!(route_of("macos-arm64"), "cross");
    assert_eq!(route_of("macos-x86_64"), "cross");
    assert_eq!(route_of("linux-aarch64"), "native");
    assert_eq!(
        to_verify.len(),
        jobs.iter().filter(|j| j.route == "cross").count()
    );
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
    assert_eq!(
        release["needs"],
        serde_yaml_ng::from_str::<Value>("[build, verify]").unwrap(),
        "only verified zips are released"
    );
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
