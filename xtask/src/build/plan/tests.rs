//! The plans for each platform and route, from small manifests.

use super::*;
use crate::model::distribution::Variant;

fn manifest(text: &str) -> Distribution {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn pip_resolves_everything_at_once() {
    let m = manifest(
        "pip: {index_url: 'http://127.0.0.1:1/simple', find_links: [/w], no_index: true}\n\
         python_packages: [pillow]\n\
         platforms: {linux-x86_64: {python_packages: [torch], pip_args: [--extra-index-url, 'https://download.pytorch.org/whl/cu128']}}\n\
         repos: [{name: ComfyUI, url: 'file:///r', rev: v1, path: ComfyUI, requirements: requirements.txt}]\n",
    );
    let plan = plan_for(&m, Platform::LinuxX86_64, Some("26.3.2-3"));
    let pips: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::PipInstall(_)))
        .collect();
    assert_eq!(pips.len(), 1, "one resolve");
    let Step::PipInstall(pip) = pips[0] else {
        unreachable!()
    };
    assert_eq!(
        pip.command().to_string(),
        "PIP_CONFIG_FILE=/dev/null /o/stage/linux-x86_64/env/anymatix/python/bin/python3 -s -m pip install \
         --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
         --no-compile --report /o/stage/linux-x86_64/env/pip-report.json \
         --index-url http://127.0.0.1:1/simple --find-links /w --no-index \
         --extra-index-url https://download.pytorch.org/whl/cu128 pillow torch \
         -r /o/stage/linux-x86_64/env/anymatix/ComfyUI/requirements.txt"
    );
}

#[test]
fn pinned_tag_gives_the_versioned_url() {
    let m = manifest("installer: {release: 26.3.2-3, base_url: 'http://127.0.0.1:9/r/'}\n");
    let plan = plan_for(&m, Platform::MacosX86_64, None);
    let Step::DownloadInstaller(fetch) = &plan.steps[0] else {
        panic!()
    };
    assert_eq!(
        fetch.download().map(|(url, _)| url).as_deref(),
        Some("http://127.0.0.1:9/r/download/26.3.2-3/Miniforge3-26.3.2-3-MacOSX-x86_64.sh")
    );
}

#[test]
fn conda_packages_use_the_bases_own_mamba_natively_and_this_machines_conda_across() {
    let m = manifest("platforms: {macos-x86_64: {conda_packages: [python=3.12]}}\n");
    let native = Options {
        tag: Tag::Resolved("t".into()),
        route: Some(Route::Native),
        ..Options::default()
    };
    let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::MacosX86_64));
    let plan_native = plan(
        &m,
        Platform::MacosX86_64,
        "0.1.0",
        &layout,
        &policy(),
        native,
    );
    let conda: Vec<String> = plan_native
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::CondaInstall(c) => Some(c.command().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        conda,
        ["MAMBA_ROOT_PREFIX=/o/stage/macos-x86_64/env/anymatix/python CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64 \
          /o/stage/macos-x86_64/env/anymatix/python/bin/mamba install --yes --prefix /o/stage/macos-x86_64/env/anymatix/python \
          --override-channels --channel https://conda.anaconda.org/conda-forge python=3.12"]
    );
    // Across, the solve is this machine's: its installer of the same release, the target's
    // subdir and virtual packages.
    let cross = Options {
        tag: Tag::Resolved("t".into()),
        route: Some(Route::Cross),
        ..Options::default()
    };
    let plan_cross = plan(
        &m,
        Platform::MacosX86_64,
        "0.1.0",
        &layout,
        &policy(),
        cross,
    );
    let solve = plan_cross
        .steps
        .iter()
        .find_map(|s| match s {
            Step::CondaSolve(c) => Some(c),
            _ => None,
        })
        .expect("a solve step");
    assert_eq!(
        solve.solver.download().unwrap().1,
        Path::new("/o/cache/Miniforge3-t-Linux-x86_64.sh")
    );
    let command = solve.command("/c/_conda".into()).to_string();
    for part in [
        "CONDA_SUBDIR=osx-64",
        // No `requires_at_most` here: Miniforge's own minimum.
        "CONDA_OVERRIDE_OSX=11.0",
        "/c/_conda install --dry-run --json",
        "--channel https://conda.anaconda.org/conda-forge python=3.12",
    ] {
        assert!(command.contains(part), "{part}: {command}");
    }
    assert!(!plan_cross
        .steps
        .iter()
        .any(|s| matches!(s, Step::CondaInstall(_))));
    let plan = plan_for(&m, Platform::LinuxX86_64, Some("t"));
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::CondaInstall(_) | Step::CondaSolve(_))));
}

