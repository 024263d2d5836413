//! The update on the real product (opt-in, with the real-product feature): three real builds of
//! the default distribution, the same torch in each:
//! A: ComfyUI 0.33.0 + ComfyUI-Manager as in `../shared/product/`;
//! B: the same with one more commit of ComfyUI-Manager (two files changed);
//! C: ComfyUI 0.3.64 + that Manager.
//! B is served on loopback with Range support behind a redirect to another port, as GitHub
//! serves release assets. A, unpacked with a user's world (a 1 GiB model, an output, a setting,
//! a workflow, a custom node whose requirements came from PyPI through packages.sh), is updated
//! to B, ComfyUI started and a workflow run on it, then rolled back and compared file for file;
//! then updated again from a server without Range support, and a switch stopped half way is
//! taken back by the start script. C is updated to A, and what that downloads is quoted; on
//! another copy of C the same update is killed while downloading (C still starts) and finished
//! by the next run. `ANYMATIX_REAL_PRODUCT_REUSE_ZIPS=1` takes a kept folder's zips as they are.
//!
//! ```sh
//! ANYMATIX_REAL_PRODUCT_DIR=/work/rp cargo test --features real-product --test it \
//!     real_product::update -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use support::git;
use support::http::{Route, Server};

use super::{
    comfyui_snapshot, fetch_and_build, quick_test, real_distribution, serve_and_run_workflow,
    shared_product, snapshot_repo, zip_volumes,
};

/// A custom node standing in for VideoHelperSuite (GitHub is out of reach here): its two
/// requirements, from PyPI, and a node that imports them.
const NODE_INIT: &str = "import cv2, imageio_ffmpeg\n\
class VHSProbe:\n    @classmethod\n    def INPUT_TYPES(cls):\n        return {'required': {}}\n    \
RETURN_TYPES = ('STRING',)\n    FUNCTION = 'run'\n    CATEGORY = 'test'\n    \
def run(self):\n        return (cv2.__version__ + ' ' + imageio_ffmpeg.get_ffmpeg_version(),)\n\
NODE_CLASS_MAPPINGS = {'VHSProbe': VHSProbe}\n";

struct Release {
    volumes: Vec<PathBuf>,
    bytes: u64,
}

fn build(dir: &Path, name: &str, comfy: (&Path, &str), manager: (&Path, &str)) -> Release {
    let manifest = real_distribution(
        &dir.join(format!("distribution-{name}.yml")),
        comfy,
        manager,
    );
    let out = dir.join("out");
    let zip = out.join(format!("anymatix-{name}-linux-x86_64.zip"));
    // A kept folder's zips can be taken as they are (to rerun the update part alone).
    let reuse = std::env::var_os("ANYMATIX_REAL_PRODUCT_REUSE_ZIPS").is_some()
        && !xtask::stages::archive::zip_or_volumes(&zip).is_empty();
    if !reuse {
        let (_, build_time, _, _) = fetch_and_build(&manifest, &out, name);
        eprintln!("built {name} in {:.1} min", build_time.as_secs_f64() / 60.0);
    }
    let (volumes, bytes) = zip_volumes(&zip);
    eprintln!("{name}: {bytes} bytes in {} volumes", volumes.len());
    Release { volumes, bytes }
}

/// Every volume unzipped into `home` (emptied first), as a user does: its `anymatix/`.
fn unpack(release: &Release, home: &Path) -> PathBuf {
    if home.exists() {
        std::fs::remove_dir_all(home).unwrap();
    }
    std::fs::create_dir_all(home).unwrap();
    super::unzip_all(&release.volumes, home);
    home.join("anymatix")
}

/// A release's volumes served by a storage server (`route`), and the address of the first
/// behind a redirect from another server, as GitHub's release assets are.
fn serve(release: &Release, route: fn(Vec<u8>) -> Route) -> (Server, Server, String) {
    let storage = Server::start();
    let front = Server::start();
    for volume in &release.volumes {
        let name = volume.file_name().unwrap().to_str().unwrap();
        storage.route(
            &format!("/assets/{name}"),
            route(std::fs::read(volume).unwrap()),
        );
        front.route(
            &format!("/download/{name}"),
            Route::Redirect(format!("{}/storage/assets/{name}", storage.base)),
        );
    }
    let first = release.volumes[0].file_name().unwrap().to_str().unwrap();
    let url = format!("{}/release/download/{first}", front.base);
    (storage, front, url)
}

