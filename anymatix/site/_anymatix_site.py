"""The rules of this portable anymatix environment for every python it starts.

`_anymatix_site.pth`, beside this module in site-packages, imports it while Python starts (the
site module runs the `import` lines of .pth files, with or without -s). It does two cheap things:

1. The user's own site-packages (~/.local/lib/pythonX.Y/site-packages,
   %APPDATA%\\Python\\PythonXY\\site-packages) is taken off sys.path, also when Python was started
   without -s (ComfyUI-Manager adds -s only for the official portable's `python_embeded`): a
   package there must neither shadow the zip's copy nor make pip skip installing into the zip.
2. It puts itself first in sys.meta_path, to hand pip's install and uninstall commands and
   `python -m uv` to `_anymatix_guard` (beside it) the moment they are imported: the guard keeps
   the protected core, and one change at a time. Nothing else is imported, and nothing is put
   into the environment of a process that is not pip or uv.
3. When GitPython (`git`) is first imported and no git program is on PATH (most Windows
   machines), it is told to stay quiet (`GIT_PYTHON_REFRESH=quiet`, unless the user set it):
   ComfyUI-Manager imports it when it loads and, without that, fails to load at all ("Bad git
   executable"). Its registry installs then work; what needs git fails when used, saying so.

Nothing here may fail a start: an error is swallowed, and in a python that is not this
environment's (a virtual environment made from it) the guard does nothing.
"""

import os
import sys

# The modules whose import hands a command to the guard.
GUARDED = (
    "pip._internal.commands.install",
    "pip._internal.commands.uninstall",
    "uv.__main__",
)


def keep_user_site_out():
    import site

    site.ENABLE_USER_SITE = False
    user_site = getattr(site, "USER_SITE", None)
    if not user_site:
        return

    def norm(path):
        return os.path.normcase(os.path.abspath(path))

    paths = [norm(p) for p in sys.path]
    try:
        start = paths.index(norm(user_site))
    except ValueError:
        return
    # The user site and what its own .pth files added come before this site-packages.
    here = norm(os.path.dirname(os.path.abspath(__file__)))
    try:
        end = paths.index(here, start)
    except ValueError:
        end = start + 1
    del sys.path[start:end]


def quiet_missing_git():
    if "GIT_PYTHON_REFRESH" in os.environ or "GIT_PYTHON_GIT_EXECUTABLE" in os.environ:
        return
    names = ("git.exe", "git.cmd") if os.name == "nt" else ("git",)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and any(os.path.isfile(os.path.join(folder, n)) for n in names):
            return
    os.environ["GIT_PYTHON_REFRESH"] = "quiet"


class InstallerWatch:
    """The first of sys.meta_path: passes the guarded modules to the guard, and steps aside for
    every other import."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "git":
            try:
                quiet_missing_git()
            except Exception:
                pass
            return None
        if name not in GUARDED:
            return None
        import _anymatix_guard

        return _anymatix_guard.find_spec(InstallerWatch, name, path, target)

    @staticmethod
    def invalidate_caches():
        pass


def start():
    try:
        keep_user_site_out()
    except Exception:
        pass
    sys.meta_path.insert(0, InstallerWatch)


start()
