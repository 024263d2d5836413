//! Conventions checked, as rust-analyzer's tidy tests do: every source file says what it is in
//! its first line, the README names every subcommand and every key of distribution.yml, no
//! source file grows past what one sitting reads, and the layers only look down.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use xtask::commands::Cli;

/// Long enough for a stage module with its unit tests (plan.rs, the largest, is about 730 lines),
/// short enough to read in one sitting. A file that grows past it splits along a seam, as
/// `prune/` did into the policy and the linkage check.
const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    xtask::project_root()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

#[test]
fn every_source_file_opens_with_what_it_is() {
    let mut undocumented = Vec::new();
    for dir in ["xtask/src", "xtask/tests", "xtask/benches", "support/src"] {
        for file in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//! ") {
                undocumented.push(file.display().to_string());
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "start these with a `//!` line saying what the file is for: {undocumented:#?}"
    );
}

#[test]
fn no_source_file_is_longer_than_a_sitting() {
    let long: Vec<String> = rust_files(&root().join("xtask/src"))
        .into_iter()
        .chain(rust_files(&root().join("support/src")))
        .filter_map(|file| {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along a seam (at most {MAX_LINES} lines): {long:#?}"
    );
}

#[test]
fn the_readme_names_every_subcommand() {
    let readme = readme();
    let missing: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|name| name != "help" && !readme.contains(&format!("cargo xtask {name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "the README does not show `cargo xtask <name>` for {missing:?}"
    );
}

/// The keys serde accepts at one place of distribution.yml, as its own error lists them.
fn keys_at(yaml_with_a_bogus_key: &str) -> Vec<String> {
    let message =
        match serde_yaml_ng::from_str::<xtask::distribution::Distribution>(yaml_with_a_bogus_key) {
            Ok(_) => panic!("`bogus` was accepted in {yaml_with_a_bogus_key}"),
            Err(e) => e.to_string(),
        };
    // "unknown field `bogus`, expected one of `a`, `b`" or "… expected `a` or `b`".
    let list = message
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no list of keys in: {message}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_names_every_key_of_the_distribution() {
    let places = [
        "bogus: 1\n",
        "installer: {bogus: 1}\n",
        "pip: {bogus: 1}\n",
        "platforms: {linux-x86_64: {bogus: 1}}\n",
        "platforms: {linux-x86_64: {requires_at_most: {bogus: 1}}}\n",
        "platforms: {linux-x86_64: {variants: {a: {bogus: 1}}}}\n",
        "repos: [{name: a, url: u, rev: r, path: p, bogus: 1}]\n",
        "smoke: {bogus: 1}\n",
        "smoke: {checks: [{name: a, code: b, bogus: 1}]}\n",
        "smoke: {commands: [{name: a, run: [b], bogus: 1}]}\n",
    ];
    let readme = readme();
    let mut missing = Vec::new();
    for place in places {
        let keys = keys_at(place);
        assert!(!keys.is_empty(), "{place}");
        for key in keys {
            if !readme.contains(&format!("{key}:")) && !readme.contains(&format!("`{key}`")) {
                missing.push(format!("{key} (in {})", place.trim()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the README's manifest section does not name: {missing:#?}"
    );
}

/// The layers of the README, lowest first; a module may import only from its own layer or the
/// ones below.
const LAYERS: [&[&str]; 4] = [
    &[
        "platform",
        "distribution",
        "system",
        "layout",
        "lock",
        "step",
        "tools",
        "http",
        "process",
        "progress",
        "digest",
        "units",
        "tree",
        "atomic",
        "fingerprint",
    ],
    &[
        "fetch", "install", "repos", "pip", "prune", "relocate", "packages", "report", "archive",
        "verify", "publish", "resolve", "bytecode",
    ],
    &["plan", "runner"],
    &["commands"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn layers_only_look_down() {
    let src = root().join("xtask/src");
    let mut upward = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = layer(&top).unwrap_or_else(|| panic!("{top} is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(theirs) = layer(&name) {
                if theirs > own {
                    upward.push(format!("{} uses crate::{name}", rel.display()));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that look up: {upward:#?}");
}
