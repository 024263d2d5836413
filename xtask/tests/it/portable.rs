//! End to end: `cargo xtask portable` against hermetic stand-ins for Miniforge's releases, git
//! hosting and PyPI, then the zip unpacked elsewhere and used.

use std::path::Path;
use std::process::Command;

use support::{asset, host_platform, stderr, world, zip_listing, TAG};

pub(crate) fn build(manifest: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    support::portable(manifest, out, "0.0.0-test", extra)
}

#[test]
fn builds_a_zip_that_works_unpacked_elsewhere() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    let out = dir.path().join("out");

    let first = build(&manifest, &out, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let zip = out.join(format!("anymatix-0.0.0-test-{}.zip", host_platform()));
    assert!(zip.is_file());

    // The sidecar is sha256sum's form, and right.
    let sidecar = std::fs::read_to_string(out.join(format!(
        "{}.sha256",
        zip.file_name().unwrap().to_str().unwrap()
    )))
    .unwrap();
    let digest = support::sha256_hex(&std::fs::read(&zip).unwrap());
    assert_eq!(
        sidecar,
        format!("{digest}  {}\n", zip.file_name().unwrap().to_str().unwrap())
    );

    // What reviewers read: the zip's tree.
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        snapshot_suffix => host_platform().name(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!("portable_zip_tree", zip_listing(&zip, &w.host.version));
    });

    // manifest.json tells what is inside.
    let unpacked = tempfile::tempdir().unwrap();
    let home = unpacked.path().join("somewhere else ä");
    std::fs::create_dir_all(&home).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    archive.extract(&home).unwrap();
    let root = home.join("anymatix");
    let manifest_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest_json["version"], "0.0.0-test");
    assert_eq!(manifest_json["platform"], host_platform().name());
    assert_eq!(manifest_json["miniforge"]["tag"], TAG);
    assert_eq!(manifest_json["miniforge"]["release"], "latest");
    assert_eq!(manifest_json["miniforge"]["asset"], asset(TAG));
    assert_eq!(
        manifest_json["miniforge"]["sha256"],
        w.installer_sha256.as_str()
    );
    assert!(manifest_json["python"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}.", w.host.version)));
    let packages: Vec<(String, String)> = manifest_json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        packages.contains(&("anyfix-native".into(), "1.0.0".into())),
        "{packages:?}"
    );
    assert!(
        packages.contains(&("anyfix-cli".into(), "2.0.0".into())),
        "{packages:?}"
    );
    assert!(
        packages.iter().any(|(name, _)| name == "pip"),
        "{packages:?}"
    );
    let repos = manifest_json["repos"].as_array().unwrap();
    assert_eq!(repos[0]["name"], "ComfyUI");
    assert_eq!(repos[0]["commit"], w.comfy_tag_commit.as_str());
    assert_eq!(repos[0]["path"], "ComfyUI");
    assert_eq!(repos[1]["commit"], w.node_commit.as_str());
    assert_eq!(repos[1]["path"], "ComfyUI/custom_nodes/anyfix-node");
    let contents = &manifest_json["contents"];
    assert!(
        contents["files"].as_u64().unwrap() > 100
            && contents["bytes"].as_u64().unwrap() > 1_000_000
    );
    let rules: Vec<&str> = manifest_json["prune"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["removed"]["files"].as_u64().unwrap() > 0)
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    for rule in [
        "bytecode-caches",
        "test-suites",
        "documentation",
        "conda-package-cache",
        "conda-metadata",
        "headers",
        "git-metadata",
    ] {
        assert!(
            rules.contains(&rule),
            "rule {rule} removed nothing: {rules:?}"
        );
    }

    // The checkouts are the pinned revs, not the branches' heads.
    let main_py = std::fs::read_to_string(root.join("ComfyUI/main.py")).unwrap();
    assert!(main_py.contains("v1.0"), "{main_py}");
    let node =
        std::fs::read_to_string(root.join("ComfyUI/custom_nodes/anyfix-node/__init__.py")).unwrap();
    assert!(!node.contains("unreleased"), "{node}");

    // Pruned as the policy says, kept what runs.
    let stdlib = root.join(format!("python/lib/python{}", w.host.version));
    for gone in ["idlelib", "ensurepip", "tkinter", "lib2to3"] {
        assert!(!stdlib.join(gone).exists(), "{gone} should be pruned");
    }
    assert!(
        stdlib.join("unittest/__init__.py").is_file(),
        "unittest is runtime code"
    );
    assert!(root.join("python/conda-meta/history").is_file());
    assert!(root
        .join(format!("python/include/python{}/Python.h", w.host.version))
        .is_file());
    // The headers kept are enough to build a C extension against the unpacked copy, as Triton
    // builds its launcher and users build theirs.
    support::build_c_extension_against(
        &root.join("python/bin/python3"),
        &root,
        &unpacked.path().join("extension"),
    );

    // What the zip needs of the system is measured from its binaries and recorded.
    let requires = &manifest_json["prune"]["linkage"]["requires"];
    if cfg!(target_os = "linux") {
        let glibc = requires["glibc"]["version"].as_str().unwrap_or_default();
        assert!(glibc.starts_with("2."), "{requires}");
        assert!(
            requires["glibc"]["count"].as_u64().unwrap() >= 1,
            "{requires}"
        );
    }
    // A package's data folder named docs is run-time data (ComfyUI serves one): kept.
    assert!(root
        .join(format!(
            "python/lib/python{}/site-packages/anyfix_native/docs/index.txt",
            w.host.version
        ))
        .is_file());
    // Published under its final name only; nothing unverified is left beside it.
    let dist: Vec<String> = std::fs::read_dir(out.join(format!("stage/{}/dist", host_platform())))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!dist.iter().any(|n| n.ends_with(".zip")), "{dist:?}");

    // The unpacked interpreter loads its own libpython, not the build machine's (its RUNPATH is
    // relative, as a conda prefix's is).
    #[cfg(target_os = "linux")]
    {
        let maps = Command::new(root.join("python/bin/python3"))
            .args([
                "-s",
                "-c",
                "print('\\n'.join(l.split(None, 5)[5].strip() for l in open('/proc/self/maps') if 'libpython' in l))",
            ])
            .output()
            .unwrap();
        assert!(maps.status.success(), "{}", stderr(&maps));
        let loaded = String::from_utf8_lossy(&maps.stdout).to_string();
        let canonical = std::fs::canonicalize(&root).unwrap();
        assert!(
            !loaded.trim().is_empty()
                && loaded
                    .lines()
                    .all(|l| l.starts_with(canonical.to_str().unwrap())),
            "libpython from outside the unpacked copy: {loaded}"
        );
    }

    // Relocated: with the build's own folders gone, the unpacked entry-point script still runs.
    let rewritten: Vec<&str> = manifest_json["relocation"]["rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        rewritten.contains(&"python/bin/anyfix-cli"),
        "{rewritten:?}"
    );
    assert!(rewritten.contains(&"python/bin/pip"), "{rewritten:?}");
    std::fs::remove_dir_all(out.join("stage")).unwrap();
    std::fs::remove_dir_all(out.join("verify")).unwrap();
    // Shipped bytecode: checked-hash .pyc (flags 0b11) for the modules the product imported
    // while its smoke checks and commands ran, which the unpacked copy uses as they are: running
    // them again writes no .pyc. The count is in manifest.json.
    let pycs = |root: &Path| -> Vec<std::path::PathBuf> {
        walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.extension().is_some_and(|e| e == "pyc"))
            .collect()
    };
    let shipped = pycs(&root);
    assert!(
        shipped.iter().any(|p| p
            .to_string_lossy()
            .contains("anyfix_native/__pycache__/__init__.cpython-")),
        "{shipped:?}"
    );
    for pyc in &shipped {
        let header = std::fs::read(pyc).unwrap();
        assert_eq!(
            header[4..8],
            [3, 0, 0, 0],
            "{} is checked-hash",
            pyc.display()
        );
    }
    assert_eq!(
        manifest_json["bytecode"]["modules"].as_u64().unwrap() as usize,
        shipped.len()
    );
    let python3 = root.join("python/bin/python3");
    let rerun = Command::new(&python3)
        .args(["-s", "-c", "import anyfix_native, anyfix_cli"])
        // As a user runs it: free to write bytecode, so a missing .pyc would show.
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert_eq!(
        pycs(&root),
        shipped,
        "no new .pyc once the shipped ones are there"
    );

    let entry_point = Command::new(root.join("python/bin/anyfix-cli"))
        .output()
        .unwrap();
    assert!(entry_point.status.success(), "{}", stderr(&entry_point));
    assert_eq!(
        String::from_utf8_lossy(&entry_point.stdout).trim(),
        "anyfix-cli 2.0.0 42"
    );
    let pip = Command::new(root.join("python/bin/pip"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(pip.status.success(), "{}", stderr(&pip));

    // The helper script installs a wheel into the unpacked environment, from any directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut install = Command::new(root.join("install_package.sh"));
    install
        .args(["--no-index", "--find-links"])
        .arg(&w.wheelhouse)
        .arg("anyfix-extra")
        .current_dir(elsewhere.path());
    support::hermetic_env(&mut install);
    let installed = install.output().unwrap();
    assert!(installed.status.success(), "{}", stderr(&installed));
    let python = root.join("python/bin/python3");
    let check = Command::new(&python)
        .args(["-s", "-c", "import anyfix_extra, anyfix_cli, os, sys; print(anyfix_extra.EXTRA); print(os.path.realpath(anyfix_extra.__file__))"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(printed.contains("installed later"), "{printed}");
    assert!(
        printed.contains(
            &std::fs::canonicalize(&root)
                .unwrap()
                .to_string_lossy()
                .to_string()
        ),
        "installed into the unpacked copy: {printed}"
    );

    // A second build downloads nothing: the cached installer is verified against its sidecar.
    let client = support::client_name(dir.path());
    let before = w.requests_of(&client).len();
    let second = build(&manifest, &out, &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    let asked = w.requests_of(&client)[before..].to_vec();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|path| path.ends_with("/latest")),
        "the second build should only resolve `latest`: {asked:?}"
    );
    assert_eq!(
        std::fs::read(&zip)
            .map(|b| support::sha256_hex(&b))
            .unwrap(),
        digest,
        "same inputs, same zip"
    );

    // Over the split size, the zip is written as volumes instead, each a zip of its own that
    // verify unpacked into one folder with the others; together they hold the zip's entries.
    let zip_bytes = std::fs::read(&zip).unwrap();
    // Below the zip's size, above its largest entry (a volume must hold each file whole).
    let largest = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip_bytes)).unwrap();
        (0..archive.len())
            .map(|i| archive.by_index_raw(i).unwrap().compressed_size())
            .max()
            .unwrap()
    };
    let limit = (largest + (256 << 10)).max(zip_bytes.len() as u64 / 3);
    assert!(
        limit < zip_bytes.len() as u64,
        "the stand-in zip is large enough to split"
    );
    let third = build(&manifest, &out, &["--split-size", &limit.to_string()]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stderr(&third).contains("volumes"),
        "the build says it wrote volumes:\n{}",
        stderr(&third)
    );
    assert!(!zip.exists(), "the volumes replace the zip");
    let volumes = xtask::stages::archive::zip_or_volumes(&zip);
    assert!(volumes.len() >= 2, "{volumes:?}");
    let whole = dir.path().join("whole.zip");
    std::fs::write(&whole, &zip_bytes).unwrap();
    let mut whole = zip::ZipArchive::new(std::fs::File::open(&whole).unwrap()).unwrap();
    let mut entries = std::collections::BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let bytes = std::fs::read(volume).unwrap();
        assert!(bytes.len() as u64 <= limit, "{}", volume.display());
        let name = volume.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!(".part{}.zip", i + 1)), "{name}");
        let sidecar = std::fs::read_to_string(format!("{}.sha256", volume.display())).unwrap();
        assert_eq!(
            sidecar,
            format!("{}  {name}\n", support::sha256_hex(&bytes))
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        for j in 0..archive.len() {
            let entry = archive.by_index(j).unwrap();
            let name = entry.name().unwrap().into_owned();
            assert!(name.starts_with("anymatix/"), "{name}");
            if name == "anymatix/" || name == "anymatix/manifest.json" {
                continue;
            }
            assert!(entries.insert(name.clone()), "{name} is in two volumes");
            assert_eq!(
                entry.crc32(),
                whole.by_name(&name).unwrap().crc32(),
                "{name}"
            );
        }
    }
    assert_eq!(
        entries.len() + 2,
        whole.len(),
        "every entry of the zip is in a volume"
    );
}

