//! `fetch`, start to end: Miniforge's `latest` resolved to a tag, the plan of `fetch` (the
//! installer, a scratch base of the platform to run pip in, a bare mirror of each repo, the
//! wheelhouse), run in a scratch folder removed after.

use anyhow::Result;

use crate::build::layout::Layout;
use crate::build::plan::{self, Options};
use crate::build::runner::{self, Results};
use crate::model::distribution::Distribution;
use crate::model::lock::Lock;
use crate::model::platform::Platform;
use crate::stages::miniforge::{self, Tag};
use crate::util::tools::Tools;

pub fn fetch(
    distribution: &Distribution,
    platform: Platform,
    layout: &Layout,
    locked: Option<&Lock>,
    tools: &Tools,
) -> Result<()> {
    let installer = &distribution.installer;
    let tag = miniforge::resolve_tag(
        &installer.release,
        &installer.base_url,
        locked.map(|l| l.miniforge.tag.as_str()),
        false,
        &layout.latest_tag,
        tools,
    )?;
    let steps = plan::fetch_plan(
        distribution,
        platform,
        layout,
        Options {
            tag: Tag::Resolved(tag),
            locked,
            ..Options::default()
        },
    );
    let scratch = &layout.fetch_scratch;
    if scratch.exists() {
        fs_err::remove_dir_all(scratch)?;
    }
    fs_err::create_dir_all(scratch)?;
    runner::run_all(&steps, tools, &mut Results::default())?;
    // The scratch base only ran pip; the next fetch installs a fresh one.
    fs_err::remove_dir_all(scratch)?;
    Ok(())
}
