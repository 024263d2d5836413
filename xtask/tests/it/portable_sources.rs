//! A build whose outside world or input is wrong says what and where, and leaves nothing a
//! later build would trust: a wrong checksum, a dropped download (resumed), an unreachable
//! server, a missing git rev, bad input; and `doctor` and `clean` around a build.

use support::{asset, stderr, world, xtask, BAD_TAG, FLAKY_TAG, TAG};

use super::portable::build;

#[test]
fn wrong_checksum_fails_and_leaves_nothing_in_the_cache() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), BAD_TAG, "");
    let out = dir.path().join("out");
    let result = build(&manifest, &out, &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(text.contains("sha256 mismatch"), "{text}");
    assert!(text.contains(&asset(BAD_TAG)), "names the URL: {text}");
    let cached: Vec<String> = std::fs::read_dir(out.join("cache"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        cached.is_empty(),
        "nothing may stay in the cache: {cached:?}"
    );
}

#[test]
fn a_dropped_download_resumes_where_it_stopped() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), FLAKY_TAG, "");
    let out = dir.path().join("out");
    let result = build(&manifest, &out, &[]);
    assert!(result.status.success(), "{}", stderr(&result));
    let asked = w.requests_of(&support::client_name(dir.path()));
    let asset_path = format!("/download/{FLAKY_TAG}/{}", asset(FLAKY_TAG));
    let downloads: Vec<&String> = asked
        .iter()
        .filter(|p| p.contains(&asset_path) && !p.contains(".sha256"))
        .collect();
    assert_eq!(downloads.len(), 2, "{asked:?}");
    assert!(!downloads[0].contains(" [from "), "{asked:?}");
    let resumed_from: u64 = downloads[1]
        .split(" [from ")
        .nth(1)
        .and_then(|r| r.trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("the second request asks for the rest: {asked:?}"));
    assert!(resumed_from > 0);
    assert!(out.join("cache").join(asset(FLAKY_TAG)).is_file());
}

#[test]
fn unreachable_server_is_named() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let manifest = w.manifest(dir.path(), "latest", "");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        &w.base_url(&support::client_name(dir.path())),
        &format!("http://127.0.0.1:{port}/releases"),
    );
    std::fs::write(&manifest, text).unwrap();
    let result = build(&manifest, &dir.path().join("out"), &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/releases/latest")),
        "{text}"
    );
    assert!(text.contains("gave up after 4 attempts"), "{text}");
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("out/cache"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        cached.is_empty(),
        "a failed download leaves nothing: {cached:?}"
    );
}

#[test]
fn missing_git_rev_is_a_clear_error() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), TAG, "");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("rev: v1.0", "rev: v9.9-missing");
    std::fs::write(&manifest, text).unwrap();
    let result = build(&manifest, &dir.path().join("out"), &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains("stage `Resolve the repos' revs` failed"),
        "{text}"
    );
    assert!(
        text.contains("rev `v9.9-missing` not found in file://"),
        "{text}"
    );
}

#[test]
fn bad_input_is_reported_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("nope.yml");
    let result = build(&missing, &out, &[]);
    assert!(
        stderr(&result).contains(&format!("manifest not found: {}", missing.display())),
        "{}",
        stderr(&result)
    );

    let manifest = dir.path().join("typo.yml");
    std::fs::write(&manifest, "python_packages: [pillow]\nrepoz: []\n").unwrap();
    let result = build(&manifest, &out, &[]);
    let text = stderr(&result);
    assert!(!result.status.success());
    assert!(
        text.contains("typo.yml")
            && text.contains("unknown field `repoz`")
            && text.contains("line 2"),
        "{text}"
    );

    let result = xtask(&["portable", "--platform", "solaris-sparc", "--dry-run"]);
    let text = stderr(&result);
    assert!(!result.status.success());
    assert!(
        text.contains("solaris-sparc")
            && text
                .contains("linux-x86_64, linux-aarch64, macos-arm64, macos-x86_64, windows-x86_64"),
        "{text}"
    );

    // A platform this host builds on no route: on Linux x86_64 every one has the cross route,
    // so the native route is asked for another platform's zip.
    let other = if cfg!(target_os = "macos") {
        "linux-x86_64"
    } else {
        "macos-arm64"
    };
    let manifest = world().manifest(dir.path(), TAG, "");
    let result = build(&manifest, &out, &["--platform", other, "--route", "native"]);
    let text = stderr(&result);
    assert!(!result.status.success());
    assert!(
        text.contains(&format!("cannot build {other} on the native route on this")),
        "{text}"
    );
    assert!(!out.exists(), "nothing was written");
}

/// Names of the entries whose name, CRC or size differ between two zips.
#[test]
fn doctor_checks_tools_space_and_every_source() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let out = dir.path().join("out");
    let args = [
        "doctor",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let result = xtask(&args);
    let text = stderr(&result);
    assert!(result.status.success(), "{text}");
    for line in [
        "ok   git",
        "ok   bash",
        "ok   disk space",
        "ok   Miniforge releases",
        "ok   repo: ComfyUI",
        "ok   find-links",
        "ready to build",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let broken = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace(
            &w.base_url(&support::client_name(dir.path())),
            &format!("http://127.0.0.1:{port}/r"),
        )
        .replace(
            &format!("file://{}", w.comfy_repo.display()),
            "file:///nonexistent/repo.git",
        );
    std::fs::write(&manifest, broken).unwrap();
    let result = xtask(&args);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "FAIL Miniforge releases: http://127.0.0.1:{port}/r/latest"
        )),
        "{text}"
    );
    assert!(
        text.contains("FAIL repo: ComfyUI at file:///nonexistent/repo.git"),
        "{text}"
    );
    assert!(text.contains("2 check(s) failed"), "{text}");
}

#[test]
fn clean_removes_working_folders_and_with_cache_the_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for rel in [
        "stage/linux-x86_64/anymatix/x",
        "verify/linux-x86_64/y",
        "cache/Miniforge3.sh",
        "anymatix-1-linux-x86_64.zip",
    ] {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "data").unwrap();
    }
    let result = xtask(&["clean", "--out", out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(!out.join("stage").exists() && !out.join("verify").exists());
    assert!(out.join("cache/Miniforge3.sh").exists());
    let result = xtask(&["clean", "--out", out.to_str().unwrap(), "--cache"]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(!out.join("cache").exists());
    assert!(
        out.join("anymatix-1-linux-x86_64.zip").exists(),
        "published zips stay"
    );
}