fn run(root: &Path, script: &str, args: &[&str]) -> (Output, f64) {
    let started = Instant::now();
    let mut cmd = Command::new(root.join(script));
    cmd.args(args).current_dir(root);
    support::pypi_env(&mut cmd);
    cmd.env_remove("PIP_CONFIG_FILE");
    let out = cmd.output().unwrap();
    let text = support::stderr(&out);
    eprintln!("$ {script} {}\n{text}", args.join(" "));
    (out, started.elapsed().as_secs_f64())
}

fn fingerprint(root: &Path) -> (BTreeMap<String, String>, String) {
    let files = support::file_hashes(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".update/"))
        .collect();
    let mut cmd = Command::new(root.join("python/bin/python3"));
    cmd.args(["-s", "-m", "pip", "freeze", "--all"]);
    support::without_python_settings(&mut cmd);
    let out = cmd.output().unwrap();
    (files, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn differing(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The bytes a storage server sent for ranges (from its log), and its whole-file answers.
fn served_bytes(storage: &Server) -> (u64, usize) {
    let mut bytes = 0;
    let mut whole = 0;
    for line in storage.requests() {
        match line
            .rsplit_once(" [")
            .and_then(|(_, r)| r.trim_end_matches(']').split_once('-'))
        {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    bytes += b + 1 - a;
                }
            }
            None => whole += 1,
        }
    }
    (bytes, whole)
}