#[test]
fn pruning_dist_info_is_caught_by_verify() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), TAG, "");
    let policy_text =
        std::fs::read_to_string(xtask::project_root().join("anymatix/prune.yml")).unwrap();
    let turned_on = policy_text.replacen("    enabled: false\n", "    enabled: true\n", 1);
    assert_ne!(policy_text, turned_on);
    let policy = dir.path().join("prune.yml");
    std::fs::write(&policy, turned_on).unwrap();
    let out = dir.path().join("out");
    let result = build(&manifest, &out, &["--policy", policy.to_str().unwrap()]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains("stage `Verify the unpacked zip` failed"),
        "{text}"
    );
    assert!(
        text.contains("smoke check `import anyfix_cli` failed"),
        "{text}"
    );
    assert!(text.contains("PackageNotFoundError"), "{text}");
    // A zip that failed verify is never published, and nothing left behind has its final name.
    assert_nothing_has_the_final_name(&out);
    // The installed environment itself was fine: it passed the same import right after pip.
    assert!(
        text.contains("==> Check the installed environment\n    ok: import anyfix_native\n    ok: import anyfix_cli"),
        "{text}"
    );
}

/// After a failed build: no file anywhere under `out` is named as a published zip, and the
/// unverified one says what it is.
fn assert_nothing_has_the_final_name(out: &Path) {
    let name = format!("anymatix-0.0.0-test-{}.zip", host_platform());
    let mut unverified = 0;
    for entry in walkdir::WalkDir::new(out) {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy();
        assert!(
            !file.starts_with(&name),
            "{} has the final name",
            entry.path().display()
        );
        unverified += usize::from(file.ends_with(".unverified.zip"));
    }
    assert_eq!(unverified, 1, "the unverified zip stays for inspection");
}

