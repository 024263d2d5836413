//! One build of a zip, start to end: Miniforge's `latest` resolved to a tag (it names the
//! installer), the plan, an environment an interrupted build had moved aside put back, the two
//! cached stages (`build::cache`), the lock written, and the build record beside the zip.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::build::cache;
use crate::build::layout::Layout;
use crate::build::plan::{self, Options, PolicyFile, Route};
use crate::build::record::BuildRecord;
use crate::model::distribution::{self, Distribution, Variant};
use crate::model::lock::Lock;
use crate::stages::archive::{self, Compression};
use crate::stages::miniforge::{self, Tag};
use crate::stages::verify;
use crate::util::tools::Tools;

/// Everything a build is made from.
pub struct Build<'a> {
    pub distribution: &'a Distribution,
    pub variant: &'a Variant,
    pub layout: &'a Layout,
    pub version: &'a str,
    pub policy: &'a PolicyFile,
    /// Build exactly this lock; without one, the lock is written at `lock_path`.
    pub locked: Option<&'a Lock>,
    pub lock_path: &'a Path,
    pub offline: bool,
    /// Install the environment again even if its inputs look unchanged.
    pub update: bool,
    pub split_size: u64,
    pub compression: Compression,
    pub route: Route,
    pub tools: &'a Tools,
}

/// What a build made.
pub struct Built {
    /// The zip, or its volumes.
    pub zips: Vec<PathBuf>,
    pub zip_bytes: u64,
    /// Whether the zip was made now (not found unchanged).
    pub rebuilt: bool,
    pub lock_written: bool,
    /// Every step that ran, in order, with how long it took.
    pub timings: Vec<(String, Duration)>,
    pub took: Duration,
}

pub fn build(b: &Build) -> Result<Built> {
    let started = Instant::now();
    let (layout, tools, platform) = (b.layout, b.tools, b.variant.platform);
    let installer = &b.distribution.installer;
    let tag = miniforge::resolve_tag(
        &installer.release,
        &installer.base_url,
        b.locked.map(|l| l.miniforge.tag.as_str()),
        b.offline,
        &layout.latest_tag,
        tools,
    )?;
    let plan = plan::plan(
        b.distribution,
        platform,
        b.version,
        layout,
        b.policy,
        Options {
            tag: Tag::Resolved(tag),
            locked: b.locked,
            offline: b.offline,
            split_size: b.split_size,
            compression: b.compression,
            route: Some(b.route),
        },
    );
    if verify::restore_moved_aside(&layout.env)? {
        tools.reporter.headline(format!(
            "Put back {}: an interrupted build had moved it aside to check the unpacked zip",
            layout.env.display()
        ));
    }
    let env_inputs = cache::env_inputs(&plan, tools, b.offline)
        .context("stage `Resolve the repos' revs` failed")?;
    let (installed, reinstalled) = cache::env_stage(&plan, tools, &env_inputs, b.update)?;
    let dist_inputs = cache::dist_inputs(&plan, &env_inputs)?;
    let rebuilt = cache::dist_stage(&plan, tools, &dist_inputs, installed.clone(), reinstalled)?;

    if b.locked.is_none() {
        let left_out = b
            .distribution
            .leave_out_for(platform)
            .iter()
            .map(|l| distribution::normalise_package_name(&l.entry.name))
            .collect();
        installed.lock(b.variant, left_out)?.write(b.lock_path)?;
    }
    let zips = archive::zip_or_volumes(&plan.artifacts.zip);
    let mut zip_bytes = 0;
    for zip in &zips {
        zip_bytes += fs_err::metadata(zip)?.len();
    }
    let timings = tools.reporter.timings();
    let took = started.elapsed();
    if rebuilt {
        BuildRecord::new(
            b.version,
            b.variant,
            reinstalled,
            took,
            zip_bytes,
            zips.len(),
            &timings,
        )
        .write(&plan.artifacts.build_record)?;
    }
    Ok(Built {
        zips,
        zip_bytes,
        rebuilt,
        lock_written: b.locked.is_none(),
        timings,
        took,
    })
}
