//! What every step of a plan tells about itself, whatever it does: its title (a header while it
//! runs, and the name of a failure), its stage, what a dry run prints, and the inputs that decide
//! whether a cached result still holds. Each step is a struct in the stage module that runs it.

use std::fmt;

use crate::util::inputs::Inputs;

/// A build's two cached stages: each is redone only when its inputs changed (see `fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetch, install, clone, pip install, check: the installed environment.
    Env,
    /// Link, prune, relocate, zip, verify, publish: the zip, from the environment.
    Dist,
}

pub trait Describe {
    /// Short and stable: `Install Python packages`.
    fn title(&self) -> String;

    fn stage(&self) -> Stage;

    /// Every URL, command line and path it will use, for `--dry-run`.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;

    /// What decides whether its result can be reused, as data: URLs, versions, paths, digests.
    /// Never how it is shown, nor whether it runs offline. Steps of the zip stage add none: the
    /// zip is remade whenever the environment, the policy or the tool changed.
    fn inputs(&self, inputs: &mut Inputs);
}
