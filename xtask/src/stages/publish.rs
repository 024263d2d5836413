//! Publish: only a zip (or the volumes) that passed verify gets its final name, with its
//! `.sha256`, and the prune page (its size report), all moved into the output folder.

use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use crate::stages::archive;
use crate::stages::describe::{Describe, Stage};
use crate::util::digest;
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;

#[derive(Debug, Clone)]
pub struct Publish {
    /// The verified zip (its unverified name) and its final path; where the zip was written as
    /// volumes, theirs are derived from these.
    pub zip: (PathBuf, PathBuf),
    /// The prune page, where it was written and its final path.
    pub prune_page: (PathBuf, PathBuf),
}

impl Publish {
    /// Returns every file published, under its final name: the zip or its volumes, each with its
    /// `.sha256`, and the prune page. What an earlier build published under these names goes first.
    pub fn run(&self, tools: &Tools) -> Result<Vec<PathBuf>> {
        let ((staged, zip), (staged_page, page)) = (&self.zip, &self.prune_page);
        let staged_zips = archive::zip_or_volumes(staged);
        if staged_zips.is_empty() {
            anyhow::bail!("{} is missing, and so are its volumes", staged.display());
        }
        let finals: Vec<PathBuf> = if staged_zips.len() == 1 && &staged_zips[0] == staged {
            vec![zip.clone()]
        } else {
            (1..=staged_zips.len())
                .map(|i| archive::volume_path(zip, i))
                .collect()
        };
        archive::remove_zip_and_volumes(zip)?;
        let mut published = Vec::new();
        for (from, to) in staged_zips.iter().zip(&finals) {
            // Named for what it is only now; its digest was taken as it was written.
            let sha256 = digest::read_sidecar(from)?;
            fs_err::rename(from, to)?;
            fs_err::remove_file(digest::sidecar_path(from))?;
            digest::write_sidecar(to, &sha256)?;
            published.push(to.clone());
            published.push(digest::sidecar_path(to));
        }
        if finals.len() > 1 {
            tools.reporter.note(format!(
                "published as {} volumes: unpack them all into one folder",
                finals.len()
            ));
        }
        fs_err::rename(staged_page, page)?;
        published.push(page.clone());
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
        for (from, to) in [&self.zip, &self.prune_page] {
            write!(f, "\n      {} as {}", from.display(), to.display())?;
        }
        Ok(())
    }

    fn inputs(&self, _: &mut Inputs) {}
}
