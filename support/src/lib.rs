//! What the tests and benchmarks of `xtask` share: hermetic stand-ins for every outside source
//! of a build (a loopback HTTP server with a Miniforge-shaped installer, git repositories made
//! here, a wheelhouse of wheels built here), real native binaries of every platform, and the
//! helpers that run `cargo xtask` and read what it made.

pub mod binaries;
pub mod channel;
pub mod constructor;
pub mod http;
pub mod installer;
pub mod listing;
pub mod macos;
pub mod package_page;
pub mod shell_installer;
pub mod wheels;
pub mod windows;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use listing::zip_listing;
use xtask::model::platform::Platform;
pub use xtask::util::digest::sha256_hex;

use http::{Route, Server};
use installer::HostPython;
use wheels::{build_wheel, WheelSpec};

pub const TAG: &str = "26.3.2-3";
/// A release whose published checksum does not match its installer.
pub const BAD_TAG: &str = "26.1.0-0";
/// A release whose download drops the connection half way (resumable with a range request).
pub const FLAKY_TAG: &str = "26.2.0-1";

pub struct World {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub server: Server,
    pub host: HostPython,
    pub wheelhouse: PathBuf,
    pub comfy_repo: PathBuf,
    pub node_repo: PathBuf,
    /// A custom node that fails to import (it needs a module nothing installs).
    pub broken_node_repo: PathBuf,
    /// The commit `v1.0` of the ComfyUI stand-in names (main has moved on since).
    pub comfy_tag_commit: String,
    /// The custom node is pinned by full commit id, an older one than its branch's head.
    pub node_commit: String,
    pub installer_sha256: String,
}

/// One world per test binary: the fixtures are read-only once made, so tests share them.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::create)
}

/// The installer asset of `tag` for this host.
pub fn asset(tag: &str) -> String {
    host_platform().miniforge_asset(tag)
}

/// The platform the tests run on (they build for it).
pub fn host_platform() -> Platform {
    Platform::host().expect("the tests run on one of the platforms the tool builds")
}

/// Writes `contents` at `root/rel`, making the folders on the way.
pub fn write_file(root: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// One HTTP/1.1 exchange on loopback: (status, body). `headers` come after `Host` (which is
/// `127.0.0.1:PORT` unless they give one) and a JSON content type.
pub fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    http_exchange_with_head(port, method, path, headers, body)
        .map(|(status, _, body)| (status, body))
}

/// As [`http_exchange`], with the answer's head (status line and headers) too.
pub fn http_exchange_with_head(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut head = String::new();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // aiohttp answers chunked when it streams; these bodies are JSON or HTML either way.
    Ok((status, head.to_string(), dechunk(&text, body.to_string())))
}

fn dechunk(head: &str, body: String) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body;
    }
    let mut out = String::new();
    let mut rest = body.as_str();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The entry of `dir` whose name starts with `starts` (a downloaded archive, an unpacked folder).
pub fn entry_starting_with(dir: &Path, starts: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(starts))
        .unwrap_or_else(|| panic!("no {starts}* in {}", dir.display()))
}

/// `cp -a`: the tree as it is, links and modes included.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// The `xtask` binary Cargo built beside the running test or benchmark (`target/<profile>/`).
pub fn xtask_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary lives in target/<profile>/deps");
    let binary = profile.join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with cargo, which builds it first",
        binary.display()
    );
    binary
}

impl World {
    fn create() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let host = HostPython::find();
        let server = Server::start();

        let script = installer::installer_script(&host, TAG).into_bytes();
        let installer_sha256 = serve_latest(&server, &script);
        let releases = "/releases";
        let flaky = format!("{releases}/download/{FLAKY_TAG}/{}", asset(FLAKY_TAG));
        server.route(
            &flaky,
            Route::DropsHalfway {
                cut_at: script.len() / 2,
                body: script.clone(),
            },
        );
        server.route(
            &format!("{flaky}.sha256"),
            Route::Body(format!("{installer_sha256}  {}\n", asset(FLAKY_TAG)).into_bytes()),
        );
        let bad = format!("{releases}/download/{BAD_TAG}/{}", asset(BAD_TAG));
        server.route(&bad, Route::Body(script));
        server.route(
            &format!("{bad}.sha256"),
            Route::Body(format!("{}  {}\n", "0".repeat(64), asset(BAD_TAG)).into_bytes()),
        );

