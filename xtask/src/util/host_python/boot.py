"""Build-only: never in a zip. A CPython of the build machine stands in for the target's python,
which cannot run here (a macOS zip built on Linux), for the build's pure-Python steps: reading
the installed metadata, asking where site-packages is, compiling bytecode. Run as

    python3.X -S -s -c BOOT -c CODE ARGS...

with ANYMATIX_STAND_IN_FOR naming the target's prefix and marker values. The host's stdlib is of
the same version (checked); sys.prefix is the target's, so sysconfig names the target's folders;
the target's site-packages (with its .pth files) is on sys.path and the host's is not; the
platform seen by environment markers (PEP 508) is the target's. The target's compiled modules
are never imported: they are not this machine's.
"""
import json
import os
import sys

_target = json.loads(os.environ.pop("ANYMATIX_STAND_IN_FOR"))
_prefix = _target["prefix"]
for _name in ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix"):
    setattr(sys, _name, _prefix)
# sysconfig reads sys.prefix when it is imported.
if "sysconfig" in sys.modules:
    del sys.modules["sysconfig"]
import sysconfig  # noqa: E402

_site = os.path.join(_prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
if not os.path.isdir(_site):
    sys.exit("this python %d.%d cannot stand in for the target's: %s is not there (the target's "
             "python is another version)" % (sys.version_info[:2] + (_site,)))
_purelib = sysconfig.get_paths()["purelib"]
if os.path.normpath(_purelib) != os.path.normpath(_site):
    sys.exit("this python (%s) cannot stand in for the target's: its install scheme puts "
             "site-packages at %s, not under sys.prefix (a distribution's patched python; use "
             "python.org's, uv's or pyenv's)" % (sys.executable, _purelib))

import platform  # noqa: E402

sys.platform = _target["sys_platform"]
platform.system = lambda: _target["platform_system"]
platform.machine = lambda: _target["platform_machine"]

import site  # noqa: E402

site.addsitedir(_site)

_args = sys.argv[1:]
if len(_args) < 2 or _args[0] != "-c":
    sys.exit("boot.py: give -c CODE [ARGS...]")
sys.argv = ["-c"] + _args[2:]
exec(compile(_args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
