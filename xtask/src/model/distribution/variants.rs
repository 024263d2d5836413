//! Variants: the zips one platform is built as (an NVIDIA CUDA line, an older-GPU line, CPU
//! only), each what it adds to its platform's entry. One is the platform's default and keeps the
//! plain names (`anymatix-<version>-<platform>.zip`, `locks/<platform>.lock.yml`); the others
//! carry `-<variant>` in every name.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{Distribution, LeaveOut, SmokeCheck};
use crate::model::platform::Platform;
use crate::model::system::Ceiling;

/// What a variant adds to its platform's entry: packages, pip options and indexes, protected
/// names, left-out packages and checks add to the platform's; a limit of `requires_at_most`
/// replaces the platform's limit of that kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    /// The platform's default variant: the one built without `--variant`, named without suffix.
    #[serde(default)]
    pub default: bool,
    /// Who it is for, in one line (shown by `--variant` errors and `cargo xtask matrix`, and
    /// written into manifest.json).
    #[serde(default)]
    pub about: Option<String>,
    #[serde(default)]
    pub python_packages: Vec<String>,
    #[serde(default)]
    pub pip_args: Vec<String>,
    #[serde(default)]
    pub requires_at_most: Ceiling,
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub leave_out: Vec<LeaveOut>,
    /// Checks this variant adds to `smoke.checks`.
    #[serde(default)]
    pub checks: Vec<SmokeCheck>,
    /// The CUDA line PyTorch must be built for (`torch.version.cuda`), or `none` for a build
    /// without CUDA; checked in the build, no GPU needed.
    #[serde(default)]
    pub cuda: Option<String>,
    /// GPU architectures PyTorch must have kernels for (`torch._C._cuda_getArchFlags()`).
    #[serde(default)]
    pub cuda_architectures: Vec<String>,
}

/// A platform's `variants`, by name.
pub type Variants = BTreeMap<String, VariantSection>;

/// One zip of a platform: the platform and which of its variants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Variant {
    pub platform: Platform,
    /// `None` when the platform defines no variants.
    pub name: Option<String>,
    /// The platform's default, named without suffix.
    pub default: bool,
}

impl Variant {
    /// The only variant of a platform that defines none.
    pub fn plain(platform: Platform) -> Variant {
        Variant {
            platform,
            name: None,
            default: true,
        }
    }

    /// `-<name>` for a variant other than the default, else nothing: what names carry.
    pub fn suffix(&self) -> String {
        match (&self.name, self.default) {
            (Some(name), false) => format!("-{name}"),
            _ => String::new(),
        }
    }

    /// `<platform>[-<variant>]`: the zip's, the lock's and the build folders' name.
    pub fn id(&self) -> String {
        format!("{}{}", self.platform, self.suffix())
    }
}

/// What manifest.json says of the variant a zip is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariantInfo {
    pub name: String,
    /// Whether it is the platform's default (named without suffix).
    pub default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// The CUDA line its PyTorch is built for, `none` for a build without CUDA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cuda_architectures: Vec<String>,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} ({name})", self.platform),
            None => write!(f, "{}", self.platform),
        }
    }
}

/// A variant name goes into file names and CI job names: lower-case letters, digits and `-`.
fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "{key}: `{name}` is not a variant name (lower-case letters, digits and `-`, starting \
             with a letter: it goes into the zip's name)"
        );
    }
    Ok(())
}

