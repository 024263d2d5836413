//! Resolves a platform's package set without building it: `uv pip compile` for another platform
//! evaluates environment markers and wheel tags for that platform (pip cannot: it evaluates
//! markers for the host), so from one machine every platform's set can be shown to resolve.
//! Pure: the command line is made from the manifest, and run by `commands/resolve.rs`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::model::distribution::Distribution;
use crate::model::platform::Platform;
use crate::util::process::Command;

/// The Python a platform's base gets when the manifest does not pin one (`python=X.Y`): that of
/// Miniforge's current releases.
pub const DEFAULT_PYTHON: &str = "3.13";

/// The manylinux glibc versions uv knows as targets (`x86_64-manylinux_2_28`, …).
const UV_GLIBC_MINORS: &[u32] = &[17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];

/// Without a glibc limit a build takes what its machine allows; ubuntu-latest (24.04) has 2.39.
const BUILD_MACHINE_GLIBC_MINOR: u32 = 39;

/// uv's name for `platform`, within the manifest's glibc limit on Linux.
pub fn uv_platform(manifest: &Distribution, platform: Platform) -> String {
    let arch = match platform {
        Platform::LinuxAarch64 => "aarch64",
        _ => "x86_64",
    };
    match platform {
        Platform::LinuxX86_64 | Platform::LinuxAarch64 => {
            let wanted = match manifest.requires_at_most(platform).glibc {
                Some(glibc) => glibc.major_minor().1,
                None => BUILD_MACHINE_GLIBC_MINOR,
            };
            let minor = UV_GLIBC_MINORS
                .iter()
                .copied()
                .filter(|&m| m <= wanted)
                .max()
                .unwrap_or(UV_GLIBC_MINORS[0]);
            format!("{arch}-manylinux_2_{minor}")
        }
        Platform::MacosArm64 => "aarch64-apple-darwin".into(),
        Platform::MacosX86_64 => "x86_64-apple-darwin".into(),
        Platform::WindowsX86_64 => "x86_64-pc-windows-msvc".into(),
    }
}

/// The platform's Python: a `python=X.Y` conda package of the manifest, or `default`.
pub fn python_version(manifest: &Distribution, platform: Platform, default: &str) -> String {
    manifest
        .conda_packages_for(platform)
        .iter()
        .filter_map(|spec| spec.strip_prefix("python"))
        .filter_map(|rest| rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')))
        .map(|version| version.split('.').take(2).collect::<Vec<_>>().join("."))
        .next_back()
        .unwrap_or_else(|| default.to_string())
}

/// The pip options of `pip_args` that uv understands, as uv spells them. Others are refused, so
/// a resolve never quietly differs from the build.
fn uv_options(pip_args: &[String]) -> Result<Vec<String>> {
    const WITH_VALUE: &[&str] = &[
        "--index-url",
        "-i",
        "--extra-index-url",
        "--find-links",
        "-f",
        "--only-binary",
        "--no-binary",
    ];
    const FLAGS: &[&str] = &["--no-index", "--pre"];
    let mut out = Vec::new();
    let mut args = pip_args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with('-') => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if WITH_VALUE.contains(&name) {
            let value = match inline {
                Some(value) => value,
                None => match args.next() {
                    Some(value) => value.clone(),
                    None => bail!("pip_args: `{name}` needs a value"),
                },
            };
            out.push(name.to_string());
            out.push(value);
        } else if FLAGS.contains(&name) && inline.is_none() {
            out.push(name.to_string());
        } else if name == "--prefer-binary" {
            // uv has no such preference; --only-binary is the strict form of it.
        } else {
            bail!(
                "pip_args: `{arg}` has no uv equivalent that resolve knows; resolve understands \
                 {} and {}",
                WITH_VALUE.join(", "),
                FLAGS.join(", ")
            );
        }
    }
    Ok(out)
}

/// `uv pip compile` of everything the build's pip install asks for on `platform`: the manifest's
/// packages (written to `packages_file`), the repos' requirement files, the same indexes.
pub fn compile_command(
    manifest: &Distribution,
    platform: Platform,
    python: &str,
    packages_file: &Path,
    requirement_files: &[PathBuf],
    output: &Path,
) -> Result<Command> {
    let mut cmd = Command::new("uv")
        .args(["pip", "compile", "--quiet", "--no-header", "--no-annotate"])
        // The sources are the manifest's alone, as for the build's pip (see `pip::settings`):
        // no uv.toml or pyproject.toml found around, no UV_* index variables.
        .arg("--no-config")
        .args(["--no-python-downloads", "--python-platform"])
        .arg(uv_platform(manifest, platform))
        .args(["--python-version", python])
        // pip looks at every index for the best version; uv's default stops at the first.
        .args(["--index-strategy", "unsafe-best-match"]);
    cmd = cmd.args(manifest.pip.args());
    cmd = cmd.args(uv_options(&manifest.pip_args_for(platform))?);
    cmd = cmd.arg("--output-file").arg(path_arg(output));
    cmd = cmd.arg(path_arg(packages_file));
    for file in requirement_files {
        cmd = cmd.arg(path_arg(file));
    }
    cmd.env_remove = [
        "UV_INDEX",
        "UV_DEFAULT_INDEX",
        "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL",
        "UV_FIND_LINKS",
        "UV_NO_INDEX",
        "UV_CONSTRAINT",
        "UV_OVERRIDE",
        "UV_PRERELEASE",
        "UV_INDEX_STRATEGY",
    ]
    .map(String::from)
    .to_vec();
    // uv picks macOS wheels for a deployment target; the limit is the honest one.
    if let Some(macos) = manifest.requires_at_most(platform).macos {
        cmd.env
            .push(("MACOSX_DEPLOYMENT_TARGET".into(), macos.to_string()));
    }
    Ok(cmd)
}

