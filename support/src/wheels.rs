//! Wheels built by the tests: real zip files with dist-info, installable by pip from a folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use xtask::util::digest::record_digest;
use zip::write::SimpleFileOptions;

pub struct WheelSpec<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub requires: &'a [&'a str],
    /// (path inside the wheel, contents)
    pub files: &'a [(&'a str, &'a [u8])],
    pub console_scripts: &'a [(&'a str, &'a str)],
}

pub fn build_wheel(dir: &Path, spec: &WheelSpec) -> PathBuf {
    let dist = spec.name.replace('-', "_");
    let info = format!("{dist}-{}.dist-info", spec.version);
    let path = dir.join(format!("{dist}-{}-py3-none-any.whl", spec.version));
    let mut files: Vec<(String, Vec<u8>)> = spec
        .files
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_vec()))
        .collect();
    let mut metadata = format!(
        "Metadata-Version: 2.1\nName: {}\nVersion: {}\n",
        spec.name, spec.version
    );
    // As real wheels do: pip takes an extra's requirements only from a wheel that declares it.
    let mut extras: Vec<&str> = spec
        .requires
        .iter()
        .filter_map(|req| req.split("extra == '").nth(1)?.split('\'').next())
        .collect();
    extras.dedup();
    for extra in extras {
        metadata.push_str(&format!("Provides-Extra: {extra}\n"));
    }
    for req in spec.requires {
        metadata.push_str(&format!("Requires-Dist: {req}\n"));
    }
    files.push((format!("{info}/METADATA"), metadata.into_bytes()));
    files.push((
        format!("{info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: anymatix-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
    ));
    files.push((format!("{info}/LICENSE"), b"MIT, for tests\n".to_vec()));
    if !spec.console_scripts.is_empty() {
        let mut text = String::from("[console_scripts]\n");
        for (name, target) in spec.console_scripts {
            text.push_str(&format!("{name} = {target}\n"));
        }
        files.push((format!("{info}/entry_points.txt"), text.into_bytes()));
    }
    let mut record = String::new();
    for (name, content) in &files {
        let digest = record_digest(content);
        record.push_str(&format!("{name},sha256={digest},{}\n", content.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));

    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, content) in &files {
        zip.start_file(name.as_str(), SimpleFileOptions::default())
            .unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A wheel of one module, `name` with dashes as underscores, whose `VERSION` is `version`.
pub fn module_wheel(dir: &Path, name: &str, version: &str, requires: &[&str]) -> PathBuf {
    let module = name.replace('-', "_");
    let init = format!("{module}/__init__.py");
    let text = format!("VERSION = '{version}'\n");
    build_wheel(
        dir,
        &WheelSpec {
            name,
            version,
            requires,
            files: &[(init.as_str(), text.as_bytes())],
            console_scripts: &[],
        },
    )
}
