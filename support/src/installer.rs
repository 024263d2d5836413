//! A Miniforge-shaped installer: a bash script that behaves like constructor's batch mode
//! (`-b -p PREFIX`, refusing an existing prefix without `-f`/`-u`, refusing spaces) and lays out
//! a conda prefix around a working CPython copied from the host, with pip from ensurepip.

use std::path::PathBuf;
use std::process::Command;

/// The host's CPython, whose binary and stdlib the installer copies.
pub struct HostPython {
    pub executable: PathBuf,
    pub prefix: PathBuf,
    /// `3.11`
    pub version: String,
}

impl HostPython {
    pub fn find() -> HostPython {
        let out = Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable)); print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])",
            ])
            .output()
            .expect("python3 must be on PATH for the tests");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        HostPython {
            executable: lines.next().unwrap().into(),
            prefix: lines.next().unwrap().into(),
            version: lines.next().unwrap().into(),
        }
    }
}

/// The installer script's text. `tag` is written into conda-meta so a build can be traced to it.
pub fn installer_script(host: &HostPython, tag: &str) -> String {
    let v = &host.version;
    let exe = host.executable.display();
    let hp = host.prefix.display();
    format!(
        r##"#!/bin/bash
# Miniforge3 {tag} (test stand-in): constructor-style batch installer.
set -eu
PREFIX=""; BATCH=0; FORCE=0
while getopts "bfhkp:su" opt; do
  case "$opt" in
    b) BATCH=1 ;;
    f|u) FORCE=1 ;;
    k|s) ;;
    p) PREFIX="$OPTARG" ;;
    h) echo "usage: $0 [-b] [-f] [-u] [-p PREFIX]"; exit 0 ;;
    *) echo "ERROR: did not recognize option" >&2; exit 2 ;;
  esac
done
if [ "$BATCH" != 1 ]; then echo "ERROR: this test installer only runs in batch mode (-b)" >&2; exit 2; fi
if [ -z "$PREFIX" ]; then echo "ERROR: -p PREFIX is required" >&2; exit 2; fi
case "$PREFIX" in *" "*) echo "ERROR: Cannot install into directories with spaces" >&2; exit 1 ;; esac
if [ -e "$PREFIX" ] && [ "$FORCE" != 1 ]; then
  echo "ERROR: File or directory already exists: '$PREFIX'" >&2
  echo "If you want to update an existing installation, use the -u option." >&2
  exit 1
fi
echo "PREFIX=$PREFIX"
echo "Unpacking payload ..."
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/include" "$PREFIX/conda-meta" "$PREFIX/envs" \
  "$PREFIX/pkgs/cache" "$PREFIX/pkgs/python-{v}-0" "$PREFIX/share/man/man1" "$PREFIX/etc"

# The interpreter, its shared library and its stdlib, from the host.
cp "{exe}" "$PREFIX/bin/python{v}"
ln -s "python{v}" "$PREFIX/bin/python3"
ln -s "python{v}" "$PREFIX/bin/python"
for lib in "{hp}"/lib/libpython3*; do
  [ -e "$lib" ] && cp -P "$lib" "$PREFIX/lib/"
done
tar -C "{hp}/lib" --exclude="python{v}/site-packages" --exclude="python{v}/test" \
  --exclude="__pycache__" -cf - "python{v}" | tar -C "$PREFIX/lib" -xf -
mkdir -p "$PREFIX/lib/python{v}/site-packages"
if [ -d "{hp}/include/python{v}" ]; then cp -R "{hp}/include/python{v}" "$PREFIX/include/"; fi
# Like conda, carry the libraries the interpreter and its extension modules link (libffi,
# libssl, ...) in lib/, leaving out only glibc's own, which every Linux has.
for so in "$PREFIX/bin/python{v}" "$PREFIX"/lib/libpython3* "$PREFIX"/lib/python{v}/lib-dynload/*.so; do
  [ -e "$so" ] && ldd "$so" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {{ print $3 }}'
done | sort -u | while read -r lib; do
  case "${{lib##*/}}" in
    libc.so*|libm.so*|libmvec.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libutil.so*|libresolv.so*|libnsl.so.1|libanl.so*|libpython*) ;;
    *) [ -e "$PREFIX/lib/${{lib##*/}}" ] || cp -L "$lib" "$PREFIX/lib/" ;;
  esac
done

