//! `update.sh` where things go wrong: a server without Range support, a redirect to another
//! port and a connection dropped half way, a package the new protected core refuses, another
//! platform, a program still running from the folder, and an update killed while downloading
//! or half way through its switch.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::http::{Route, Server};
use support::stderr;

use crate::update::{assert_same, fingerprint, installed, manifest_version};
use crate::update_releases::{
    give_user_world, releases, serve, stop_switch_half_way, unpack_old, user, user_command,
};

/// python/ and ComfyUI/ by sha256, and pip freeze: what two updates must agree on.
fn release_files(root: &Path, home: &Path) -> (Vec<(String, String)>, String) {
    let (files, freeze) = fingerprint(root, home);
    let files = files
        .into_iter()
        .filter(|(k, _)| k.starts_with("python/") || k.starts_with("ComfyUI/"))
        .collect();
    (files, freeze)
}

#[test]
fn without_ranges_a_redirect_or_a_whole_connection_the_result_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();

    let ranged_root = unpack_old(&home.join("ranged"));
    give_user_world(&ranged_root, home);
    let (_server, url) = serve(Route::ranged);
    let out = user(&ranged_root, "update.sh", &[&url], home);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = release_files(&ranged_root, home);

    // A server that sends every file whole.
    let whole_root = unpack_old(&home.join("whole"));
    give_user_world(&whole_root, home);
    let (server, url) = serve(Route::Body);
    let out = user(&whole_root, "update.sh", &[&url], home);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("does not answer range requests, so the whole zip is downloaded"),
        "{said}"
    );
    assert_eq!(release_files(&whole_root, home), want);
    // The probe (answered with the whole file, cut off) and the whole download.
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());

    // A release address that redirects to a storage host on another port, whose first long
    // answer breaks off half way.
    let storage = Server::start();
    let zip = &releases().new;
    let name = zip.file_name().unwrap().to_str().unwrap();
    storage.route(
        &format!("/files/{name}"),
        Route::ranged_dropping_once(std::fs::read(zip).unwrap()),
    );
    let front = Server::start();
    front.route(
        &format!("/rel/{name}"),
        Route::Redirect(format!("{}/storage/files/{name}", storage.base)),
    );
    let moved_root = unpack_old(&home.join("moved"));
    give_user_world(&moved_root, home);
    let out = user(
        &moved_root,
        "update.sh",
        &[&format!("{}/client/rel/{name}", front.base)],
        home,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(release_files(&moved_root, home), want);
    let asked = storage.requests();
    let resumed = asked.iter().any(|a| {
        asked.iter().any(|b| {
            a != b
                && a.rsplit_once('-').map(|x| x.1) == b.rsplit_once('-').map(|x| x.1)
                && a.contains(" [")
        })
    });
    assert!(
        resumed,
        "a range asked again from where it broke: {asked:?}"
    );
    // The redirect was followed once, then the storage host was asked directly.
    assert!(
        front.requests().len() < asked.len(),
        "{:?}",
        front.requests()
    );
}

#[test]
fn a_package_the_new_core_refuses_is_left_out_and_the_node_that_needs_it_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack_old(home);
    let out = user(
        &root,
        "packages.sh",
        &["install", "likes-old-demo==1.0"],
        home,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    support::write_file(
        &root,
        "ComfyUI/custom_nodes/old-node/requirements.txt",
        "likes-old-demo>=1.0\n",
    );
    support::write_file(&root, "ComfyUI/custom_nodes/old-node/__init__.py", "");
    let (_server, url) = serve(Route::ranged);

    let check = user(&root, "update.sh", &["--check", &url], home);
    let said = stderr(&check);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains(
            "likes-old-demo 1.0 requires update-demo<2; the new release protects update-demo 2.0"
        ),
        "{said}"
    );

    let out = user(&root, "update.sh", &[&url], home);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Left out: likes-old-demo"), "{said}");
    assert!(
        said.contains("Custom node old-node: its requirements are not met in the new release: likes-old-demo>=1.0 (not installed)"),
        "{said}"
    );
    assert_eq!(
        installed(&root, home, "update-demo").as_deref(),
        Some("2.0")
    );
    assert_eq!(installed(&root, home, "likes-old-demo"), None);
    assert!(root
        .join("ComfyUI/custom_nodes/old-node/__init__.py")
        .exists());
}

