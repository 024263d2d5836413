//! Unit tests of the package tools the zip carries: every shipped file is compiled in, the
//! scripts run the python beside them, and the indexes carried into pip's configuration.

use super::*;
use crate::model::distribution::Distribution;

/// Every file under `anymatix/tools/` and `anymatix/site/` reaches the zip: a module added there
/// and not here would be missing only on the users' machines.
#[test]
fn every_shipped_python_file_is_compiled_in() {
    let root = crate::project_root().join("anymatix");
    let mut on_disk = Vec::new();
    for dir in ["tools", "site"] {
        for entry in walkdir::WalkDir::new(root.join(dir)) {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if entry.file_type().is_file() && !rel.contains("__pycache__") {
                on_disk.push(rel);
            }
        }
    }
    let mut shipped: Vec<String> = TOOL_FILES
        .iter()
        .chain(SITE_FILES)
        .map(|(rel, _)| rel.to_string())
        .collect();
    on_disk.sort();
    shipped.sort();
    assert_eq!(on_disk, shipped);
    for (rel, text) in TOOL_FILES.iter().chain(SITE_FILES) {
        assert_eq!(
            std::fs::read_to_string(root.join(rel)).unwrap(),
            *text,
            "{rel}"
        );
    }
}

#[test]
fn scripts_run_the_python_beside_them() {
    let unix = scripts(Platform::LinuxX86_64, &Folder::default());
    let names: Vec<&str> = unix.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "packages.sh",
            "install_package.sh",
            "update.sh",
            "run_comfyui.sh"
        ]
    );
    assert!(unix[0].1.starts_with("#!/bin/sh\n"));
    assert!(unix[0]
        .1
        .contains(r#""$here/python/bin/python3" -s "$here/tools/packages.py" "$@""#));
    assert!(unix[1]
        .1
        .contains(r#"exec "$here/packages.sh" install "$@""#));
    let windows = scripts(Platform::WindowsX86_64, &Folder::default());
    for (name, text) in &windows {
        // The python beside the script (update.bat runs from its copy in .update\, one up).
        assert!(
            text.contains(r#""%~dp0python\python.exe" -s "%~dp0"#)
                || (text.contains(r#"set "here=%~dp0..""#)
                    && text.contains(r#""%here%\python\python.exe" -s "%here%\tools\update.py""#)),
            "{name}"
        );
        assert!(
            text.matches("\r\n").count() == text.matches('\n').count(),
            "{name}: CRLF"
        );
    }
    assert!(windows[1].1.contains(r#"packages.py" install %*"#));
}

#[test]
fn the_indexes_the_build_used_are_carried_into_pips_configuration() {
    let distribution: Distribution = serde_yaml_ng::from_str(
        "pip: {find_links: [wheels], extra_index_urls: ['https://mirror.example/simple']}\n\
         platforms:\n  windows-x86_64:\n    pip_args: [--extra-index-url, https://download.pytorch.org/whl/cu130, --prefer-binary]\n  \
         macos-x86_64:\n    pip_args: ['--index-url=https://other.example/simple', '--only-binary=:all:']\n",
    )
    .unwrap();
    let windows = distribution.carried_indexes(Platform::WindowsX86_64);
    assert_eq!(
        windows,
        [
            (
                "extra-index-url".to_string(),
                "https://mirror.example/simple".to_string()
            ),
            (
                "extra-index-url".to_string(),
                "https://download.pytorch.org/whl/cu130".to_string()
            ),
        ]
    );
    let config = pip_config(&windows).unwrap();
    assert!(config.contains(
        "[global]\nextra-index-url = https://mirror.example/simple\n    https://download.pytorch.org/whl/cu130\n"
    ));
    assert_eq!(
        distribution.carried_indexes(Platform::MacosX86_64)[1],
        (
            "index-url".to_string(),
            "https://other.example/simple".to_string()
        )
    );
    // A wheelhouse on the build machine means nothing on a user's: nothing is written.
    let local: Distribution =
        serde_yaml_ng::from_str("pip: {find_links: [wheels], no_index: true}\n").unwrap();
    assert_eq!(
        pip_config(&local.carried_indexes(Platform::LinuxX86_64)),
        None
    );
}

#[test]
fn the_constraints_file_pins_each_protected_package() {
    let text = protected::constraints(&[
        ProtectedPackage {
            name: "torch".into(),
            version: "2.11.0+cu130".into(),
            why: "named in protected".into(),
        },
        ProtectedPackage {
            name: "triton".into(),
            version: "3.6.0".into(),
            why: "torch 2.11.0 pins it".into(),
        },
    ]);
    let pins: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(pins, ["torch===2.11.0+cu130", "triton===3.6.0"]);
}
