//! A conda channel and conda-standalone for the cross route's solve, on loopback: packages in
//! constructor's stand-in format served with their `repodata.json` at the world's
//! `/conda-forge/<subdir>/` (every manifest of the world names that channel), and a Linux `.sh`
//! whose conda-standalone is a stand-in that answers conda's `install --dry-run --json`
//! (`support/standins/conda_solve.py`: conda's answer format, a toy solver).

use crate::constructor::Package;
use crate::http::Route;
use crate::shell_installer::{shell_installer, READ_ONLY_BODY};

/// The stand-in solver, run by this machine's python3.
pub const CONDA_SOLVE: &str = include_str!("../standins/conda_solve.py");

/// Serves `packages` as the world's channel: each subdir in `subdirs` gets a `repodata.json`
/// (empty where it has no package), each package its file.
pub fn serve_channel(packages: &[Package], subdirs: &[&str]) {
    let server = &crate::world().server;
    for subdir in subdirs {
        let mut listed = serde_json::Map::new();
        for package in packages.iter().filter(|p| p.subdir == *subdir) {
            let bytes = package.conda_bytes();
            let mut record = package.repodata_record(&bytes);
            let record_map = record.as_object_mut().unwrap();
            for key in ["url", "channel", "fn"] {
                record_map.remove(key);
            }
            listed.insert(package.file_name(), record);
            server.route(
                &format!("/conda-forge/{subdir}/{}", package.file_name()),
                Route::Body(bytes),
            );
        }
        let repodata = serde_json::json!({
            "info": {"subdir": subdir}, "packages": {}, "packages.conda": listed,
            "repodata_version": 1,
        });
        server.route(
            &format!("/conda-forge/{subdir}/repodata.json"),
            Route::Body(serde_json::to_vec_pretty(&repodata).unwrap()),
        );
    }
}

/// Miniforge's Linux x86_64 `.sh` of release `tag`, as the cross route reads it for its
/// conda-standalone (the stand-in solver; no packages).
pub fn solver_installer(tag: &str) -> Vec<u8> {
    shell_installer(READ_ONLY_BODY, &[], "linux-64", tag, CONDA_SOLVE.as_bytes())
}