#[test]
fn a_broken_environment_fails_before_anything_is_pruned() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), TAG, "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // As transformers does with a torch it deems too old: importable, yet not working.
    let broken = text.replace(
        "assert anyfix_cli.__version__ == '2.0.0'",
        "assert anyfix_cli.__version__ == '9.9.9'",
    );
    assert_ne!(broken, text);
    std::fs::write(&manifest, broken).unwrap();
    let out = dir.path().join("out");
    let result = build(&manifest, &out, &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains("stage `Check the installed environment` failed: smoke check `anyfix-cli reads its own version` failed"),
        "{text}"
    );
    assert!(text.contains("AssertionError: 2.0.0"), "{text}");
    assert!(!text.contains("==> Prune"), "failed before pruning: {text}");
    let stage = out.join(format!("stage/{}", host_platform()));
    assert!(
        !stage.join("env.done.json").exists(),
        "a failed environment is not trusted"
    );
}

#[test]
fn the_products_own_start_judges_the_zip() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), TAG, "");
    support::add_repo(
        &manifest,
        "broken-node",
        &w.broken_node_repo,
        "main",
        "ComfyUI/custom_nodes/broken-node",
    );
    let out = dir.path().join("out");
    let env = out.join(format!("stage/{}/env", host_platform()));
    // A command before ComfyUI's own: the build's environment is out of reach meanwhile.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let with_probe = text.replace(
        "  commands:\n",
        &format!(
            "  commands:\n    - name: the build's environment is out of reach\n      run: [\"{{python}}\", \"-c\", \"import os, sys; sys.exit(os.path.exists(sys.argv[1]))\", '{}']\n",
            env.display()
        ),
    );
    assert_ne!(with_probe, text);
    std::fs::write(&manifest, with_probe).unwrap();

    let result = build(&manifest, &out, &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(
        text.contains("ok: the build's environment is out of reach"),
        "{text}"
    );
    assert!(
        text.contains("smoke command `ComfyUI starts and loads its custom nodes` exited 0, but 1 line(s) of its output contain `IMPORT FAILED`"),
        "{text}"
    );
    assert!(
        text.contains("(IMPORT FAILED): ") && text.contains("custom_nodes/broken-node"),
        "names the node: {text}"
    );
    // The environment is back where it was, and the failed zip is not published.
    assert!(env.join("anymatix/python").is_dir());
    assert!(!out
        .join(format!(
            "stage/{}/env.moved-aside-by-verify",
            host_platform()
        ))
        .exists());
    assert_nothing_has_the_final_name(&out);
}