#[test]
fn another_platform_or_a_running_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack_old(home);

    // The same release, said to be for Windows, as a local zip.
    let other = home.join("other/anymatix");
    support::copy_tree(&root, &other);
    let manifest = other.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"linux-x86_64\"", "\"windows-x86_64\""),
    )
    .unwrap();
    let zip = home.join("windows.zip");
    let out = support::xtask(&["archive", other.to_str().unwrap(), zip.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = fingerprint(&root, home);
    let refused = user(&root, "update.sh", &[zip.to_str().unwrap()], home);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("is for windows-x86_64; this anymatix is linux-x86_64"),
        "{}",
        stderr(&refused)
    );

    // A python of the folder still running (as ComfyUI would).
    let mut running = Command::new(root.join("python/bin/python3"))
        .args(["-c", "import time; time.sleep(60)"])
        .spawn()
        .unwrap();
    let (_server, url) = serve(Route::ranged);
    let refused = user(&root, "update.sh", &[&url], home);
    let said = stderr(&refused);
    running.kill().unwrap();
    running.wait().unwrap();
    assert_eq!(refused.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("process {}: ", running.id())),
        "{said}"
    );
    assert_same(&fingerprint(&root, home), &before, "nothing changed");
}

/// Waits until `condition` holds (at most a minute).
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn partial_downloads(root: &Path) -> u64 {
    std::fs::read_dir(root.join(".update/download"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_update_leaves_a_working_anymatix_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = unpack_old(home);
    give_user_world(&root, home);
    let before = fingerprint(&root, home);

    // kill -9 while downloading (a server at 256 KiB/s, 2 MiB to fetch).
    let (server, url) = serve(|body| Route::ranged_slowly(body, 256 << 10));
    let mut update = user_command(&root, "update.sh", &[&url], home);
    std::os::unix::process::CommandExt::process_group(&mut update, 0);
    let mut child = update
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a download under way", || {
        partial_downloads(&root) > 64 << 10
    });
    let group = child.id() as i32;
    assert!(Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
    assert_same(&fingerprint(&root, home), &before, "the old tree untouched");
    let start = user(&root, "run_comfyui.sh", &["--quick-test-for-ci"], home);
    assert!(start.status.success(), "{}", stderr(&start));
    let asked_before = server.requests().len();
    let out = user(&root, "update.sh", &[&url], home);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(manifest_version(&root), "0.0.2-test");
    let later = &server.requests()[asked_before..];
    assert!(
        later.iter().any(|r| !r.contains(" [0-")),
        "the download went on from where it stopped: {later:?}"
    );
    let after = fingerprint(&root, home);

    // Stopped half way through a switch (back), as a kill leaves it.
    stop_switch_half_way(&root, &["--rollback"]);
    assert!(
        !root.join("python").exists() || !root.join("ComfyUI/models").exists(),
        "half switched"
    );
    let start = user(&root, "run_comfyui.sh", &["--quick-test-for-ci"], home);
    let said = stderr(&start);
    assert!(start.status.success(), "{said}");
    assert!(
        said.contains("An interrupted switch between releases was taken back"),
        "{said}"
    );
    assert_same(
        &fingerprint(&root, home),
        &after,
        "the release it had, whole",
    );
    let back = user(&root, "update.sh", &["--rollback"], home);
    assert!(back.status.success(), "{}", stderr(&back));
    assert_same(&fingerprint(&root, home), &before, "rolled back");
}
