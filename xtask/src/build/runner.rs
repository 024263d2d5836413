//! Carries out a plan: each step is run by the stage module it belongs to, under a header that
//! names it, and a failure names it too. What the steps find out is kept for manifest.json, the
//! lock and the stages' records.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::build::step::Step;
use crate::model::distribution::Variant;
use crate::model::lock::{self, Lock};
use crate::stages::bytecode::BytecodeSummary;
use crate::stages::describe::Stage;
use crate::stages::manifest::Findings;
use crate::stages::miniforge::Miniforge;
use crate::stages::packages::ProtectedPackage;
use crate::stages::pip;
use crate::stages::pip::leave_out::LeftOut;
use crate::stages::prune::Pruned;
use crate::stages::relocate::Relocated;
use crate::stages::repos::Checkout;
use crate::util::tools::Tools;

/// What the environment stage found out. Kept in its record, so a reused environment still
/// gives manifest.json and the lock all of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Installed {
    pub miniforge: Option<Miniforge>,
    pub checkouts: Vec<Checkout>,
    pub pip: Option<pip::Installed>,
}

impl Installed {
    /// What this build resolved to, for the lock file; `left_out` names what the zip leaves out.
    pub fn lock(&self, variant: &Variant, left_out: Vec<String>) -> Result<Lock> {
        let miniforge = self
            .miniforge
            .as_ref()
            .context("Miniforge was not fetched")?;
        Ok(Lock {
            platform: variant.platform,
            variant: variant.name.clone(),
            miniforge: lock::LockedInstaller {
                tag: miniforge.tag.clone(),
                sha256: miniforge.sha256.clone(),
            },
            repos: self
                .checkouts
                .iter()
                .map(|c| lock::LockedRepo {
                    name: c.name.clone(),
                    url: c.url.clone(),
                    commit: c.commit.clone(),
                })
                .collect(),
            python_packages: self
                .pip
                .as_ref()
                .map(|p| p.locked_packages.clone())
                .unwrap_or_default(),
            left_out,
        })
    }
}

/// What a run's steps found out.
#[derive(Default)]
pub struct Results {
    pub installed: Installed,
    pub left_out: Vec<LeftOut>,
    pub protected: Vec<ProtectedPackage>,
    pub prune: Option<Pruned>,
    pub relocation: Option<Relocated>,
    pub bytecode: Option<BytecodeSummary>,
    /// Every file published, under its final name.
    pub published: Vec<PathBuf>,
}

impl Results {
    /// Everything manifest.json tells, once the steps before it have found it.
    fn findings(&self) -> Result<Findings<'_>> {
        let installed = &self.installed;
        Ok(Findings {
            miniforge: installed
                .miniforge
                .as_ref()
                .context("Miniforge was not fetched")?,
            pip: installed.pip.as_ref().context("pip did not run")?,
            checkouts: &installed.checkouts,
            left_out: &self.left_out,
            protected: &self.protected,
            prune: self.prune.as_ref().context("prune did not run")?,
            relocation: self.relocation.as_ref().context("relocate did not run")?,
            bytecode: self
                .bytecode
                .as_ref()
                .context("bytecode was not compiled")?,
        })
    }
}

/// Runs the steps of `stage`.
pub fn run_stage(steps: &[Step], stage: Stage, tools: &Tools, results: &mut Results) -> Result<()> {
    for step in steps.iter().filter(|s| s.stage() == stage) {
        run_step(step, tools, results)?;
    }
    Ok(())
}

/// Runs every step, in order (`fetch`'s plan, which has no cached stages).
pub fn run_all(steps: &[Step], tools: &Tools, results: &mut Results) -> Result<()> {
    for step in steps {
        run_step(step, tools, results)?;
    }
    Ok(())
}

/// Runs one step under a header naming it; its failure names it.
fn run_step(step: &Step, tools: &Tools, results: &mut Results) -> Result<()> {
    let title = step.title();
    let timer = tools.reporter.stage(&title);
    dispatch(step, tools, results).with_context(|| format!("stage `{title}` failed"))?;
    timer.finish();
    Ok(())
}

/// One line per step: the stage module runs it, and what it finds out is kept.
fn dispatch(step: &Step, tools: &Tools, found: &mut Results) -> Result<()> {
    match step {
        Step::DownloadInstaller(s) => found.installed.miniforge = Some(s.run(tools)?),
        Step::InstallBase(s) => s.run(tools)?,
        Step::LinkBase(s) => s.run(tools)?,
        Step::CondaInstall(s) => s.run(tools)?,
        Step::CondaSolve(s) => s.run(tools)?,
        Step::Clone(s) => found.installed.checkouts.push(s.run(tools)?),
        Step::SkipRequirements(s) => s.run(&tools.reporter)?,
        Step::WriteFile(s) => s.run()?,
        Step::PipInstall(s) => found.installed.pip = Some(s.run(tools)?),
        Step::CrossPipInstall(s) => found.installed.pip = Some(s.run(tools)?),
        Step::SmokeInstalled(s) => s.run(tools)?,
        Step::LinkTree(s) => s.run(tools)?,
        Step::LeaveOut(s) => found.left_out = s.run(tools)?,
        Step::Prune(s) => found.prune = Some(s.run(tools)?),
        Step::Relocate(s) => found.relocation = Some(s.run(tools)?),
        Step::CompileImported(s) => found.bytecode = Some(s.run(tools)?),
        Step::PackageTools(s) => found.protected = s.run(tools)?,
        Step::WriteManifest(s) => s.run(&found.findings()?)?,
        Step::CheckSignatures(s) => _ = s.run(tools)?,
        Step::Archive(s) => s.run(tools)?,
        Step::Verify(s) => s.run(tools)?,
        Step::Publish(s) => found.published = s.run(tools)?,
        Step::Mirror(s) => s.run(tools)?,
        Step::Wheelhouse(s) => s.run(tools)?,
    }
    Ok(())
}
