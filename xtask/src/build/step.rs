//! The one list of a build's steps: each a struct of the stage module that runs it, telling
//! about itself through [`Describe`]. To add a step: its struct with `run` and `Describe` in its
//! stage module, a variant here, an arm in [`Step::about`] and one in the runner's dispatch.

use std::fmt;

use crate::stages::archive::Archive;
use crate::stages::bytecode::CompileImported;
use crate::stages::conda::solve::CondaSolve;
use crate::stages::conda::LinkBase;
use crate::stages::describe::{Describe, Stage};
use crate::stages::install::{CondaInstall, InstallBase};
use crate::stages::manifest::WriteManifest;
use crate::stages::miniforge::DownloadInstaller;
use crate::stages::packages::PackageTools;
use crate::stages::pip::cross::CrossPipInstall;
use crate::stages::pip::leave_out::LeaveOutPackages;
use crate::stages::pip::requirements::SkipRequirements;
use crate::stages::pip::{PipInstall, Wheelhouse, WriteFile};
use crate::stages::prune::{LinkTree, Prune};
use crate::stages::publish::Publish;
use crate::stages::relocate::Relocate;
use crate::stages::repos::{CloneRepo, Mirror};
use crate::stages::verify::signatures::CheckSignatures;
use crate::stages::verify::{SmokeInstalled, Verify};

/// Every kind of step, each the struct of the stage that runs it.
#[derive(Debug, Clone)]
pub enum Step {
    DownloadInstaller(DownloadInstaller),
    InstallBase(InstallBase),
    LinkBase(LinkBase),
    CondaInstall(CondaInstall),
    CondaSolve(CondaSolve),
    Clone(CloneRepo),
    SkipRequirements(SkipRequirements),
    WriteFile(WriteFile),
    PipInstall(PipInstall),
    CrossPipInstall(CrossPipInstall),
    SmokeInstalled(SmokeInstalled),
    LinkTree(LinkTree),
    LeaveOut(LeaveOutPackages),
    Prune(Prune),
    Relocate(Relocate),
    CompileImported(CompileImported),
    PackageTools(PackageTools),
    WriteManifest(WriteManifest),
    CheckSignatures(CheckSignatures),
    Archive(Archive),
    Verify(Verify),
    Publish(Publish),
    Mirror(Mirror),
    Wheelhouse(Wheelhouse),
}

impl Step {
    /// What the step tells about itself: title, stage, description and inputs.
    pub fn about(&self) -> &dyn Describe {
        match self {
            Step::DownloadInstaller(s) => s,
            Step::InstallBase(s) => s,
            Step::LinkBase(s) => s,
            Step::CondaInstall(s) => s,
            Step::CondaSolve(s) => s,
            Step::Clone(s) => s,
            Step::SkipRequirements(s) => s,
            Step::WriteFile(s) => s,
            Step::PipInstall(s) => s,
            Step::CrossPipInstall(s) => s,
            Step::SmokeInstalled(s) => s,
            Step::LinkTree(s) => s,
            Step::LeaveOut(s) => s,
            Step::Prune(s) => s,
            Step::Relocate(s) => s,
            Step::CompileImported(s) => s,
            Step::PackageTools(s) => s,
            Step::WriteManifest(s) => s,
            Step::CheckSignatures(s) => s,
            Step::Archive(s) => s,
            Step::Verify(s) => s,
            Step::Publish(s) => s,
            Step::Mirror(s) => s,
            Step::Wheelhouse(s) => s,
        }
    }

    pub fn title(&self) -> String {
        self.about().title()
    }

    pub fn stage(&self) -> Stage {
        self.about().stage()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.about().describe(f)
    }
}
