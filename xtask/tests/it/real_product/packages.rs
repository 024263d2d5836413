//! `packages.sh` on the unpacked real product: the protected PyTorch set (with its CUDA
//! libraries) listed and kept (a request for another torch is refused, nothing changes), a custom
//! node's requirements installed from PyPI and the node loaded at ComfyUI's start, the
//! "numpy<2" a widely used node asks for recorded, and `undo` back to the exact files; with the
//! times of keeping a state and of undo. The node's requirements go through the page
//! (`packages.sh gui`), which shows the real core protected. The real torch wheel re-labelled
//! `+cpu` (as PyTorch's CPU index would offer it) is refused, and an upgrade that would take it
//! keeps the CUDA build.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// Figures for the summary.
pub struct Measured {
    pub protected: usize,
    pub keep_seconds: Vec<f64>,
    pub undo_seconds: f64,
    pub node_install_seconds: f64,
}

fn packages(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(root.join("packages.sh"));
    cmd.args(args).current_dir(root.parent().unwrap());
    support::pypi_env(&mut cmd);
    cmd.env_remove("PYTHONDONTWRITEBYTECODE");
    cmd.output().unwrap()
}

fn said(out: &Output) -> String {
    support::stderr(out)
}

/// Every file of python/ (bytecode aside) with its sha256: the environment, byte for byte.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    let prefix = root.join("python");
    walkdir::WalkDir::new(&prefix)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| !e.path().to_string_lossy().contains("__pycache__"))
        .filter(|e| e.file_name() != "anymatix-environment-id")
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(&prefix)
                .unwrap()
                .display()
                .to_string();
            let kind = if e.path_is_symlink() {
                format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
            } else if e.file_type().is_file() {
                support::sha256_hex(&std::fs::read(e.path()).unwrap())
            } else {
                "dir".into()
            };
            (rel, kind)
        })
        .collect()
}

/// The seconds in "… (N files, X s)." and "Undid … in X s." lines.
fn seconds(text: &str, prefix: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let before_s = l
                .trim_end_matches('.')
                .trim_end_matches(')')
                .trim_end_matches(" s");
            before_s.rsplit([' ', '(']).next()?.parse().ok()
        })
        .collect()
}

const NODE: &str = r#"import cv2, imageio_ffmpeg, piexif

class AnymatixProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "anymatix"
    def run(self):
        return ()

print("anymatix-probe-node loaded: opencv", cv2.__version__)
NODE_CLASS_MAPPINGS = {"AnymatixProbe": AnymatixProbe}
"#;

