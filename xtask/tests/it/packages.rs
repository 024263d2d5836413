//! Which packages end up in the environment and in the zip: pip takes its package sources from
//! the distribution alone (never the build machine's `PIP_*` variables or configuration files),
//! writes no bytecode, and `leave_out` removes installed packages from the zip the way pip
//! uninstalls them, refusing one that a kept package requires unless a reason says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use support::wheels::{build_wheel, WheelSpec};
use support::{host_platform, stderr, world};

fn read_yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_yaml(path: &Path, doc: &Value) {
    std::fs::write(path, serde_yaml_ng::to_string(doc).unwrap()).unwrap();
}

fn site_packages(root: &Path) -> PathBuf {
    root.join(format!(
        "python/lib/python{}/site-packages",
        world().host.version
    ))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The build's pip ignores where this machine's pip settings say packages are (a folder of
/// wheels in PIP_FIND_LINKS, another index, a configuration file naming both), and writes no
/// bytecode: the lock and the zip hold the distribution's packages, as it names them.
#[test]
fn the_machines_pip_settings_do_not_choose_the_packages() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let manifest = w.manifest(dir.path(), "latest", "");
    // A newer build of a package the zip holds, where only the machine's settings point.
    let rogue = dir.path().join("rogue wheels");
    std::fs::create_dir_all(&rogue).unwrap();
    build_wheel(
        &rogue,
        &WheelSpec {
            name: "anyfix-native",
            version: "9.9.9",
            requires: &[],
            files: &[("anyfix_native/__init__.py", b"VALUE = 'from the machine'\n")],
            console_scripts: &[],
        },
    );
    let config = dir.path().join("pip.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nfind-links = {}\npre = true\n[install]\nno-compile = false\n",
            rogue.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut build = Command::new(support::xtask_binary());
    build
        .args(["portable", "--manifest", manifest.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--version", "0.0.0-test"]);
    support::hermetic_env(&mut build);
    build
        .env("PIP_FIND_LINKS", &rogue)
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/unreachable/simple")
        .env("PIP_CONFIG_FILE", &config);
    let built = build.output().unwrap();
    let text = stderr(&built);
    assert!(built.status.success(), "{text}");
    assert!(
        text.contains(
            "pip ignores this machine's PIP_CONFIG_FILE, PIP_FIND_LINKS, PIP_INDEX_URL (the \
             distribution names the package sources)"
        ),
        "{text}"
    );
    assert!(!text.contains("rogue wheels"), "{text}");

    let lock = std::fs::read_to_string(
        dir.path()
            .join(format!("locks/{}.lock.yml", host_platform())),
    )
    .unwrap();
    assert!(
        lock.contains("name: anyfix-native\n  version: 1.0.0"),
        "{lock}"
    );
    assert!(!lock.contains("9.9.9"), "{lock}");

    // No bytecode from the installer: nothing under what pip installed, nothing in its RECORDs.
    let env_site = site_packages(&out.join(format!("stage/{}/env/anymatix", host_platform())));
    for entry in std::fs::read_dir(&env_site).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("anyfix") {
            continue;
        }
        let pycs: Vec<PathBuf> = walkdir::WalkDir::new(&path)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.extension().is_some_and(|x| x == "pyc"))
            .collect();
        assert!(pycs.is_empty(), "pip compiled {pycs:?}");
        if name.ends_with(".dist-info") {
            let record = std::fs::read_to_string(path.join("RECORD")).unwrap();
            assert!(!record.contains(".pyc"), "{record}");
        }
    }

    // How the zip was built is kept beside it, step by step.
    let report = json(&out.join(format!(
        "anymatix-0.0.0-test-{}.build.json",
        host_platform()
    )));
    assert_eq!(report["environment"], "installed");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "Install Python packages",
        "Prune",
        "Zip",
        "Verify the unpacked zip",
    ] {
        assert!(steps.contains(&step), "{steps:?}");
    }
    assert!(text.contains("Where the time went:"), "{text}");
}

/// Wheels of a template bundle: a meta package that requires its media, as
/// comfyui-workflow-templates requires its media packages, and a package nothing requires.
fn bundle_wheels(wheelhouse: &Path) {
    let (preview, clip) = (vec![7u8; 40_000], vec![9u8; 60_000]);
    build_wheel(
        wheelhouse,
        &WheelSpec {
            name: "anyfix-templates",
            version: "1.0.0",
            requires: &[
                "anyfix-media==1.0.0",
                "anyfix-gallery; sys_platform == 'nonexistent'",
                "anyfix-lonely; extra == 'all'",
            ],
            files: &[("anyfix_templates/__init__.py", b"NAME = 'templates'\n")],
            console_scripts: &[],
        },
    );
    build_wheel(
        wheelhouse,
        &WheelSpec {
            name: "anyfix-media",
            version: "1.0.0",
            requires: &[],
            files: &[
                ("anyfix_media/__init__.py", b"".as_slice()),
                ("anyfix_media/templates/preview-1.webp", &preview),
                ("anyfix_media/templates/clip.mp4", &clip),
            ],
            console_scripts: &[("anyfix-media-index", "anyfix_media:main")],
        },
    );
    build_wheel(
        wheelhouse,
        &WheelSpec {
            name: "anyfix_lonely",
            version: "0.1.0",
            requires: &[],
            files: &[("anyfix_lonely.py", b"LONELY = True\n")],
            console_scripts: &[("anyfix-lonely", "anyfix_lonely:main")],
        },
    );
}

#[test]
fn left_out_packages_leave_the_zip_as_pip_uninstalls_them() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let (_server, manifest, copies) = w.private_sources(dir.path());
    bundle_wheels(&copies.join("wheelhouse"));
    let mut doc = read_yaml(&manifest);
    for name in ["anyfix-templates", "anyfix-lonely"] {
        doc["python_packages"]
            .as_sequence_mut()
            .unwrap()
            .push(Value::from(name));
    }
    let platform = host_platform().name();
    let out = dir.path().join("out");
    let build = |doc: &Value| {
        write_yaml(&manifest, doc);
        support::portable(&manifest, &out, "0.0.0-test", &[])
    };

    // Required by a kept package, with no reason: refused, nothing published, every problem named.
    doc["leave_out"] = serde_yaml_ng::from_str("[Anyfix_Media]").unwrap();
    doc["platforms"][platform]["leave_out"] = serde_yaml_ng::from_str("[anyfix-gone]").unwrap();
    let refused = build(&doc);
    let text = stderr(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains(
            "leave_out: `Anyfix_Media` is required by anyfix-templates 1.0.0 \
             (`anyfix-media==1.0.0`), which the zip keeps"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "platforms.{platform}.leave_out: `anyfix-gone` is not installed for {platform}"
        )),
        "{text}"
    );
    assert!(text.contains("stage `Leave out packages` failed"), "{text}");
    assert!(!out
        .join(format!("anymatix-0.0.0-test-{platform}.zip"))
        .exists());

    // With a reason, and a package nothing requires (what a marker or an extra asks for does
    // not count): both leave, the environment keeps them.
    doc["leave_out"] = serde_yaml_ng::from_str(
        "[{name: Anyfix_Media, reason: 'previews only; the templates show without them'}, anyfix-lonely]",
    )
    .unwrap();
    doc["platforms"][platform]
        .as_mapping_mut()
        .unwrap()
        .remove("leave_out");
    let built = build(&doc);
    let text = stderr(&built);
    assert!(built.status.success(), "{text}");
    assert!(text.contains("left out anyfix-media 1.0.0"), "{text}");
    assert!(
        text.contains("(required by anyfix-templates 1.0.0"),
        "{text}"
    );
    assert!(
        text.contains("The environment: unchanged, reusing"),
        "leaving out is the zip's business: {text}"
    );

    let zip = out.join(format!("anymatix-0.0.0-test-{platform}.zip"));
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    zip::ZipArchive::new(std::fs::File::open(&zip).unwrap())
        .unwrap()
        .extract(&unpacked)
        .unwrap();
    let root = unpacked.join("anymatix");
    let site = site_packages(&root);
    for gone in [
        "anyfix_media",
        "anyfix_media-1.0.0.dist-info",
        "anyfix_lonely.py",
        "anyfix_lonely-0.1.0.dist-info",
    ] {
        assert!(!site.join(gone).exists(), "{gone} is still in the zip");
    }
    for script in ["anyfix-media-index", "anyfix-lonely"] {
        assert!(!root.join("python/bin").join(script).exists(), "{script}");
    }
    assert!(site.join("anyfix_templates/__init__.py").is_file());
    let env_site = site_packages(&out.join(format!("stage/{platform}/env/anymatix")));
    assert!(env_site.join("anyfix_media/templates/clip.mp4").is_file());
    assert!(env_site.join("anyfix_lonely.py").is_file());

    let manifest_json = json(&root.join("manifest.json"));
    let left: Vec<(String, String, u64, Option<String>)> = manifest_json["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["version"].as_str().unwrap().to_string(),
                l["bytes"].as_u64().unwrap(),
                l["reason"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(left[0].0, "anyfix-media");
    assert_eq!(left[0].1, "1.0.0");
    assert!(left[0].2 >= 100_000, "{left:?}");
    assert_eq!(
        left[0].3.as_deref(),
        Some("previews only; the templates show without them")
    );
    assert_eq!(
        (left[1].0.as_str(), left[1].3.as_deref()),
        ("anyfix_lonely", None)
    );
    let kept: Vec<&str> = manifest_json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&"anyfix-templates"), "{kept:?}");
    assert!(
        !kept
            .iter()
            .any(|k| k.contains("media") || k.contains("lonely")),
        "{kept:?}"
    );
    let lock =
        std::fs::read_to_string(dir.path().join(format!("locks/{platform}.lock.yml"))).unwrap();
    assert!(
        lock.contains("left_out:\n- anyfix-media\n- anyfix-lonely\n"),
        "{lock}"
    );
    assert!(
        lock.contains("name: anyfix-media\n"),
        "still locked, as installed: {lock}"
    );
    // pip in the unpacked copy agrees: nothing it knows of is missing a file.
    let check = Command::new(root.join("python/bin/python3"))
        .args(["-s", "-m", "pip", "list", "--format=freeze"])
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&check.stdout);
    assert!(
        !listed.contains("anyfix-media") && !listed.contains("anyfix_lonely"),
        "{listed}"
    );
}
