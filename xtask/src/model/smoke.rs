//! The smoke checks, one idea in one place: what distribution.yml says must work in a zip
//! (imports, checks, commands), the steps the shipped runner takes (`smoke_runner.py`, run by the
//! build on the installed environment and on the unpacked zip, and by `packages.sh check`), and
//! the Pillow round trip an import of `PIL` brings.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What must work for the zip to count as working. Checks and imports also run in the installed
/// environment right after pip, so a broken resolve fails in seconds; everything runs again from
/// the unpacked zip, with the build's own folders out of reach.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// Modules the unpacked environment must import; `PIL` also round-trips a PNG and a JPEG.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Python code that states what must be true (an `assert` that fails says why).
    #[serde(default)]
    pub checks: Vec<SmokeCheck>,
    /// Programs run from the unpacked zip, such as ComfyUI's own start-up check.
    #[serde(default)]
    pub commands: Vec<SmokeCommand>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    pub name: String,
    /// Run with `python -s -c`.
    pub code: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmokeCommand {
    pub name: String,
    /// The program and its arguments; `{python}` is the unpacked python, `{root}` the unpacked
    /// `anymatix/` folder.
    pub run: Vec<String>,
    /// The folder it runs in, relative to `anymatix/` [default: `anymatix/` itself].
    #[serde(default)]
    pub cwd: Option<String>,
    /// Seconds before it is stopped and the build fails.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Text that fails the build when a line of its output contains it, even if the program
    /// exits 0 (ComfyUI logs `IMPORT FAILED` for a node that did not load, and goes on).
    #[serde(default)]
    pub fail_on: Vec<String>,
    /// Text of lines that are expected despite `fail_on` (a node the platform cannot load, as its
    /// `skip_requirements` say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<String>,
}

fn default_timeout() -> u64 {
    600
}

/// Saves and reloads a PNG and a JPEG: the imports alone would not load Pillow's codec libraries.
const PILLOW_ROUND_TRIP: &str = r#"
import os, sys
from PIL import Image
folder = sys.argv[1]
image = Image.new("RGB", (64, 48), (200, 30, 90))
for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
    path = os.path.join(folder, "smoke." + ext)
    image.save(path, fmt)
    back = Image.open(path)
    back.load()
    assert back.format == fmt and back.size == (64, 48), (fmt, back.format, back.size)
print("PNG and JPEG round trip ok")
"#;

/// Runs the smoke imports and checks in one process, the build's and `packages.sh check`'s
/// alike: it ships in the zip (`tools/anymatix_packages/smoke_runner.py`).
pub const SMOKE_RUNNER: &str =
    include_str!("../../../anymatix/tools/anymatix_packages/smoke_runner.py");
/// What the runner prefixes each of its events with, on its own line.
pub const SMOKE_MARK: &str = "@@anymatix-smoke@@";

#[derive(Debug, Serialize)]
pub struct SmokeStep {
    name: String,
    code: String,
    args: Vec<String>,
}

/// The imports (a PNG and JPEG round trip after `PIL`) and the checks, in order.
pub fn smoke_steps(smoke: &Smoke, scratch: &Path) -> Vec<SmokeStep> {
    let mut steps = Vec::new();
    for module in &smoke.imports {
        let code = format!("import {module}");
        steps.push(SmokeStep {
            name: code.clone(),
            code,
            args: vec![],
        });
        if module == "PIL" {
            steps.push(SmokeStep {
                name: "Pillow saves and reloads a PNG and a JPEG".into(),
                code: PILLOW_ROUND_TRIP.into(),
                args: vec![scratch.to_string_lossy().into_owned()],
            });
        }
    }
    for check in &smoke.checks {
        steps.push(SmokeStep {
            name: check.name.clone(),
            code: check.code.clone(),
            args: vec![],
        });
    }
    steps
}
