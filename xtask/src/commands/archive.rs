//! `cargo xtask archive DIR OUT.zip`: packs any folder exactly as `portable` packs `anymatix/`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::stages::archive::{self, Compression, Settings};
use crate::util::progress::{Reporter, Transfer};
use crate::util::units::{human_bytes, human_duration};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cargo xtask archive target/portable/stage/linux-x86_64/anymatix /tmp/anymatix.zip
  cargo xtask archive ./my-env /tmp/my-env.zip --threads 1    same bytes, one core
  cargo xtask archive ./my-env /tmp/my-env.zip --compression best    smaller, slower")]
pub struct ArchiveArgs {
    /// The folder to pack; it becomes the zip's single root entry, under its own name.
    pub dir: PathBuf,
    /// The zip to write (with OUT.zip.sha256 beside it). Written under a temporary name and
    /// renamed only once complete and re-read.
    pub out: PathBuf,
    /// Compressing threads [default: every core]. The bytes are the same for any number.
    #[arg(long)]
    pub threads: Option<usize>,
    /// `best` makes a smaller zip (libdeflate's level 12) for about 5x the compressing time;
    /// either is plain deflate that every unzip opens.
    #[arg(long, value_enum, default_value_t)]
    pub compression: Compression,
}

impl ArchiveArgs {
    pub fn run(self) -> Result<()> {
        let Some(root) = self
            .dir
            .canonicalize()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            bail!(
                "{} has no folder name to use as the zip's root",
                self.dir.display()
            );
        };
        let mut settings = Settings {
            compression: self.compression,
            ..Settings::default()
        };
        if let Some(threads) = self.threads {
            settings.threads = threads.max(1);
        }
        let started = std::time::Instant::now();
        let reporter = Reporter::new(false);
        let mut transfer: Option<Transfer> = None;
        let summary =
            archive::archive_with(&self.dir, &root, &self.out, settings, &mut |done, total| {
                let t =
                    transfer.get_or_insert_with(|| reporter.transfer("zipped", &root, Some(total)));
                t.advance_to(done);
            })?;
        if let Some(t) = transfer {
            t.finish();
        }
        println!(
            "{}: {} entries, {} in {} (sha256 {})",
            self.out.display(),
            summary.entries,
            human_bytes(summary.bytes),
            human_duration(started.elapsed()),
            summary.sha256
        );
        Ok(())
    }
}
