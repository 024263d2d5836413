//! Conventions checked, as rust-analyzer's tidy tests do: every source file says what it is in
//! its first line, the documentation names every subcommand and every key of distribution.yml,
//! no source or test file grows past what one sitting reads, the layers (the folders of
//! `xtask/src`) only look down, and no modules import each other round a circle.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use xtask::commands::Cli;

/// Long enough for a stage module with its unit tests, short enough to read in one sitting; for
/// the tests too. A file that grows past it splits along a seam, as `prune/` did into the policy
/// and the linkage check.
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

/// The documentation: the README and every file of `docs/`.
fn documentation() -> String {
    let mut text = std::fs::read_to_string(root().join("README.md")).unwrap();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    text
}

/// The README is a front page: details go to `docs/`.
const README_MAX_LINES: usize = 200;

#[test]
fn the_readme_is_a_front_page_and_its_links_lead_somewhere() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines: move details to docs/ (at most {README_MAX_LINES})"
    );
    let mut broken = Vec::new();
    for file in std::iter::once(root().join("README.md")).chain(
        std::fs::read_dir(root().join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    ) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            if !file.parent().unwrap().join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
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
    let long: Vec<String> = ["xtask/src", "xtask/tests", "xtask/benches", "support/src"]
        .iter()
        .flat_map(|dir| rust_files(&root().join(dir)))
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
fn the_documentation_names_every_subcommand() {
    let readme = documentation();
    let missing: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|name| name != "help" && !readme.contains(&format!("cargo xtask {name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "neither the README nor docs/ shows `cargo xtask <name>` for {missing:?}"
    );
}

/// The keys serde accepts at one place of distribution.yml, as its own error lists them.
fn keys_at(yaml_with_a_bogus_key: &str) -> Vec<String> {
    let message = match serde_yaml_ng::from_str::<xtask::model::distribution::Distribution>(
        yaml_with_a_bogus_key,
    ) {
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
fn the_documentation_names_every_key_of_the_distribution() {
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
    let readme = documentation();
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
        "docs/distribution.md does not name: {missing:#?}"
    );
}

/// The layers, lowest first: each is a folder of `xtask/src`, and a module may import only from
/// its own layer or the ones below.
const LAYERS: [&str; 5] = ["util", "model", "stages", "build", "commands"];

/// A module of the crate, as the folders give it: `stages::prune` for every file under
/// `stages/prune/`, `util::http` for `util/http.rs`.
fn module_of(rel: &Path) -> Option<(String, String)> {
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    match parts.as_slice() {
        [layer, module, ..] if module != "mod" => Some((layer.clone(), module.clone())),
        _ => None,
    }
}

fn first_component(rel: &Path) -> String {
    let first = rel.components().next().expect("a relative path");
    first.as_os_str().to_string_lossy().into_owned()
}

/// Every `crate::layer::module` a file's code names (unit tests aside: they may reach anywhere),
/// and `super::module` where a file directly in a layer's folder names a sibling.
fn imports(rel: &Path, text: &str) -> Vec<(String, String)> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let path: Vec<String> = code[i + 7..]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap()
            .split("::")
            .map(str::to_string)
            .collect();
        if let [layer, module, ..] = path.as_slice() {
            found.push((layer.clone(), module.clone()));
        } else if let [layer] = path.as_slice() {
            found.push((layer.clone(), String::new()));
        }
    }
    if rel.components().count() == 2 {
        let layer = first_component(rel);
        for (i, _) in code.match_indices("super::") {
            let module: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((layer.clone(), module));
        }
    }
    found
}

#[test]
fn layers_only_look_down_and_no_modules_import_each_other_round_a_circle() {
    let src = root().join("xtask/src");
    let mut upward = Vec::new();
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let top = first_component(rel);
        if top == "lib.rs" || top == "main.rs" {
            continue;
        }
        let own = LAYERS
            .iter()
            .position(|l| *l == top)
            .unwrap_or_else(|| panic!("{top} is not a layer's folder: one of {LAYERS:?}"));
        let text = std::fs::read_to_string(&file).unwrap();
        let from = module_of(rel).map(|(l, m)| format!("{l}::{m}"));
        for (layer, module) in imports(rel, &text) {
            let Some(theirs) = LAYERS.iter().position(|l| *l == layer) else {
                continue;
            };
            if theirs > own {
                upward.push(format!("{} uses crate::{layer}::{module}", rel.display()));
            }
            if let Some(from) = &from {
                let to = format!("{layer}::{module}");
                if !module.is_empty() && to != *from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that look up: {upward:#?}");
    // A circle: a module that reaches itself through the modules it imports.
    let mut circles = Vec::new();
    for start in edges.keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    circles.push(path.join(" -> ") + " -> " + start);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other round a circle: {circles:#?}"
    );
}
