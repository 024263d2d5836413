//! Packs a folder into a zip whose single root entry is the folder's name (`anymatix/`).
//!
//! Reproducible: entries sorted by name, timestamps fixed, modes explicit, nothing that varies
//! between machines. Written under a temporary name in the destination folder and renamed only
//! once complete and re-read, so a file with the final name is always a finished one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use zip::ZipArchive;

use chunks::{Job, Piece};
use entries::{collect, Entry, Kind};
use zipfile::{Method, Truncate, ZipWriter};

use crate::stages::describe::{Describe, Stage};
use crate::util::digest::write_sidecar;
use crate::util::inputs::Inputs;
use crate::util::progress::Transfer;
use crate::util::tools::Tools;
use crate::util::units::human_bytes;

mod chunks;
mod deflate;
mod entries;
pub mod extract;
mod volumes;
mod zipfile;

pub use extract::extract;
pub use volumes::{remove_zip_and_volumes, volume_path, zip_or_volumes};

pub use chunks::Compression;

#[derive(Debug, Clone)]
pub struct ArchiveSummary {
    pub entries: usize,
    pub bytes: u64,
    pub sha256: String,
}

/// Zips `tree` into `dest` with `root` as the single top folder, and writes `dest.sha256`.
/// How the archive is written. The bytes never depend on these: only speed and memory do.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Compressing threads (chunks of files are compressed apart, then written in order).
    pub threads: usize,
    pub compression: Compression,
    /// At most this many bytes of files are being compressed or wait to be written at once,
    /// which bounds memory whatever the tree.
    pub in_flight: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            in_flight: 64 << 20,
            compression: Compression::Default,
        }
    }
}

/// GitHub refuses release assets of 2 GiB or more; volumes stay a MiB below.
pub const GITHUB_ASSET_LIMIT: u64 = (2 << 30) - (1 << 20);

/// Zips the tree with `anymatix/` as its root, writing the zip's `.sha256` beside it; a zip over
/// the volume limit is then rewritten as volumes (`X.part1.zip`, ...) that replace it.
#[derive(Debug, Clone)]
pub struct Archive {
    pub tree: PathBuf,
    pub zip: PathBuf,
    pub compression: Compression,
    /// Zips larger than this are written as volumes of at most this size; 0 never splits.
    pub volume_limit: u64,
    /// The zip's published name, which the first volume's manifest names the volumes after.
    pub published: String,
}

