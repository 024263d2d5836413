//! Publish: only a zip that passed verify gets its final name, with its `.sha256`, its parts
//! where it is over the split size, and the size report, all moved into the output folder.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::archive;
use crate::digest;
use crate::fingerprint::Inputs;
use crate::step::{Describe, Stage};
use crate::tools::Tools;
use crate::units::human_bytes;

#[derive(Debug, Clone)]
pub struct Publish {
    /// The verified zip (its unverified name) and its final path.
    pub zip: (PathBuf, PathBuf),
    /// The size report, where it was written and its final path.
    pub report: (PathBuf, PathBuf),
    /// Zips larger than this are also published as parts; 0 never splits.
    pub split_size: u64,
}

impl Publish {
    /// Returns every file published, under its final name.
    pub fn run(&self, tools: &Tools) -> Result<Vec<PathBuf>> {
        let ((staged, zip), (staged_report, report)) = (&self.zip, &self.report);
        // Named for what it is only now; its digest was taken as it was written.
        let sha256 = digest::read_sidecar(staged)?;
        let verified = staged.with_file_name(zip.file_name().context("the zip has a name")?);
        fs_err::rename(staged, &verified)?;
        fs_err::remove_file(digest::sidecar_path(staged))?;
        digest::write_sidecar(&verified, &sha256)?;
        let parts = archive::split(&verified, self.split_size)?;
        if !parts.is_empty() {
            tools.reporter.note(format!(
                "the zip is over {}: also written as {} parts",
                human_bytes(self.split_size),
                parts.len()
            ));
        }
        let out = zip.parent().context("the zip is in --out")?;
        let files: Vec<(PathBuf, PathBuf)> = parts
            .iter()
            .flat_map(|p| [p.clone(), digest::sidecar_path(p)])
            .chain([digest::sidecar_path(&verified), verified.clone()])
            .map(|from| {
                let to = out.join(from.file_name().expect("a file has a name"));
                (from, to)
            })
            .chain([(staged_report.clone(), report.clone())])
            .collect();
        let mut published = Vec::new();
        for (from, to) in files {
            fs_err::rename(&from, &to)?;
            published.push(to);
        }
        Ok(published)
    }
}

impl Describe for Publish {
    fn title(&self) -> String {
        "Publish".into()
    }

    fn stage(&self) -> Stage {
        Stage::Dist
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "publish")?;
        for (from, to) in [&self.zip, &self.report] {
            write!(f, "\n      {} as {}", from.display(), to.display())?;
        }
        write!(
            f,
            "\n      with parts of at most {} bytes where the zip is larger",
            self.split_size
        )
    }

    fn inputs(&self, inputs: &mut Inputs) {
        inputs.set("split size", self.split_size.to_string());
    }
}
