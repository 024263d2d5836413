//! The stage cache: a build's two stages, each redone only when its inputs changed. The
//! environment (fetch → install → repos → pip → check) is installed once and never pruned; the
//! zip (link → prune → relocate → tools → bytecode → manifest → zip → verify → publish) is made
//! from a hard-linked copy of it. So a changed prune rule re-prunes without reinstalling, and a
//! rebuild with nothing changed only checks.
//!
//! What a stage was made from is recorded beside it (the inputs themselves are `util::inputs`).
//! The record is written only after the stage succeeded, and removed before it starts again: a
//! stage without a record, or with one that cannot be read, is redone, so an interrupted build
//! leaves nothing a later build would trust.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::build::plan::Plan;
use crate::build::runner::{self, Installed, Results};
use crate::build::step::Step;
use crate::stages::archive;
use crate::stages::describe::Stage;
use crate::stages::repos;
use crate::util::digest;
use crate::util::inputs::Inputs;
use crate::util::tools::Tools;

/// Bumped when what the environment stage makes changes meaning, so older ones are not reused.
const ENV_FORMAT: &str = "4";

/// What a finished stage was made from, and what it found out (for the stages after it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<T> {
    pub fingerprint: String,
    pub inputs: Inputs,
    pub outputs: T,
}

impl<T> Record<T> {
    pub fn new(inputs: Inputs, outputs: T) -> Record<T> {
        Record {
            fingerprint: inputs.fingerprint(),
            inputs,
            outputs,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The stage's result is there and was made from these inputs.
    Reuse,
    /// Why it must be made again.
    Redo(String),
}

/// Whether a stage recorded as `record` can be reused for `inputs`.
pub fn check<T>(record: Option<&Record<T>>, inputs: &Inputs) -> Verdict {
    let Some(record) = record else {
        return Verdict::Redo("no finished build of it is recorded".into());
    };
    // The fingerprint is compared as well as the inputs, so a record edited by hand (or by an
    // older version of the tool) is not trusted.
    if record.fingerprint == inputs.fingerprint() && record.inputs == *inputs {
        return Verdict::Reuse;
    }
    let changes = inputs.changes_since(&record.inputs);
    Verdict::Redo(if changes.is_empty() {
        "its record does not match its inputs".into()
    } else {
        changes.join("; ")
    })
}

/// The record at `path`; `None` when there is none or it cannot be read (then it is not trusted).
pub fn load<T: DeserializeOwned>(path: &Path) -> Option<Record<T>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn save<T: Serialize>(path: &Path, record: &Record<T>) -> Result<()> {
    let text = serde_json::to_string_pretty(record)?;
    crate::util::atomic::write_atomic(path, text.as_bytes())
}

/// Removes a record before its stage starts again.
pub fn forget(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove {}", path.display())))
        }
        _ => Ok(()),
    }
}

/// What the environment is made from: each of its steps' inputs (the installer's URL, the conda
/// and pip packages, indexes and paths, the locked requirements), and the commit each repo's rev
/// names now (asked of the remote: cheap). Not the index's state: an unpinned package is
/// resolved again only with --update. Not whether it is built offline: an environment installed
/// online is reused offline, and the other way round.
pub fn env_inputs(plan: &Plan, tools: &Tools, offline: bool) -> Result<Inputs> {
    let reporter = &tools.reporter;
    let mut inputs = Inputs::default();
    inputs.set("environment format", ENV_FORMAT);
    inputs.set("platform", plan.platform.name());
    if let Some(variant) = &plan.layout.variant.name {
        inputs.set("variant", variant.clone());
    }
    let clones = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Clone(_)))
        .count();
    let header = (clones > 0).then(|| reporter.stage("Resolve the repos' revs"));
    for step in plan.steps.iter().filter(|s| s.stage() == Stage::Env) {
        step.about().inputs(&mut inputs);
        let Step::Clone(clone) = step else {
            continue;
        };
        let name = &clone.name;
        let commit = match &clone.locked_commit {
            Some(locked) => locked.clone(),
            None => {
                let mirror = plan.layout.git_mirror(name);
                if offline && !mirror.is_dir() {
                    anyhow::bail!(
                        "--offline, but the cache has no mirror of {name} ({}): run `cargo xtask fetch` with the network first",
                        mirror.display()
                    );
                }
                let commit = repos::remote_commit(&tools.sh, &clone.from, &clone.rev)
                    .with_context(|| format!("cannot resolve {name}'s rev"))?;
                reporter.note(format!("{name}: {} is {commit}", clone.rev));
                commit
            }
        };
        inputs.set(format!("repo {name}: commit"), commit);
    }
    if let Some(header) = header {
        header.finish();
    }
    Ok(inputs)
}