impl Archive {
    pub fn run(&self, tools: &Tools) -> Result<()> {
        let reporter = &tools.reporter;
        remove_zip_and_volumes(&self.zip)?;
        let mut transfer: Option<Transfer> = None;
        let summary = archive_with(
            &self.tree,
            "anymatix",
            &self.zip,
            Settings {
                compression: self.compression,
                ..Settings::default()
            },
            &mut |done, total| {
                transfer
                    .get_or_insert_with(|| reporter.transfer("zipped", "anymatix/", Some(total)))
                    .advance_to(done);
            },
        )?;
        if let Some(t) = transfer {
            t.finish();
        }
        reporter.note(format!(
            "{} entries, {}",
            summary.entries,
            human_bytes(summary.bytes)
        ));
        if self.volume_limit > 0 && summary.bytes > self.volume_limit {
            let volumes = volumes::write_volumes(&self.zip, self.volume_limit, &self.published)?;
            fs_err::remove_file(crate::util::digest::sidecar_path(&self.zip))?;
            fs_err::remove_file(&self.zip)?;
            reporter.note(format!(
                "over {}: written as {} volumes, each a zip of its own ({})",
                human_bytes(self.volume_limit),
                volumes.len(),
                volumes
                    .iter()
                    .map(|v| human_bytes(fs_err::metadata(v).map_or(0, |m| m.len())))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }
}

impl Describe for Archive {
    fn title(&self) -> String {
        "Zip".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zip {} into {}", self.tree.display(), self.zip.display())?;
        if self.compression != Compression::Default {
            write!(f, " (compression {:?})", self.compression)?;
        }
        if self.volume_limit > 0 {
            write!(
                f,
                "\n      as volumes of at most {} bytes where it is larger",
                self.volume_limit
            )?;
        }
        Ok(())
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("compression", format!("{:?}", self.compression));
        inputs.set("volume limit", self.volume_limit.to_string());
    }
}

/// Told the bytes of files written so far, and the total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Zips `tree` into `dest` with `root` as the single top folder, and writes `dest.sha256`.
#[cfg(test)]
pub fn archive(tree: &Path, root: &str, dest: &Path) -> Result<ArchiveSummary> {
    archive_with(tree, root, dest, Settings::default(), &mut |_, _| {})
}

pub fn archive_with(
    tree: &Path,
    root: &str,
    dest: &Path,
    settings: Settings,
    progress: Progress,
) -> Result<ArchiveSummary> {
    let entries = collect(tree, root)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let file_name = dest
        .file_name()
        .context("the zip needs a file name")?
        .to_string_lossy()
        .into_owned();
    crate::util::atomic::sweep_partials(dir, &file_name)?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let (temp_file, temp_path) = temp.into_parts();
    let mut zip = ZipWriter::new(std::io::BufWriter::with_capacity(1 << 20, temp_file));
    let written = write_entries(&mut zip, &entries, settings, progress).and_then(|()| {
        let file = zip.finish().map_err(Failure::Write)?;
        let file = file
            .into_inner()
            .map_err(|e| Failure::Write(e.into_error()))?;
        file.sync_all().map_err(Failure::Write)
    });
    match written {
        Ok(()) => {}
        Err(Failure::Read(e)) => return Err(e),
        Err(Failure::Write(e)) => {
            // The free space is measured once the partial zip is gone.
            drop(temp_path);
            return Err(write_error(e, dest, dir, total_size(&entries)));
        }
    }

    let summary = check(&temp_path, root, &entries)?;
    crate::util::atomic::make_readable(&temp_path)?;
    temp_path
        .persist(dest)
        .map_err(|e| anyhow!(e.error))
        .with_context(|| format!("cannot rename the finished zip to {}", dest.display()))?;
    write_sidecar(dest, &summary.sha256)?;
    Ok(summary)
}

/// The in-flight budget, shared by the workers and the writer.
struct Budget {
    state: Mutex<BudgetState>,
    changed: Condvar,
}

struct BudgetState {
    used: u64,
    /// The job the writer waits for next: it may always start, so nothing deadlocks.
    next_to_write: usize,
    failed: bool,
}

/// Why writing stopped: reading the tree or writing the zip (a full disk reads differently).
enum Failure {
    Read(anyhow::Error),
    Write(std::io::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Read(e)
    }
}

/// Workers compress chunks (taken in archive order); the writer appends every entry in archive
/// order, waiting for its next chunk when it is not ready yet.
fn write_entries<W: Write + Seek + Truncate + Send>(
    zip: &mut ZipWriter<W>,
    entries: &[Entry],
    settings: Settings,
    progress: Progress,
) -> Result<(), Failure> {
    let total = total_size(entries);
    let chunk = settings.compression.chunk();
    let jobs: Vec<Job> = entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| match e.kind {
            Kind::File { size } => Some(chunks::split(i, size, chunk)),
            _ => None,
        })
        .flatten()
        .collect();
    let next_job = AtomicUsize::new(0);
    let budget = Budget {
        state: Mutex::new(BudgetState {
            used: 0,
            next_to_write: 0,
            failed: false,
        }),
        changed: Condvar::new(),
    };
    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Piece>)>();

    std::thread::scope(|scope| {
        for _ in 0..settings.threads.max(1) {
            let done_tx = done_tx.clone();
            let (jobs, next_job, budget) = (&jobs, &next_job, &budget);
            scope.spawn(move || loop {
                let j = next_job.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(j) else {
                    return;
                };
                {
                    let mut state = budget.state.lock().expect("budget lock");
                    while !state.failed
                        && j != state.next_to_write
                        && state.used + job.len > settings.in_flight
                    {
                        state = budget.changed.wait(state).expect("budget lock");
                    }
                    if state.failed {
                        return;
                    }
                    state.used += job.len;
                }
                let path = &entries[job.entry].path;
                let piece = chunks::compress(path, job, settings.compression)
                    .with_context(|| format!("cannot read {}", path.display()));
                if done_tx.send((j, piece)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);

        let mut ready: BTreeMap<usize, Result<Piece>> = BTreeMap::new();
        let mut next = 0usize;
        let mut done = 0u64;
        // The next job's piece, in order; its bytes leave the budget once written.
        let mut take = |j: usize| -> Result<Piece, Failure> {
            {
                let mut state = budget.state.lock().expect("budget lock");
                state.next_to_write = j;
                budget.changed.notify_all();
            }
            loop {
                if let Some(piece) = ready.remove(&j) {
                    return Ok(piece?);
                }
                let (k, piece) = done_rx
                    .recv()
                    .map_err(|_| Failure::Read(anyhow!("a compressing thread stopped")))?;
                ready.insert(k, piece);
            }
        };
        let release = |len: u64| {
            let mut state = budget.state.lock().expect("budget lock");
            state.used -= len;
            budget.changed.notify_all();
        };

        let result = (|| -> Result<(), Failure> {
            for entry in entries {
                let name = entry.name.as_str();
                match &entry.kind {
                    Kind::Dir => zip
                        .add_directory(name, entry.mode)
                        .map_err(Failure::Write)?,
                    Kind::Symlink { target } => {
                        zip.add_symlink(name, target).map_err(Failure::Write)?
                    }
                    Kind::File { size: 0 } => zip
                        .add_file(name, entry.mode, Method::Stored, &[], 0, 0)
                        .map_err(Failure::Write)?,
                    Kind::File { size } if *size <= chunk => {
                        let piece = take(next)?;
                        next += 1;
                        zip.add_file(
                            name,
                            entry.mode,
                            piece.method,
                            &piece.data,
                            piece.crc32,
                            *size,
                        )
                        .map_err(Failure::Write)?;
                        release(piece.len);
                        done += size;
                        progress(done, total);
                    }
                    Kind::File { size } => {
                        // The local header's room for sizes is fixed before the data: ZIP64 for
                        // a file near 4 GiB, as deflate may not shrink it.
                        let zip64 = *size >= u32::MAX as u64 - (64 << 20);
                        zip.start_file(name, entry.mode, Method::Deflated, zip64)
                            .map_err(Failure::Write)?;
                        let (mut crc, mut len, mut compressed) = (0u32, 0u64, 0u64);
                        while len < *size {
                            let piece = take(next)?;
                            next += 1;
                            zip.write_data(&piece.data).map_err(Failure::Write)?;
                            crc = chunks::combine(crc, len, &piece);
                            len += piece.len;
                            compressed += piece.data.len() as u64;
                            release(piece.len);
                            done += piece.len;
                            progress(done, total);
                        }
                        if compressed < *size {
                            zip.finish_entry(crc, compressed, *size)
                                .map_err(Failure::Write)?;
                        } else {
                            zip.abandon_entry().map_err(Failure::Write)?;
                            store_streamed(zip, entry, *size, crc)?;
                        }
                    }
                }
            }
            Ok(())
        })();
        if result.is_err() {
            // Let waiting workers go; the scope then joins them.
            budget.state.lock().expect("budget lock").failed = true;
            budget.changed.notify_all();
            drop(done_rx);
        }
        result
    })
}

/// A large file deflate could not shrink, written again as it is.
fn store_streamed<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    entry: &Entry,
    size: u64,
    crc: u32,
) -> Result<(), Failure> {
    let read_error = |e: std::io::Error| {
        Failure::Read(anyhow!(e).context(format!("cannot read {}", entry.path.display())))
    };
    zip.start_file(
        &entry.name,
        entry.mode,
        Method::Stored,
        size >= u32::MAX as u64,
    )
    .map_err(Failure::Write)?;
    let mut file = std::fs::File::open(&entry.path).map_err(read_error)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        zip.write_data(&buf[..n]).map_err(Failure::Write)?;
        len += n as u64;
    }
    if len != size || hasher.finalize() != crc {
        return Err(Failure::Read(anyhow!(
            "{} changed while it was being zipped",
            entry.path.display()
        )));
    }
    zip.finish_entry(crc, size, size).map_err(Failure::Write)
}

/// A write error that names the zip; a full disk says how much room the zip needs.
fn write_error(error: std::io::Error, dest: &Path, dir: &Path, tree_bytes: u64) -> anyhow::Error {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    ) {
        let free = fs4::available_space(dir)
            .map(human_bytes)
            .unwrap_or_else(|_| "an unknown amount".into());
        return anyhow!(
            "no space left to write {}: the zip needs up to {} (the files' size before \
             compression; about half of it on the product) and {} is free in {}. Free some \
             space or write the zip elsewhere; nothing was left behind",
            dest.display(),
            human_bytes(tree_bytes),
            free,
            dir.display()
        );
    }
    anyhow!(error).context(format!("cannot write {}", dest.display()))
}

fn total_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match e.kind {
            Kind::File { size } => size,
            _ => 0,
        })
        .sum()
}