/// `sm_61`, `sm_90a`, `sm_120`: what `torch._C._cuda_getArchFlags()` lists.
fn is_architecture(arch: &str) -> bool {
    arch.strip_prefix("sm_").is_some_and(|rest| {
        rest.starts_with(|c: char| c.is_ascii_digit())
            && rest.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

impl Distribution {
    /// The variants of `platform`, the default first; one without a name when it defines none.
    pub fn variants_of(&self, platform: Platform) -> Vec<Variant> {
        let Some(section) = self
            .platforms
            .get(&platform)
            .filter(|s| !s.variants.is_empty())
        else {
            return vec![Variant::plain(platform)];
        };
        let mut all: Vec<Variant> = section
            .variants
            .iter()
            .map(|(name, v)| Variant {
                platform,
                name: Some(name.clone()),
                default: v.default,
            })
            .collect();
        all.sort_by_key(|v| !v.default);
        all
    }

    /// Every platform's variants, platform by platform.
    pub fn all_variants(&self) -> Vec<Variant> {
        Platform::ALL
            .into_iter()
            .flat_map(|p| self.variants_of(p))
            .collect()
    }

    /// `name` of `platform`'s variants, or its default; an unknown name is an error that lists
    /// them.
    pub fn variant(&self, platform: Platform, name: Option<&str>) -> Result<Variant> {
        let all = self.variants_of(platform);
        let Some(name) = name else {
            return Ok(all[0].clone());
        };
        if let Some(found) = all.iter().find(|v| v.name.as_deref() == Some(name)) {
            return Ok(found.clone());
        }
        let listed: Vec<String> = all
            .iter()
            .filter_map(|v| {
                let about = self.variant_section(v).and_then(|s| s.about.clone());
                let name = v.name.clone()?;
                let default = if v.default { " (the default)" } else { "" };
                Some(match about {
                    Some(about) => format!("`{name}`{default}: {about}"),
                    None => format!("`{name}`{default}"),
                })
            })
            .collect();
        if listed.is_empty() {
            bail!("{platform} has no variants, so no `--variant {name}`: leave --variant out");
        }
        bail!(
            "{platform} has no variant `{name}`; its variants are {}",
            listed.join("; ")
        )
    }

    /// This distribution as `variant` builds it: every `*_for(platform)` then includes what
    /// the variant adds.
    pub fn for_variant(&self, variant: &Variant) -> Distribution {
        let mut chosen = self.clone();
        if let Some(section) = chosen.platforms.get_mut(&variant.platform) {
            section.chosen.clone_from(&variant.name);
        }
        chosen
    }

    /// The variant `*_for(platform)` follow: the one chosen by [`Self::for_variant`], else the
    /// default.
    pub(super) fn chosen(&self, platform: Platform) -> Option<(&str, &VariantSection)> {
        let section = self.platforms.get(&platform)?;
        match &section.chosen {
            Some(name) => section
                .variants
                .get_key_value(name)
                .map(|(n, v)| (n.as_str(), v)),
            None => section
                .variants
                .iter()
                .find(|(_, v)| v.default)
                .map(|(n, v)| (n.as_str(), v)),
        }
    }

    /// What manifest.json says of `variant`; nothing for a platform without variants.
    pub fn variant_info(&self, variant: &Variant) -> Option<VariantInfo> {
        let section = self.variant_section(variant)?;
        Some(VariantInfo {
            name: variant.name.clone()?,
            default: variant.default,
            about: section.about.clone(),
            cuda: section.cuda.clone(),
            cuda_architectures: section.cuda_architectures.clone(),
        })
    }

    pub fn variant_section(&self, variant: &Variant) -> Option<&VariantSection> {
        self.platforms
            .get(&variant.platform)?
            .variants
            .get(variant.name.as_deref()?)
    }

    /// The chosen variant's checks: its own, then what its `cuda` keys promise.
    pub(super) fn variant_checks(&self, platform: Platform) -> Vec<SmokeCheck> {
        let Some((name, section)) = self.chosen(platform) else {
            return Vec::new();
        };
        let mut checks = section.checks.clone();
        checks.extend(cuda_check(name, section));
        checks
    }

    pub(super) fn check_variants(&self) -> Result<()> {
        for (platform, section) in &self.platforms {
            if section.variants.is_empty() {
                continue;
            }
            let key = format!("platforms.{platform}.variants");
            let defaults: Vec<&String> = section
                .variants
                .iter()
                .filter(|(_, v)| v.default)
                .map(|(name, _)| name)
                .collect();
            match defaults.as_slice() {
                [_] => {}
                [] => bail!(
                    "{key}: no variant is the default; mark the one built without --variant \
                     (and named without suffix) with `default: true`"
                ),
                many => bail!(
                    "{key}: {} are all marked `default: true`; a platform has one default",
                    many.iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            for (name, variant) in &section.variants {
                let key = format!("{key}.{name}");
                check_name(&key, name)?;
                for (kind, _) in variant.requires_at_most.limits() {
                    if kind.os() != platform.os() {
                        bail!(
                            "{key}.requires_at_most: `{}` does not apply to {platform}",
                            kind.name()
                        );
                    }
                }
                for check in &variant.checks {
                    if check.name.trim().is_empty() || check.code.trim().is_empty() {
                        bail!("{key}.checks: each check needs a name and code");
                    }
                }
                if let Some(cuda) = &variant.cuda {
                    let line = cuda == "none"
                        || cuda.split('.').count() == 2
                            && cuda
                                .split('.')
                                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                    if !line {
                        bail!(
                            "{key}.cuda: `{cuda}` is not a CUDA line such as '13.0' (as \
                             torch.version.cuda gives it), nor `none`"
                        );
                    }
                }
                if !variant.cuda_architectures.is_empty()
                    && variant.cuda.as_deref().is_none_or(|c| c == "none")
                {
                    bail!(
                        "{key}.cuda_architectures: a build without CUDA has no GPU \
                         architectures; give `cuda: 'X.Y'` too"
                    );
                }
                if let Some(bad) = variant
                    .cuda_architectures
                    .iter()
                    .find(|a| !is_architecture(a))
                {
                    bail!(
                        "{key}.cuda_architectures: `{bad}` is not a GPU architecture as \
                         torch._C._cuda_getArchFlags() lists them (sm_75, sm_120, ...)"
                    );
                }
            }
        }
        Ok(())
    }
}

/// Merges the variant's limits over the platform's: a kind it names replaces the platform's.
pub(super) fn merge_ceiling(platform: &Ceiling, variant: &Ceiling) -> Ceiling {
    Ceiling {
        glibc: variant.glibc.clone().or_else(|| platform.glibc.clone()),
        glibcxx: variant.glibcxx.clone().or_else(|| platform.glibcxx.clone()),
        macos: variant.macos.clone().or_else(|| platform.macos.clone()),
        windows: variant.windows.clone().or_else(|| platform.windows.clone()),
    }
}

/// The check that reads what the variant's PyTorch is built for, without a GPU: the real
/// Python file `torch_build_check.py`, with the variant's values in its first assignment.
fn cuda_check(name: &str, section: &VariantSection) -> Option<SmokeCheck> {
    let cuda = section.cuda.as_deref()?;
    let code = include_str!("../../../../anymatix/checks/torch_build_check.py");
    let placeholder = code
        .lines()
        .find(|line| line.starts_with("VARIANT, CUDA, ARCHITECTURES = "))
        .expect("torch_build_check.py assigns its values on one line");
    let python_str = |s: &str| serde_json::to_string(s).expect("a string");
    let values = format!(
        "VARIANT, CUDA, ARCHITECTURES = {}, {}, [{}]",
        python_str(name),
        if cuda == "none" {
            "None".to_string()
        } else {
            python_str(cuda)
        },
        section
            .cuda_architectures
            .iter()
            .map(|a| python_str(a))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let title = if cuda == "none" {
        format!("PyTorch is the `{name}` build: no CUDA")
    } else if section.cuda_architectures.is_empty() {
        format!("PyTorch is the `{name}` build: CUDA {cuda}")
    } else {
        format!(
            "PyTorch is the `{name}` build: CUDA {cuda} for {}",
            section.cuda_architectures.join(" ")
        )
    };
    Some(SmokeCheck {
        name: title,
        code: code.replacen(placeholder, &values, 1),
    })
}
