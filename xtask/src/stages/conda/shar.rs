//! constructor's `.sh` installer (Miniforge's for macOS and Linux), read without running it. It
//! is constructor's `header.sh`, rendered, up to the line `@@END_HEADER@@`, then the payloads
//! back to back (`shar.py`): conda-standalone, its supporting files (constructor 3.10 on; an
//! older header has no such range), and a tar of `preconda.tar.bz2`, `postconda.tar.bz2` and
//! `pkgs/<package files>`. The header declares each payload's size where it computes the byte
//! ranges it extracts:
//!
//! ```text
//! boundary0=$(head -n "${last_line}" "${THIS_PATH}" | wc -c | sed 's/ //g')
//! boundary1=$(( boundary0 + 41373912 ))
//! boundary2=$(( boundary1 + 0 ))
//! boundary3=$(( boundary2 + 95201280 ))
//! ```
//!
//! and `# MD5:` is the md5 of everything after the header. preconda holds the explicit list,
//! `pkgs/urls*` and each package's `repodata_record.json`; postconda `conda-meta/history` and
//! `.condarc`. Taken out, the folder is laid out as the Windows installer's.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

use crate::util::process::{self, Command};
use crate::util::tools::Tools;

const END_HEADER: &[u8] = b"\n@@END_HEADER@@\n";

/// What the header says of the payloads.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the header, where the first payload starts.
    pub length: u64,
    /// Sizes of conda-standalone, (its supporting files,) and the package tar, in order.
    pub payload_sizes: Vec<u64>,
    /// `# MD5:` of the payloads.
    pub md5: String,
    /// Where conda-standalone goes in the prefix (`_conda`).
    pub conda_exe: String,
    /// conda-standalone's supporting files: (path in the prefix, start, end) within the second
    /// payload.
    pub conda_exe_files: Vec<(String, u64, u64)>,
}

impl Header {
    /// The byte range of payload `index` in the installer.
    pub fn range(&self, index: usize) -> (u64, u64) {
        let start = self.length + self.payload_sizes[..index].iter().sum::<u64>();
        (start, start + self.payload_sizes[index])
    }

    pub fn end(&self) -> u64 {
        self.length + self.payload_sizes.iter().sum::<u64>()
    }
}

