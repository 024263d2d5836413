//! The real product, end to end (opt-in: it downloads gigabytes). The default distribution,
//! `anymatix/distribution.yml`, is built for linux-x86_64 with the real PyTorch CUDA stack and
//! every ComfyUI and ComfyUI-Manager requirement from PyPI, and ComfyUI (0.33.0 unless
//! `ANYMATIX_REAL_PRODUCT_COMFYUI=0.3.64`) and ComfyUI-Manager from the source snapshots in
//! `../shared/product/` (git repositories made here); only Miniforge's release server is the
//! loopback stand-in. `cargo xtask fetch` gathers the wheels first, and `portable --offline`
//! builds from them, timed as a build with warm caches. The zip is unpacked elsewhere, the
//! build's working folders are deleted, and ComfyUI is started from the unpacked copy: its own
//! start-up check twice (first and second start), then served, asked for its nodes, and made to
//! run a workflow whose output image is checked pixel by pixel.
//!
//! ```sh
//! cargo test --features real-product --test it real_product -- --nocapture
//! ```
//! `ANYMATIX_REAL_PRODUCT_DIR=/some/dir` keeps the build there (and its wheelhouse, so a second
//! run downloads nothing new).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;
use support::{git, world};

/// The workflow of the snapshots' README: no model file needed, a known output.
const WORKFLOW: &str = r#"{"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}},
 "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
 "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "check"}}}"#;

fn shared_product() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/product");
    assert!(
        dir.join("README.md").is_file(),
        "the product snapshots are expected in {} (see the README)",
        dir.display()
    );
    dir
}

/// A git repository of a snapshot tarball, committed (with `--force`: their .gitignore files name
/// tracked files) and tagged `tag`.
fn snapshot_repo(tarball: &Path, folder: &str, into: &Path, tag: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
    let repo = into.join(folder);
    git(&repo, &["init", "--quiet"]);
    git(&repo, &["add", "-A", "--force"]);
    git(&repo, &["commit", "--quiet", "-m", "snapshot"]);
    if let Some(tag) = tag {
        git(&repo, &["tag", tag]);
    }
    repo
}

/// One HTTP/1.1 exchange with ComfyUI on loopback: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    support::http_exchange(port, method, path, &[], body)
}

/// Which ComfyUI snapshot to build: 0.33.0 (2026, the current one) unless
/// `ANYMATIX_REAL_PRODUCT_COMFYUI` names 0.3.64 (October 2025), kept for comparison.
/// Runs a command with its output shown as it comes (as the build's would be) and kept:
/// (its status, everything it printed).
fn logged(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|stream| {
        std::thread::spawn(move || {
            let mut kept = String::new();
            for line in std::io::BufReader::new(stream).lines() {
                let line = line.unwrap_or_default();
                eprintln!("{line}");
                kept.push_str(&line);
                kept.push('\n');
            }
            kept
        })
    })
    .collect();
    let log: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    (child.wait().unwrap(), log)
}

fn comfyui_version() -> String {
    std::env::var("ANYMATIX_REAL_PRODUCT_COMFYUI").unwrap_or_else(|_| "0.33.0".into())
}

/// The snapshot tarball of a ComfyUI version (`../shared/product/README.md`).
fn comfyui_snapshot(version: &str) -> &'static str {
    match version {
        "0.33.0" => "ComfyUI-783545f689a0",
        "0.3.64" => "ComfyUI-a125cd84b054",
        other => {
            panic!("ANYMATIX_REAL_PRODUCT_COMFYUI={other}: the snapshots are 0.33.0 and 0.3.64")
        }
    }
}

/// The build record's steps that took half a second or more, as `step 1.2 s`.
fn timed_steps(record: &serde_json::Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["seconds"].as_f64().unwrap() >= 0.5)
        .map(|s| {
            format!(
                "{} {:.1} s",
                s["step"].as_str().unwrap(),
                s["seconds"].as_f64().unwrap()
            )
        })
        .collect()
}

