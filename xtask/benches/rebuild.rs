//! Benchmark: what a rebuild costs against a clean build, in one run, with the hermetic
//! stand-ins of the tests (a Miniforge-shaped installer around the host's CPython served on
//! loopback, git repos, a wheelhouse). Prints the times and their ratios to the clean build.
//! Goal: a rebuild with nothing changed only checks; a prune-only change reinstalls nothing.
//!
//!     cargo bench --bench rebuild

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

fn main() {
    let w = support::world();
    let mut clean = Vec::new();
    let mut unchanged = Vec::new();
    let mut prune_only = Vec::new();
    let mut sizes = (0, 0);
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let manifest = w.manifest(dir.path(), "latest", "");
        let policy = dir.path().join("prune.yml");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../anymatix/prune.yml"),
            &policy,
        )
        .unwrap();
        let out = dir.path().join("out");
        clean.push(timed(&manifest, &policy, &out));
        unchanged.push(timed(&manifest, &policy, &out));
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &policy,
            text.replacen(
                "rules:\n",
                &format!("rules:\n  - name: bench-{round}\n    reason: a change\n    match: dir\n    patterns: ['ComfyUI/docs']\n"),
                1,
            ),
        )
        .unwrap();
        prune_only.push(timed(&manifest, &policy, &out));
        if round == 0 {
            sizes = tree_size(&out.join("stage"));
        }
    }
    println!(
        "environment: {} files, {:.1} MiB (stage/ after a build: environment + pruned copy)",
        sizes.0,
        sizes.1 as f64 / 1048576.0
    );
    let reference = median(&mut clean);
    println!("{:<34} {:>8} {:>10}", "", "median", "of clean");
    for (name, times) in [
        ("clean build", &mut clean),
        ("rebuild, nothing changed", &mut unchanged),
        ("rebuild, prune policy changed", &mut prune_only),
    ] {
        let m = median(times);
        println!(
            "{name:<34} {:>7.2}s {:>10.3}",
            m.as_secs_f64(),
            m.as_secs_f64() / reference.as_secs_f64()
        );
    }
}

fn timed(manifest: &Path, policy: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let output = support::portable(
        manifest,
        out,
        "0.0.0-bench",
        &["--policy", policy.to_str().unwrap()],
    );
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", support::stderr(&output));
    elapsed
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn tree_size(root: &Path) -> (u64, u64) {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .fold((0, 0), |(n, b), e| (n + 1, b + e.metadata().unwrap().len()))
}
