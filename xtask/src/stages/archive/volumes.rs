//! A zip too large for one release asset, rewritten as independent volumes: `X.part1.zip`,
//! `X.part2.zip`, ... each a complete zip under the limit whose root is `anymatix/`, files never
//! cut between volumes. Unpacking them all into one folder gives the whole tree, with any unzip.
//!
//! Entries are copied as they are (no compressing again) and grouped greedily in path order, so
//! the grouping only moves where sizes change. The first volume holds `manifest.json`, which
//! lists the volumes.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use zip::ZipArchive;

use super::zipfile::{Method, Record, ZipWriter};
use crate::util::digest::{sha256_file, write_sidecar};
use crate::util::units::human_bytes;

/// Room kept in every volume for its end records (ZIP64 included).
const END_RECORDS: u64 = 22 + 56 + 20;

/// `dir/X.zip` → `dir/X.part{index}.zip`.
pub fn volume_path(zip: &Path, index: usize) -> PathBuf {
    let name = zip.file_name().map(|n| n.to_string_lossy().into_owned());
    let stem = name
        .as_deref()
        .map(|n| n.strip_suffix(".zip").unwrap_or(n))
        .unwrap_or("anymatix");
    zip.with_file_name(format!("{stem}.part{index}.zip"))
}

/// The zips that stand for `zip`: itself, or its volumes where it was split.
pub fn zip_or_volumes(zip: &Path) -> Vec<PathBuf> {
    if zip.is_file() {
        return vec![zip.to_path_buf()];
    }
    (1..)
        .map(|i| volume_path(zip, i))
        .take_while(|v| v.is_file())
        .collect()
}