/// Bytes in the update's partial downloads.
fn partial_bytes(downloads: &Path) -> u64 {
    std::fs::read_dir(downloads).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

fn version(root: &Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    doc["version"].as_str().unwrap().to_string()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn the_real_product_updates_in_place_and_rolls_back() {
    let keep = std::env::var_os("ANYMATIX_REAL_PRODUCT_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let repos = dir.join("update-repos");
    if repos.exists() {
        std::fs::remove_dir_all(&repos).unwrap();
    }
    let product = shared_product();
    let comfy_new = snapshot_repo(
        &support::entry_starting_with(&product, comfyui_snapshot("0.33.0")),
        "ComfyUI",
        &repos.join("0.33.0"),
        Some("v0.33.0"),
    );
    let comfy_old = snapshot_repo(
        &support::entry_starting_with(&product, comfyui_snapshot("0.3.64")),
        "ComfyUI",
        &repos.join("0.3.64"),
        Some("v0.3.64"),
    );
    let manager = snapshot_repo(
        &support::entry_starting_with(&product, "ComfyUI-Manager-"),
        "ComfyUI-Manager",
        &repos,
        None,
    );
    let first = git(&manager, &["rev-parse", "HEAD"]);
    for file in ["README.md", "glob/manager_core.py"] {
        let path = manager.join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n# a later commit of ComfyUI-Manager (the update test)\n");
        std::fs::write(&path, text).unwrap();
    }
    git(&manager, &["commit", "--quiet", "-am", "later"]);
    let second = git(&manager, &["rev-parse", "HEAD"]);

    let a = build(&dir, "1.0.0-a", (&comfy_new, "v0.33.0"), (&manager, &first));
    let b = build(
        &dir,
        "1.0.1-b",
        (&comfy_new, "v0.33.0"),
        (&manager, &second),
    );
    let c = build(&dir, "0.9.0-c", (&comfy_old, "v0.3.64"), (&manager, &first));

    // A, unpacked, with a user's world.
    let root = unpack(&a, &dir.join("updated é"));
    let model = root.join("ComfyUI/models/checkpoints/big model.safetensors");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&model).unwrap();
        let block = support::noise(1 << 20, 3);
        for _ in 0..1024 {
            f.write_all(&block).unwrap();
        }
    }
    let model_inode = std::fs::metadata(&model).unwrap().ino();
    let world = [
        (
            "ComfyUI/output/ComfyUI_00001_.png",
            support::noise(50_000, 4),
        ),
        (
            "ComfyUI/user/default/comfy.settings.json",
            b"{\"Comfy.ColorPalette\": \"light\"}\n".to_vec(),
        ),
        (
            "ComfyUI/user/default/workflows/mine.json",
            b"{\"last_node_id\": 3, \"nodes\": []}\n".to_vec(),
        ),
        (
            "ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite/__init__.py",
            NODE_INIT.as_bytes().to_vec(),
        ),
        (
            "ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite/requirements.txt",
            b"opencv-python\nimageio-ffmpeg\n".to_vec(),
        ),
    ];
    for (rel, bytes) in &world {
        support::write_file(&root, rel, bytes);
    }
    let (out, node_seconds) = run(
        &root,
        "packages.sh",
        &[
            "install",
            "-r",
            "ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite/requirements.txt",
        ],
    );
    assert!(out.status.success());
    let before = fingerprint(&root);

    // A to B: only ComfyUI-Manager changed.
    // Each server holds its release in memory (3.5 GB): dropped once its part is done.
    let (storage, front, url) = serve(&b, Route::ranged);
    let (out, check_seconds) = run(&root, "update.sh", &["--check", &url]);
    assert!(out.status.success());
    assert_eq!(fingerprint(&root), before, "--check changes nothing");
    let (checked, _) = served_bytes(&storage);
    let (out, update_seconds) = run(&root, "update.sh", &[&url]);
    let said = support::stderr(&out);
    assert!(out.status.success());
    assert_eq!(version(&root), "1.0.1-b");
    let (downloaded, whole) = served_bytes(&storage);
    let downloaded = downloaded - checked;
    drop((storage, front));
    assert_eq!(whole, 0);
    let share = downloaded as f64 / b.bytes as f64;
    assert!(share <= 0.02, "{downloaded} of {} bytes", b.bytes);
    assert!(update_seconds <= 120.0, "{update_seconds:.1} s");
    assert_eq!(std::fs::metadata(&model).unwrap().ino(), model_inode);
    for (rel, bytes) in &world {
        assert_eq!(&std::fs::read(root.join(rel)).unwrap(), bytes, "{rel}");
    }
    let python = root.join("python/bin/python3");
    let comfy_dir = root.join("ComfyUI");
    let (start, text) = quick_test(&python, &comfy_dir);
    assert!(text.contains("ComfyUI-VideoHelperSuite"), "{text}");
    let (nodes, image) = serve_and_run_workflow(&python, &comfy_dir, &dir);
    let after = fingerprint(&root);

    // Back to A, exactly.
    let (out, rollback_seconds) = run(&root, "update.sh", &["--rollback"]);
    assert!(out.status.success());
    let back = fingerprint(&root);
    // Every file as before; what ComfyUI wrote on B (its output, database, logs, the Manager's
    // settings) is the user's and came back with their folders.
    let changed: Vec<String> = differing(&back.0, &before.0)
        .into_iter()
        .filter(|k| {
            let made_since = !before.0.contains_key(k);
            let users = ["ComfyUI/output/", "ComfyUI/user/"]
                .iter()
                .any(|user| k.starts_with(user));
            !(made_since && users)
        })
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(back.1, before.1, "pip freeze");
    assert!(rollback_seconds <= 10.0, "{rollback_seconds:.1} s");

    // Again to B, from a server that ignores Range: the same result.
    let plain = serve(&b, Route::Body);
    let (out, whole_seconds) = run(&root, "update.sh", &[&plain.2]);
    drop(plain);
    assert!(out.status.success());
    let again = fingerprint(&root);
    let release_part = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| k.starts_with("python/") || k.starts_with("ComfyUI/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert!(
        differing(&release_part(&again.0), &release_part(&after.0)).is_empty(),
        "{:?}",
        differing(&release_part(&again.0), &release_part(&after.0))
    );
    assert_eq!(again.1, after.1);

    // A switch stopped half way (back to A): the start script takes it back and ComfyUI starts
    // from B; the next update.sh --rollback finishes.
    crate::update_releases::stop_switch_half_way(&root, &["--rollback"]);
    let (out, _) = run(&root, "run_comfyui.sh", &["--cpu", "--quick-test-for-ci"]);
    assert!(out.status.success());
    assert!(support::stderr(&out).contains("An interrupted switch between releases was taken back"));
    assert_eq!(version(&root), "1.0.1-b");
    let (out, _) = run(&root, "update.sh", &["--rollback"]);
    assert!(out.status.success());
    assert_eq!(version(&root), "1.0.0-a");

    // C (ComfyUI 0.3.64) to A (0.33.0).
    let old_root = unpack(&c, &dir.join("from 0.3.64"));
    let (storage_a, _front_a, url_a) = serve(&a, Route::ranged);
    let (out, c_seconds) = run(&old_root, "update.sh", &[&url_a]);
    assert!(out.status.success());
    assert_eq!(version(&old_root), "1.0.0-a");
    let (c_bytes, _) = served_bytes(&storage_a);
    let (c_start, _) = quick_test(
        &old_root.join("python/bin/python3"),
        &old_root.join("ComfyUI"),
    );

    drop(storage_a);

    // kill -9 while downloading that (a server at 20 MB/s): C still starts, the next run
    // finishes.
    let killed_root = unpack(&c, &dir.join("killed é"));
    let slow = serve(&a, |body| Route::ranged_slowly(body, 20_000_000));
    let mut update = Command::new(killed_root.join("update.sh"));
    update
        .arg(&slow.2)
        .current_dir(&killed_root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    support::pypi_env(&mut update);
    std::os::unix::process::CommandExt::process_group(&mut update, 0);
    let mut child = update.spawn().unwrap();
    let downloads = killed_root.join(".update/download");
    let started = Instant::now();
    while partial_bytes(&downloads) < 50_000_000 {
        assert!(started.elapsed().as_secs() < 600, "no download under way");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let killed_at = partial_bytes(&downloads);
    assert!(Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
    assert_eq!(version(&killed_root), "0.9.0-c");
    quick_test(
        &killed_root.join("python/bin/python3"),
        &killed_root.join("ComfyUI"),
    );
    let (out, resumed_seconds) = run(&killed_root, "update.sh", &[&slow.2]);
    assert!(out.status.success());
    assert_eq!(version(&killed_root), "1.0.0-a");
    drop(slow);

    let steps: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("  ") && l.ends_with(" s"))
        .collect();
    eprintln!(
        "\nThe update on the real product (linux-x86_64):\n\
         A -> B (ComfyUI-Manager changed): --check {check_seconds:.1} s (read {checked} bytes); \
         update {update_seconds:.1} s, downloaded {downloaded} of {} bytes ({:.3}%); steps:\n{}\n\
         kept: a 1 GiB model (moved: the same inode), an output, a setting, a workflow, a custom \
         node whose requirements came from PyPI in {node_seconds:.1} s\n\
         ComfyUI on B: --quick-test-for-ci {:.1} s, {nodes} node types, the workflow wrote {image}\n\
         rollback {rollback_seconds:.1} s, every file and pip freeze as before\n\
         again from a server without Range: {whole_seconds:.1} s, the same files\n\
         a switch stopped half way taken back by run_comfyui.sh, then finished by update.sh\n\
         C (ComfyUI 0.3.64) -> A (0.33.0): {c_seconds:.1} s, downloaded {c_bytes} of {} bytes \
         ({:.1}%); ComfyUI 0.33.0 started in {:.1} s\n\
         the same killed (kill -9) after {killed_at} bytes of a download at 20 MB/s: 0.3.64 \
         started; the next update finished in {resumed_seconds:.1} s",
        b.bytes,
        share * 100.0,
        steps.join("\n"),
        start.as_secs_f64(),
        a.bytes,
        c_bytes as f64 / a.bytes as f64 * 100.0,
        c_start.as_secs_f64(),
    );
    if keep.is_none() {
        drop(temp);
    }
}
