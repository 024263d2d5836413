//! The prune page (the HTML size report), opened in a real headless browser (Debian's chromium): the page's own
//! figures, drawn by its script, must equal the JSON behind it and the tool's terminal figures,
//! and a screenshot is taken (kept in the target folder for a look).

use std::path::Path;
use std::process::Command;

/// A file of `bytes` bytes.
fn write(root: &Path, rel: &str, bytes: usize) {
    support::write_file(root, rel, "x".repeat(bytes));
}

fn walk_sizes(tree: &Path, rel: &str) -> u64 {
    walkdir::WalkDir::new(tree.join(rel))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("the report test needs Debian's chromium: apt-get install chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every `<tag ... data-KEY="VALUE" ...>` of an element whose attribute `marker` is present.
fn elements_with<'a>(dom: &'a str, marker: &str) -> Vec<&'a str> {
    dom.split('<')
        .filter(|tag| tag.contains(&format!("{marker}=")))
        .collect()
}

fn attr(tag: &str, name: &str) -> String {
    let start = tag
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 2;
    tag[start..][..tag[start..].find('"').unwrap()].to_string()
}

/// A real ELF shared library at `tree/rel` (gcc), needing each of `needs`: libraries built in a
/// scratch folder and then deleted, so they are missing from the tree as no wheel ships them.
fn elf_needing(tree: &Path, rel: &str, needs: &[&str], code: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let out = tree.join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let source = scratch.path().join("lib.c");
    std::fs::write(&source, code).unwrap();
    let mut gcc = Command::new("gcc");
    gcc.args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&source)
        .arg("-Wl,--no-as-needed");
    for lib in needs {
        let empty = scratch.path().join("empty.c");
        std::fs::write(&empty, "int placeholder(void) { return 0; }\n").unwrap();
        let built = scratch.path().join(lib);
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&built)
            .arg(&empty)
            .arg(format!("-Wl,-soname,{lib}"))
            .status()
            .expect("the report test builds ELF files with gcc");
        assert!(status.success());
        gcc.arg(format!("-L{}", scratch.path().display()))
            .arg(format!("-l:{lib}"));
    }
    let status = gcc.status().unwrap();
    assert!(status.success());
}