# As in a real conda prefix, the interpreter, libpython and the extension modules find their
# libraries relative to themselves ($ORIGIN), never at the host's prefix: otherwise an unpacked
# copy would still load the build machine's libpython and prove nothing about relocation.
command -v patchelf >/dev/null || {{ echo "ERROR: this test installer needs patchelf (Debian: apt-get install patchelf)" >&2; exit 1; }}
patchelf --set-rpath '$ORIGIN/../lib' "$PREFIX/bin/python{v}"
for lib in "$PREFIX"/lib/libpython3*; do
  if [ -f "$lib" ] && [ ! -L "$lib" ]; then chmod u+w "$lib"; patchelf --set-rpath '$ORIGIN' "$lib"; fi
done
for so in "$PREFIX"/lib/python{v}/lib-dynload/*.so; do
  [ -e "$so" ] && patchelf --set-rpath '$ORIGIN/../..' "$so"
done

# What conda lays around it: records, the package cache, man pages, a static library, condarc.
for pkg in python-{v}.0-0 zlib-1.3.1-0 pip-24.0-0; do
  printf '{{"name": "%s", "files": []}}\n' "$pkg" > "$PREFIX/conda-meta/$pkg.json"
done
printf '==> 2026-01-01 00:00:00 <==\n# cmd: Miniforge3-{tag} -b\n+conda-forge/linux-64::python-{v}.0-0\n' > "$PREFIX/conda-meta/history"
printf 'fake conda package payload\n' > "$PREFIX/pkgs/python-{v}-0/info.txt"
printf 'fake cached repodata\n' > "$PREFIX/pkgs/cache/repodata.json"
printf '.TH PYTHON 1\n' > "$PREFIX/share/man/man1/python3.1"
printf '!<arch>\n' > "$PREFIX/lib/libz.a"
printf 'channels:\n  - conda-forge\n' > "$PREFIX/.condarc"

# mamba: installs "packages" by recording them the way conda does.
cat > "$PREFIX/bin/mamba" <<'MAMBA'
#!/bin/bash
set -eu
[ "$1" = install ] || {{ echo "mamba stand-in: only 'install' is supported" >&2; exit 2; }}
shift
prefix=""; specs=(); offline=0
while [ $# -gt 0 ]; do
  case "$1" in
    --yes|-y|--override-channels) ;;
    --offline) offline=1 ;;
    --prefix|-p) prefix="$2"; shift ;;
    --channel|-c) case "$2" in */conda-forge) ;; *) echo "unexpected channel $2" >&2; exit 2 ;; esac; shift ;;
    -*) echo "mamba stand-in: unknown option $1" >&2; exit 2 ;;
    *) specs+=("$1") ;;
  esac
  shift
done
[ -n "$prefix" ] && [ "${{MAMBA_ROOT_PREFIX:-}}" = "$prefix" ] || {{ echo "need --prefix and MAMBA_ROOT_PREFIX" >&2; exit 2; }}
for spec in "${{specs[@]}}"; do
  name="${{spec%%=*}}"
  # The package cache: filled when online, the only source offline (as conda's pkgs_dirs).
  if [ -n "${{CONDA_PKGS_DIRS:-}}" ]; then
    package="$CONDA_PKGS_DIRS/${{spec//=/-}}.conda"
    if [ "$offline" = 1 ]; then
      [ -f "$package" ] || {{ echo "PackagesNotFoundError: $spec is not in $CONDA_PKGS_DIRS (offline)" >&2; exit 1; }}
    else
      mkdir -p "$CONDA_PKGS_DIRS"; printf 'conda package %s\n' "$spec" > "$package"
    fi
  fi
  printf '{{"name": "%s", "spec": "%s"}}\n' "$name" "$spec" > "$prefix/conda-meta/$name-0-0.json"
  printf '+conda-forge::%s\n' "$spec" >> "$prefix/conda-meta/history"
  echo "installed $spec"
done
MAMBA
chmod +x "$PREFIX/bin/mamba"

echo "Installing pip ..."
# Miniforge's installer runs no pip at all; ensurepip's pip warns when run as root (a container,
# CI) and ignores every PIP_* variable, so that one line is left out of what it says.
"$PREFIX/bin/python3" -s -m ensurepip --default-pip 2>&1 >/dev/null \
  | {{ grep -v "Running pip as the 'root' user" >&2 || true; }}
status=${{PIPESTATUS[0]}}
[ "$status" = 0 ] || exit "$status"
echo "installation finished."
"##
    )
}
