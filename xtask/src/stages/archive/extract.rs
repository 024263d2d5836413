//! Unpacks a zip on every core, as verify does with each zip it checks: one core inflating
//! gigabytes is most of verify's time otherwise. Every worker opens the zip itself and takes the
//! next file entry from a shared counter (large files do not pile up on one worker); folders
//! are made first, links after the files, and modes are set as the zip stores them. Reading an
//! entry to its end makes the zip crate check its CRC.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use zip::ZipArchive;

#[derive(Debug)]
struct Item {
    index: usize,
    path: PathBuf,
    kind: ItemKind,
    mode: Option<u32>,
}

#[derive(Debug, PartialEq, Eq)]
enum ItemKind {
    Folder,
    File,
    Link,
}

fn open(zip: &Path) -> Result<ZipArchive<BufReader<fs_err::File>>> {
    let file = fs_err::File::open(zip)?;
    ZipArchive::new(BufReader::with_capacity(1 << 16, file))
        .with_context(|| format!("{} is not a zip that can be read", zip.display()))
}

/// Unpacks `zip` into `into` (which must exist), with `threads` workers.
pub fn extract(zip: &Path, into: &Path, threads: usize) -> Result<()> {
    let mut archive = open(zip)?;
    let mut items = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        let Some(rel) = entry.enclosed_name() else {
            bail!(
                "{}: entry `{}` would land outside the folder it is unpacked into",
                zip.display(),
                entry.name().unwrap_or_default()
            );
        };
        let kind = if entry.is_dir() {
            ItemKind::Folder
        } else if entry.is_symlink() {
            ItemKind::Link
        } else {
            ItemKind::File
        };
        items.push(Item {
            index,
            path: into.join(rel),
            kind,
            mode: entry.unix_mode(),
        });
    }
    drop(archive);
    for item in &items {
        let folder = match item.kind {
            ItemKind::Folder => item.path.as_path(),
            _ => item.path.parent().context("an entry is in a folder")?,
        };
        fs_err::create_dir_all(folder)?;
    }

    let files: Vec<&Item> = items.iter().filter(|i| i.kind == ItemKind::File).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| unpack_files(zip, &files, &next)))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("an unzip worker panicked"))
    })?;

    let mut archive = open(zip)?;
    for item in items.iter().filter(|i| i.kind == ItemKind::Link) {
        let mut target = String::new();
        std::io::Read::read_to_string(&mut archive.by_index(item.index)?, &mut target)?;
        make_link(&target, &item.path)?;
    }
    // Folders last, deepest first: a read-only folder must first receive what it holds.
    for item in items.iter().rev().filter(|i| i.kind == ItemKind::Folder) {
        set_mode(&item.path, item.mode)?;
    }
    Ok(())
}

fn unpack_files(zip: &Path, files: &[&Item], next: &AtomicUsize) -> Result<()> {
    let mut archive = open(zip)?;
    loop {
        let Some(item) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return Ok(());
        };
        let mut entry = archive.by_index(item.index)?;
        let mut out = fs_err::File::create(&item.path)?;
        std::io::copy(&mut entry, &mut out).with_context(|| {
            format!(
                "cannot unpack {} from {}",
                item.path.display(),
                zip.display()
            )
        })?;
        drop(out);
        set_mode(&item.path, item.mode)?;
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: Option<u32>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = mode {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: Option<u32>) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_link(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path)
        .with_context(|| format!("cannot make the link {} → {target}", path.display()))
}

#[cfg(not(unix))]
fn make_link(target: &str, path: &Path) -> Result<()> {
    bail!(
        "{} is a link to {target} in the zip: links are unpacked on macOS and Linux only",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_unpacks_what_one_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        for i in 0..30 {
            support::write_file(
                &tree,
                &format!("d{}/f{i}.txt", i % 4),
                format!("file {i}\n").repeat(i * 100),
            );
        }
        support::write_file(&tree, "big.bin", support::noise(9 << 20, 7));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::symlink("d1/f1.txt", tree.join("link")).unwrap();
            let tool = tree.join("d0/tool");
            std::fs::write(&tool, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let zip = dir.path().join("t.zip");
        super::super::archive(&tree, "anymatix", &zip).unwrap();
        let into = dir.path().join("out");
        fs_err::create_dir_all(&into).unwrap();
        extract(&zip, &into, 3).unwrap();
        let listing = |root: &Path| crate::util::tree::listing(root).unwrap();
        assert_eq!(listing(&into.join("anymatix")), listing(&tree));
        assert_eq!(
            fs_err::read(into.join("anymatix/big.bin")).unwrap(),
            fs_err::read(tree.join("big.bin")).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let link = into.join("anymatix/link");
            assert_eq!(fs_err::read_link(&link).unwrap(), Path::new("d1/f1.txt"));
            let mode = fs_err::metadata(into.join("anymatix/d0/tool"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
    }

    #[test]
    fn a_damaged_entry_fails_naming_the_zip() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        support::write_file(&tree, "a.txt", "some text that deflates ".repeat(4000));
        let zip = dir.path().join("t.zip");
        super::super::archive(&tree, "anymatix", &zip).unwrap();
        let mut bytes = fs_err::read(&zip).unwrap();
        // Inside the deflated data of the only file (after its local header).
        let at = bytes.len() / 3;
        bytes[at] ^= 0xff;
        fs_err::write(&zip, bytes).unwrap();
        let into = dir.path().join("out");
        fs_err::create_dir_all(&into).unwrap();
        let err = format!("{:#}", extract(&zip, &into, 2).unwrap_err());
        assert!(err.contains("t.zip"), "{err}");
    }
}
