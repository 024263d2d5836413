//! Mach-O code signatures, read and checked here, re-hashed where a build changed the bytes they
//! cover. macOS on Apple silicon refuses code whose signature does not match its pages, so a
//! file whose bytes the build changes (conda's binary prefix replacement) must be signed again,
//! as conda does on macOS with `codesign -s - -f`; and every Mach-O of a macOS tree is checked
//! before it ships.
//!
//! The format (Apple's `cs_blobs.h`, big-endian): `LC_CODE_SIGNATURE` points at a SuperBlob
//! (`0xfade0cc0`) indexing blobs by slot: the CodeDirectory (slot 0, `0xfade0c02`), alternate
//! CodeDirectories (0x1000…, e.g. SHA-256 beside a SHA-1 primary), requirements (2),
//! entitlements (5, 7) and the CMS signature (0x10000, empty when ad hoc). A CodeDirectory holds
//! one hash per page of the file up to `codeLimit` (code slots) and, before them, the hashes of
//! the other blobs (special slots, numbered down from -1). An ad-hoc signature is only that:
//! re-hashing the code slots makes it whole again. One signed with a certificate (a CMS blob) is
//! not re-signed here: its CodeDirectory's hash is what the certificate signed.

use anyhow::{bail, Context, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};

const FAT_MAGIC: u32 = 0xcafe_babe;
const FAT_MAGIC_64: u32 = 0xcafe_babf;
const MH_MAGIC: u32 = 0xfeed_face;
const MH_MAGIC_64: u32 = 0xfeed_facf;
const LC_CODE_SIGNATURE: u32 = 0x1d;
const EMBEDDED_SIGNATURE: u32 = 0xfade_0cc0;
const CODE_DIRECTORY: u32 = 0xfade_0c02;
const SLOT_CODE_DIRECTORY: u32 = 0;
const SLOT_SIGNATURE: u32 = 0x10000;
/// Special slots that refer to files outside the binary (a bundle's Info.plist, resources):
/// nothing in the binary to check them against.
const EXTERNAL_SLOTS: [u32; 2] = [1, 3];
const CS_ADHOC: u32 = 0x2;
const CPU_ARM64: u32 = 0x0100_000c;
const CPU_X86_64: u32 = 0x0100_0007;

/// What one architecture's slice of a Mach-O file carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceSignature {
    pub arch: &'static str,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Unsigned,
    /// Every hash matches; `adhoc` when no certificate signed it.
    Valid {
        adhoc: bool,
    },
    /// What does not match.
    Invalid(String),
}

/// Whether `bytes` start as a Mach-O file or a universal (fat) one.
pub fn is_macho(bytes: &[u8]) -> bool {
    match (be32(bytes, 0), le32(bytes, 0)) {
        (Ok(FAT_MAGIC | FAT_MAGIC_64), _) => fat_count(bytes).is_ok(),
        (_, Ok(MH_MAGIC | MH_MAGIC_64)) => true,
        _ => false,
    }
}

/// The signature of each slice, checked against the bytes it covers.
pub fn check(bytes: &[u8]) -> Result<Vec<SliceSignature>> {
    slices(bytes)?
        .into_iter()
        .map(|(start, end)| {
            let slice = &bytes[start..end];
            let arch = arch_name(le32(slice, 4)?);
            let state = match signature_of(slice)? {
                None => State::Unsigned,
                Some(signature) => match verify(slice, &signature) {
                    Ok(()) => State::Valid {
                        adhoc: signature.adhoc,
                    },
                    Err(e) => State::Invalid(format!("{e:#}")),
                },
            };
            Ok(SliceSignature { arch, state })
        })
        .collect()
}

/// Re-hashes the pages of every ad-hoc signed slice, in place: after a change that moved no
/// byte (conda's binary prefix replacement pads with NULs), the signature covers the new bytes.
/// Returns how many slices were signed again. A slice signed with a certificate is refused.
pub fn resign_adhoc(bytes: &mut [u8]) -> Result<usize> {
    let mut signed = 0;
    for (start, end) in slices(bytes)? {
        let slice = &mut bytes[start..end];
        let Some(signature) = signature_of(slice)? else {
            continue;
        };
        if !signature.adhoc {
            bail!(
                "its {} slice is signed with a certificate, which cannot be renewed here: sign it \
                 again on a Mac (codesign) or leave its bytes unchanged",
                arch_name(le32(slice, 4)?)
            );
        }
        for directory in &signature.directories {
            for (slot, page) in directory.pages().enumerate() {
                let hash = directory.hash(&slice[page.0..page.1])?;
                let at = directory.code_slot(slot);
                slice[at..at + hash.len()].copy_from_slice(&hash);
            }
        }
        signed += 1;
    }
    Ok(signed)
}

