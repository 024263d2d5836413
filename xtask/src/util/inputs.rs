//! What a step is made from, as named, readable values (a command line, a commit, a file's
//! digest): two sets compare by a fingerprint, and a changed one says what changed. Every step
//! tells its inputs; the stage cache (`build::cache`) keeps them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::util::digest::{hex, sha256_hex};

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

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Inputs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Inputs {
        let mut inputs = Inputs::default();
        for (key, value) in pairs {
            inputs.set(key, value);
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        pairs.iter().copied().collect()
    }

    #[test]
    fn keys_and_values_cannot_run_into_each_other() {
        assert_ne!(
            inputs(&[("ab", "c")]).fingerprint(),
            inputs(&[("a", "bc")]).fingerprint()
        );
    }
}
