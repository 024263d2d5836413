//! Two stand-in releases for the update tests, built once per test binary: 0.0.1 and 0.0.2
//! differ in one protected package (`update-demo` 1.0 → 2.0), one ComfyUI file (ComfyUI v1.0 →
//! v1.1, `docs/usage.md`) and one package added (`anyfix-extra`, with 2 MiB of noise); and the
//! helpers that unpack
//! the first as a user would, give it a user's world, and serve the second over loopback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_yaml_ng::Value;
use support::http::{Route, Server};
use support::wheels::{build_wheel, module_wheel, WheelSpec};
use support::{git, host_platform, stderr, world, write_file};

use crate::package_zip::url;

pub(crate) struct Releases {
    _dir: tempfile::TempDir,
    pub(crate) old: PathBuf,
    pub(crate) new: PathBuf,
    /// Wheels for the user's installs: `addon` 1.0, and `likes-old-demo` 1.0, which needs
    /// `update-demo<2` (the new release protects 2.0).
    pub(crate) wheels: PathBuf,
}

pub(crate) fn releases() -> &'static Releases {
    static BUILT: OnceLock<Releases> = OnceLock::new();
    BUILT.get_or_init(|| {
        let w = world();
        let dir = tempfile::tempdir().unwrap();
        let (server, manifest, copies) = w.private_sources(dir.path());
        let wheelhouse = copies.join("wheelhouse");
        module_wheel(&wheelhouse, "update-demo", "1.0", &[]);
        module_wheel(&wheelhouse, "update-demo", "2.0", &[]);
        // Big and incompressible: a download that takes a while on a paced server.
        let blob = support::noise(2 << 20, 11);
        build_wheel(
            &wheelhouse,
            &WheelSpec {
                name: "anyfix-extra",
                version: "0.5.0",
                requires: &[],
                files: &[
                    ("anyfix_extra/__init__.py", b"VERSION = '0.5.0'\n"),
                    ("anyfix_extra/blob.bin", &blob),
                ],
                console_scripts: &[],
            },
        );
        let old = build(
            dir.path(),
            &manifest,
            "0.0.1-test",
            &["update-demo==1.0"],
            None,
        );
        let comfy = copies.join("ComfyUI");
        git(&comfy, &["checkout", "--quiet", "v1.0"]);
        write_file(&comfy, "docs/usage.md", "# usage, as of v1.1\n");
        git(&comfy, &["commit", "--quiet", "-am", "v1.1"]);
        git(&comfy, &["tag", "-a", "v1.1", "-m", "v1.1"]);
        let new = build(
            dir.path(),
            &manifest,
            "0.0.2-test",
            &["update-demo==2.0", "anyfix-extra==0.5.0"],
            Some("v1.1"),
        );
        drop(server);
        let wheels = dir.path().join("user wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        module_wheel(&wheels, "addon", "1.0", &[]);
        module_wheel(&wheels, "likes-old-demo", "1.0", &["update-demo<2"]);
        Releases {
            _dir: dir,
            old,
            new,
            wheels,
        }
    })
}