/// Installs the environment, unless the one there was made from the same inputs. Returns what
/// it holds, and whether it was installed now.
pub fn env_stage(
    plan: &Plan,
    tools: &Tools,
    inputs: &Inputs,
    update: bool,
) -> Result<(Installed, bool)> {
    let layout = &plan.layout;
    let record: Option<Record<Installed>> = load(&layout.env_record);
    let verdict = match check(record.as_ref(), inputs) {
        _ if update => Verdict::Redo("--update".into()),
        Verdict::Reuse if !layout.prefix.is_dir() => {
            Verdict::Redo(format!("{} is missing", layout.prefix.display()))
        }
        verdict => verdict,
    };
    match (verdict, record) {
        (Verdict::Reuse, Some(record)) => {
            tools.reporter.headline(format!(
                "The environment: unchanged, reusing {}",
                layout.env.display()
            ));
            return Ok((record.outputs, false));
        }
        (Verdict::Redo(why), _) => tools
            .reporter
            .headline(format!("The environment: installing ({why})")),
        (Verdict::Reuse, None) => unreachable!("reuse needs a record"),
    }
    // Nothing half-made by an earlier run is trusted: the record goes first, then the folder.
    forget(&layout.env_record)?;
    if layout.env.exists() {
        fs_err::remove_dir_all(&layout.env)?;
    }
    fs_err::create_dir_all(&layout.env_tree)?;
    let mut results = Results::default();
    runner::run_stage(&plan.steps, Stage::Env, tools, &mut results)?;
    save(
        &layout.env_record,
        &Record::new(inputs.clone(), results.installed.clone()),
    )?;
    Ok((results.installed, true))
}

/// What the zip is made from: the environment, this tool (its prune, relocate, zip and verify
/// code and the helper script's template), and each of the zip's steps' inputs (the prune
/// policy, the system limits, the version, the smoke checks, the split size).
pub fn dist_inputs(plan: &Plan, env: &Inputs) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    inputs.set("environment", env.fingerprint());
    let tool = std::env::current_exe().context("cannot find this program's own file")?;
    inputs.set("tool", digest::sha256_file(&tool)?);
    for step in plan.steps.iter().filter(|s| s.stage() == Stage::Dist) {
        step.about().inputs(&mut inputs);
    }
    Ok(inputs)
}

/// What the zip stage published, so a rebuild with nothing changed can check it is still there.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    /// The zip, or its volumes, with the digest each had when written.
    zips: Vec<(PathBuf, String)>,
    files: Vec<PathBuf>,
}

impl Published {
    /// Why it cannot be trusted any more, if so.
    fn damage(&self) -> Option<String> {
        if let Some(missing) = self.files.iter().find(|f| !f.is_file()) {
            return Some(format!("{} is gone", missing.display()));
        }
        self.zips
            .iter()
            .find_map(|(zip, sha256)| match digest::sha256_file(zip) {
                Ok(now) if &now == sha256 => None,
                _ => Some(format!("{} has changed since it was built", zip.display())),
            })
    }
}

