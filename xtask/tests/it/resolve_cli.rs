//! `cargo xtask resolve`: every platform's package set, resolved from this one machine by uv
//! against the stand-in wheelhouse and repos; a platform that cannot resolve is named.

use support::{stderr, world, xtask};

#[test]
#[ignore = "needs uv on PATH (`python3 -m pip install uv`; .ci/run installs it); run with --include-ignored"]
fn every_platform_resolves_and_one_that_cannot_is_named() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let out = dir.path().join("out");
    let run = |manifest: &std::path::Path| {
        xtask(&[
            "resolve",
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let result = run(&manifest);
    let text = stderr(&result);
    assert!(result.status.success(), "{text}");
    for platform in [
        "linux-x86_64",
        "linux-aarch64",
        "macos-arm64",
        "macos-x86_64",
        "windows-x86_64",
    ] {
        let resolved = std::fs::read_to_string(out.join(format!("resolved/{platform}.txt")))
            .unwrap_or_else(|e| panic!("{platform}: {e}\n{text}"));
        // The manifest's package and what ComfyUI's requirements add, at the pinned rev.
        assert!(
            resolved.contains("anyfix-native==1.0.0"),
            "{platform}: {resolved}"
        );
        assert!(
            resolved.contains("anyfix-cli==2.0.0"),
            "{platform}: {resolved}"
        );
    }
    assert!(
        text.contains("==> Read ComfyUI's requirements.txt at v1.0"),
        "{text}"
    );

    // A platform whose packages cannot be had: named, after every platform was tried.
    let manifest_text = std::fs::read_to_string(&manifest).unwrap();
    let impossible = manifest_text.replace(
        "platforms:\n",
        "platforms:\n  macos-x86_64:\n    python_packages: ['anyfix-native>=9']\n",
    );
    assert_ne!(impossible, manifest_text);
    std::fs::write(&manifest, impossible).unwrap();
    let result = run(&manifest);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains("FAILED: macos-x86_64 does not resolve")
            && text.contains("1 of the platforms do not resolve: macos-x86_64"),
        "{text}"
    );
    assert!(
        text.contains("==> Resolve windows-x86_64"),
        "went on: {text}"
    );
}
