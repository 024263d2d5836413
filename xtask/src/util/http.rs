//! Downloads, verified while streaming and renamed into the cache only when the digest matches.
//!
//! Miniforge's `latest` is resolved to a tag first (the `/latest` page redirects to `/tag/<tag>`),
//! because only the versioned asset names carry a `.sha256` sidecar. The cache keeps the installer
//! and, written last, its sidecar: a later build trusts the pair only if the file still hashes to
//! the sidecar's digest, so an interrupted download is never mistaken for a finished one.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::util::progress::Reporter;

pub struct Downloader {
    /// Tells of retries.
    reporter: Reporter,
    client: Client,
    no_redirects: Client,
    attempts: u32,
    backoff: Duration,
}

/// Why one attempt failed, and whether another could succeed.
enum Failure {
    Transient(anyhow::Error),
    Permanent(anyhow::Error),
}

/// A local file error will not go away by asking the server again.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Permanent(e.into())
    }
}

impl Downloader {
    pub fn new(reporter: Reporter) -> Result<Downloader> {
        // reqwest is built without a bundled crypto provider; ring is the small, C-light one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            Client::builder()
                .user_agent(concat!("anymatix-xtask/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                // The blocking client applies this to each connect, read and write, not to the
                // whole body: installers are large and links can be slow.
                .timeout(Duration::from_secs(120))
        };
        Ok(Downloader {
            reporter,
            client: builder().build().context("cannot set up the HTTP client")?,
            no_redirects: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("cannot set up the HTTP client")?,
            attempts: 4,
            backoff: Duration::from_millis(500),
        })
    }

    /// `GET <base_url>/latest` answers with a redirect to `.../tag/<tag>`; returns `<tag>`.
    pub fn resolve_latest_tag(&self, base_url: &str) -> Result<String> {
        let url = format!("{}/latest", base_url.trim_end_matches('/'));
        self.with_retries(&url, || {
            let response = self.send(self.no_redirects.get(&url))?;
            let status = response.status();
            if !status.is_redirection() {
                return Err(Failure::Permanent(anyhow!(
                    "expected a redirect to the newest release's tag, got HTTP {status}"
                )));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Failure::Permanent(anyhow!("redirect without a Location header")))?;
            tag_from_location(location).map_err(Failure::Permanent)
        })
        .with_context(|| {
            format!("cannot resolve Miniforge's latest release from {url} (pin installer.release to a tag to skip this)")
        })
    }

    /// One request, no redirects followed: the status a URL answers with (for `doctor`).
    pub fn probe(&self, url: &str) -> Result<u16> {
        let response = self.no_redirects.get(url).send().map_err(without_url)?;
        Ok(response.status().as_u16())
    }

    /// Reads a `sha256sum`-style sidecar (`<hex>  <name>`) and returns the digest.
    pub fn download_sha256(&self, url: &str) -> Result<String> {
        self.with_retries(url, || {
            let response = self.send(self.client.get(url))?;
            let response = check_status(response)?;
            let text = response
                .text()
                .map_err(|e| Failure::Transient(anyhow!(e)))?;
            crate::util::digest::parse_sidecar(&text).map_err(Failure::Permanent)
        })
        .with_context(|| format!("cannot read the checksum {url}"))
    }

    /// Downloads `url` to `dest`, which appears only if the content hashes to `sha256`.
    pub fn download_verified(
        &self,
        url: &str,
        sha256: &str,
        dest: &Path,
        reporter: &Reporter,
    ) -> Result<()> {
        let dir = dest
            .parent()
            .context("download destination has no parent")?;
        fs_err::create_dir_all(dir)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::util::atomic::sweep_partials(dir, &name)?;
        // Kept across attempts and runs, so a dropped connection resumes where it stopped; the
        // digest is still checked over the whole file, and only then is it renamed into place.
        let partial = dir.join(format!(".{name}.download"));
        self.with_retries(url, || {
            let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
            let mut request = self.client.get(url);
            if have > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
            }
            let response = self.send(request)?;
            let resumed = have > 0 && response.status() == StatusCode::PARTIAL_CONTENT;
            let response = if resumed { response } else { check_status(response)? };
            // Opened only once the server answers, so a failed request leaves no file behind.
            let mut file = fs_err::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&partial)
                ?;
            let mut hasher = Sha256::new();
            if resumed {
                // Hash what is already there, then append the rest.
                let mut existing = fs_err::File::open(&partial)?;
                std::io::copy(&mut existing, &mut crate::util::digest::HashWriter(&mut hasher))?;
            } else {
                file.set_len(0)?;
            }
            let start = if resumed { have } else { 0 };
            let total = response.content_length().map(|n| n + start);
            let mut progress = reporter.transfer("downloaded", &name, total);
            progress.advance_to(start);
            copy_into_hasher(response, &mut file, &mut hasher, |n| progress.advance(n))
                .map_err(|e| Failure::Transient(anyhow!(e).context("download interrupted")))?;
            progress.finish();
            let digest = crate::util::digest::hex(&hasher.finalize());
            if !digest.eq_ignore_ascii_case(sha256) {
                fs_err::remove_file(&partial)?;
                if resumed {
                    // The server's file may have changed since the first part: start over once.
                    return Err(Failure::Transient(anyhow!("the resumed download did not match its sha256")));
                }
                return Err(Failure::Permanent(anyhow!(
                    "sha256 mismatch: expected {sha256}, got {digest}; the file was discarded. \
                     If this persists, the release may have been replaced: check the published checksum"
                )));
            }
            file.sync_all()?;
            drop(file);
            fs_err::rename(&partial, dest)
                .map_err(|e| Failure::Permanent(anyhow!(e).context("cannot move the download into the cache")))?;
            Ok(())
        })
        .with_context(|| format!("cannot download {url}"))
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        request.send().map_err(|e| {
            if e.is_builder() {
                Failure::Permanent(anyhow!("bad URL: {e}"))
            } else {
                Failure::Transient(anyhow!(without_url(e)))
            }
        })
    }

    fn with_retries<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T> {
        let mut delay = self.backoff;
        for n in 1..=self.attempts {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(e)) if n == self.attempts => {
                    return Err(e.context(format!("gave up after {n} attempts")))
                }
                Err(Failure::Transient(e)) => {
                    self.reporter.note(format!(
                        "{url}: {e:#}; retrying in {:.1}s",
                        delay.as_secs_f64()
                    ));
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Copies `from` into `to`, hashing what passes and telling each chunk's size.
fn copy_into_hasher(
    mut from: impl Read,
    to: &mut impl Write,
    hasher: &mut Sha256,
    mut on_chunk: impl FnMut(u64),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        on_chunk(n as u64);
    }
    to.flush()
}

fn check_status(response: Response) -> Result<Response, Failure> {
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(Failure::Transient(anyhow!("HTTP {status}")))
    } else if status == StatusCode::NOT_FOUND {
        Err(Failure::Permanent(anyhow!(
            "HTTP 404 Not Found: check the release tag and base URL in the manifest"
        )))
    } else {
        Err(Failure::Permanent(anyhow!("HTTP {status}")))
    }
}

/// reqwest's messages repeat the URL, which our context already names once.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

fn tag_from_location(location: &str) -> Result<String> {
    let tag = location
        .trim_end_matches('/')
        .rsplit_once("/tag/")
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty() && !tag.contains('/'))
        .ok_or_else(|| anyhow!("the redirect to `{location}` does not end in /tag/<tag>"))?;
    Ok(tag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_comes_from_the_redirect() {
        let loc = "https://github.com/conda-forge/miniforge/releases/tag/26.3.2-3";
        assert_eq!(tag_from_location(loc).unwrap(), "26.3.2-3");
        assert!(tag_from_location("https://github.com/conda-forge/miniforge/releases").is_err());
    }
}