/// Removes `zip`, its volumes and their `.sha256` files, whatever an earlier build left.
pub fn remove_zip_and_volumes(zip: &Path) -> Result<()> {
    let dir = zip.parent().context("a zip is in a folder")?;
    let Some(name) = zip.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(());
    };
    let stem = name.strip_suffix(".zip").unwrap_or(&name);
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let file = file.strip_suffix(".sha256").unwrap_or(&file);
        let volume = file
            .strip_prefix(stem)
            .and_then(|r| r.strip_prefix(".part"))
            .and_then(|r| r.strip_suffix(".zip"))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if file == name || volume {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Rewrites `zip` as volumes of at most `limit` bytes beside it (each with its `.sha256`, named
/// in the manifest after `published`, the zip's final name), and returns them. `zip` stays.
pub fn write_volumes(zip: &Path, limit: u64, published: &str) -> Result<Vec<PathBuf>> {
    let mut archive = ZipArchive::new(BufReader::new(fs_err::File::open(zip)?))
        .with_context(|| format!("cannot read {} to write its volumes", zip.display()))?;
    let mut records = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        let name = entry.name()?.into_owned();
        let method = match entry.compression() {
            zip::CompressionMethod::Stored => Method::Stored,
            zip::CompressionMethod::Deflated => Method::Deflated,
            other => bail!("{name}: unexpected method {other:?}"),
        };
        records.push(Record::copied(
            name,
            method,
            entry.crc32(),
            entry.compressed_size(),
            entry.size(),
            entry.unix_mode().unwrap_or(0o100644),
        ));
    }
    let Some(root) = records.first().filter(|r| r.name.ends_with('/')) else {
        bail!("{} does not start with its root folder", zip.display());
    };
    let manifest_name = format!("{}manifest.json", root.name);
    let manifest = records.iter().position(|r| r.name == manifest_name);
    // Room in the first volume for the list its manifest gains: a line per volume, counted
    // generously (stored, as if deflate gained nothing).
    let total: u64 = records.iter().map(Record::footprint).sum();
    let most_volumes = 2 * total / limit.max(1) + 2;
    let growth = 512 + most_volumes * (published.len() as u64 + 24);
    let groups = group(&records, manifest, limit, growth)?;

    let stem = published.strip_suffix(".zip").unwrap_or(published);
    let names: Vec<String> = (1..=groups.len())
        .map(|i| format!("{stem}.part{i}.zip"))
        .collect();
    let mut volumes = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        let path = volume_path(zip, index + 1);
        let mut out = ZipWriter::new(BufWriter::with_capacity(
            1 << 20,
            fs_err::File::create(&path)?,
        ));
        for &i in group {
            if Some(i) == manifest {
                let text = manifest_with_volumes(&mut archive, i, &names)?;
                let deflated = super::chunks::deflate_whole(text.as_bytes())?;
                out.add_file(
                    &records[i].name,
                    records[i].unix_mode & 0o777,
                    Method::Deflated,
                    &deflated,
                    crc32fast::hash(text.as_bytes()),
                    text.len() as u64,
                )?;
                continue;
            }
            let mut raw = archive.by_index_raw(i)?;
            out.copy_entry(&records[i], &mut raw)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let file = out.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let size = fs_err::metadata(&path)?.len();
        if size > limit {
            bail!(
                "{} came out at {}, over the limit of {}: this is a bug in the grouping",
                path.display(),
                human_bytes(size),
                human_bytes(limit)
            );
        }
        write_sidecar(&path, &sha256_file(&path)?)?;
        volumes.push(path);
    }
    Ok(volumes)
}

/// The entries of each volume, in path order; every volume starts with the root folder, the
/// first one then with the manifest.
fn group(
    records: &[Record],
    manifest: Option<usize>,
    limit: u64,
    manifest_growth: u64,
) -> Result<Vec<Vec<usize>>> {
    let root = records[0].footprint();
    let mut groups: Vec<Vec<usize>> = vec![vec![0]];
    let mut used = END_RECORDS + root;
    if let Some(m) = manifest {
        groups[0].push(m);
        used += records[m].footprint() + manifest_growth;
    }
    for (i, record) in records.iter().enumerate().skip(1) {
        if Some(i) == manifest {
            continue;
        }
        let size = record.footprint();
        if END_RECORDS + root + size > limit {
            bail!(
                "{} is {} compressed, more than one volume may hold ({}): no zip under the \
                 limit can contain it. Raise --split-size if where it goes allows larger \
                 files, or leave the file out of the tree",
                record.name,
                human_bytes(record.compressed),
                human_bytes(limit)
            );
        }
        if used + size > limit {
            groups.push(vec![0]);
            used = END_RECORDS + root;
        }
        groups.last_mut().expect("a group").push(i);
        used += size;
    }
    Ok(groups)
}

/// The zip's manifest with a `volumes` list: which file holds which part of the tree.
fn manifest_with_volumes(
    archive: &mut ZipArchive<BufReader<fs_err::File>>,
    index: usize,
    names: &[String],
) -> Result<String> {
    let entry = archive.by_index(index)?;
    let mut manifest: serde_json::Value =
        serde_json::from_reader(entry).context("the zip's manifest.json is not JSON")?;
    let object = manifest
        .as_object_mut()
        .context("the zip's manifest.json is not a JSON object")?;
    object.insert(
        "volumes".into(),
        serde_json::json!({
            "about": "unpack every volume into the same folder: together they make anymatix/",
            "files": names,
        }),
    );
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(sizes: &[u64]) -> Vec<Record> {
        let mut records = vec![Record::copied(
            "anymatix/".into(),
            Method::Stored,
            0,
            0,
            0,
            0o040755,
        )];
        for (i, &size) in sizes.iter().enumerate() {
            records.push(Record::copied(
                format!("anymatix/f{i:02}"),
                Method::Deflated,
                0,
                size,
                size * 2,
                0o100644,
            ));
        }
        records
    }

    #[test]
    fn grouping_is_greedy_in_path_order_and_stable_before_a_change() {
        let sizes = [300, 500, 200, 700, 100, 400, 600, 300];
        let limit = 1500;
        let before = group(&records(&sizes), None, limit, 0).unwrap();
        assert!(before.len() >= 3, "{before:?}");
        for volume in &before {
            assert_eq!(volume[0], 0, "every volume starts with the root folder");
            let used: u64 = volume.iter().map(|&i| records(&sizes)[i].footprint()).sum();
            assert!(used + END_RECORDS <= limit, "{volume:?}");
        }
        let all: Vec<usize> = before.iter().flat_map(|v| v[1..].to_vec()).collect();
        assert_eq!(
            all,
            (1..=sizes.len()).collect::<Vec<_>>(),
            "each file once, in order"
        );
        // A file of the last volume grows: the volumes before it are as they were.
        let mut grown = sizes;
        grown[sizes.len() - 1] += 150;
        let after = group(&records(&grown), None, limit, 0).unwrap();
        assert_eq!(before[..before.len() - 1], after[..before.len() - 1]);
        // The manifest goes first, in the first volume, whatever its path.
        let with_manifest = group(&records(&sizes), Some(5), limit, 100).unwrap();
        assert_eq!(with_manifest[0][..2], [0, 5]);
        assert_eq!(
            with_manifest.iter().flatten().filter(|&&i| i == 5).count(),
            1
        );
    }

    #[test]
    fn a_file_no_volume_can_hold_is_named() {
        let err = group(&records(&[100, 5000, 100]), None, 1500, 0).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("anymatix/f01 is 4.9 KiB compressed"),
            "{text}"
        );
        assert!(text.contains("--split-size"), "{text}");
    }

    /// Volumes of a real zip: each is a complete zip under the limit, with its digest; together
    /// they hold every entry of the zip, the same bytes; the first one's manifest lists them all.
    #[test]
    fn volumes_unpack_into_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("anymatix");
        fs_err::create_dir_all(tree.join("lib/empty")).unwrap();
        fs_err::write(tree.join("manifest.json"), r#"{"version": "1"}"#).unwrap();
        for i in 0..40u32 {
            let text: String = support::noise(3000, 0x9e37_79b9 ^ i)
                .into_iter()
                .map(|b| char::from(b'a' + b % 16))
                .collect();
            fs_err::write(tree.join(format!("lib/m{i:02}.py")), text).unwrap();
        }
        let zip = dir.path().join("x.unverified.zip");
        super::super::archive(&tree, "anymatix", &zip).unwrap();
        let limit = 20_000;
        let volumes = write_volumes(&zip, limit, "x.zip").unwrap();
        assert!(volumes.len() >= 3, "{volumes:?}");
        // Until the zip is removed, it stands for itself; then its volumes do.
        assert_eq!(zip_or_volumes(&zip), std::slice::from_ref(&zip));
        let mut whole = ZipArchive::new(fs_err::File::open(&zip).unwrap()).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for (n, volume) in volumes.iter().enumerate() {
            assert!(fs_err::metadata(volume).unwrap().len() <= limit);
            let digest = sha256_file(volume).unwrap();
            let sidecar =
                fs_err::read_to_string(crate::util::digest::sidecar_path(volume)).unwrap();
            assert!(sidecar.starts_with(&digest), "{sidecar}");
            let mut archive = ZipArchive::new(fs_err::File::open(volume).unwrap()).unwrap();
            assert_eq!(archive.by_index(0).unwrap().name().unwrap(), "anymatix/");
            for i in 0..archive.len() {
                let mut entry = archive.by_index(i).unwrap();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                let name = entry.name().unwrap().into_owned();
                if name == "anymatix/manifest.json" {
                    assert_eq!(n, 0, "the manifest is in the first volume");
                    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(manifest["version"], "1");
                    let files = &manifest["volumes"]["files"];
                    assert_eq!(files[0], "x.part1.zip");
                    assert_eq!(files.as_array().unwrap().len(), volumes.len());
                    continue;
                }
                if name != "anymatix/" {
                    assert!(seen.insert(name, bytes).is_none(), "one volume per file");
                }
            }
        }
        assert_eq!(
            seen.len() + 2,
            whole.len(),
            "every entry but the root and manifest"
        );
        for (name, bytes) in seen {
            let mut entry = whole.by_name(&name).unwrap();
            let mut want = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut want).unwrap();
            assert!(want == bytes, "{name}");
        }
        fs_err::remove_file(&zip).unwrap();
        assert_eq!(zip_or_volumes(&zip), volumes);
        remove_zip_and_volumes(&zip).unwrap();
        let left: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            ["anymatix"],
            "the zip, its volumes and digests are gone"
        );
    }
}