        let wheelhouse = root.join("wheelhouse");
        std::fs::create_dir_all(&wheelhouse).unwrap();
        make_wheels(&wheelhouse);

        let (comfy_repo, comfy_tag_commit) = make_comfy_repo(&root.join("repos/ComfyUI"));
        let (node_repo, node_commit) = make_node_repo(&root.join("repos/anyfix-node"));
        let broken_node_repo = make_broken_node_repo(&root.join("repos/broken-node"));

        World {
            _dir: dir,
            root,
            server,
            host,
            wheelhouse,
            comfy_repo,
            node_repo,
            broken_node_repo,
            comfy_tag_commit,
            node_commit,
            installer_sha256,
        }
    }

    /// The releases URL for one client of the shared server (see [`http::Server`]).
    pub fn base_url(&self, client: &str) -> String {
        format!("{}/{client}/releases", self.server.base)
    }

    /// The requests that one client made.
    pub fn requests_of(&self, client: &str) -> Vec<String> {
        let prefix = format!("/{client}/");
        self.server
            .requests()
            .into_iter()
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }

    /// A manifest for the stand-ins, in `dir`, whose name is the client name on the server;
    /// `extra` is appended (YAML).
    pub fn manifest(&self, dir: &Path, release: &str, extra: &str) -> PathBuf {
        let sources = Sources {
            base: self.base_url(&client_name(dir)),
            wheelhouse: self.wheelhouse.clone(),
            comfy_repo: self.comfy_repo.clone(),
            node_repo: self.node_repo.clone(),
        };
        self.manifest_for(dir, release, extra, &sources)
    }

    /// Sources only the calling test uses, so it can take them away (stop the server, delete
    /// the repos and wheels): its own server with the release, and copies of the repos and the
    /// wheelhouse under `dir/sources`. Returns them with a manifest that names them.
    pub fn private_sources(&self, dir: &Path) -> (Server, PathBuf, PathBuf) {
        let server = Server::start();
        serve_latest(
            &server,
            installer::installer_script(&self.host, TAG).as_bytes(),
        );
        let copies = dir.join("sources");
        std::fs::create_dir_all(&copies).unwrap();
        for from in [&self.wheelhouse, &self.comfy_repo, &self.node_repo] {
            let status = Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(&copies)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let name = |p: &Path| copies.join(p.file_name().unwrap());
        let sources = Sources {
            base: format!("{}/{}/releases", server.base, client_name(dir)),
            wheelhouse: name(&self.wheelhouse),
            comfy_repo: name(&self.comfy_repo),
            node_repo: name(&self.node_repo),
        };
        let manifest = self.manifest_for(dir, "latest", "", &sources);
        (server, manifest, copies)
    }

    fn manifest_for(&self, dir: &Path, release: &str, extra: &str, sources: &Sources) -> PathBuf {
        let text = format!(
            r#"installer:
  release: {release}
  base_url: {base}
  channel: {base_root}/conda-forge
pip:
  find_links: ['{wheels}']
  no_index: true
python_packages: [anyfix-native]
platforms:
  linux-x86_64:
    conda_packages: [zlib=1.3.1]
repos:
  - name: ComfyUI
    url: 'file://{comfy}'
    rev: v1.0
    path: ComfyUI
    requirements: requirements.txt
  - name: anyfix-node
    url: 'file://{node}'
    rev: {node_commit}
    path: ComfyUI/custom_nodes/anyfix-node
smoke:
  imports: [anyfix_native, anyfix_cli, json]
  checks:
    - name: anyfix-cli reads its own version
      code: "import anyfix_cli; assert anyfix_cli.__version__ == '2.0.0', anyfix_cli.__version__"
  commands:
    - name: ComfyUI starts and loads its custom nodes
      run: ["{{python}}", "-s", "main.py", "--cpu", "--quick-test-for-ci"]
      cwd: ComfyUI
      timeout: 120
      fail_on: ["IMPORT FAILED"]
{extra}"#,
            base = sources.base,
            base_root = sources.base.trim_end_matches("/releases"),
            wheels = sources.wheelhouse.display(),
            comfy = sources.comfy_repo.display(),
            node = sources.node_repo.display(),
            node_commit = self.node_commit,
        );
        let path = dir.join("distribution.yml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

struct Sources {
    base: String,
    wheelhouse: PathBuf,
    comfy_repo: PathBuf,
    node_repo: PathBuf,
}

/// Serves release TAG as `latest`, with its checksum; returns the installer's sha256.
fn serve_latest(server: &Server, script: &[u8]) -> String {
    let sha256 = sha256_hex(script);
    server.route(
        "/releases/latest",
        Route::Redirect(format!("{}/any/releases/tag/{TAG}", server.base)),
    );
    let url = format!("/releases/download/{TAG}/{}", asset(TAG));
    server.route(&url, Route::Body(script.to_vec()));
    server.route(
        &format!("{url}.sha256"),
        Route::Body(format!("{sha256}  {}\n", asset(TAG)).into_bytes()),
    );
    sha256
}

pub fn client_name(dir: &Path) -> String {
    dir.file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches('.')
        .to_string()
}

fn make_wheels(dir: &Path) {
    let native_init = br#"import os
_libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "anyfix_native.libs")
if not os.path.isfile(os.path.join(_libs, "libanyfix-0a1b2c3d.so.1")):
    raise ImportError("anyfix_native: its vendored library is missing from " + _libs)
from . import testing
VALUE = 42
"#;
    build_wheel(
        dir,
        &WheelSpec {
            name: "anyfix-native",
            version: "1.0.0",
            requires: &[],
            files: &[
                ("anyfix_native/__init__.py", native_init),
                (
                    "anyfix_native/testing/__init__.py",
                    b"# runtime helpers, like numpy.testing\n",
                ),
                (
                    "anyfix_native/tests/test_native.py",
                    b"def test_value():\n    assert True\n",
                ),
                ("anyfix_native/include/anyfix.h", b"int anyfix(void);\n"),
                ("anyfix_native/docs/index.txt", b"documentation\n"),
                (
                    "anyfix_native.libs/libanyfix-0a1b2c3d.so.1",
                    b"\x7fELF stand-in for a vendored library\n",
                ),
            ],
            console_scripts: &[],
        },
    );
    // Reads its own metadata at import time, as transformers does: pruning .dist-info breaks it.
    let cli_init = br#"from importlib.metadata import version
__version__ = version("anyfix-cli")
def main():
    import anyfix_native
    print("anyfix-cli", __version__, anyfix_native.VALUE)
"#;
    build_wheel(
        dir,
        &WheelSpec {
            name: "anyfix-cli",
            version: "2.0.0",
            requires: &["anyfix-native>=1"],
            files: &[("anyfix_cli/__init__.py", cli_init)],
            console_scripts: &[("anyfix-cli", "anyfix_cli:main")],
        },
    );
    build_wheel(
        dir,
        &WheelSpec {
            name: "anyfix-extra",
            version: "0.5.0",
            requires: &[],
            files: &[("anyfix_extra/__init__.py", b"EXTRA = 'installed later'\n")],
            console_scripts: &[],
        },
    );
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=anymatix tests",
            "-c",
            "user.email=tests@anymatix.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts as ComfyUI does, as far as the build's checks see it: it needs its front-end data
/// (a package's `docs` folder, as ComfyUI serves comfyui_embedded_docs/docs), loads every custom
/// node and logs `(IMPORT FAILED)` for one that does not load, and `--quick-test-for-ci` exits 0.
const COMFY_MAIN: &str = r#"import importlib.util, os, sys, time
import anyfix_native
docs = os.path.join(os.path.dirname(anyfix_native.__file__), "docs")
if not os.path.isdir(docs):
    raise ValueError("'%s' does not exist" % docs)
print("ComfyUI stand-in v1.0")
here = os.path.dirname(os.path.abspath(__file__))
nodes = os.path.join(here, "custom_nodes")
times = []
for name in sorted(os.listdir(nodes)) if os.path.isdir(nodes) else []:
    init = os.path.join(nodes, name, "__init__.py")
    if not os.path.isfile(init):
        continue
    started = time.perf_counter()
    try:
        spec = importlib.util.spec_from_file_location(name.replace("-", "_"), init)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        ok = True
    except Exception as e:
        print("Cannot import %s module for custom nodes: %s" % (os.path.dirname(init), e), file=sys.stderr)
        ok = False
    times.append((time.perf_counter() - started, os.path.dirname(init), ok))
print(file=sys.stderr)
print("Import times for custom nodes:", file=sys.stderr)
for seconds, path, ok in times:
    print("{:6.1f} seconds{}: {}".format(seconds, "" if ok else " (IMPORT FAILED)", path), file=sys.stderr)
if "--quick-test-for-ci" in sys.argv:
    sys.exit(0)
"#;

fn make_comfy_repo(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet"]);
    write_file(dir, "main.py", COMFY_MAIN);
    write_file(dir, "comfy/__init__.py", "");
    write_file(dir, "requirements.txt", "anyfix-cli\n");
    write_file(dir, "tests/test_main.py", "def test_main():\n    pass\n");
    write_file(dir, "docs/usage.md", "# usage\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "v1.0"]);
    git(dir, &["tag", "-a", "v1.0", "-m", "v1.0"]);
    let tagged = git(dir, &["rev-parse", "HEAD"]);
    write_file(
        dir,
        "main.py",
        "raise SystemExit('ComfyUI stand-in, unreleased')\n",
    );
    git(dir, &["commit", "--quiet", "-am", "after v1.0"]);
    (dir.to_path_buf(), tagged)
}

fn make_broken_node_repo(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet"]);
    write_file(
        dir,
        "__init__.py",
        "import anyfix_not_installed  # a dependency its requirements forgot\nNODE_CLASS_MAPPINGS = {}\n",
    );
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "first"]);
    dir.to_path_buf()
}

/// Adds a repo, last, to the manifest at `manifest` (written by [`World::manifest`]).
pub fn add_repo(manifest: &Path, name: &str, url: &Path, rev: &str, path: &str) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let entry = format!(
        "  - name: {name}\n    url: 'file://{}'\n    rev: {rev}\n    path: {path}\nsmoke:\n",
        url.display()
    );
    assert!(text.contains("\nsmoke:\n"));
    std::fs::write(
        manifest,
        text.replacen("\nsmoke:\n", &format!("\n{entry}"), 1),
    )
    .unwrap();
}

fn make_node_repo(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet"]);
    write_file(dir, "__init__.py", "NODE_CLASS_MAPPINGS = {}\n");
    write_file(dir, "examples/workflow.json", "{}\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "first"]);
    let pinned = git(dir, &["rev-parse", "HEAD"]);
    write_file(
        dir,
        "__init__.py",
        "NODE_CLASS_MAPPINGS = {'unreleased': None}\n",
    );
    git(dir, &["commit", "--quiet", "-am", "second"]);
    (dir.to_path_buf(), pinned)
}

/// Runs `cargo xtask portable` with this manifest, out folder and version, then `extra`.
pub fn portable(manifest: &Path, out: &Path, version: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "portable",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    xtask(&args)
}

/// Serves a Miniforge stand-in for `platform` as release `tag` (with its `.sha256`) on the
/// world's server.
pub fn serve_installer(platform: Platform, tag: &str, bytes: &[u8]) {
    let asset = platform.miniforge_asset(tag);
    let url = format!("/releases/download/{tag}/{asset}");
    let server = &world().server;
    server.route(&url, Route::Body(bytes.to_vec()));
    server.route(
        &format!("{url}.sha256"),
        Route::Body(format!("{}  {asset}\n", sha256_hex(bytes)).into_bytes()),
    );
}

/// Builds the world's distribution for `platform` from Miniforge `release` (which
/// [`serve_installer`] served) into `dir/out`: on the cross route where `platform` is not this
/// machine's.
pub fn build_for(platform: Platform, dir: &Path, release: &str) -> (Output, PathBuf) {
    let manifest = world().manifest(dir, release, "");
    let out = dir.join("out");
    let done = portable(&manifest, &out, "1.0.0", &["--platform", platform.name()]);
    (done, out)
}

/// Runs `cargo xtask` with an environment cleared of the user's pip settings, so only the
/// manifest decides where pip looks.
pub fn xtask(args: &[&str]) -> Output {
    let mut cmd = Command::new(xtask_binary());
    cmd.args(args);
    hermetic_env(&mut cmd);
    cmd.output().unwrap()
}

/// For the tests that use PyPI: the machine's own pip settings (certificates, proxies) stay, but
/// no local wheelhouse, other index or Python path.
pub fn pypi_env(cmd: &mut Command) {
    for key in [
        "PIP_FIND_LINKS",
        "PIP_NO_INDEX",
        "PIP_INDEX_URL",
        "PYTHONPATH",
        "PYTHONHOME",
    ] {
        cmd.env_remove(key);
    }
}

/// Real wheels from PyPI for another platform: `pip download --no-deps --only-binary=:all:` of
/// `specs` for the `platforms` tags and CPython `python` into `dest`, which it returns the files
/// of, sorted. Panics with pip's output when it fails.
pub fn pip_download(dest: &Path, specs: &[&str], platforms: &[&str], python: &str) -> Vec<PathBuf> {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
    ])
    .arg("--disable-pip-version-check")
    .args(platforms.iter().flat_map(|p| ["--platform", p]))
    .args(["--python-version", python, "--dest"])
    .arg(dest)
    .args(specs);
    pypi_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pip download {}: {}",
        specs.join(" "),
        stderr(&out)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// `cargo xtask ARGS`, hermetic: whether it succeeded, and all it printed.
pub fn run_xtask(args: &[&str]) -> (bool, String) {
    let out = xtask(args);
    (out.status.success(), stderr(&out))
}

pub fn hermetic_env(cmd: &mut Command) {
    without_python_settings(cmd);
    cmd.env("PIP_CONFIG_FILE", "/dev/null");
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null");
}

/// Takes away the user's pip and Python settings (`PIP_*`, `PYTHON*`, `VIRTUAL_ENV`), for a
/// program that must see only what the test gives it (a Windows one under Wine too).
pub fn without_python_settings(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("PIP_") || key.starts_with("PYTHON") || key == "VIRTUAL_ENV" {
            cmd.env_remove(&key);
        }
    }
}