/// Prunes, zips, verifies and publishes, unless the published zip was made from the same inputs
/// and is unchanged. Returns whether it made the zip.
pub fn dist_stage(
    plan: &Plan,
    tools: &Tools,
    inputs: &Inputs,
    installed: Installed,
    reinstalled: bool,
) -> Result<bool> {
    let (layout, zip) = (&plan.layout, &plan.artifacts.zip);
    let record: Option<Record<Published>> = load(&layout.dist_record);
    let verdict = match check(record.as_ref(), inputs) {
        // Same inputs, but --update may have resolved other versions.
        Verdict::Reuse if reinstalled => {
            Verdict::Redo("the environment was installed again".into())
        }
        Verdict::Reuse => match record.as_ref().and_then(|r| r.outputs.damage()) {
            Some(why) => Verdict::Redo(why),
            None => Verdict::Reuse,
        },
        verdict => verdict,
    };
    match verdict {
        Verdict::Reuse => {
            tools.reporter.headline(format!(
                "The zip: unchanged inputs, and {} is as it was built",
                zip.display()
            ));
            return Ok(false);
        }
        Verdict::Redo(why) => tools
            .reporter
            .headline(format!("The zip: making it ({why})")),
    }
    forget(&layout.dist_record)?;
    for folder in [&layout.dist, layout.unpack.parent().expect("in verify/")] {
        if folder.exists() {
            fs_err::remove_dir_all(folder)?;
        }
    }
    fs_err::create_dir_all(&layout.dist)?;
    let mut results = Results {
        installed,
        ..Results::default()
    };
    runner::run_stage(&plan.steps, Stage::Dist, tools, &mut results)?;
    // Each zip was hashed as it was written; its .sha256 holds that digest.
    let mut zips = Vec::new();
    for zip in archive::zip_or_volumes(zip) {
        let sha256 = digest::read_sidecar(&zip)?;
        zips.push((zip, sha256));
    }
    let published = Published {
        zips,
        files: results.published,
    };
    save(&layout.dist_record, &Record::new(inputs.clone(), published))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs.iter().copied().collect()
    }

    #[test]
    fn the_same_inputs_reuse_and_any_change_redoes_naming_it() {
        let built = inputs(&[
            ("pip install", "pip install a"),
            ("platform", "linux-x86_64"),
        ]);
        let record = Record::new(built.clone(), ());
        assert_eq!(check(Some(&record), &built), Verdict::Reuse);
        assert_eq!(
            check(
                Some(&record),
                &inputs(&[
                    ("pip install", "pip install a b"),
                    ("platform", "linux-x86_64")
                ])
            ),
            Verdict::Redo("changed: pip install".into())
        );
        assert_eq!(
            check(
                Some(&record),
                &inputs(&[("platform", "linux-x86_64"), ("clone X", "x")])
            ),
            Verdict::Redo("new: clone X; gone: pip install".into())
        );
        assert!(matches!(check::<()>(None, &built), Verdict::Redo(_)));
    }

    #[test]
    fn a_tampered_or_unreadable_record_is_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("env.done.json");
        let built = inputs(&[("a", "1")]);
        save(&path, &Record::new(built.clone(), 7u32)).unwrap();
        let record: Record<u32> = load(&path).unwrap();
        assert_eq!(check(Some(&record), &built), Verdict::Reuse);
        assert_eq!(record.outputs, 7);

        let mut forged = record.clone();
        forged.fingerprint = inputs(&[("a", "2")]).fingerprint();
        assert!(matches!(check(Some(&forged), &built), Verdict::Redo(_)));

        fs_err::write(&path, "{\"fingerprint\": \"ab\", \"inp").unwrap();
        assert!(load::<u32>(&path).is_none(), "half a record is no record");
        forget(&path).unwrap();
        forget(&path).unwrap();
        assert!(load::<u32>(&path).is_none());
    }
}