struct Signature {
    /// The SuperBlob's offset in the slice.
    blob: usize,
    /// (slot type, offset in the slice, length) of each blob.
    index: Vec<(u32, usize, usize)>,
    directories: Vec<Directory>,
    adhoc: bool,
}

struct Directory {
    /// Offset of the CodeDirectory in the slice.
    at: usize,
    hash_offset: usize,
    hash_size: usize,
    hash_type: u8,
    special_slots: usize,
    code_slots: usize,
    code_limit: usize,
    page_size: usize,
}

impl Directory {
    fn read(slice: &[u8], at: usize) -> Result<Directory> {
        if be32(slice, at)? != CODE_DIRECTORY {
            bail!("the CodeDirectory slot holds no CodeDirectory");
        }
        let version = be32(slice, at + 8)?;
        let mut code_limit = be32(slice, at + 32)? as usize;
        if version >= 0x20300 {
            let limit64 = be64(slice, at + 56)? as usize;
            if limit64 != 0 {
                code_limit = limit64;
            }
        }
        let page_log = *slice.get(at + 39).context("a short CodeDirectory")?;
        let directory = Directory {
            at,
            hash_offset: be32(slice, at + 16)? as usize,
            hash_size: *slice.get(at + 36).context("a short CodeDirectory")? as usize,
            hash_type: slice[at + 37],
            special_slots: be32(slice, at + 24)? as usize,
            code_slots: be32(slice, at + 28)? as usize,
            code_limit,
            page_size: if page_log == 0 {
                code_limit.max(1)
            } else {
                1usize << page_log
            },
        };
        if directory.code_limit > slice.len() {
            bail!(
                "its CodeDirectory covers {} bytes, the file has {}",
                directory.code_limit,
                slice.len()
            );
        }
        let end = directory.code_slot(directory.code_slots);
        if directory.hash_offset < directory.special_slots * directory.hash_size
            || end > slice.len()
        {
            bail!("its CodeDirectory's hashes lie outside it");
        }
        Ok(directory)
    }

    /// (start, end) of each page the code slots hash.
    fn pages(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.code_slots).map(|i| {
            let start = i * self.page_size;
            (start, (start + self.page_size).min(self.code_limit))
        })
    }

    fn code_slot(&self, slot: usize) -> usize {
        self.at + self.hash_offset + slot * self.hash_size
    }

    fn special_slot(&self, slot: usize) -> usize {
        self.at + self.hash_offset - slot * self.hash_size
    }

    fn hash(&self, data: &[u8]) -> Result<Vec<u8>> {
        let full = match self.hash_type {
            1 => Sha1::digest(data).to_vec(),
            2 | 3 => Sha256::digest(data).to_vec(),
            4 => Sha384::digest(data).to_vec(),
            other => bail!("its CodeDirectory uses hash type {other}, unknown here"),
        };
        if full.len() < self.hash_size {
            bail!("its CodeDirectory's hash size does not fit its hash type");
        }
        Ok(full[..self.hash_size].to_vec())
    }
}

fn signature_of(slice: &[u8]) -> Result<Option<Signature>> {
    let Some((offset, size)) = code_signature_command(slice)? else {
        return Ok(None);
    };
    if offset + size > slice.len() || be32(slice, offset)? != EMBEDDED_SIGNATURE {
        bail!("LC_CODE_SIGNATURE points at no embedded signature");
    }
    let count = be32(slice, offset + 8)? as usize;
    let mut index = Vec::with_capacity(count);
    for i in 0..count {
        let slot = be32(slice, offset + 12 + i * 8)?;
        let at = offset + be32(slice, offset + 16 + i * 8)? as usize;
        let length = be32(slice, at + 4)? as usize;
        if at + length > offset + size {
            bail!("a blob of its signature runs past the signature");
        }
        index.push((slot, at, length));
    }
    let directories = index
        .iter()
        .filter(|(slot, ..)| *slot == SLOT_CODE_DIRECTORY || (0x1000..0x1005).contains(slot))
        .map(|(_, at, _)| Directory::read(slice, *at))
        .collect::<Result<Vec<_>>>()?;
    let Some(primary) = directories.first() else {
        bail!("its signature has no CodeDirectory");
    };
    let flags = be32(slice, primary.at + 12)?;
    // A CMS blob of 8 bytes is the empty wrapper an ad-hoc signature carries.
    let certificate = index
        .iter()
        .any(|(slot, _, length)| *slot == SLOT_SIGNATURE && *length > 8);
    Ok(Some(Signature {
        blob: offset,
        index,
        directories,
        adhoc: flags & CS_ADHOC != 0 || !certificate,
    }))
}

