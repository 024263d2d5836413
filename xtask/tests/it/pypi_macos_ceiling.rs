//! pip kept within the macOS ceiling on a newer build machine, with real pip and real macOS
//! wheels from PyPI: pip is told it runs on macOS 15 (the runner `macos-15` is), and the policy
//! the build writes for `requires_at_most: {macos: '14.0'}` must make it take the wheel built for
//! 14.0 or older, where without it pip takes the one built for macOS 15.

use std::path::Path;
use std::process::Command;

/// The wheel pip picks for `spec` on an arm64 Mac running macOS 15.3, with the build's policy
/// for `ceiling` on its path (or none).
fn picked(dir: &Path, spec: &str, ceiling: Option<&str>) -> String {
    let fake = dir.join(format!("fake-{}", ceiling.unwrap_or("none")));
    let dest = fake.join("wheels");
    std::fs::create_dir_all(&dest).unwrap();
    // Stands in for the Mac: what packaging reads to make pip's tags. The build's policy, when
    // given, is then run as the build's `sitecustomize.py` would be, wrapping this answer.
    let mut site = String::from(
        "import platform\n\
         platform.system = lambda: 'Darwin'\n\
         platform.mac_ver = lambda release='', versioninfo=('', '', ''), machine='': ('15.3', ('', '', ''), 'arm64')\n",
    );
    if let Some(ceiling) = ceiling {
        let policy = xtask::stages::pip::macos_policy(&ceiling.parse().unwrap());
        let path = fake.join("policy.py");
        std::fs::write(&path, policy).unwrap();
        site.push_str(&format!(
            "exec(compile(open({path:?}).read(), {path:?}, 'exec'))\n",
            path = path.display().to_string()
        ));
    }
    std::fs::write(fake.join("sitecustomize.py"), site).unwrap();
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
    ])
    .args(["--disable-pip-version-check", spec, "-d"])
    .arg(&dest);
    support::pypi_env(&mut pip);
    pip.env("PYTHONPATH", &fake);
    let out = pip.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names.remove(0)
}

#[test]
#[ignore = "needs PyPI; run with --include-ignored"]
fn pip_on_a_newer_mac_takes_only_wheels_within_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    // orjson 3.13.0 has, for each CPython, a macosx_15_0_arm64 wheel and one for 11.0 and older.
    let spec = "orjson==3.13.0";
    let unbounded = picked(dir.path(), spec, None);
    assert!(unbounded.ends_with("macosx_15_0_arm64.whl"), "{unbounded}");
    let capped = picked(dir.path(), spec, Some("14.0"));
    assert!(
        !capped.contains("macosx_15") && capped.contains("macosx_11_0_arm64"),
        "{capped}"
    );
    let at_15 = picked(dir.path(), spec, Some("15.0"));
    assert!(at_15.ends_with("macosx_15_0_arm64.whl"), "{at_15}");
    println!("macOS 15.3 arm64: unbounded {unbounded}; requires_at_most 14.0: {capped}");
}