/// Every volume unpacked with `unzip` into `home`, as a user would: into the same folder.
fn unzip_all(zips: &[PathBuf], home: &Path) {
    for zip in zips {
        let status = Command::new("unzip")
            .args(["-q", "-o"])
            .arg(zip)
            .arg("-d")
            .arg(home)
            .status()
            .unwrap();
        assert!(status.success(), "unzip {}", zip.display());
    }
}

/// The zip or its volumes, and their bytes together.
fn zip_volumes(zip: &Path) -> (Vec<PathBuf>, u64) {
    let zips = xtask::stages::archive::zip_or_volumes(zip);
    assert!(!zips.is_empty(), "no zip nor volumes at {}", zip.display());
    let bytes = zips
        .iter()
        .map(|z| std::fs::metadata(z).unwrap().len())
        .sum();
    (zips, bytes)
}

/// The default distribution, with only the unreachable sources replaced: ComfyUI and
/// ComfyUI-Manager from these repositories at these revisions. Written to `path`.
fn real_distribution(path: &Path, comfy: (&Path, &str), manager: (&Path, &str)) -> PathBuf {
    let w = world();
    // The default distribution, with only the unreachable sources replaced.
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/distribution.yml");
    let mut doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(default).unwrap()).unwrap();
    doc["installer"]["base_url"] = Value::from(w.base_url("real-product"));
    let repo_list = doc["repos"].as_sequence_mut().unwrap();
    for repo in repo_list.iter_mut() {
        let (url, rev) = match repo["name"].as_str().unwrap() {
            "ComfyUI" => comfy,
            "ComfyUI-Manager" => manager,
            other => panic!("the default distribution gained repo {other}: give it a snapshot"),
        };
        repo["url"] = Value::from(format!("file://{}", url.display()));
        repo["rev"] = Value::from(rev);
    }
    // The stand-in Miniforge's interpreter is this host's CPython, built for this host's glibc
    // (a real Miniforge's is built for glibc 2.17): the limit is raised to it for that reason only.
    let host_glibc = String::from_utf8(
        Command::new("python3")
            .args([
                "-c",
                "import os; print(os.confstr('CS_GNU_LIBC_VERSION').split()[1])",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    doc["platforms"]["linux-x86_64"]["requires_at_most"]["glibc"] =
        Value::from(host_glibc.trim().to_string());
    std::fs::write(path, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    path.to_path_buf()
}

/// `cargo xtask fetch` (with PyPI), then `portable --offline` of `manifest` into `out` as
/// `version`: (fetch time, build time, their logs).
fn fetch_and_build(
    manifest: &Path,
    out: &Path,
    version: &str,
) -> (Duration, Duration, String, String) {
    // Everything the build downloads (3 GB of wheels) first, with `fetch`: pip's HTTP cache stays
    // cold where the index sends no caching headers, so the build is timed from local copies, as
    // with warm caches. A kept folder keeps its wheelhouse for the next run.
    let fetch_started = Instant::now();
    let mut fetch = Command::new(support::xtask_binary());
    fetch
        .args(["fetch", "--manifest", manifest.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()]);
    support::pypi_env(&mut fetch);
    let (status, fetch_log) = logged(&mut fetch);
    assert!(status.success(), "fetch failed (its output is above)");
    let fetch_time = fetch_started.elapsed();

    let started = Instant::now();
    let mut build = Command::new(support::xtask_binary());
    build
        .args([
            "portable",
            "--offline",
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .args(["--out", out.to_str().unwrap(), "--version", version]);
    let (status, build_log) = logged(&mut build);
    let build_time = started.elapsed();
    assert!(status.success(), "the build failed (its output is above)");
    (fetch_time, build_time, fetch_log, build_log)
}

/// ComfyUI served from `comfy_dir` (its log in `dir/comfyui-server.log`): its page, its nodes,
/// and the workflow through its executor, whose image is checked pixel by pixel. Returns the
/// node types it serves and the image's name.
fn serve_and_run_workflow(python: &Path, comfy_dir: &Path, dir: &Path) -> (usize, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("comfyui-server.log")).unwrap();
    let mut server = Command::new(python);
    server
        .args(["-s", "main.py", "--cpu", "--listen", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .current_dir(comfy_dir)
        .env_remove("PYTHONPATH")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    {
        use std::os::unix::process::CommandExt;
        server.process_group(0);
    }
    let mut server = server.spawn().unwrap();
    let stop = |server: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", server.id())])
            .status();
        let _ = server.wait();
    };
    let served = (|| -> Result<(usize, String), String> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match http(port, "GET", "/", "") {
                Ok((200, page)) if page.contains("<html") || page.contains("<!DOCTYPE") => break,
                _ if Instant::now() > deadline => return Err("no page within 600 s".into()),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        let (status, info) = http(port, "GET", "/object_info", "").map_err(|e| e.to_string())?;
        let info: serde_json::Value =
            serde_json::from_str(&info).map_err(|e| format!("/object_info ({status}): {e}"))?;
        let nodes = info.as_object().map_or(0, |o| o.len());
        if info.get("KSampler").is_none() {
            return Err(format!(
                "/object_info lists {nodes} node types, no KSampler"
            ));
        }
        let body = format!("{{\"prompt\": {WORKFLOW}}}");
        let (status, answer) = http(port, "POST", "/prompt", &body).map_err(|e| e.to_string())?;
        let answer: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("POST /prompt ({status}): {e}: {answer}"))?;
        let id = answer["prompt_id"]
            .as_str()
            .ok_or(format!("POST /prompt ({status}): {answer}"))?
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, history) =
                http(port, "GET", &format!("/history/{id}"), "").map_err(|e| e.to_string())?;
            let history: serde_json::Value = serde_json::from_str(&history).unwrap_or_default();
            let entry = &history[&id];
            if entry["status"]["completed"].as_bool() == Some(true) {
                let image = &entry["outputs"]["3"]["images"][0];
                return Ok((
                    nodes,
                    image["filename"].as_str().unwrap_or_default().to_string(),
                ));
            }
            if entry["status"]["status_str"].as_str() == Some("error") {
                return Err(format!("the workflow failed: {entry}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the workflow did not finish within 300 s: {history}"
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })();
    stop(&mut server);
    let (node_types, image) = served.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.join("comfyui-server.log")).unwrap_or_default();
        panic!("{e}\nComfyUI's log:\n{log}")
    });
    // Every pixel of the red image, inverted: (0, 255, 255), 64 by 48.
    let check = Command::new(python)
        .args([
            "-s",
            "-c",
            "import sys; from PIL import Image; i = Image.open(sys.argv[1]).convert('RGB'); \
             assert i.size == (64, 48), i.size; assert set(i.getdata()) == {(0, 255, 255)}, set(i.getdata()); print('ok')",
        ])
        .arg(comfy_dir.join("output").join(&image))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    (node_types, image)
}

mod aarch64;
mod macos;
mod packages;
mod update;
mod windows;

/// A cross build's folder and sources: `dir` (`$ANYMATIX_REAL_PRODUCT_DIR/<name>` when kept),
/// git repositories of the product snapshots, and the default distribution with only the
/// unreachable sources replaced (Miniforge from the loopback server as client `name`, the
/// repos from the snapshots), then changed by `edit`.
struct CrossProduct {
    dir: PathBuf,
    manifest: PathBuf,
    out: PathBuf,
    _temp: tempfile::TempDir,
}

/// Git repositories of the product snapshots in `dir/repos` (made anew): ComfyUI's, tagged as
/// the version its comfyui_version.py says (not as the release the default distribution names),
/// and ComfyUI-Manager's. Returns (ComfyUI, its tag, ComfyUI-Manager).
fn product_repos(dir: &Path) -> (PathBuf, String, PathBuf) {
    let repos = dir.join("repos");
    if repos.exists() {
        std::fs::remove_dir_all(&repos).unwrap();
    }
    let product = shared_product();
    let comfy_version = comfyui_version();
    let comfy_tag = format!("v{comfy_version}");
    let comfy = snapshot_repo(
        &support::entry_starting_with(&product, comfyui_snapshot(&comfy_version)),
        "ComfyUI",
        &repos,
        Some(&comfy_tag),
    );
    let manager = snapshot_repo(
        &support::entry_starting_with(&product, "ComfyUI-Manager-"),
        "ComfyUI-Manager",
        &repos,
        None,
    );
    (comfy, comfy_tag, manager)
}

/// The zip's tree as a reviewer reads it: its folders two levels down, and the top-level names
/// of site-packages (versions cut from `.dist-info` names), each with its file count.
fn tree_shape(zip: &Path, python: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let site = format!("anymatix/python/lib/python{python}/site-packages/");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().unwrap().to_string();
        let key = if let Some(rest) = name.strip_prefix(&site) {
            let top = rest.split('/').next().unwrap();
            let top = match top.find(".dist-info") {
                Some(_) => format!("{}-*.dist-info", top.split('-').next().unwrap()),
                None => top.to_string(),
            };
            format!("{site}{top}")
        } else {
            let parts: Vec<&str> = name.split('/').collect();
            parts[..parts.len().min(3)].join("/")
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} ({} files)\n", if *n > 10 { "many" } else { "few" }))
        .collect()
}

fn cross_product(name: &str, edit: impl FnOnce(&mut Value)) -> CrossProduct {
    let keep = std::env::var_os("ANYMATIX_REAL_PRODUCT_DIR").map(|d| PathBuf::from(d).join(name));
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    let (comfy, comfy_tag, manager) = product_repos(&dir);
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/distribution.yml");
    let mut doc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(default).unwrap()).unwrap();
    let base_url = world().base_url(&format!("real-product-{name}"));
    // conda packages from the world's loopback channel (`support::channel`), as every stand-in's.
    doc["installer"]["channel"] = Value::from(format!(
        "{}/conda-forge",
        base_url.trim_end_matches("/releases")
    ));
    doc["installer"]["base_url"] = Value::from(base_url);
    for repo in doc["repos"].as_sequence_mut().unwrap().iter_mut() {
        let (url, rev) = match repo["name"].as_str().unwrap() {
            "ComfyUI" => (&comfy, comfy_tag.as_str()),
            "ComfyUI-Manager" => (&manager, "main"),
            other => panic!("the default distribution gained repo {other}: give it a snapshot"),
        };
        repo["url"] = Value::from(format!("file://{}", url.display()));
        repo["rev"] = Value::from(rev);
    }
    edit(&mut doc);
    let manifest = dir.join("distribution.yml");
    std::fs::write(&manifest, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let out = dir.join("out");
    for working in ["stage", "verify"] {
        let _ = std::fs::remove_dir_all(out.join(working));
    }
    // The stand-in installer is made anew by each run under the same tag, where the cache
    // rightly trusts a tag's asset once downloaded: an earlier run's copy goes.
    if let Ok(cached) = std::fs::read_dir(out.join("cache")) {
        for entry in cached.map(Result::unwrap) {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("Miniforge3-")
            {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    CrossProduct {
        dir,
        manifest,
        out,
        _temp: temp,
    }
}

impl CrossProduct {
    /// `portable` with `args` from PyPI, as version 0.0.0-real: (how long, its output). A failed
    /// build or a warning in its output fails the test.
    fn build(&self, args: &[&str], env: &[(&str, &Path)]) -> (Duration, String) {
        let started = Instant::now();
        let mut build = Command::new(support::xtask_binary());
        build
            .arg("portable")
            .args(args)
            .args(["--manifest", self.manifest.to_str().unwrap()])
            .args([
                "--out",
                self.out.to_str().unwrap(),
                "--version",
                "0.0.0-real",
            ]);
        for (key, value) in env {
            build.env(key, value);
        }
        support::pypi_env(&mut build);
        let (status, log) = logged(&mut build);
        let took = started.elapsed();
        assert!(status.success(), "the build failed (its output is above)");
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARNING")).collect();
        assert!(
            warnings.is_empty(),
            "the build log has warnings: {warnings:#?}"
        );
        (took, log)
    }

    /// The steps of the build record of `id` (`<platform>[-<variant>]`) that took half a
    /// second or more.
    fn steps(&self, id: &str) -> Vec<String> {
        let record = self
            .out
            .join(format!("anymatix-0.0.0-real-{id}.build.json"));
        timed_steps(&serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap())
    }

    /// The zip of `id` (or its volumes) unpacked into a folder with a space and an "é", the
    /// build's working folders then removed: the unpacked `anymatix/`.
    fn unpack(&self, id: &str) -> PathBuf {
        let (zips, _) = zip_volumes(&self.out.join(format!("anymatix-0.0.0-real-{id}.zip")));
        let home = self.dir.join("unpacked elsewhere é");
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        unzip_all(&zips, &home);
        for working in ["stage", "verify"] {
            let _ = std::fs::remove_dir_all(self.out.join(working));
        }
        home.join("anymatix")
    }
}

/// Runs ComfyUI's own start-up check from the unpacked copy; returns how long it took and what
/// it printed.
fn quick_test(python: &Path, comfy: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(python)
        .args(["-s", "main.py", "--cpu", "--quick-test-for-ci"])
        .current_dir(comfy)
        .env_remove("PYTHONPATH")
        // As a user runs it: free to write bytecode, so what the zip lacks is counted.
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ComfyUI did not start:\n{text}");
    assert!(!text.contains("IMPORT FAILED"), "{text}");
    assert!(
        text.contains("ComfyUI-Manager"),
        "the custom node loaded: {text}"
    );
    (elapsed, text)
}

/// Proven on linux-x86_64, the one platform that builds here.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn the_real_product_builds_and_comfyui_starts_from_the_unpacked_zip() {
    let keep = std::env::var_os("ANYMATIX_REAL_PRODUCT_DIR").map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let comfy_version = comfyui_version();
    let (comfy, comfy_tag, manager) = product_repos(&dir);

    let manifest = real_distribution(
        &dir.join("distribution.yml"),
        (&comfy, &comfy_tag),
        (&manager, "main"),
    );

    let out = dir.join("out");
    let (fetch_time, build_time, fetch_log, build_log) =
        fetch_and_build(&manifest, &out, "0.0.0-real");
    // A warning in a build's log must mean something: none is expected.
    let warnings: Vec<&str> = fetch_log
        .lines()
        .chain(build_log.lines())
        .filter(|l| l.contains("WARNING"))
        .collect();
    assert!(
        warnings.is_empty(),
        "the build log has warnings: {warnings:#?}"
    );
    let build_record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("anymatix-0.0.0-real-linux-x86_64.build.json")).unwrap(),
    )
    .unwrap();
    let steps = timed_steps(&build_record);

    let zip = out.join("anymatix-0.0.0-real-linux-x86_64.zip");
    // One zip, or volumes where it is over GitHub's limit: the first holds the manifest.
    let (zips, zip_bytes) = zip_volumes(&zip);
    let parts = zips.len();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zips[0]).unwrap()).unwrap();
    let manifest_json: serde_json::Value = {
        let mut text = String::new();
        archive
            .by_name("anymatix/manifest.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let prune = &manifest_json["prune"];

    // Unpacked where a user might, with the build's working folders gone.
    let home = dir.join("unpacked elsewhere é");
    if home.exists() {
        std::fs::remove_dir_all(&home).unwrap();
    }
    std::fs::create_dir_all(&home).unwrap();
    // As a user would: every volume with `unzip`, into the same folder.
    drop(archive);
    let unpack_started = Instant::now();
    unzip_all(&zips, &home);
    let unpack_time = unpack_started.elapsed();
    for working in ["stage", "verify"] {
        let path = out.join(working);
        if path.exists() {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let root = home.join("anymatix");
    let python = root.join("python/bin/python3");
    let comfy_dir = root.join("ComfyUI");

    let count_pyc = || {
        walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
            .count()
    };
    let shipped_pyc = count_pyc();
    // The default variant is the CUDA 13.0 line, and says so: manifest.json names it, and the
    // unpacked torch reads as its check promised (the build ran that check twice already).
    let variant = &manifest_json["variant"];
    assert_eq!(variant["name"], "nvidia", "{variant}");
    assert_eq!(variant["cuda"], "13.0", "{variant}");
    let built_for = Command::new(&python)
        .args([
            "-s",
            "-c",
            "import torch; print(torch.version.cuda, torch._C._cuda_getArchFlags())",
        ])
        .output()
        .unwrap();
    let built_for = String::from_utf8_lossy(&built_for.stdout)
        .trim()
        .to_string();
    for wanted in variant["cuda_architectures"].as_array().unwrap() {
        let wanted = wanted.as_str().unwrap();
        assert!(
            built_for.split_whitespace().any(|a| a == wanted),
            "{wanted}: {built_for}"
        );
    }
    assert!(built_for.starts_with("13.0 "), "{built_for}");

    let (first, _) = quick_test(&python, &comfy_dir);
    let written_by_first = count_pyc() - shipped_pyc;
    let (second, _) = quick_test(&python, &comfy_dir);

    // The headers kept are enough to build a C extension against the unpacked copy.
    support::build_c_extension_against(&python, &root, &dir.join("extension"));

    let (node_types, image) = serve_and_run_workflow(&python, &comfy_dir, &dir);

    // Package management on the real thing, with PyPI.
    let wheelhouse = out.join("cache/wheels/linux-x86_64");
    let measured = packages::check(&root, &wheelhouse, || quick_test(&python, &comfy_dir).1);

    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    eprintln!(
        "\nThe real product (linux-x86_64, ComfyUI {comfy_version}, Python {}, {} packages):\n\
         fetch {:.1} min; build {:.1} min: {}\n\
         environment {:.2} GiB in {} files; pruned {:.2} GiB in {} files; \
         zip {:.2} GiB, {} bytes ({} volumes); unpacked with unzip in {:.1} s\n\
         left out: {}\n\
         needs of the system: {}\n\
         missing libraries: {} expected by the policy, {} unexplained\n\
         bytecode shipped: {} modules, {:.1} MiB; the first start wrote {written_by_first} more .pyc\n\
         ComfyUI from the unpacked copy: first start {:.1} s, second {:.1} s; \
         served {node_types} node types; the workflow wrote {image} (64x48, every pixel 0,255,255)\n\
         variant: {} (torch.version.cuda and its architectures: {built_for})\n\
         packages.sh: {} protected packages; a state kept in {} s; a custom node's requirements \
         installed from PyPI in {:.1} s; undo 2 in {:.1} s, every file as before",
        manifest_json["python"].as_str().unwrap_or("?"),
        manifest_json["packages"].as_array().map_or(0, Vec::len),
        fetch_time.as_secs_f64() / 60.0,
        build_time.as_secs_f64() / 60.0,
        steps.join(", "),
        gib(prune["before"]["bytes"].as_u64().unwrap()),
        prune["before"]["files"],
        gib(prune["after"]["bytes"].as_u64().unwrap()),
        prune["after"]["files"],
        gib(zip_bytes),
        zip_bytes,
        parts,
        unpack_time.as_secs_f64(),
        manifest_json["left_out"].as_array().map_or("nothing".into(), |l| l
            .iter()
            .map(|p| format!("{} ({} MB)", p["name"].as_str().unwrap_or("?"), p["bytes"].as_u64().unwrap_or(0) / 1_000_000))
            .collect::<Vec<_>>()
            .join(", ")),
        prune["linkage"]["requires"],
        prune["linkage"]["missing"].as_array().map_or(0, |m| m
            .iter()
            .filter(|m| m.get("optional").is_some())
            .count()),
        prune["linkage"]["missing"].as_array().map_or(0, |m| m
            .iter()
            .filter(|m| m.get("optional").is_none())
            .count()),
        manifest_json["bytecode"]["modules"],
        manifest_json["bytecode"]["bytes"].as_u64().unwrap_or(0) as f64 / (1u64 << 20) as f64,
        first.as_secs_f64(),
        second.as_secs_f64(),
        variant["name"].as_str().unwrap_or("?"),
        measured.protected,
        measured
            .keep_seconds
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        measured.node_install_seconds,
        measured.undo_seconds,
    );
    if keep.is_none() {
        drop(temp);
    }
}