#[test]
fn locked_plans_pin_tag_commits_and_hashed_packages() {
    use crate::model::lock::{LockedInstaller, LockedPackage, LockedRepo};
    let m = manifest(
        "python_packages: [pillow]\n\
         repos: [{name: ComfyUI, url: 'file:///r', rev: main, path: ComfyUI, requirements: requirements.txt}]\n",
    );
    let lock = Lock {
        platform: Platform::LinuxX86_64,
        variant: None,
        miniforge: LockedInstaller {
            tag: "26.3.2-3".into(),
            sha256: "ab".into(),
        },
        repos: vec![LockedRepo {
            name: "ComfyUI".into(),
            url: "file:///r".into(),
            commit: "c0ffee".into(),
        }],
        python_packages: vec![LockedPackage {
            name: "pillow".into(),
            version: "11.0.0".into(),
            sha256: "cd".into(),
        }],
        left_out: vec![],
    };
    let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::LinuxX86_64));
    let plan = plan(
        &m,
        Platform::LinuxX86_64,
        "0.1.0",
        &layout,
        &policy(),
        Options {
            locked: Some(&lock),
            ..Options::default()
        },
    );
    let text: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
    assert!(
        text[0].contains("/download/26.3.2-3/Miniforge3-26.3.2-3-Linux-x86_64.sh"),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("clone ComfyUI: file:///r at main (locked: c0ffee)")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t
                .starts_with("write /o/stage/linux-x86_64/env/locked-requirements.txt (1 lines)")),
        "{text:?}"
    );
    let pip = text.iter().find(|t| t.starts_with("pip install")).unwrap();
    assert!(
        pip.ends_with(
            "--require-hashes --no-deps -r /o/stage/linux-x86_64/env/locked-requirements.txt"
        ),
        "{pip}"
    );
    assert!(!pip.contains(" pillow"), "{pip}");
}

#[test]
fn offline_plans_use_only_the_cache_and_fetch_fills_it() {
    let m = manifest(
        "pip: {index_url: 'https://pypi.example/simple', find_links: ['https://wheels.example/']}\n\
         python_packages: [pillow]\n\
         platforms: {macos-x86_64: {conda_packages: [python=3.12]}}\n\
         repos: [{name: ComfyUI, url: 'https://git.example/ComfyUI.git', rev: v1, path: ComfyUI, requirements: requirements.txt}]\n",
    );
    let layout = Layout::new(Path::new("/o"), &Variant::plain(Platform::MacosX86_64));
    let offline = plan(
        &m,
        Platform::MacosX86_64,
        "0.1.0",
        &layout,
        &policy(),
        Options {
            tag: Tag::Resolved("t".into()),
            offline: true,
            // The native route's pip: a Mac builds its own zip so.
            route: Some(Route::Native),
            ..Options::default()
        },
    );
    // The zip's pip configuration names the indexes for its users; the build reaches none.
    let text: Vec<String> = offline
        .steps
        .iter()
        .filter(|s| !matches!(s, Step::PackageTools(_)))
        .map(|s| s.to_string())
        .collect();
    let all = text.join("\n");
    assert!(!all.contains("https://pypi.example") && !all.contains("https://wheels.example"));
    assert!(all.contains("use the cached download of"), "{all}");
    assert!(
        all.contains("from file:///o/cache/git/ComfyUI.git"),
        "{all}"
    );
    assert!(
        all.contains("--no-index --find-links /o/cache/wheels/macos-x86_64 pillow"),
        "{all}"
    );
    assert!(
        all.contains("CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64")
            && all.contains("--offline python=3.12"),
        "{all}"
    );

    let fetch = fetch_plan(
        &m,
        Platform::MacosX86_64,
        &layout,
        Options {
            tag: Tag::Resolved("t".into()),
            ..Options::default()
        },
    );
    let text: Vec<String> = fetch.iter().map(|s| s.to_string()).collect();
    assert!(text[0].starts_with("fetch https://"), "{text:?}");
    assert!(
        text[1].ends_with("-b -p /o/stage/macos-x86_64/fetch/python"),
        "{text:?}"
    );
    assert!(text[2].contains("CONDA_PKGS_DIRS=/o/cache/conda-pkgs/macos-x86_64"));
    assert!(!text[2].contains("--offline"));
    assert_eq!(
        text[3],
        "mirror ComfyUI: https://git.example/ComfyUI.git into /o/cache/git/ComfyUI.git\n      at v1\n      \
         its requirements.txt into /o/stage/macos-x86_64/fetch/ComfyUI-requirements.txt"
    );
    assert_eq!(
        text[4],
        "gather wheels: PIP_CONFIG_FILE=/dev/null /o/stage/macos-x86_64/fetch/python/bin/python3 -s -m pip wheel \
         --disable-pip-version-check \
         --wheel-dir /o/cache/wheels/macos-x86_64 --index-url https://pypi.example/simple \
         --find-links https://wheels.example/ pillow -r /o/stage/macos-x86_64/fetch/ComfyUI-requirements.txt"
    );
}