/// `requires_at_most` fails the build naming what needs more, before anything is zipped; and on
/// Linux, pip is told the limit through PEP 600's `_manylinux` module.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_binary_that_needs_a_newer_system_than_allowed_is_named() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), TAG, "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let limited = text.replace(
        "    conda_packages: [zlib=1.3.1]\n",
        "    conda_packages: [zlib=1.3.1]\n    requires_at_most: {glibc: '2.3'}\n",
    );
    assert_ne!(limited, text);
    std::fs::write(&manifest, limited).unwrap();
    let out = dir.path().join("out");
    let result = build(&manifest, &out, &[]);
    let text = stderr(&result);
    assert!(!result.status.success(), "{text}");
    assert!(text.contains("stage `Prune` failed"), "{text}");
    assert!(
        text.contains("need a newer system than platforms.linux-x86_64.requires_at_most allows"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "python/bin/python{} needs glibc 2.",
            w.host.version
        )) && text.contains("(at most 2.3 allowed)"),
        "{text}"
    );
    assert!(!text.contains("==> Zip"), "{text}");
    let policy = out.join("stage/linux-x86_64/env/pip-policy/_manylinux.py");
    let policy = std::fs::read_to_string(&policy).unwrap();
    assert!(policy.contains("<= (2, 3)"), "{policy}");
}
