"""The rules of this portable anymatix environment for every python it starts.

`_anymatix_site.pth`, beside this module in site-packages, imports it while Python starts (the
site module runs the `import` lines of .pth files, with or without -s). It does three cheap things:

1. The user's own site-packages (~/.local/lib/pythonX.Y/site-packages,
   %APPDATA%\\Python\\PythonXY\\site-packages) is taken off sys.path, also when Python was started
   without -s (ComfyUI-Manager adds -s only for the official portable's `python_embeded`): a
   package there must neither shadow the zip's copy nor make pip skip installing into the zip.
2. pip (or uv) started by this python obeys the protected core: the moment pip is imported, its
   PIP_CONSTRAINT gets `tools/protected.txt` (uv: UV_CONSTRAINT), the exact versions the build
   installed. The path is found from sys.prefix at that moment, so it holds wherever the zip was
   unpacked or moved; a pip.conf could only name one fixed path. Constraints do not apply to
   uninstalling, so `pip uninstall` of a protected package is refused here.
3. A pip that installs or uninstalls waits while `packages.sh` (or another such pip) is changing
   the environment, so two never change it at once.

Nothing here may fail a start: every error is swallowed, and without tools/protected.txt (a
virtual environment made from this python, for example) it does nothing but step 1.
"""

import os
import sys

# anymatix/python is sys.prefix; anymatix/ holds the tools and the package states.
ROOT = os.path.dirname(os.path.abspath(sys.prefix))
PROTECTED = os.path.join(ROOT, "tools", "protected.txt")
LOCK = os.path.join(ROOT, ".packages", "lock")
# The constraints file to obey instead of PROTECTED (`packages.sh install --unprotect NAME`).
CONSTRAINT_VAR = "ANYMATIX_CONSTRAINT"
# Set by packages.sh for the pip it runs: the lock is already held, by its parent.
LOCK_HELD_VAR = "ANYMATIX_PACKAGES_LOCK_HELD"


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


def constraint_file():
    return os.environ.get(CONSTRAINT_VAR) or PROTECTED


def obey_protection(installer):
    path = constraint_file()
    if not os.path.isfile(path):
        return
    # pip and uv split the variable at spaces, so the path goes as a file: URL (%20 for a space),
    # which both read.
    from pathlib import Path

    entry = Path(path).resolve().as_uri()
    variable = "PIP_CONSTRAINT" if installer == "pip" else "UV_CONSTRAINT"
    present = os.environ.get(variable, "")
    if entry not in present.split():
        os.environ[variable] = (present + " " + entry).strip()


def pip_changes_packages():
    """Whether this process is a pip run that installs or uninstalls (python -m pip, pip.exe)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    words = [os.path.basename(a).lower() for a in argv[1:]]
    if "-m" in argv:
        after = argv[argv.index("-m") + 1 :]
        if not after or after[0] != "pip":
            return False
        words = after[1:]
    elif not words or not words[0].startswith("pip"):
        return False
    return any(w in ("install", "uninstall") for w in words)


_lock_file = None


def wait_for_other_changes():
    global _lock_file
    if os.environ.get(LOCK_HELD_VAR) or not os.path.isdir(os.path.dirname(LOCK)):
        return
    try:
        _lock_file = open(LOCK, "a+b")
    except OSError:
        return  # a read-only unpack folder: pip itself will say it cannot write
    if not lock(_lock_file, wait=False):
        sys.stderr.write(
            "Waiting for another change of this environment's packages to finish...\n"
        )
        sys.stderr.flush()
        lock(_lock_file, wait=True)
    # Held until this pip exits; its children (a build backend's pip) must not wait for it.
    os.environ[LOCK_HELD_VAR] = str(os.getpid())


def lock(handle, wait):
    """An exclusive lock on an open file, released by the system when the process ends."""
    try:
        if os.name == "nt":
            import msvcrt
            import time

            while True:
                try:
                    handle.seek(0)
                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                    return True
                except OSError:
                    if not wait:
                        return False
                    time.sleep(0.2)
        import fcntl

        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        fcntl.flock(handle.fileno(), flags)
        return True
    except OSError:
        return False


_explaining = False


def explain_refusals():
    """For a pip run by hand: after pip's own "The user requested (constraint) torch==…", say
    that the package is protected here and how to change it deliberately. pip logs the conflict
    through its resolver's logger; a handler there collects it, and it is said at exit."""
    global _explaining
    if _explaining:
        return
    _explaining = True
    import atexit
    import logging

    class Conflicts(logging.Handler):
        seen = []

        def emit(self, record):
            try:
                message = record.getMessage()
            except Exception:
                return
            for line in message.splitlines():
                line = line.strip()
                if line.startswith("The user requested (constraint) "):
                    self.seen.append(line.split(") ", 1)[1])

    handler = Conflicts()
    logging.getLogger("pip._internal.resolution.resolvelib.factory").addHandler(handler)

    def explain():
        if not handler.seen:
            return
        script = "packages.bat" if os.name == "nt" else "packages.sh"
        names = sorted({pin.split("=")[0] for pin in handler.seen})
        sys.stderr.write(
            "\nThis environment protects %s (%s): what ComfyUI here depends on stays at that "
            "version, and nothing was changed. To change it deliberately (undo brings it back): "
            "%s install %s ...\n"
            % (", ".join(names), ", ".join(sorted(set(handler.seen))), os.path.join(ROOT, script),
               " ".join("--unprotect " + n for n in names))
        )

    atexit.register(explain)