/// Every file under `dir` (bytecode and the environment's id aside) by its sha256: a tree, byte
/// for byte, to compare before and after an install and its undo.
pub fn file_hashes(dir: &Path) -> std::collections::BTreeMap<String, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.path().to_string_lossy().contains("__pycache__"))
        .filter(|e| e.file_name() != "anymatix-environment-id")
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                sha256_hex(&std::fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

pub fn stderr(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds a tiny C extension against the headers `python` reports (which must be inside `root`,
/// the unpacked copy), in `dir`, and imports it: what Triton does with its launcher at run time
/// and a user does with their own extensions. Panics with the compiler's or Python's output.
pub fn build_c_extension_against(python: &Path, root: &Path, dir: &Path) {
    let ask = |code: &str| {
        let out = Command::new(python)
            .args(["-s", "-c", code])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let include = ask("import sysconfig; print(sysconfig.get_paths()['include'])");
    let suffix = ask("import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))");
    assert!(
        Path::new(&include).starts_with(root),
        "the unpacked python finds its headers in the unpacked copy: {include}"
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("tiny.c"),
        "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n\
         static PyObject *answer(PyObject *s, PyObject *a) { return PyLong_FromLong(42); }\n\
         static PyMethodDef methods[] = {{\"answer\", answer, METH_NOARGS, NULL}, {NULL}};\n\
         static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, \"tiny\", NULL, -1, methods};\n\
         PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&module); }\n",
    )
    .unwrap();
    let compiled = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join(format!("tiny{suffix}")))
        .arg(format!("-I{include}"))
        .arg(dir.join("tiny.c"))
        .output()
        .unwrap();
    assert!(compiled.status.success(), "{}", stderr(&compiled));
    let imported = Command::new(python)
        .args(["-s", "-c", "import tiny; print(tiny.answer())"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert_eq!(String::from_utf8_lossy(&imported.stdout).trim(), "42");
}

/// `len` bytes that deflate cannot shrink (xorshift32 from `seed`, which must not be 0): the same
/// bytes on every run.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
