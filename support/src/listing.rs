//! The zip's tree as a test snapshots it: redacted and summarised so it reads the same on any
//! machine with the same inputs.

use std::path::Path;

/// The zip's entries, one `kind mode size path` line each, in archive order. Folders whose content
/// comes from the host (the stdlib, pip, Python's headers) are summarised, the Python version and
/// sizes that depend on the host or on temp paths are redacted, so the listing is the same on any
/// machine with the same inputs.
pub fn zip_listing(zip: &Path, python_version: &str) -> String {
    let file = std::fs::File::open(zip).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let pyver = format!("python{python_version}");
    let site = "anymatix/python/lib/python3.X/site-packages/";
    // (prefix, what the summary says, which names below the prefix are listed anyway)
    type Listed = fn(&str) -> bool;
    let ours = |rest: &str| {
        rest.starts_with("anyfix")
            || rest.starts_with("_anymatix")
            || rest.starts_with("__pycache__/_anymatix")
    };
    let summarised: [(&str, &str, Listed); 7] = [
        (
            "anymatix/python/lib/lib",
            "libpython and the libraries it links, from the host",
            |_| false,
        ),
        (
            "anymatix/python/lib/python3.X/",
            "stdlib, from the host",
            |rest| rest.starts_with("site-packages/"),
        ),
        (site, "pip and setuptools, from ensurepip", ours),
        (
            "anymatix/python/include/python3.X/",
            "Python's headers, from the host",
            |_| false,
        ),
        // Windows: the stand-in Miniforge's python is python.org's embeddable CPython.
        (
            "anymatix/python/Lib/site-packages/",
            "pip, from its conda package",
            ours,
        ),
        (
            "anymatix/python/Lib/",
            "stdlib, from python.org's embeddable CPython",
            |rest| rest.starts_with("site-packages/"),
        ),
        (
            "anymatix/python/DLLs/",
            "extension modules and their DLLs, from python.org's embeddable CPython",
            |_| false,
        ),
    ];
    let mut lines: Vec<String> = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).unwrap();
        let name = entry
            .name()
            .unwrap()
            .replace(&pyver, "python3.X")
            .replace(&format!("bin/pip{python_version}"), "bin/pip3.X");
        let summary = summarised.iter().find(|(prefix, _, listed)| {
            name.starts_with(prefix) && name != *prefix && !listed(&name[prefix.len()..])
        });
        if let Some((prefix, what, _)) = summary {
            let line = format!("summary {prefix}… ({what})");
            if !lines.contains(&line) {
                lines.push(line);
            }
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0);
        let kind = if entry.is_dir() {
            "dir "
        } else if entry.is_symlink() {
            "link"
        } else {
            "file"
        };
        // Scripts, records and files that hold the build's prefix (a temp path) vary in size.
        let volatile = name.starts_with("anymatix/python/bin/")
            || name.starts_with("anymatix/python/Library/bin/")
            || name.contains(".dist-info/")
            || name == "anymatix/manifest.json";
        let size = if entry.is_dir() || volatile {
            "-".to_string()
        } else {
            entry.size().to_string()
        };
        lines.push(format!("{kind} {:o} {size:>6} {name}", mode & 0o7777));
    }
    lines.join("\n") + "\n"
}