/// The index (of `pip:` or the platform's `pip_args`) that uv's failure names, if any: a variant
/// behind an index this machine cannot reach (PyTorch's own, from here) fails for that reason.
pub fn unreached_index(
    manifest: &Distribution,
    platform: Platform,
    stderr: &str,
) -> Option<String> {
    manifest
        .carried_indexes(platform)
        .into_iter()
        .map(|(_, url)| url)
        .find(|url| stderr.contains(url.trim_end_matches('/')))
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `name==version` lines of a compiled requirements file, as (name, version).
pub fn pinned(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .filter_map(|l| l.split_once("=="))
        .map(|(name, version)| {
            let version = version.split([' ', ';']).next().unwrap_or(version);
            (name.trim().to_lowercase(), version.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Distribution {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn each_platform_is_resolved_as_its_build_would_install() {
        let m = manifest(
            "pip: {index_url: 'http://127.0.0.1:1/simple'}\n\
             python_packages: [pillow]\n\
             platforms:\n  linux-x86_64: {requires_at_most: {glibc: '2.30'}}\n  macos-x86_64: {conda_packages: [python=3.12], pip_args: ['--only-binary=:all:'], requires_at_most: {macos: '14.0'}}\n  windows-x86_64: {pip_args: [--extra-index-url, 'https://download.pytorch.org/whl/cu130']}\n",
        );
        assert_eq!(
            uv_platform(&m, Platform::LinuxX86_64),
            "x86_64-manylinux_2_28"
        );
        assert_eq!(
            uv_platform(&m, Platform::LinuxAarch64),
            "aarch64-manylinux_2_39"
        );
        assert_eq!(python_version(&m, Platform::MacosX86_64, "3.13"), "3.12");
        assert_eq!(python_version(&m, Platform::LinuxX86_64, "3.13"), "3.13");
        let mac = compile_command(
            &m,
            Platform::MacosX86_64,
            "3.12",
            Path::new("/t/in.txt"),
            &[PathBuf::from("/t/ComfyUI.txt")],
            Path::new("/t/out.txt"),
        )
        .unwrap();
        assert_eq!(
            mac.to_string(),
            "MACOSX_DEPLOYMENT_TARGET=14.0 uv pip compile --quiet --no-header --no-annotate --no-config --no-python-downloads \
             --python-platform x86_64-apple-darwin --python-version 3.12 --index-strategy unsafe-best-match \
             --index-url http://127.0.0.1:1/simple --only-binary :all: --output-file /t/out.txt /t/in.txt /t/ComfyUI.txt"
        );
        let windows = compile_command(
            &m,
            Platform::WindowsX86_64,
            "3.13",
            Path::new("/i"),
            &[],
            Path::new("/o"),
        )
        .unwrap()
        .to_string();
        assert!(
            windows.contains("--extra-index-url https://download.pytorch.org/whl/cu130"),
            "{windows}"
        );
    }

    #[test]
    fn pip_options_uv_cannot_honour_are_refused() {
        let err = uv_options(&["--trusted-host".into(), "x".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`--trusted-host` has no uv equivalent"),
            "{err}"
        );
        assert_eq!(
            uv_options(&["--prefer-binary".into(), "--pre".into()]).unwrap(),
            ["--pre"]
        );
    }

    #[test]
    fn the_index_uv_could_not_reach_is_named() {
        let m = manifest(
            "platforms:\n  linux-x86_64:\n    pip_args: [--prefer-binary, --extra-index-url, 'https://download.pytorch.org/whl/cu126/']\n  macos-arm64:\n    pip_args: ['--index-url=https://mirror.example/simple']\n",
        );
        // As uv said it in this workplace, where download.pytorch.org cannot be reached.
        let stderr = "  x Failed to download and build `torch==2.11.0+cu126`\n  \
                      cause: Failed to fetch: https://download.pytorch.org/whl/cu126/torch/\n";
        assert_eq!(
            unreached_index(&m, Platform::LinuxX86_64, stderr).as_deref(),
            Some("https://download.pytorch.org/whl/cu126/")
        );
        assert_eq!(
            unreached_index(
                &m,
                Platform::MacosArm64,
                "Failed to fetch: https://mirror.example/simple/numpy/"
            )
            .as_deref(),
            Some("https://mirror.example/simple")
        );
        assert_eq!(
            unreached_index(&m, Platform::LinuxX86_64, "No solution found"),
            None
        );
        assert_eq!(unreached_index(&m, Platform::WindowsX86_64, stderr), None);
    }

    #[test]
    fn pins_are_read_from_uv_output() {
        let text = "# comment\nTorch==2.11.0\nnumpy==2.4.6 ; sys_platform == 'darwin'\n-e ./x\n";
        assert_eq!(
            pinned(text),
            [
                ("torch".to_string(), "2.11.0".to_string()),
                ("numpy".to_string(), "2.4.6".to_string())
            ]
        );
    }
}
