//! The Linux ARM zip built on this x86_64 machine by the cross route, on stand-ins: Miniforge in
//! constructor's real `.sh` format (read by the byte ranges its header declares, never run),
//! holding `.conda` packages of Debian's arm64 CPython, pip and a package with prefix
//! placeholders; the world's wheels and repos. The build verifies the zip under qemu-user
//! (binfmt): its python, pip, the package tools and the stand-in ComfyUI's start.

use std::path::Path;
use std::sync::OnceLock;

use support::constructor::UNIX_PLACEHOLDER;
use support::shell_installer;
use support::TAG;
use xtask::build::cross;
use xtask::model::platform::Platform;

/// The stand-in installer's bytes, made once per test binary.
fn installer() -> &'static Vec<u8> {
    static INSTALLER: OnceLock<Vec<u8>> = OnceLock::new();
    INSTALLER.get_or_init(|| {
        let downloads = support::xtask_binary()
            .parent()
            .unwrap()
            .join("standin-miniforge-downloads");
        let debs = shell_installer::aarch64_python_debs(&downloads.join("debian-arm64"));
        let pip = support::pip_download(&downloads.join("pip-wheel"), &["pip==26.3"], &[], "3.11");
        let packages = shell_installer::linux_aarch64_packages(&debs, &pip[0]);
        shell_installer::shell_installer(
            shell_installer::READ_ONLY_BODY,
            &packages,
            "linux-aarch64",
            TAG,
            b"\x7fELF conda-standalone stand-in\n",
        )
    })
}

#[test]
#[ignore = "needs Debian's arm64 packages and qemu-user-static (.ci/run installs them)"]
fn a_linux_arm_zip_is_built_here_from_miniforges_own_packages_and_runs_under_qemu() {
    if let Err(why) = cross::emulates_aarch64() {
        panic!("{why:#}");
    }
    support::serve_installer(Platform::LinuxAarch64, TAG, installer());
    let dir = tempfile::tempdir().unwrap();
    let (done, out) = support::build_for(Platform::LinuxAarch64, dir.path(), TAG);
    let log = support::stderr(&done);
    assert!(done.status.success(), "{log}");
    assert!(log.contains("Link the Miniforge base done"), "{log}");
    assert!(
        log.contains("Verify the unpacked zip done"),
        "the build verified its zip under qemu: {log}"
    );
    let zip = out.join("anymatix-1.0.0-linux-aarch64.zip");
    assert!(zip.is_file(), "{log}");

    let prefix = out.join("stage/linux-aarch64/env/anymatix/python");
    let prefix_text = prefix.to_string_lossy().into_owned();
    // Placeholders replaced: in text, and in binary padded to the placeholder's length.
    let config = std::fs::read_to_string(prefix.join("bin/standin-config")).unwrap();
    assert_eq!(config, format!("#!/bin/sh\necho {prefix_text}/share\n"));
    let binary = std::fs::read(prefix.join("share/standin/prefix.bin")).unwrap();
    let mut expected = b"\x7fSTANDIN\0".to_vec();
    expected.extend_from_slice(prefix_text.as_bytes());
    expected.extend_from_slice(b"/share/standin");
    expected.resize(
        expected.len() + UNIX_PLACEHOLDER.len() - prefix_text.len(),
        0,
    );
    expected.extend_from_slice(b"\0after\0");
    assert_eq!(binary, expected);
    // The package's links, its programs' modes, noarch: python where python 3.11 looks.
    assert_eq!(
        std::fs::read_link(prefix.join("bin/python3")).unwrap(),
        Path::new("python3.11")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(prefix.join("bin/python3.11"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    assert!(prefix
        .join("lib/python3.11/site-packages/pip/__init__.py")
        .is_file());
    let pip = std::fs::read_to_string(prefix.join("bin/pip")).unwrap();
    assert!(
        pip.starts_with(&format!("#!{prefix_text}/bin/python3.11\n")),
        "{pip}"
    );
    // The conda record of a linked package.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.join("conda-meta/standin-tools-1.0-h0_0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["files"],
        serde_json::json!(["bin/standin-config", "share/standin/prefix.bin"])
    );

    // The bytecode was compiled by this machine's CPython 3.11, at native speed: each `.pyc` is
    // the bytes the target's own python compiles from the same source (under qemu).
    assert!(
        log.contains("compiled ") && !log.contains("compiling with the target's own python"),
        "{log}"
    );
    let tree = out.join("stage/linux-aarch64/dist/anymatix");
    let listing =
        std::fs::read_to_string(out.join("stage/linux-aarch64/dist/imported-modules.txt")).unwrap();
    let sample: Vec<&str> = listing
        .lines()
        .filter(|l| l.ends_with("/json/decoder.py") || l.ends_with("anyfix_native/__init__.py"))
        .collect();
    assert_eq!(sample.len(), 2, "{listing}");
    for rel in sample {
        let source = tree.join(rel);
        let stem = source.file_stem().unwrap().to_string_lossy().into_owned();
        let shipped = source
            .parent()
            .unwrap()
            .join(format!("__pycache__/{stem}.cpython-311.pyc"));
        let theirs = dir.path().join(format!("{stem}.target.pyc"));
        let status = std::process::Command::new(tree.join("python/bin/python3.11"))
            .args([
                "-c",
                "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], \
                 dfile=sys.argv[3], doraise=True, \
                 invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)",
            ])
            .arg(&source)
            .arg(&theirs)
            .arg(rel)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            std::fs::read(&shipped).unwrap() == std::fs::read(&theirs).unwrap(),
            "{rel}: the shipped .pyc differs from the target's own"
        );
    }

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!("aarch64_cross_zip_tree", support::zip_listing(&zip, "3.11"))
    });
}

#[test]
#[ignore = "needs Debian's arm64 packages and qemu-user-static (.ci/run installs them)"]
fn a_truncated_sh_installer_is_refused_naming_it() {
    let tag = "26.0.0-8";
    let whole = installer();
    support::serve_installer(Platform::LinuxAarch64, tag, &whole[..whole.len() - 1000]);
    let dir = tempfile::tempdir().unwrap();
    let (done, out) = support::build_for(Platform::LinuxAarch64, dir.path(), tag);
    let log = support::stderr(&done);
    assert!(!done.status.success(), "{log}");
    let asset = Platform::LinuxAarch64.miniforge_asset(tag);
    assert!(
        log.contains(&format!(
            "{} is {} bytes, its header says {}: a damaged or truncated download",
            out.join("cache").join(&asset).display(),
            whole.len() - 1000,
            whole.len()
        )),
        "{log}"
    );
}