/// Re-reads the written zip: every entry present in order, inside the root, sizes and CRCs right.
fn check(path: &Path, root: &str, expected: &[Entry]) -> Result<ArchiveSummary> {
    let bytes = fs_err::metadata(path)?.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every core inflates its share of the entries while one more thread hashes the file.
    let sha256 = std::thread::scope(|scope| {
        let digest = scope.spawn(|| crate::util::digest::sha256_file(path));
        let shares: Vec<_> = (0..threads)
            .map(|share| scope.spawn(move || check_share(path, root, expected, share, threads)))
            .collect();
        for share in shares {
            share.join().expect("a zip check thread panicked")?;
        }
        digest.join().expect("the digest thread panicked")
    })?;
    Ok(ArchiveSummary {
        entries: expected.len(),
        bytes,
        sha256,
    })
}

/// Checks every `of`-th entry from `share` on: its name, that it stays inside `root`, its CRC
/// (inflating it) and its size.
fn check_share(path: &Path, root: &str, expected: &[Entry], share: usize, of: usize) -> Result<()> {
    let file = fs_err::File::open(path)?;
    let mut archive = ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("the written zip {} does not read back", path.display()))?;
    if archive.len() != expected.len() {
        bail!(
            "the written zip has {} entries, expected {}",
            archive.len(),
            expected.len()
        );
    }
    let mut buf = vec![0u8; 1 << 16];
    for (i, want) in expected.iter().enumerate().skip(share).step_by(of) {
        let mut entry = archive.by_index(i)?;
        let name = entry.name()?.into_owned();
        if name != want.name {
            bail!(
                "entry {i} of the written zip is {name}, expected {}",
                want.name
            );
        }
        let inside = entry.enclosed_name().is_some_and(|p| {
            p.starts_with(root) && !p.components().any(|c| c == Component::ParentDir)
        });
        if !inside {
            bail!("the written zip has an entry outside {root}/: {name}");
        }
        // Reading to the end makes the zip crate check the CRC.
        let mut read = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("entry {name} fails its check"))?;
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        if let Kind::File { size } = want.kind {
            if read != size {
                bail!("entry {name} holds {read} bytes, the file has {size}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        fs_err::create_dir_all(t.join("bin")).unwrap();
        fs_err::create_dir_all(t.join("empty dir")).unwrap();
        fs_err::write(t.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        fs_err::write(t.join("café ü.txt"), "non-ascii name ".repeat(100)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(t.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            std::os::unix::fs::symlink("tool", t.join("bin/alias")).unwrap();
        }
        dir
    }

    #[test]
    fn same_tree_same_bytes() {
        let t = tree();
        let out = tempfile::tempdir().unwrap();
        let a = archive(t.path(), "anymatix", &out.path().join("a.zip")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = archive(t.path(), "anymatix", &out.path().join("b.zip")).unwrap();
        assert_eq!(a.sha256, b.sha256);
        let sidecar = fs_err::read_to_string(out.path().join("a.zip.sha256")).unwrap();
        assert_eq!(sidecar, format!("{}  a.zip\n", a.sha256));
        // What an interrupted run left is swept by the next one.
        fs_err::write(out.path().join(".a.zip.k3Jd9x.partial"), "half a zip").unwrap();
        archive(t.path(), "anymatix", &out.path().join("a.zip")).unwrap();
        let leftovers: Vec<_> = fs_err::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_memory_budget() {
        let t = tree();
        // Many small files for the workers, and one large enough to be streamed by the writer.
        for i in 0..300 {
            let text = format!("file {i} ").repeat(i * 7 + 1);
            fs_err::write(t.path().join(format!("bin/f{i:03}.txt")), text).unwrap();
        }
        // A file of several chunks, compressed by several workers.
        let large: Vec<u8> = (0..3 * Compression::Default.chunk() + 12345)
            .map(|i| ((i % 251) ^ (i >> 12)) as u8)
            .collect();
        fs_err::write(t.path().join("large.bin"), large).unwrap();
        let out = tempfile::tempdir().unwrap();
        let digests: Vec<String> = [
            Settings {
                threads: 1,
                in_flight: 64 << 20,
                compression: Compression::Default,
            },
            Settings {
                threads: 3,
                in_flight: 1,
                compression: Compression::Default,
            },
            Settings {
                threads: 4,
                in_flight: 200_000,
                compression: Compression::Default,
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, settings)| {
            archive_with(
                t.path(),
                "anymatix",
                &out.path().join(format!("{i}.zip")),
                settings,
                &mut |_, _| {},
            )
            .unwrap()
            .sha256
        })
        .collect();
        assert_eq!(digests[0], digests[1]);
        assert_eq!(digests[0], digests[2]);
    }

    #[cfg(unix)]
    #[test]
    fn modes_links_and_names_survive_unpacking() {
        use std::os::unix::fs::PermissionsExt;
        let t = tree();
        let out = tempfile::tempdir().unwrap();
        let zip_path = out.path().join("t.zip");
        archive(t.path(), "anymatix", &zip_path).unwrap();
        let unpack = out.path().join("un packed");
        ZipArchive::new(fs_err::File::open(&zip_path).unwrap())
            .unwrap()
            .extract(&unpack)
            .unwrap();
        let root = unpack.join("anymatix");
        let mode = root
            .join("bin/tool")
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            fs_err::read_link(root.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert!(root.join("café ü.txt").is_file());
        assert!(root.join("empty dir").is_dir());
    }

    #[test]
    fn a_full_disk_names_the_zip_and_the_room_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.zip");
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let text = format!("{:#}", write_error(full, &dest, dir.path(), 3 << 30));
        assert!(
            text.starts_with(&format!("no space left to write {}", dest.display())),
            "{text}"
        );
        assert!(text.contains("needs up to 3.0 GiB"), "{text}");
        assert!(text.contains(" is free in "), "{text}");
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = format!("{:#}", write_error(other, &dest, dir.path(), 1));
        assert!(
            text.starts_with(&format!("cannot write {}", dest.display())),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_tree_are_refused() {
        let t = tree();
        std::os::unix::fs::symlink("../../etc/passwd", t.path().join("bin/escape")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = archive(t.path(), "anymatix", &out.path().join("t.zip")).unwrap_err();
        assert!(format!("{err:#}").contains("outside the tree"), "{err:#}");
        assert!(!out.path().join("t.zip").exists());
    }
}