/// Reads the header at the start of `bytes` (the installer, or its first megabytes).
pub fn read_header(bytes: &[u8]) -> Result<Header> {
    let Some(at) = memchr::memmem::find(bytes, END_HEADER) else {
        bail!("no `@@END_HEADER@@` line: not an installer made by constructor");
    };
    let length = (at + END_HEADER.len()) as u64;
    let text = String::from_utf8_lossy(&bytes[..at]);
    let mut payload_sizes = Vec::new();
    let (mut md5, mut conda_exe) = (None, None);
    let mut conda_exe_files = Vec::new();
    let mut previous = "";
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let at_line = || format!("header line {}: `{line}`", number + 1);
        if let Some(value) = line.strip_prefix("# MD5:") {
            md5 = Some(value.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("boundary") {
            let Some((index, sum)) = rest.split_once("=$((") else {
                continue;
            };
            let index: usize = index.parse().with_context(at_line)?;
            let size = sum
                .trim_end_matches("))")
                .trim()
                .strip_prefix(&format!("boundary{} +", index.wrapping_sub(1)))
                .map(str::trim)
                .and_then(|n| n.parse::<u64>().ok())
                .with_context(|| format!("{}: not `boundary{index}=$(( boundary{} + <bytes> ))` (an unrendered template?)", at_line(), index.wrapping_sub(1)))?;
            if index != payload_sizes.len() + 1 {
                bail!("{}: boundary{index} out of order", at_line());
            }
            payload_sizes.push(size);
        } else if let Some(rest) = line.strip_prefix("CONDA_EXEC=\"$PREFIX/") {
            conda_exe = Some(rest.trim_end_matches('"').to_string());
        } else if let Some(rest) = line.strip_prefix("extract_range $(( boundary1 +") {
            conda_exe_files.push(supporting_file(rest).with_context(at_line)?);
        } else if let Some(rest) = line.strip_prefix("touch \"$PREFIX/") {
            // An empty supporting file: `touch` right after its folder is made.
            if previous.starts_with("mkdir -p \"$(dirname \"$PREFIX/") {
                let name = rest.trim_end_matches('"').to_string();
                conda_exe_files.push((name, 0, 0));
            }
        }
        previous = line;
    }
    if !(2..=3).contains(&payload_sizes.len()) {
        bail!(
            "the header declares {} payload sizes (`boundaryN=$(( … ))` lines); constructor's \
             declare 2 or 3",
            payload_sizes.len()
        );
    }
    Ok(Header {
        length,
        payload_sizes,
        md5: md5.context("the header has no `# MD5:` line")?,
        conda_exe: conda_exe.context("the header has no `CONDA_EXEC=\"$PREFIX/…\"` line")?,
        conda_exe_files,
    })
}

/// ` 0 )) $(( boundary1 + 2048 ))  > "$PREFIX/_internal/x.so"` → (path, 0, 2048).
fn supporting_file(rest: &str) -> Result<(String, u64, u64)> {
    let (start, rest) = rest.split_once("))").context("no `))`")?;
    let rest = rest
        .trim()
        .strip_prefix("$(( boundary1 +")
        .context("no end")?;
    let (end, rest) = rest.split_once("))").context("no `))` after the end")?;
    let name = rest
        .trim()
        .strip_prefix("> \"$PREFIX/")
        .context("not written into the prefix")?
        .trim_end_matches('"');
    Ok((name.to_string(), start.trim().parse()?, end.trim().parse()?))
}

/// Takes the files out of the `.sh` installer into `into` (which exists and is empty): checks
/// its length and MD5 against its header, writes conda-standalone and its files, unpacks the
/// package tar, then preconda's and postconda's files over it, as the header itself does.
pub fn unpack(tools: &Tools, installer: &Path, into: &Path) -> Result<()> {
    let (mut file, header) = open_checked(installer)?;
    write_conda_exe(&mut file, &header, into)?;
    let (start, end) = header.range(header.payload_sizes.len() - 1);
    file.seek(SeekFrom::Start(start))?;
    let mut tar = tar::Archive::new((&mut file).take(end - start));
    tar.set_preserve_permissions(true);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(into)? {
            bail!(
                "{}: the package tar has an entry outside the install folder: {:?}",
                installer.display(),
                entry.path()?
            );
        }
    }
    for inner in ["preconda.tar.bz2", "postconda.tar.bz2"] {
        let path = into.join(inner);
        if !path.is_file() {
            bail!(
                "{}: the package tar has no {inner}: a constructor layout this tool does not know",
                installer.display()
            );
        }
        let command = Command::new("tar")
            .arg("-xjf")
            .arg(process::path_arg(&path))
            .arg("-C")
            .arg(process::path_arg(into));
        let out = process::output(&tools.sh, &tools.reporter, &command)?;
        if !out.status.success() {
            bail!(
                "{inner} of {} cannot be unpacked ({command}: {})",
                installer.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        fs_err::remove_file(&path)?;
    }
    Ok(())
}

/// Writes only conda-standalone (and its supporting files) of the `.sh` `installer` into
/// `into`, after the same checks as [`unpack`]; returns the program's path.
pub fn take_conda_exe(installer: &Path, into: &Path) -> Result<PathBuf> {
    let (mut file, header) = open_checked(installer)?;
    write_conda_exe(&mut file, &header, into)?;
    Ok(into.join(&header.conda_exe))
}

/// The installer opened, its header read, and its length and MD5 checked against it.
fn open_checked(installer: &Path) -> Result<(fs_err::File, Header)> {
    let mut file = fs_err::File::open(installer)?;
    let mut head = Vec::new();
    (&mut file).take(4 << 20).read_to_end(&mut head)?;
    let header = read_header(&head).with_context(|| format!("{}", installer.display()))?;
    let size = file.metadata()?.len();
    if size != header.end() {
        bail!(
            "{} is {size} bytes, its header says {}: a damaged or truncated download; delete it \
             and build again, which downloads it anew",
            installer.display(),
            header.end()
        );
    }
    let md5 = payload_md5(&mut file, header.length)?;
    if md5 != header.md5 {
        bail!(
            "{}: the payloads' MD5 is {md5}, its header says {}: a damaged download; delete it \
             and build again",
            installer.display(),
            header.md5
        );
    }
    Ok((file, header))
}

fn write_conda_exe(file: &mut fs_err::File, header: &Header, into: &Path) -> Result<()> {
    let (start, end) = header.range(0);
    copy_range(file, start, end, &into.join(&header.conda_exe), true)?;
    if header.payload_sizes.len() == 3 {
        let (base, _) = header.range(1);
        for (name, from, to) in &header.conda_exe_files {
            copy_range(file, base + from, base + to, &into.join(name), false)?;
        }
    }
    Ok(())
}

fn payload_md5(file: &mut fs_err::File, from: u64) -> Result<String> {
    file.seek(SeekFrom::Start(from))?;
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
    }
    Ok(md5.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn copy_range(file: &mut fs_err::File, start: u64, end: u64, to: &Path, exe: bool) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent)?;
    }
    file.seek(SeekFrom::Start(start))?;
    let mut out = fs_err::File::create(to)?;
    std::io::copy(&mut file.take(end - start), &mut out)?;
    #[cfg(unix)]
    if exe {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    }
    let _ = exe;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of constructor's `header.sh` that matter here, rendered as `shar.py` renders
    /// them (sizes from a Miniforge3 25.x `.sh`).
    const HEADER: &str = "#!/bin/sh\n#\n# Created by constructor 3.11.2\n#\n# NAME:  Miniforge3\n\
        # VER:   25.3.0-3\n# PLAT:  linux-aarch64\n# MD5:   0123456789abcdef0123456789abcdef\n\n\
        boundary0=$(head -n \"${last_line}\" \"${THIS_PATH}\" | wc -c | sed 's/ //g')\n\
        # the start of the second payload / the end of the first payload, plus one\n\
        boundary1=$(( boundary0 + 41373912 ))\n\
        boundary2=$(( boundary1 + 2048 ))\n\
        boundary3=$(( boundary2 + 95201280 ))\n\
        CONDA_EXEC=\"$PREFIX/_conda\"\n\
        mkdir -p \"$(dirname \"$PREFIX/_internal/libz.so\")\"\n\
        extract_range $(( boundary1 + 0 )) $(( boundary1 + 2048 ))  > \"$PREFIX/_internal/libz.so\"\n\
        mkdir -p \"$(dirname \"$PREFIX/_internal/empty\")\"\n\
        touch \"$PREFIX/_internal/empty\"\n\
        if [ \"$(id -u)\" -ne 0 ]; then\n    touch \"$PREFIX/.nonadmin\"\nfi\n\
        exit 0\n@@END_HEADER@@\n";

    #[test]
    fn the_header_gives_each_payloads_range() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x7fELF...");
        let header = read_header(&bytes).unwrap();
        assert_eq!(header.length, HEADER.len() as u64);
        assert_eq!(header.payload_sizes, [41373912, 2048, 95201280]);
        assert_eq!(header.range(2).0, HEADER.len() as u64 + 41373912 + 2048);
        assert_eq!(header.md5, "0123456789abcdef0123456789abcdef");
        assert_eq!(header.conda_exe, "_conda");
        assert_eq!(
            header.conda_exe_files,
            [
                ("_internal/libz.so".to_string(), 0, 2048),
                ("_internal/empty".to_string(), 0, 0)
            ]
        );
    }

    #[test]
    fn a_header_that_is_not_constructors_is_named() {
        let err = read_header(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(err.to_string().contains("@@END_HEADER@@"), "{err}");
        let unrendered = HEADER.replace("41373912", "{{ first_payload_size }}");
        let err = read_header(unrendered.as_bytes()).unwrap_err();
        assert!(
            format!("{err:#}").contains("header line 12")
                && format!("{err:#}").contains("unrendered"),
            "{err:#}"
        );
    }
}
