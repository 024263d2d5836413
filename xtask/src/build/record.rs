//! The build record (`anymatix-<version>-<platform>.build.json`), kept beside the zip: how long
//! each step took, whether the environment was installed or reused, the zip's bytes and volumes.
//! manifest.json is written before the zip exists, so it cannot hold the zip's own figures.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::model::distribution::Variant;
use crate::util::atomic::write_atomic;

/// How a zip was built.
#[derive(Debug, Serialize)]
pub struct BuildRecord {
    version: String,
    platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    /// `installed` by this build, or `reused` from an earlier one (its steps are then not listed).
    environment: &'static str,
    seconds: f64,
    zip_bytes: u64,
    volumes: usize,
    steps: Vec<StepTime>,
}

#[derive(Debug, Serialize)]
pub struct StepTime {
    step: String,
    seconds: f64,
}

impl BuildRecord {
    pub fn new(
        version: &str,
        variant: &Variant,
        reinstalled: bool,
        took: Duration,
        zip_bytes: u64,
        volumes: usize,
        timings: &[(String, Duration)],
    ) -> BuildRecord {
        BuildRecord {
            version: version.to_string(),
            platform: variant.platform.to_string(),
            variant: variant.name.clone(),
            environment: if reinstalled { "installed" } else { "reused" },
            seconds: seconds(took),
            zip_bytes,
            volumes,
            steps: timings
                .iter()
                .map(|(step, took)| StepTime {
                    step: step.clone(),
                    seconds: seconds(*took),
                })
                .collect(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}