def protected_names():
    """{canonical name: name==version} from the constraints file pip obeys."""
    import re

    found = {}
    with open(constraint_file(), encoding="utf-8") as f:
        for line in f:
            pin = line.split("#", 1)[0].strip()
            if "==" in pin:
                found[re.sub(r"[-_.]+", "-", pin.split("==")[0].strip()).lower()] = pin
    return found


def protected_uninstall_refusal():
    """`pip uninstall torch` by hand: constraints do not apply to uninstalling, so it is refused
    here, before pip changes anything. Returns what to say, or None."""
    import re

    argv = getattr(sys, "orig_argv", sys.argv)
    words = argv[argv.index("-m") + 2 :] if "-m" in argv else argv[2:]
    if "uninstall" not in words or not os.path.isfile(constraint_file()):
        return None
    names, skip = [], False
    for word in words[words.index("uninstall") + 1 :]:
        if skip:
            skip = False
        elif word in ("-r", "--requirement", "--log", "--root-user-action", "--cache-dir"):
            skip = True
        elif not word.startswith("-"):
            names.append(re.sub(r"[-_.]+", "-", word).lower())
    protected = protected_names()
    refused = sorted({protected[n].split("==")[0] for n in names if n in protected})
    if not refused:
        return None
    script = os.path.join(ROOT, "packages.bat" if os.name == "nt" else "packages.sh")
    return (
        "This environment protects %s: what ComfyUI here depends on is not uninstalled, and "
        "nothing was changed. To remove it deliberately (undo brings it back): %s uninstall "
        "%s %s\n"
        % (", ".join(refused), script, " ".join("--unprotect " + n for n in refused),
           " ".join(refused))
    )


class InstallerWatch:
    """The first of sys.meta_path: sees pip (or uv) imported, makes it obey, and steps aside."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is None and name == "pip" and not RUN_BY_HELPER and pip_changes_packages():
            try:
                refusal = protected_uninstall_refusal()
            except Exception:
                refusal = None
            if refusal:
                sys.stderr.write(refusal)
                raise SystemExit(1)
        if path is None and name in ("pip", "uv"):
            try:
                obey_protection(name)
                # packages.sh explains refusals itself.
                if name == "pip" and not RUN_BY_HELPER and pip_changes_packages():
                    explain_refusals()
            except Exception:
                pass
        return None


# A pip that packages.sh runs (it holds the lock for it, and explains refusals itself).
RUN_BY_HELPER = bool(os.environ.get(LOCK_HELD_VAR))


def start():
    try:
        keep_user_site_out()
    except Exception:
        pass
    try:
        if pip_changes_packages():
            wait_for_other_changes()
    except Exception:
        pass
    sys.meta_path.insert(0, InstallerWatch)


start()
