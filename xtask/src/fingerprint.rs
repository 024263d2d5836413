//! What a stage was made from, so that a rebuild redoes only the stages whose inputs changed.
//!
//! A stage's inputs are named, readable values (a command line, a commit, a file's digest), so a
//! changed fingerprint can say what changed. The record is written only after the stage
//! succeeded, and removed before it starts again: a stage without a record, or with one that
//! cannot be read, is redone, so an interrupted build leaves nothing a later build would trust.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{hex, sha256_hex};

/// A stage's inputs, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs(BTreeMap<String, String>);

impl Inputs {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Content, by digest.
    pub fn digest(&mut self, key: impl Into<String>, bytes: &[u8]) {
        self.set(key, sha256_hex(bytes));
    }

    /// A file's content, by digest.
    pub fn file(&mut self, key: impl Into<String>, path: &Path) -> Result<()> {
        self.digest(key, &fs_err::read(path)?);
        Ok(())
    }

    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for (key, value) in &self.0 {
            // Lengths first, so no two different maps hash the same text.
            hasher.update((key.len() as u64).to_le_bytes());
            hasher.update(key.as_bytes());
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        }
        hex(&hasher.finalize())
    }

    /// What differs from `earlier`, one line per input: `changed: pip install`.
    pub fn changes_since(&self, earlier: &Inputs) -> Vec<String> {
        let mut changes = Vec::new();
        for (key, value) in &self.0 {
            match earlier.0.get(key) {
                None => changes.push(format!("new: {key}")),
                Some(old) if old != value => changes.push(format!("changed: {key}")),
                Some(_) => {}
            }
        }
        for key in earlier.0.keys().filter(|k| !self.0.contains_key(*k)) {
            changes.push(format!("gone: {key}"));
        }
        changes
    }
}

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
    crate::atomic::write_atomic(path, text.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        let mut inputs = Inputs::default();
        for (k, v) in pairs {
            inputs.set(*k, *v);
        }
        inputs
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

    #[test]
    fn keys_and_values_cannot_run_into_each_other() {
        assert_ne!(
            inputs(&[("ab", "c")]).fingerprint(),
            inputs(&[("a", "bc")]).fingerprint()
        );
    }
}
