//! Where everything of one build lives under `--out`, for one platform's variant: the cache, the
//! installed environment, the tree that becomes the zip, the records of what each stage was made from.
//! The published files' names also carry the version: see [`Artifacts`].

use std::path::{Path, PathBuf};

use crate::model::distribution::Variant;
use crate::model::platform::Platform;

#[derive(Debug, Clone)]
pub struct Layout {
    pub platform: Platform,
    /// Which of the platform's zips: its name is in every folder and file of this build.
    pub variant: Variant,
    /// The output folder itself, where published files go.
    pub out: PathBuf,
    /// Downloads, kept across builds and trusted only with a matching sidecar digest; also the
    /// git mirrors, wheelhouse and conda packages `fetch` gathers for `--offline`.
    pub cache: PathBuf,
    /// The installed environment: what the installer, conda, git and pip made. Never pruned, so
    /// a change to the prune policy reuses it.
    pub env: PathBuf,
    /// The environment's `anymatix/`, where it is installed.
    pub env_tree: PathBuf,
    /// The Miniforge prefix, `anymatix/python/` in the environment.
    pub prefix: PathBuf,
    /// Where the zip is made: the pruned tree, the unverified zip, the prune page.
    pub dist: PathBuf,
    /// The tree that becomes the zip's root folder `anymatix/`: a hard-linked copy of the
    /// environment, then pruned.
    pub tree: PathBuf,
    /// pip's `--report` of what it installed, for the lock.
    pub pip_report: PathBuf,
    /// The cross route: the installer's files taken out, its packages unpacked there to link.
    pub installer_payload: PathBuf,
    /// The lock's requirements, pinned and hashed, for `--locked`.
    pub locked_requirements: PathBuf,
    /// Where pip's wheel policy (`_manylinux.py`) is written, beside the environment.
    pub pip_policy: PathBuf,
    /// Bytecode of what the checks import, outside both trees (`PYTHONPYCACHEPREFIX`): written
    /// by the installed environment's checks, reused by the recording run of the zip's tree.
    pub bytecode_cache: PathBuf,
    /// Where verify unpacks the zip: a path with a space and non-ASCII characters on purpose,
    /// since users unpack anywhere.
    pub unpack: PathBuf,
    /// What the environment and the published zip were made from (see `fingerprint`).
    pub env_record: PathBuf,
    pub dist_record: PathBuf,
    /// The tag `latest` meant when last resolved online, for `--offline`.
    pub latest_tag: PathBuf,
    /// `fetch`'s wheels for this variant (each CUDA line has its own torch of one version):
    /// `--offline` installs from here alone.
    pub wheelhouse: PathBuf,
    /// conda's package cache, shared by builds (and filled by `fetch`) for `--offline`.
    pub conda_pkgs: PathBuf,
    /// The folder `fetch` works in: a scratch Miniforge base (`python/`) that runs pip for this
    /// platform, the repos' requirement files; removed afterwards.
    pub fetch_scratch: PathBuf,
}

impl Layout {
    pub fn new(out: &Path, variant: &Variant) -> Layout {
        let platform = variant.platform;
        let id = variant.id();
        // Short names: the Windows installer checks the prefix's length.
        let stage = out.join("stage").join(&id);
        let env = stage.join("env");
        let env_tree = env.join("anymatix");
        let dist = stage.join("dist");
        let cache = out.join("cache");
        Layout {
            platform,
            variant: variant.clone(),
            out: out.to_path_buf(),
            prefix: env_tree.join("python"),
            env_tree,
            tree: dist.join("anymatix"),
            dist,
            pip_report: env.join("pip-report.json"),
            installer_payload: env.join("installer-payload"),
            locked_requirements: env.join("locked-requirements.txt"),
            pip_policy: env.join("pip-policy"),
            bytecode_cache: env.join("bytecode-cache"),
            unpack: out.join("verify").join(&id).join("unpacked copy ü"),
            env_record: stage.join("env.done.json"),
            dist_record: stage.join("dist.done.json"),
            latest_tag: cache.join(format!("miniforge-latest-{platform}.txt")),
            wheelhouse: cache.join("wheels").join(&id),
            conda_pkgs: cache.join("conda-pkgs").join(platform.name()),
            fetch_scratch: stage.join("fetch"),
            cache,
            env,
        }
    }

    /// `fetch`'s bare mirror of a repo, which `--offline` clones from.
    pub fn git_mirror(&self, repo: &str) -> PathBuf {
        self.cache.join("git").join(format!("{repo}.git"))
    }

    /// The Miniforge base `fetch` installs to run pip.
    pub fn fetch_prefix(&self) -> PathBuf {
        self.fetch_scratch.join("python")
    }

    /// The published files of `version`, and where each is made first: all named
    /// `anymatix-<version>-<platform>[-<variant>]`, the default variant without suffix.
    pub fn artifacts(&self, version: &str) -> Artifacts {
        let stem = format!("anymatix-{version}-{}", self.variant.id());
        let zip = format!("{stem}.zip");
        let page = format!("{stem}.prune.html");
        Artifacts {
            zip: self.out.join(&zip),
            staged_zip: self.dist.join(format!("{stem}.unverified.zip")),
            prune_page: self.out.join(&page),
            staged_prune_page: self.dist.join(&page),
            build_record: self.out.join(format!("{stem}.build.json")),
            zip_name: zip,
        }
    }
}

/// The files a build publishes, named by version, platform and variant.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `anymatix-<version>-<platform>[-<variant>].zip`
    pub zip_name: String,
    /// The finished zip, moved here only after it passed verify.
    pub zip: PathBuf,
    /// Where the zip is written and verified first; its name says it is unverified, so a build
    /// that fails at verify leaves nothing with the final name.
    pub staged_zip: PathBuf,
    /// The prune page (the zip's size report), published beside the zip.
    pub prune_page: PathBuf,
    pub staged_prune_page: PathBuf,
    /// How the zip was built: each step's duration, written beside it when it is made.
    pub build_record: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_other_than_the_default_carries_its_name_everywhere() {
        let out = Path::new("/o");
        let cpu = Variant {
            platform: Platform::LinuxX86_64,
            name: Some("cpu".into()),
            default: false,
        };
        let layout = Layout::new(out, &cpu);
        let artifacts = layout.artifacts("1.0");
        assert_eq!(artifacts.zip_name, "anymatix-1.0-linux-x86_64-cpu.zip");
        assert_eq!(
            artifacts.prune_page,
            Path::new("/o/anymatix-1.0-linux-x86_64-cpu.prune.html")
        );
        assert_eq!(
            artifacts.build_record,
            Path::new("/o/anymatix-1.0-linux-x86_64-cpu.build.json")
        );
        assert_eq!(layout.env, Path::new("/o/stage/linux-x86_64-cpu/env"));
        assert_eq!(
            layout.wheelhouse,
            Path::new("/o/cache/wheels/linux-x86_64-cpu")
        );
        assert!(layout.unpack.starts_with("/o/verify/linux-x86_64-cpu"));

        let default = Variant {
            name: Some("nvidia".into()),
            default: true,
            ..cpu
        };
        let layout = Layout::new(out, &default);
        assert_eq!(
            layout.artifacts("1.0").zip_name,
            "anymatix-1.0-linux-x86_64.zip"
        );
        assert_eq!(layout.env, Path::new("/o/stage/linux-x86_64/env"));
    }
}
