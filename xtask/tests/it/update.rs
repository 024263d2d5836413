//! `update.sh` of an unpacked zip, run as a user runs it, from release 0.0.1 to 0.0.2 served on
//! loopback (see `update_releases`): only what changed is downloaded, the user's world and
//! packages are carried over, the switch is a rename that `--rollback` takes back exactly, and a
//! stopped update leaves a working anymatix that the next run finishes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::http::Route;
use support::stderr;

pub(crate) use crate::package_zip::assert_same;
use crate::update_releases::{bytes_asked, give_user_world, releases, serve, unpack_old, user};

/// Every file of the anymatix folder by its sha256 (bytecode and the update's own work folder
/// aside), and what pip freeze says.
pub(crate) fn fingerprint(root: &Path, home: &Path) -> (BTreeMap<String, String>, String) {
    let files = support::file_hashes(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".update/"))
        .collect();
    let mut cmd = std::process::Command::new(root.join("python/bin/python3"));
    cmd.args(["-m", "pip", "freeze", "--all"]).current_dir(home);
    support::without_python_settings(&mut cmd);
    let freeze = cmd.output().unwrap();
    assert!(freeze.status.success(), "{}", stderr(&freeze));
    (files, String::from_utf8_lossy(&freeze.stdout).into_owned())
}

pub(crate) fn manifest_version(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("manifest.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["version"].as_str().unwrap().to_string()
}

pub(crate) fn installed(root: &Path, home: &Path, name: &str) -> Option<String> {
    let mut cmd = std::process::Command::new(root.join("python/bin/python3"));
    cmd.args([
        "-c",
        &format!(
            "import importlib.metadata as m\ntry: print(m.version('{name}'))\nexcept m.PackageNotFoundError: print('-')"
        ),
    ])
    .current_dir(home);
    support::without_python_settings(&mut cmd);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (text != "-").then_some(text)
}

#[test]
fn an_update_downloads_what_changed_keeps_the_users_world_and_rolls_back_exactly() {
    let r = releases();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack_old(home);
    let world = give_user_world(&root, home);
    let model = root.join("ComfyUI/models/checkpoints/big.safetensors");
    let model_inode = std::fs::metadata(&model).unwrap().ino();
    let before = fingerprint(&root, home);
    let (server, url) = serve(Route::ranged);

    // --check says what would change and changes nothing.
    let check = user(&root, "update.sh", &["--check", &url], home);
    let said = stderr(&check);
    assert!(check.status.success(), "{said}");
    for expected in [
        "the new release: 0.0.2-test",
        "ComfyUI: v1.1",
        "~ update-demo 1.0 -> 2.0",
        "+ anyfix-extra 0.5.0",
        "ComfyUI/models (1 file,",
        "ComfyUI/custom_nodes/my-node",
        "ComfyUI/extra_model_paths.yaml",
        "installed again through the package tool: addon 1.0",
        "Nothing was changed.",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
    assert_same(
        &fingerprint(&root, home),
        &before,
        "--check changed nothing",
    );
    let zip_size = std::fs::metadata(&r.new).unwrap().len();
    let (checked_bytes, whole) = bytes_asked(&server);
    assert_eq!(whole, 0, "only ranges were asked: {:?}", server.requests());
    assert!(
        checked_bytes * 5 < zip_size,
        "--check read the directory and the manifest only: {checked_bytes} of {zip_size}"
    );

    // The update.
    let out = user(&root, "update.sh", &[&url], home);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert_eq!(manifest_version(&root), "0.0.2-test", "{said}");
    assert!(
        said.contains("Updated: this anymatix is 0.0.2-test now"),
        "{said}"
    );
    let (bytes, whole) = bytes_asked(&server);
    assert_eq!(whole, 0);
    assert!(
        bytes * 4 < zip_size,
        "downloaded {bytes} of a {zip_size}-byte zip:\n{said}"
    );
    assert_eq!(
        installed(&root, home, "update-demo").as_deref(),
        Some("2.0")
    );
    assert_eq!(
        installed(&root, home, "anyfix-extra").as_deref(),
        Some("0.5.0")
    );
    assert_eq!(
        installed(&root, home, "addon").as_deref(),
        Some("1.0"),
        "the user's package, installed again:\n{said}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ComfyUI/docs/usage.md")).unwrap(),
        "# usage, as of v1.1\n"
    );
    for (rel, bytes) in &world {
        assert_eq!(&std::fs::read(root.join(rel)).unwrap(), bytes, "{rel} kept");
    }
    assert_eq!(
        std::fs::metadata(&model).unwrap().ino(),
        model_inode,
        "the model was moved, not copied"
    );
    let list = user(&root, "packages.sh", &["list"], home);
    assert!(stderr(&list).contains("addon"), "{}", stderr(&list));
    let start = user(&root, "run_comfyui.sh", &["--quick-test-for-ci"], home);
    assert!(start.status.success(), "{}", stderr(&start));
    assert!(stderr(&start).contains("my-node"), "{}", stderr(&start));
    let after = fingerprint(&root, home);

    // Back, exactly; and forward again, and the previous one forgotten.
    let back = user(&root, "update.sh", &["--rollback"], home);
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(stderr(&back).contains("Rolled back: this anymatix is 0.0.1-test again"));
    assert_same(
        &fingerprint(&root, home),
        &before,
        "rollback gives the old tree back",
    );
    let forward = user(&root, "update.sh", &["--rollback"], home);
    assert!(forward.status.success(), "{}", stderr(&forward));
    assert_same(
        &fingerprint(&root, home),
        &after,
        "and returns to the new one",
    );
    let forget = user(&root, "update.sh", &["--forget-previous"], home);
    assert!(forget.status.success(), "{}", stderr(&forget));
    assert!(!root.join(".update/previous").exists());
    let none = user(&root, "update.sh", &["--rollback"], home);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
}

#[test]
fn the_package_page_checks_and_prepares_an_update_that_update_sh_then_switches() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack_old(home);
    let zip = releases().new.to_str().unwrap().to_string();
    let page = support::package_page::Page::serve(crate::update_releases::user_command(
        &root,
        "packages.sh",
        &["gui", "--no-browser"],
        home,
    ));
    let (status, _) = page.api("POST", "/api/update", r#"{"source": "--rollback"}"#);
    assert_eq!(status, 400, "an option is not a source");

    let body = serde_json::json!({ "source": zip }).to_string();
    let job = page.change("/api/update", &body);
    let output = job["output"].as_str().unwrap();
    assert_eq!(job["exit"], 0, "{output}");
    assert!(output.contains("the new release: 0.0.2-test"), "{output}");
    assert!(output.contains("Nothing was changed."), "{output}");

    let body = serde_json::json!({ "source": zip, "prepare": true }).to_string();
    let job = page.change("/api/update", &body);
    let output = job["output"].as_str().unwrap();
    assert_eq!(job["exit"], 0, "{output}");
    assert!(output.contains("Ready: close ComfyUI"), "{output}");
    assert_eq!(
        manifest_version(&root),
        "0.0.1-test",
        "prepared, not switched"
    );

    // The page is a python of this folder: the switch waits for it to close.
    let refused = user(&root, "update.sh", &[&zip], home);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    drop(page);
    let out = user(&root, "update.sh", &[&zip], home);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("built and checked by an earlier run: switching"),
        "{said}"
    );
    assert_eq!(manifest_version(&root), "0.0.2-test");
}