fn verify(slice: &[u8], signature: &Signature) -> Result<()> {
    for directory in &signature.directories {
        let expected = directory.code_limit.div_ceil(directory.page_size);
        if directory.code_slots != expected {
            bail!(
                "its CodeDirectory has {} page hashes for {} pages",
                directory.code_slots,
                expected
            );
        }
        if directory.code_limit > signature.blob {
            bail!("its CodeDirectory covers its own signature");
        }
        for (slot, page) in directory.pages().enumerate() {
            let at = directory.code_slot(slot);
            if slice[at..at + directory.hash_size] != directory.hash(&slice[page.0..page.1])? {
                bail!(
                    "page {slot} (bytes {}..{}) does not match its hash",
                    page.0,
                    page.1
                );
            }
        }
        for special in 1..=directory.special_slots {
            let at = directory.special_slot(special);
            let stored = &slice[at..at + directory.hash_size];
            let blob = signature
                .index
                .iter()
                .find(|(slot, ..)| *slot as usize == special);
            match blob {
                Some((_, blob_at, length))
                    if stored != directory.hash(&slice[*blob_at..blob_at + length])? =>
                {
                    bail!("the blob of special slot {special} does not match its hash")
                }
                Some(_) => {}
                None if EXTERNAL_SLOTS.contains(&(special as u32)) => {}
                None if stored.iter().any(|&b| b != 0) => {
                    bail!("special slot {special} has a hash but its signature has no such blob")
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// (dataoff, datasize) of the slice's `LC_CODE_SIGNATURE`.
fn code_signature_command(slice: &[u8]) -> Result<Option<(usize, usize)>> {
    let header = match le32(slice, 0)? {
        MH_MAGIC_64 => 32,
        MH_MAGIC => 28,
        _ => bail!("not a little-endian Mach-O file"),
    };
    let commands = le32(slice, 16)? as usize;
    let mut at = header;
    for _ in 0..commands {
        let (command, size) = (le32(slice, at)?, le32(slice, at + 4)? as usize);
        if command == LC_CODE_SIGNATURE {
            return Ok(Some((
                le32(slice, at + 8)? as usize,
                le32(slice, at + 12)? as usize,
            )));
        }
        if size < 8 {
            bail!("a load command of {size} bytes");
        }
        at += size;
    }
    Ok(None)
}

/// (start, end) of each architecture's slice.
fn slices(bytes: &[u8]) -> Result<Vec<(usize, usize)>> {
    match be32(bytes, 0)? {
        FAT_MAGIC | FAT_MAGIC_64 => {
            let wide = be32(bytes, 0)? == FAT_MAGIC_64;
            let mut out = Vec::new();
            for i in 0..fat_count(bytes)? {
                let (offset, size) = if wide {
                    let at = 8 + i * 32;
                    (
                        be64(bytes, at + 8)? as usize,
                        be64(bytes, at + 16)? as usize,
                    )
                } else {
                    let at = 8 + i * 20;
                    (
                        be32(bytes, at + 8)? as usize,
                        be32(bytes, at + 12)? as usize,
                    )
                };
                if offset + size > bytes.len() {
                    bail!("a slice of the universal file runs past its end");
                }
                out.push((offset, offset + size));
            }
            Ok(out)
        }
        _ => Ok(vec![(0, bytes.len())]),
    }
}

/// Java class files share the fat magic; a universal binary has a handful of slices.
fn fat_count(bytes: &[u8]) -> Result<usize> {
    let count = be32(bytes, 4)? as usize;
    if count == 0 || count > 16 {
        bail!("not a universal Mach-O file");
    }
    Ok(count)
}

fn arch_name(cpu: u32) -> &'static str {
    match cpu {
        CPU_ARM64 => "arm64",
        CPU_X86_64 => "x86_64",
        _ => "other",
    }
}

fn be32(bytes: &[u8], at: usize) -> Result<u32> {
    let b = bytes.get(at..at + 4).context("the file ends early")?;
    Ok(u32::from_be_bytes(b.try_into()?))
}

fn be64(bytes: &[u8], at: usize) -> Result<u64> {
    let b = bytes.get(at..at + 8).context("the file ends early")?;
    Ok(u64::from_be_bytes(b.try_into()?))
}

fn le32(bytes: &[u8], at: usize) -> Result<u32> {
    let b = bytes.get(at..at + 4).context("the file ends early")?;
    Ok(u32::from_le_bytes(b.try_into()?))
}