/// The `_manylinux` module the plan writes, tried with the host's real pip: of two builds of
/// one package, only the one within the limit is taken.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn pip_takes_only_wheels_within_the_glibc_limit() {
    use std::io::Write;
    let m = manifest("platforms: {linux-x86_64: {requires_at_most: {glibc: '2.28'}}}\n");
    let plan = plan_for(&m, Platform::LinuxX86_64, Some("t"));
    let Some(Step::WriteFile(WriteFile { contents, .. })) = plan
        .steps
        .iter()
        .find(|s| matches!(s, Step::WriteFile(w) if w.path.ends_with("_manylinux.py")))
    else {
        panic!("no wheel policy in the plan")
    };
    let pip = plan
        .steps
        .iter()
        .find_map(|s| match s {
            Step::PipInstall(p) => Some(p.command()),
            _ => None,
        })
        .unwrap();
    assert!(pip
        .env
        .iter()
        .any(|(k, v)| k == "PYTHONPATH" && v.ends_with("pip-policy")));

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("pip-policy");
    fs_err::create_dir_all(&policy).unwrap();
    fs_err::write(policy.join("_manylinux.py"), contents).unwrap();
    let wheels = dir.path().join("wheels");
    fs_err::create_dir_all(&wheels).unwrap();
    for (version, tag) in [
        ("1.0", "manylinux_2_17_x86_64"),
        ("2.0", "manylinux_2_29_x86_64"),
    ] {
        let file =
            fs_err::File::create(wheels.join(format!("capped-{version}-py3-none-{tag}.whl")))
                .unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let info = format!("capped-{version}.dist-info");
        for (name, text) in [
            (
                "METADATA",
                format!("Metadata-Version: 2.1\nName: capped\nVersion: {version}\n"),
            ),
            (
                "WHEEL",
                format!("Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-{tag}\n"),
            ),
            ("RECORD", String::new()),
        ] {
            zip.start_file(
                format!("{info}/{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
    }
    let download = |with_policy: bool| {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-index",
            "--disable-pip-version-check",
            "--find-links",
        ])
        .arg(&wheels)
        .arg("--dest")
        .arg(out.path())
        .arg("capped")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PYTHONPATH");
        if with_policy {
            cmd.env("PYTHONPATH", &policy);
        }
        let done = cmd.output().unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        let names: Vec<String> = fs_err::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names
    };
    // Any host of glibc 2.29 or newer takes 2.0 by itself; limited to 2.28, pip takes 1.0.
    assert_eq!(
        download(false),
        ["capped-2.0-py3-none-manylinux_2_29_x86_64.whl"]
    );
    assert_eq!(
        download(true),
        ["capped-1.0-py3-none-manylinux_2_17_x86_64.whl"]
    );
}

fn plan_for(m: &Distribution, platform: Platform, tag: Option<&str>) -> Plan {
    let layout = Layout::new(Path::new("/o"), &Variant::plain(platform));
    plan(
        m,
        platform,
        "0.1.0",
        &layout,
        &policy(),
        Options {
            tag: tag.map_or(Tag::Latest, |t| Tag::Resolved(t.into())),
            ..Options::default()
        },
    )
}

fn policy() -> PolicyFile {
    let text = include_str!("../../../../anymatix/prune.yml");
    PolicyFile {
        policy: Arc::new(Policy::parse(text).unwrap()),
        path: PathBuf::from("/p.yml"),
    }
}