#[test]
fn the_prune_page_shows_the_measured_figures() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("anymatix");
    let site = "python/lib/python3.12/site-packages";
    write(&tree, &format!("{site}/torch/lib/big.bin"), 300_000);
    write(&tree, &format!("{site}/torch/__pycache__/a.pyc"), 40_000);
    write(&tree, &format!("{site}/numpy/core.bin"), 120_000);
    write(&tree, &format!("{site}/numpy/tests/test_a.py"), 25_000);
    write(&tree, "python/lib/python3.12/idlelib/x.py", 10_000);
    write(&tree, "ComfyUI/main.py", 50_000);
    write(&tree, "ComfyUI/.git/objects/pack.bin", 60_000);
    // Native libraries: an NVSHMEM plugin whose MPI is absent as the policy expects, an extension
    // that needs a library nothing explains, and one that needs glibc 2.25 (getrandom).
    elf_needing(
        &tree,
        &format!("{site}/nvidia/nvshmem/lib/nvshmem_bootstrap_mpi.so.3"),
        &["libmpi.so.40"],
        "int f(void) { return 1; }\n",
    );
    elf_needing(
        &tree,
        &format!("{site}/mystery/_ext.so"),
        &["libmystery.so.1"],
        "#include <sys/random.h>\nint f(char *b) { return (int)getrandom(b, 4, 0); }\n",
    );
    let native: u64 = walk_sizes(&tree, &format!("{site}/nvidia"))
        + walk_sizes(&tree, &format!("{site}/mystery"));
    let html = dir.path().join("report.html");

    let out = Command::new(support::xtask_binary())
        .args([
            "prune",
            tree.to_str().unwrap(),
            "--platform",
            "linux-x86_64",
            "--dry-run",
            "--report",
        ])
        .arg(&html)
        .output()
        .unwrap();
    let terminal = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{terminal}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The JSON behind the page.
    let page = std::fs::read_to_string(&html).unwrap();
    let json_start = page
        .find(r#"<script type="application/json" id="data">"#)
        .unwrap();
    let json_text = &page[json_start..];
    let json_text =
        &json_text[json_text.find('>').unwrap() + 1..json_text.find("</script>").unwrap()];
    let data: serde_json::Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(data["after"]["bytes"], 470_000 + native);
    assert_eq!(data["before"]["bytes"], 605_000 + native);

    // What the browser drew from it.
    let profile = tempfile::tempdir().unwrap();
    let dump = chromium(
        &["--dump-dom", &format!("file://{}", html.display())],
        profile.path(),
    );
    let dom = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "the page's script ran to the end"
    );
    let kept = elements_with(&dom, "id=\"kept-bytes\" data-bytes");
    assert_eq!(attr(kept[0], "data-bytes"), (470_000 + native).to_string());
    // The native-library check: what the zip needs of the system, and what is missing.
    let linkage = &data["linkage"];
    let glibc = linkage["requires"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "glibc")
        .expect("glibc needs");
    let drawn = elements_with(&dom, "data-kind");
    let drawn_glibc = drawn
        .iter()
        .find(|t| attr(t, "data-kind") == "glibc")
        .unwrap();
    assert_eq!(
        attr(drawn_glibc, "data-version"),
        glibc["version"].as_str().unwrap()
    );
    assert!(
        terminal.contains(&format!(
            "needs of the system: glibc {}",
            glibc["version"].as_str().unwrap()
        )),
        "{terminal}"
    );
    let unexplained = elements_with(&dom, "data-count");
    assert_eq!(attr(unexplained[0], "data-count"), "1");
    assert!(
        dom.contains("mystery/_ext.so needs libmystery.so.1"),
        "{dom}"
    );
    let optional = elements_with(&dom, "data-links");
    assert_eq!(attr(optional[0], "data-name"), "nvshmem-network-plugins");
    assert_eq!(attr(optional[0], "data-links"), "1");
    assert!(
        terminal.contains("WARNING: 1 needed library is missing"),
        "{terminal}"
    );
    let rows = elements_with(&dom, "data-rule");
    let rules = data["rules"].as_array().unwrap();
    assert_eq!(rows.len(), rules.len());
    for (row, rule) in rows.iter().zip(rules) {
        assert_eq!(attr(row, "data-rule"), rule["rule"].as_str().unwrap());
        assert_eq!(attr(row, "data-bytes"), rule["bytes"].to_string());
        assert_eq!(attr(row, "data-files"), rule["files"].to_string());
        // ... and the terminal said the same.
        let line = terminal
            .lines()
            .find(|l| l.split_whitespace().next() == Some(rule["rule"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            line.split_whitespace().nth(1).unwrap(),
            rule["files"].to_string(),
            "{line}"
        );
    }
    let by_rule = |name: &str| {
        rules.iter().find(|r| r["rule"] == name).unwrap()["bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(by_rule("bytecode-caches"), 40_000);
    assert_eq!(by_rule("test-suites"), 25_000);
    assert_eq!(by_rule("unused-stdlib-modules"), 10_000);
    assert_eq!(by_rule("git-metadata"), 60_000);
    // The treemap's top-level boxes hold every kept byte.
    let boxes = elements_with(&dom, "data-depth");
    let top: u64 = boxes
        .iter()
        .filter(|b| attr(b, "data-depth") == "1")
        .map(|b| attr(b, "data-bytes").parse::<u64>().unwrap())
        .sum();
    assert_eq!(top, 470_000 + native);
    let paths: Vec<String> = boxes.iter().map(|b| attr(b, "data-path")).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("site-packages/torch/lib")),
        "torch has its own box: {paths:?}"
    );

    // A picture, for people.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prune-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1400,800",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", html.display()),
        ],
        profile.path(),
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
