//! What a zip needs of the system, measured on real wheels of every platform from PyPI: ELF
//! (x86_64, aarch64), Mach-O (arm64, x86_64) and PE files, laid out as each platform's prefix and
//! checked by `cargo xtask prune --dry-run`. Each wheel's own platform tag is the expectation:
//! `manylinux_2_34` promises glibc 2.34 at most, `macosx_14_0` macOS 14.0.

use std::path::{Path, PathBuf};

use support::stderr;

/// Downloads one wheel for `platform_tag` into a fresh folder and returns its path.
fn wheel(dir: &Path, spec: &str, platform_tag: &str, python: &str) -> PathBuf {
    let dest = dir.join(format!(
        "{}-{platform_tag}",
        spec.replace(['=', '<', '>'], "_")
    ));
    let found = support::pip_download(&dest, &[spec], &[platform_tag], python);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Unpacks `wheel` into `site` (a platform's site-packages in an `anymatix/` tree).
fn install(wheel: &Path, site: &Path) {
    std::fs::create_dir_all(site).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    archive.extract(site).unwrap();
    // As an installer would: extension modules and vendored libraries are executable.
    #[cfg(unix)]
    for entry in walkdir::WalkDir::new(site) {
        use std::os::unix::fs::PermissionsExt;
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.file_type().is_file() && (name.contains(".so") || name.ends_with(".dylib")) {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// `cargo xtask prune TREE --platform P --dry-run [extra]`: (succeeded, output).
fn prune(tree: &Path, platform: &str, extra: &[&str]) -> (bool, String) {
    let out = support::xtask(
        &[
            &[
                "prune",
                tree.to_str().unwrap(),
                "--platform",
                platform,
                "--dry-run",
            ],
            extra,
        ]
        .concat(),
    );
    (out.status.success(), stderr(&out))
}

/// The version the summary gives for `label` ("glibc", "macOS", "Windows").
fn needs(output: &str, label: &str) -> Vec<u32> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("needs of the system: "))
        .unwrap_or_else(|| panic!("no system needs in:\n{output}"));
    let part = line
        .split("; ")
        .find_map(|p| p.strip_prefix(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no {label} in: {line}"));
    version(part.split_whitespace().next().unwrap())
}

fn version(text: &str) -> Vec<u32> {
    text.split(['.', '_']).map(|p| p.parse().unwrap()).collect()
}

/// `…-manylinux_2_34_x86_64.whl` → [2, 34]; `…-macosx_14_0_arm64.whl` → [14, 0].
fn tag_version(wheel: &Path, prefix: &str) -> Vec<u32> {
    let name = wheel.file_name().unwrap().to_string_lossy().to_string();
    let rest = &name[name
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} in {name}"))
        + prefix.len()..];
    rest.split('_')
        .take(2)
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
#[ignore = "needs PyPI; run with `cargo test -- --include-ignored` (.ci/run does)"]
fn system_needs_of_real_wheels_and_a_ceiling_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Linux x86_64: cryptography publishes one build for glibc 2.28 and one for 2.34.
    let mut glibc = Vec::new();
    for tag in ["manylinux_2_28_x86_64", "manylinux_2_34_x86_64"] {
        let whl = wheel(d, "cryptography==50.0.2", tag, "3.12");
        let tree = d.join(format!("tree-{tag}/anymatix"));
        install(&whl, &tree.join("python/lib/python3.12/site-packages"));
        let (ok, output) = prune(&tree, "linux-x86_64", &[]);
        assert!(ok, "{output}");
        let found = needs(&output, "glibc");
        let promised = tag_version(&whl, "manylinux_");
        assert!(found <= promised, "{tag}: needs {found:?}: {output}");
        glibc.push((tree, found));
    }
    let (older, newer) = (&glibc[0], &glibc[1]);
    assert!(
        newer.1 > version("2.28"),
        "the 2.34 build needs more: {newer:?}"
    );
    // A ceiling: the build for the older glibc passes it, the newer one is refused by name.
    let (ok, output) = prune(
        &older.0,
        "linux-x86_64",
        &["--requires-at-most", "glibc=2.28"],
    );
    assert!(ok, "{output}");
    let (ok, output) = prune(
        &newer.0,
        "linux-x86_64",
        &["--requires-at-most", "glibc=2.28"],
    );
    assert!(!ok, "{output}");
    assert!(
        output.contains("need a newer system than --requires-at-most allows")
            && output.contains("cryptography/hazmat/bindings/_rust.abi3.so needs glibc 2.")
            && output.contains("(at most 2.28 allowed)"),
        "{output}"
    );

    // Linux aarch64 ELF.
    let whl = wheel(d, "numpy==2.4.6", "manylinux_2_28_aarch64", "3.12");
    let tree = d.join("tree-aarch64/anymatix");
    install(&whl, &tree.join("python/lib/python3.12/site-packages"));
    let (ok, output) = prune(&tree, "linux-aarch64", &[]);
    assert!(ok, "{output}");
    assert!(
        needs(&output, "glibc") <= tag_version(&whl, "manylinux_"),
        "{output}"
    );

    // macOS: numpy's Accelerate build needs macOS 14, its OpenBLAS build macOS 11 (arm64) and
    // an Intel build from numpy 1.26 needs 10.9.
    for (spec, tag, platform, python) in [
        ("numpy==2.4.6", "macosx_14_0_arm64", "macos-arm64", "3.12"),
        ("numpy==2.4.6", "macosx_11_0_arm64", "macos-arm64", "3.12"),
        (
            "numpy==1.26.4",
            "macosx_10_9_x86_64",
            "macos-x86_64",
            "3.12",
        ),
    ] {
        let whl = wheel(d, spec, tag, python);
        let tree = d.join(format!("tree-{tag}/anymatix"));
        install(&whl, &tree.join("python/lib/python3.12/site-packages"));
        let (ok, output) = prune(&tree, platform, &[]);
        assert!(ok, "{output}");
        let promised = tag_version(&whl, "macosx_");
        assert_eq!(needs(&output, "macOS"), promised, "{tag}: {output}");
    }
    let accelerate = d.join("tree-macosx_14_0_arm64/anymatix");
    let (ok, output) = prune(
        &accelerate,
        "macos-arm64",
        &["--requires-at-most", "macos=13.0"],
    );
    assert!(
        !ok && output.contains("needs macOS 14.0 (at most 13.0 allowed)"),
        "{output}"
    );

    // Windows PE: the subsystem version in each header.
    let whl = wheel(d, "pillow==13.0.0", "win_amd64", "3.12");
    let tree = d.join("tree-win/anymatix");
    install(&whl, &tree.join("python/Lib/site-packages"));
    let (ok, output) = prune(&tree, "windows-x86_64", &[]);
    assert!(ok, "{output}");
    let windows = needs(&output, "Windows");
    assert!(
        windows >= version("5.0") && windows <= version("10.0"),
        "{output}"
    );
    let (ok, output) = prune(
        &tree,
        "windows-x86_64",
        &["--requires-at-most", "windows=4.0"],
    );
    assert!(!ok && output.contains("PIL/_imaging."), "{output}");
}