fn build(
    dir: &Path,
    manifest: &Path,
    version: &str,
    packages: &[&str],
    comfy_rev: Option<&str>,
) -> PathBuf {
    let mut doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let list = doc["python_packages"].as_sequence_mut().unwrap();
    list.retain(|p| !p.as_str().unwrap_or("").starts_with("update-demo"));
    for name in packages {
        list.push(Value::from(*name));
    }
    doc["protected"] = serde_yaml_ng::from_str("[anyfix-native, update-demo]").unwrap();
    if let Some(rev) = comfy_rev {
        doc["repos"][0]["rev"] = Value::from(rev);
    }
    let written = dir.join(format!("distribution-{version}.yml"));
    std::fs::write(&written, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let out = dir.join(format!("out-{version}"));
    let built = support::portable(&written, &out, version, &[]);
    assert!(built.status.success(), "{}", stderr(&built));
    out.join(format!("anymatix-{version}-{}.zip", host_platform().name()))
}

/// The first release unpacked into `dir/my anymatix é/`: its `anymatix/`.
pub(crate) fn unpack_old(dir: &Path) -> PathBuf {
    let home = dir.join("my anymatix é");
    xtask::stages::archive::extract::extract(&releases().old, &home, 2).unwrap();
    home.join("anymatix")
}

/// A user's world in an unpacked anymatix: a model, an output, a setting, a workflow, a
/// custom node of their own (whose requirements name `addon`), an extra_model_paths.yaml, and
/// `addon` installed through packages.sh. Returns the files with their contents.
pub(crate) fn give_user_world(root: &Path, home: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    let files: BTreeMap<&'static str, Vec<u8>> = BTreeMap::from([
        (
            "ComfyUI/models/checkpoints/big.safetensors",
            support::noise(3 << 20, 7),
        ),
        ("ComfyUI/output/ComfyUI_00001_.png", support::noise(4096, 8)),
        (
            "ComfyUI/user/default/comfy.settings.json",
            b"{\"Comfy.Theme\": \"dark\"}\n".to_vec(),
        ),
        (
            "ComfyUI/user/default/workflows/mine.json",
            b"{\"nodes\": []}\n".to_vec(),
        ),
        (
            "ComfyUI/custom_nodes/my-node/__init__.py",
            b"import addon\nNODE_CLASS_MAPPINGS = {}\n".to_vec(),
        ),
        (
            "ComfyUI/custom_nodes/my-node/requirements.txt",
            b"addon>=1.0\n".to_vec(),
        ),
        (
            "ComfyUI/extra_model_paths.yaml",
            b"comfyui:\n  base_path: /models\n".to_vec(),
        ),
    ]);
    for (rel, bytes) in &files {
        write_file(root, rel, bytes);
    }
    let out = user(root, "packages.sh", &["install", "addon==1.0"], home);
    assert!(out.status.success(), "{}", stderr(&out));
    files
}

/// Runs a script of the unpacked anymatix as a user would: from another folder, a HOME of its
/// own, no PIP_* or PYTHON* variables of this machine, the user's wheels as the only index.
pub(crate) fn user(root: &Path, script: &str, args: &[&str], home: &Path) -> Output {
    user_command(root, script, args, home).output().unwrap()
}

pub(crate) fn user_command(root: &Path, script: &str, args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(root.join(script));
    cmd.args(args).current_dir(home);
    support::without_python_settings(&mut cmd);
    cmd.env("HOME", home)
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", url(&releases().wheels))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

/// The new release served at `{base}/{client}/rel/<name>` by `route` (its whole bytes in).
pub(crate) fn serve(route: fn(Vec<u8>) -> Route) -> (Server, String) {
    let server = Server::start();
    let zip = &releases().new;
    let name = zip.file_name().unwrap().to_str().unwrap().to_string();
    server.route(&format!("/rel/{name}"), route(std::fs::read(zip).unwrap()));
    let url = format!("{}/client/rel/{name}", server.base);
    (server, url)
}

/// The bytes the server sent for ranges, summed from its log (`path [A-B]`), and how many
/// whole-file answers it gave.
pub(crate) fn bytes_asked(server: &Server) -> (u64, usize) {
    let mut bytes = 0;
    let mut whole = 0;
    for line in server.requests() {
        match line.rsplit_once(" [") {
            Some((_, range)) => {
                let range = range.trim_end_matches(']');
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                        bytes += b + 1 - a;
                    }
                }
            }
            None => whole += 1,
        }
    }
    (bytes, whole)
}

/// Prepares the switch `args` asks for (`--rollback`) with tools/update.py directly, which
/// stops before the switch (exit status 100), then does the first half of the journal's steps
/// with switch.py's own code: what a kill half way through the switch leaves.
pub(crate) fn stop_switch_half_way(root: &Path, args: &[&str]) {
    let python = root.join("python/bin/python3");
    let mut prepare = Command::new(&python);
    prepare
        .arg("-s")
        .arg(root.join("tools/update.py"))
        .args(args)
        .current_dir(root);
    support::without_python_settings(&mut prepare);
    let prepared = prepare.output().unwrap();
    assert_eq!(prepared.status.code(), Some(100), "{}", stderr(&prepared));
    let journal = std::fs::read_to_string(root.join(".update/switch.journal")).unwrap();
    assert!(
        journal.lines().filter(|l| l.contains('\t')).count() > 10,
        "{journal}"
    );
    let partial = Command::new(&python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1] + '/.update'); import switch\n\
             steps = switch.read_journal(sys.argv[1])\n\
             for step in steps[:len(steps) // 2]: switch.do(sys.argv[1], step)",
        ])
        .arg(root)
        .output()
        .unwrap();
    assert!(partial.status.success(), "{}", stderr(&partial));
}