/// The real torch wheel of the wheelhouse with its version re-labelled (`2.11.0` to
/// `2.11.0+cpu`): its file name, its dist-info folder, METADATA and RECORD rewritten, every other
/// entry copied as it is.
pub(super) fn relabelled(
    wheelhouse: &Path,
    into: &Path,
    label: &str,
) -> (String, std::path::PathBuf) {
    use std::io::{Read, Write};
    let wheel = support::entry_starting_with(wheelhouse, "torch-");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let version = name.split('-').nth(1).unwrap().to_string();
    let labelled = format!("{version}+{label}");
    let old_info = format!("torch-{version}.dist-info/");
    let new_info = format!("torch-{labelled}.dist-info/");
    std::fs::create_dir_all(into).unwrap();
    let target = into.join(name.replacen(&version, &labelled, 1));
    let mut source = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(&target).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut metadata = String::new();
    let mut record = String::new();
    for i in 0..source.len() {
        let entry_name = source.by_index_raw(i).unwrap().name().unwrap().to_string();
        if entry_name == format!("{old_info}METADATA") {
            source
                .by_index(i)
                .unwrap()
                .read_to_string(&mut metadata)
                .unwrap();
        } else if entry_name == format!("{old_info}RECORD") {
            source
                .by_index(i)
                .unwrap()
                .read_to_string(&mut record)
                .unwrap();
        } else {
            let renamed = entry_name.replacen(&old_info, &new_info, 1);
            out.raw_copy_file_rename(source.by_index_raw(i).unwrap(), renamed)
                .unwrap();
        }
    }
    let metadata = metadata.replacen(
        &format!("\nVersion: {version}\n"),
        &format!("\nVersion: {labelled}\n"),
        1,
    );
    let digest = xtask::util::digest::record_digest(metadata.as_bytes());
    let record: String = record
        .lines()
        .map(|line| {
            let line = line.replacen(&old_info, &new_info, 1);
            if line.starts_with(&format!("{new_info}METADATA,")) {
                format!("{new_info}METADATA,sha256={digest},{}\n", metadata.len())
            } else {
                line + "\n"
            }
        })
        .collect();
    for (entry, text) in [("METADATA", &metadata), ("RECORD", &record)] {
        out.start_file(format!("{new_info}{entry}"), options)
            .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    out.finish().unwrap();
    (labelled, target)
}

pub fn check(root: &Path, wheelhouse: &Path, quick_test: impl Fn() -> String) -> Measured {
    let listed = packages(root, &["list"]);
    assert!(listed.status.success(), "{}", said(&listed));
    let listed = said(&listed);
    let protected: Vec<&str> = listed
        .lines()
        .filter(|l| l.ends_with(" protected"))
        .collect();
    for name in [
        "torch ",
        "torchvision ",
        "torchaudio ",
        "triton ",
        "nvidia-cudnn-cu13 ",
        // Pinned by torch through cuda-toolkit[cublas,…]: the extras were followed.
        "nvidia-cublas ",
    ] {
        assert!(
            protected.iter().any(|l| l.trim_start().starts_with(name)),
            "{name} is not listed as protected:\n{listed}"
        );
    }
    let mut keep_seconds = seconds(&listed, "Kept the environment's state");

    let before = hashes(root);
    let refused = packages(root, &["install", "torch==2.10.0"]);
    let text = said(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("torch: `The user requested torch==2.10.0` asks for another version; the environment keeps torch 2.11.0"),
        "{text}"
    );
    assert_eq!(
        hashes(root),
        before,
        "a refused install changed the environment"
    );

    // The CPU build of the same version (the real wheel, re-labelled), where a local index
    // has it: refused by name, and an upgrade that would take it (a label sorts above the plain
    // version) keeps the CUDA build. Nothing changes either way.
    let cpu_index = root.parent().unwrap().join("cpu index");
    let (labelled, _) = relabelled(wheelhouse, &cpu_index, "cpu");
    let cpu = cpu_index.to_str().unwrap();
    let pinned = format!("torch=={labelled}");
    let refused = packages(root, &["install", "--find-links", cpu, &pinned]);
    let text = said(&refused);
    println!(
        "packages.sh install {pinned} (exit {:?}):\n{text}",
        refused.status.code()
    );
    assert_eq!(refused.status.code(), Some(3), "{text}");
    assert!(
        text.contains("The user requested (constraint) torch===2.11.0"),
        "{text}"
    );
    assert!(
        text.contains("the environment keeps torch 2.11.0."),
        "{text}"
    );
    let upgraded = packages(
        root,
        &["install", "-U", "--no-deps", "--find-links", cpu, "torch"],
    );
    assert!(upgraded.status.success(), "{}", said(&upgraded));
    assert_eq!(hashes(root), before, "an install changed the CUDA torch");
    std::fs::remove_dir_all(&cpu_index).unwrap();

    // A custom node with the requirement lines of a widely used one (VideoHelperSuite's opencv
    // and imageio-ffmpeg, a metadata library), installed as its README says, from PyPI.
    let node = root.join("ComfyUI/custom_nodes/anymatix-probe-node");
    support::write_file(&node, "__init__.py", NODE);
    support::write_file(
        &node,
        "requirements.txt",
        "opencv-python-headless\nimageio-ffmpeg\npiexif\n",
    );
    // Through the page (`packages.sh gui`), as a user who does not use a terminal would.
    let mut gui = Command::new(root.join("packages.sh"));
    gui.args(["gui", "--no-browser"])
        .current_dir(root.parent().unwrap());
    support::pypi_env(&mut gui);
    let page = support::package_page::Page::serve(gui);
    let (status, state) = page.api("GET", "/api/state", "");
    assert_eq!(status, 200, "{state}");
    let shown: Vec<&str> = state["packages"]["protected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["protected"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "torch",
        "torchvision",
        "torchaudio",
        "triton",
        "nvidia-cublas",
    ] {
        assert!(
            shown.contains(&name),
            "the page does not show {name} protected: {shown:?}"
        );
    }
    let started = Instant::now();
    let body = serde_json::json!({"args": ["-r", node.join("requirements.txt")]}).to_string();
    let job = page.change("/api/install", &body);
    let node_install_seconds = started.elapsed().as_secs_f64();
    let text = job["output"].as_str().unwrap_or_default().to_string();
    assert_eq!(job["exit"], 0, "{job}");
    keep_seconds.extend(seconds(&text, "Kept the environment's state"));
    drop(page);
    let log = quick_test();
    assert!(log.contains("anymatix-probe-node loaded: opencv"), "{log}");

    // What the issue saw replace numpy without a word: now recorded, and undone.
    let downgraded = packages(root, &["install", "numpy<2"]);
    let text = said(&downgraded);
    assert!(downgraded.status.success(), "{text}");
    keep_seconds.extend(seconds(&text, "Kept the environment's state"));
    let history = said(&packages(root, &["history"]));
    assert!(history.contains("downgraded numpy 2."), "{history}");

    let undone = packages(root, &["undo", "2"]);
    let text = said(&undone);
    assert!(undone.status.success(), "{text}");
    let undo_seconds = seconds(&text, "Undid ")[0];
    assert_eq!(hashes(root), before, "undo 2 did not give back every file");
    let checked = packages(root, &["check"]);
    assert!(checked.status.success(), "{}", said(&checked));
    std::fs::remove_dir_all(&node).unwrap();

    Measured {
        protected: protected.len(),
        keep_seconds,
        undo_seconds,
        node_install_seconds,
    }
}
