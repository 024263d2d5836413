//! Digests, as the tool writes and trusts them: sha256 in hex, of bytes or streamed from a file;
//! `.sha256` sidecars in `sha256sum` form beside a file; and the URL-safe base64 form that pip's
//! RECORD files use.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Lower-case hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of a file's content, in hex, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut HashWriter(&mut hasher))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// A `Write` that only hashes.
pub struct HashWriter<'a>(pub &'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// pip's RECORD form of a file's digest: sha256, URL-safe base64 without padding.
pub fn record_digest(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// `file.zip` → `file.zip.sha256`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Records a file's digest beside it, in `sha256sum` form (`sha256sum -c` reads it); written last,
/// by rename, so a sidecar is only ever whole.
pub fn write_sidecar(path: &Path, sha256: &str) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    crate::util::atomic::write_atomic(
        &sidecar_path(path),
        format!("{sha256}  {name}\n").as_bytes(),
    )
}

/// The digest of a `sha256sum`-style text (`<hex>  <name>`).
pub fn parse_sidecar(text: &str) -> Result<String> {
    let token = text.split_whitespace().next().unwrap_or("");
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("not a sha256 checksum file (expected `<64 hex digits>  <name>`)");
    }
    Ok(token.to_ascii_lowercase())
}

/// The digest in `path`'s sidecar.
pub fn read_sidecar(path: &Path) -> Result<String> {
    let sidecar = sidecar_path(path);
    parse_sidecar(&fs_err::read_to_string(&sidecar)?)
        .with_context(|| format!("{}", sidecar.display()))
}

/// The digest of a file kept with its sidecar, if both are there and agree. A sidecar that does
/// not match is removed: the pair is never trusted again.
pub fn verified_digest(path: &Path) -> Result<Option<String>> {
    let sidecar = sidecar_path(path);
    if !path.is_file() || !sidecar.is_file() {
        return Ok(None);
    }
    let expected = parse_sidecar(&fs_err::read_to_string(&sidecar)?)?;
    if sha256_file(path)?.eq_ignore_ascii_case(&expected) {
        Ok(Some(expected))
    } else {
        fs_err::remove_file(&sidecar)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_digests_are_pips_form() {
        // pip's RECORD for an empty file.
        assert_eq!(
            record_digest(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sidecar_is_sha256sum_output() {
        let hexd = "ab".repeat(32);
        assert_eq!(
            parse_sidecar(&format!("{hexd}  Miniforge3.sh\n")).unwrap(),
            hexd
        );
        assert_eq!(
            parse_sidecar(&format!("{}  x\r\n", hexd.to_uppercase())).unwrap(),
            hexd
        );
        assert!(parse_sidecar("<html>not found</html>").is_err());
    }

    #[test]
    fn a_file_and_its_sidecar_are_trusted_only_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("installer.sh");
        fs_err::write(&file, b"echo hi\n").unwrap();
        assert_eq!(verified_digest(&file).unwrap(), None, "no sidecar yet");
        let digest = sha256_file(&file).unwrap();
        assert_eq!(digest, sha256_hex(b"echo hi\n"));
        write_sidecar(&file, &digest).unwrap();
        assert_eq!(
            fs_err::read_to_string(sidecar_path(&file)).unwrap(),
            format!("{digest}  installer.sh\n")
        );
        assert_eq!(verified_digest(&file).unwrap(), Some(digest.clone()));
        assert_eq!(read_sidecar(&file).unwrap(), digest);
        fs_err::write(&file, b"echo tampered\n").unwrap();
        assert_eq!(verified_digest(&file).unwrap(), None);
        assert!(!sidecar_path(&file).exists(), "a stale sidecar is removed");
    }
}
