"""The protected core of this portable anymatix environment, kept by every pip and `python -m uv`
its python runs, and one change of its packages at a time.

`_anymatix_site` (beside this module) hands over pip's install and uninstall commands and uv's
`__main__` the moment they are imported; nothing else loads this module.

- **pip install** (however started: `-m pip`, a pip script, pip's `--python` runner, pip called
  in-process): the command's own parsed options get `tools/protected.txt` as one more
  constraints file, so `--isolated` (which ignores PIP_CONSTRAINT and pip's configuration), a
  constraints file of the user's own, `--no-deps`, `--force-reinstall` and `-U` all still obey
  it. The file pins each protected package with `===` (arbitrary equality), which only the
  installed build's exact version string satisfies: `==2.11.0` would also let `2.11.0+cpu` in.
- **pip uninstall**: the names pip itself would remove (from names with specifiers, `-r` files,
  combined short flags: pip's own parsing, run once without removing anything) are checked
  before anything is removed; a protected one refuses the whole command.
- **python -m uv pip install / uninstall / sync**: the same, read from uv's command line; uv's
  own `-c` would replace a UV_CONSTRAINT, so the file goes on the command line itself.
- **The lock** (`.packages/lock`): an install or uninstall waits while another change runs; it
  is held until pip ends (for uv, the uv program inherits it). A process started by the holder
  (a build backend's pip) sees it is inside and does not wait.
- **The package tool's own pip** (`packages.sh install --unprotect NAME`) gets another
  constraints file only through `.packages/run.json`, written by the tool while it holds the
  lock, naming its process and a random token that only its child's environment carries; the
  child checks both (its parent must be that process). No variable set by anyone else lifts a
  protection.
"""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.abspath(sys.prefix))
TOOLS = os.path.join(ROOT, "tools")
PROTECTED = os.path.join(TOOLS, "protected.txt")
SETUP = os.path.join(TOOLS, "environment.json")
STATE_DIR = os.path.join(ROOT, ".packages")
LOCK = os.path.join(STATE_DIR, "lock")
LOCK_OWNER = os.path.join(STATE_DIR, "lock.owner")
RUN_FILE = os.path.join(STATE_DIR, "run.json")
# The token of the package tool's change, in its pip's environment only.
RUN_VAR = "ANYMATIX_PACKAGES_RUN"
# A random token of the lock's holding, for the processes its holder starts (recorded in
# lock.owner, which only the holder writes).
INSIDE_VAR = "ANYMATIX_PACKAGES_LOCK_HELD"
ERROR = 1


class Refused(Exception):
    """A change this environment does not allow, with what to say."""


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def script():
    return os.path.join(ROOT, "packages.bat" if os.name == "nt" else "packages.sh")


def is_this_environment():
    """Whether this python is the zip's own (not a virtual environment made from it)."""
    return os.path.isfile(SETUP)


# -- what is protected ---------------------------------------------------------------------


def tool_run():
    """The change packages.sh is making, when this process is the pip or uv it started for it
    (the token in its environment matches run.json, and its parent is the process run.json
    names); None otherwise."""
    token = os.environ.get(RUN_VAR)
    if not token:
        return None
    try:
        with open(RUN_FILE, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, ValueError):
        return None
    import hmac

    if not isinstance(run, dict) or not isinstance(run.get("token"), str):
        return None
    if not hmac.compare_digest(run["token"].encode(), token.encode()):
        return None
    if run.get("pid") != parent_pid():
        return None
    return run


def parent_pid():
    """This process's parent. On Windows asked of the kernel directly (os.getppid there takes
    a snapshot of the process, a call Wine lacks)."""
    if os.name != "nt":
        return os.getppid()
    import ctypes
    from ctypes import wintypes

    class BasicInformation(ctypes.Structure):
        _fields_ = [("exit_status", ctypes.c_void_p), ("peb", ctypes.c_void_p),
                    ("affinity", ctypes.c_void_p), ("priority", ctypes.c_void_p),
                    ("pid", ctypes.c_void_p), ("parent", ctypes.c_void_p)]

    current = ctypes.windll.kernel32.GetCurrentProcess
    current.restype = wintypes.HANDLE
    query = ctypes.windll.ntdll.NtQueryInformationProcess
    query.argtypes = [wintypes.HANDLE, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                      ctypes.c_void_p]
    query.restype = ctypes.c_long
    info = BasicInformation()
    if query(current(), 0, ctypes.byref(info), ctypes.sizeof(info), None) != 0:
        return None
    return info.parent


def read_pins(path):
    """{canonical name: pin} of a constraints file the build (or the tool) wrote."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            pin = line.split("#", 1)[0].strip()
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*===?", pin)
            if match:
                pins[canonical(match.group(1))] = pin
    return pins


def protection(run=None):
    """(the constraints file to obey, {canonical name: pin}) for this process. Refused when the
    environment's protected core cannot be read whole: nothing may change then."""
    path = run["constraints"] if run else PROTECTED
    lifted = {canonical(n) for n in (run or {}).get("unprotect", [])}
    try:
        with open(SETUP, encoding="utf-8") as f:
            names = [canonical(p["name"]) for p in json.load(f).get("protected", [])]
        pins = read_pins(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Refused(
            "this environment's protected packages cannot be read (%s), so no package may "
            "change: unpack tools/ from the zip again" % e
        )
    missing = sorted(n for n in names if n not in pins and n not in lifted)
    if missing:
        raise Refused(
            "%s does not pin %s, which this environment protects, so no package may change: "
            "unpack tools/ from the zip again" % (path, ", ".join(missing))
        )
    return path, pins


# -- one change at a time ------------------------------------------------------------------


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


def unlock(handle):
    """Releases the lock and closes the file (Windows releases a lock only some time after its
    file is closed)."""
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    except OSError:
        pass
    handle.close()


def inside_the_lock():
    """Whether a process that holds the lock started this one: the token its holder recorded
    in lock.owner is in this process's environment (inherited from the holder), and the lock
    is held now."""
    marker = os.environ.get(INSIDE_VAR)
    if not marker:
        return False
    try:
        with open(LOCK_OWNER, encoding="ascii") as f:
            import hmac

            if not hmac.compare_digest(f.read().strip().encode(), marker.encode()):
                return False
        probe = open(LOCK, "a+b")
        if lock(probe, wait=False):
            unlock(probe)
            return False  # nobody holds it
        probe.close()
    except OSError:
        return False
    return True


class Held:
    """The lock, taken for this process (or found held by the process that started it)."""

    def __init__(self, handle):
        self.handle = handle

    def release(self):
        if self.handle is not None:
            unlock(self.handle)
            self.handle = None
            os.environ.pop(INSIDE_VAR, None)


def hold_lock(say=None, inheritable=False):
    """Waits for the lock and holds it; records this process as its holder for the processes it
    starts. A read-only unpack folder has no lock to take: pip itself will say it cannot write."""
    if inside_the_lock():
        return Held(None)
    try:
        os.makedirs(STATE_DIR, exist_ok=True)
        handle = open(LOCK, "a+b")
    except OSError:
        return Held(None)
    if not lock(handle, wait=False):
        (say or _stderr)("Waiting for another change of this environment's packages to finish...")
        lock(handle, wait=True)
    if inheritable:
        os.set_inheritable(handle.fileno(), True)
    record_owner()
    return Held(handle)


def with_lock(call, *args):
    """`call(*args)` holding the lock (or inside its holder), released after."""
    held = hold_lock()
    try:
        return call(*args)
    finally:
        held.release()


def record_owner():
    import secrets

    token = secrets.token_urlsafe(24)
    try:
        partial = "%s.%d" % (LOCK_OWNER, os.getpid())
        with open(partial, "w", encoding="ascii") as f:
            f.write(token)
        os.replace(partial, LOCK_OWNER)
    except OSError:
        pass
    os.environ[INSIDE_VAR] = token


def _stderr(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- requirement names, as pip and uv read them --------------------------------------------

NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def requirement_name(text):
    """The project a requirement line (`torch>=2`, `torch[cuda]==2; python_version>'3'`,
    `torch @ https://…`) names, or None (a path or URL alone names none)."""
    text = text.strip()
    if not text or text.startswith("-") or "/" in text.split("@")[0] or "\\" in text:
        return None
    match = NAME.match(text)
    return canonical(match.group(1)) if match else None


def names_in_file(path, seen=None):
    """The names a requirements file asks for, following `-r` (relative to the file)."""
    seen = seen if seen is not None else set()
    real = os.path.realpath(path)
    if real in seen:
        return []
    seen.add(real)
    names = []
    with open(path, encoding="utf-8", errors="replace") as f:
        text = re.sub(r"\\\r?\n", " ", f.read())
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        nested = re.match(r"(?:-r|--requirements?)(?:\s*=?\s*)(\S+)$", line)
        if nested:
            names.extend(names_in_file(os.path.join(os.path.dirname(path), nested.group(1)), seen))
            continue
        name = requirement_name(line)
        if name:
            names.append(name)
    return names


def refusal_to_uninstall(names, pins, how):
    refused = sorted({pins[n] for n in names if n in pins})
    if not refused:
        return None
    plain = sorted({re.split(r"=", p, 1)[0] for p in refused})
    return (
        "This environment protects %s (%s): what ComfyUI here depends on is not uninstalled, "
        "and nothing was changed (%s). To remove it deliberately (undo brings it back): "
        "%s uninstall %s %s"
        % (", ".join(plain), ", ".join(refused), how, script(),
           " ".join("--unprotect " + n for n in plain), " ".join(plain))
    )


# -- pip -----------------------------------------------------------------------------------


def installs_elsewhere(options):
    """pip install --prefix/--target/--root into another folder (a build backend's isolated
    environment, say): nothing of this environment changes."""
    def same(path, *places):
        real = os.path.normcase(os.path.realpath(path))
        return any(real == os.path.normcase(os.path.realpath(p)) for p in places)

    import sysconfig

    prefix = getattr(options, "prefix_path", None)
    target = getattr(options, "target_dir", None)
    root = getattr(options, "root_path", None)
    if prefix and not same(prefix, sys.prefix):
        return True
    paths = sysconfig.get_paths()
    if target and not same(target, paths["purelib"], paths["platlib"]):
        return True
    if root and not same(root, os.path.abspath(os.sep)):
        return True
    return False


def guard_install(run_install):
    def run(self, options, args):
        if installs_elsewhere(options):
            return run_install(self, options, args)
        tool = tool_run()
        try:
            constraints, pins = protection(tool)
        except Refused as e:
            _stderr("ERROR: %s" % e)
            return ERROR
        options.constraints = list(getattr(options, "constraints", None) or []) + [constraints]
        if tool is None:
            explain_refusals()
        return with_lock(run_install, self, options, args)

    run.anymatix_guarded = True
    return run


def planned_uninstalls(run_uninstall, command, options, args):
    """The names pip's uninstall would remove, found by running it once with removal replaced
    by a note: pip's own parsing of names, specifiers and `-r` files, nothing removed."""
    try:
        from pip._internal.req.req_install import InstallRequirement
    except ImportError:
        return None
    names = []
    remove = InstallRequirement.uninstall

    def note(req, *a, **k):
        names.append(canonical(req.name))
        return None

    quiet = getattr(options, "root_user_action", None)
    InstallRequirement.uninstall = note
    if quiet is not None:
        options.root_user_action = "ignore"
    try:
        run_uninstall(command, options, args)
    finally:
        InstallRequirement.uninstall = remove
        if quiet is not None:
            options.root_user_action = quiet
    return names


def guard_uninstall(run_uninstall):
    def run(self, options, args):
        tool = tool_run()
        try:
            _, pins = protection(tool)
        except Refused as e:
            _stderr("ERROR: %s" % e)
            return ERROR
        names = planned_uninstalls(run_uninstall, self, options, args)
        if names is None:
            names = [requirement_name(a) for a in args]
            for path in getattr(options, "requirements", None) or []:
                names.extend(names_in_file(path))
        refusal = refusal_to_uninstall(names, pins, "pip uninstall")
        if refusal:
            _stderr(refusal)
            return ERROR
        return with_lock(run_uninstall, self, options, args)

    run.anymatix_guarded = True
    return run


def patch_install(module):
    command = getattr(module, "InstallCommand", None)
    if command is None or not callable(getattr(command, "run", None)):
        return obey_by_variable()
    if not getattr(command.run, "anymatix_guarded", False):
        command.run = guard_install(command.run)


def patch_uninstall(module):
    command = getattr(module, "UninstallCommand", None)
    if command is not None and not getattr(command.run, "anymatix_guarded", False):
        command.run = guard_uninstall(command.run)


def obey_by_variable():
    """A pip whose install command is not where this guard knows it (a pip much newer than the
    zip's): it still reads PIP_CONSTRAINT (not with --isolated); the check after each change
    catches what that lets through."""
    from pathlib import Path

    try:
        path, _ = protection(tool_run())
    except Refused as e:
        raise ImportError(str(e))
    entry = Path(path).resolve().as_uri()
    present = os.environ.get("PIP_CONSTRAINT", "")
    if entry not in present.split():
        os.environ["PIP_CONSTRAINT"] = (present + " " + entry).strip()
    _stderr("anymatix: this pip is newer than the environment's guard knows; the protected "
            "packages are kept by PIP_CONSTRAINT only (not with --isolated)")


_explaining = False


def explain_refusals():
    """For a pip run by hand: after pip's own "The user requested (constraint) torch===…", say
    that the package is protected here and how to change it deliberately. pip logs the conflict
    through its resolver's logger; a handler there collects it, and it is said at exit."""
    global _explaining
    if _explaining:
        return
    _explaining = True
    import atexit
    import logging

    seen = []

    class Conflicts(logging.Handler):
        def emit(self, record):
            try:
                message = record.getMessage()
            except Exception:
                return
            for line in message.splitlines():
                line = line.strip()
                if line.startswith("The user requested (constraint) "):
                    seen.append(line.split(") ", 1)[1])

    logging.getLogger("pip._internal.resolution.resolvelib.factory").addHandler(Conflicts())

    def explain():
        if not seen:
            return
        names = sorted({re.split(r"[=<>!~ ]", pin, 1)[0] for pin in seen})
        _stderr(
            "\nThis environment protects %s (%s): what ComfyUI here depends on stays at that "
            "build, and nothing was changed. To change it deliberately (undo brings it back): "
            "%s install %s ..."
            % (", ".join(names), ", ".join(sorted(set(seen))), script(),
               " ".join("--unprotect " + n for n in names))
        )

    atexit.register(explain)


# -- python -m uv --------------------------------------------------------------------------

# uv options that take a value (global ones and those of `pip install/uninstall/sync`), so a
# value is never taken for a command or a package name.
UV_VALUE_OPTIONS = {
    "--cache-dir", "--color", "--config-file", "--directory", "--project", "--python-preference",
    "--python-downloads", "--allow-insecure-host", "--trusted-host", "-r", "--requirements",
    "--requirement", "-c", "--constraints", "--constraint", "--overrides", "--override",
    "--excludes", "-b", "--build-constraints", "-e", "--editable", "--extra", "-i",
    "--index-url", "--index", "--default-index", "--extra-index-url", "-f", "--find-links",
    "--index-strategy", "--keyring-provider", "-P", "--upgrade-package", "--reinstall-package",
    "--no-build-isolation-package", "--resolution", "--prerelease", "--fork-strategy",
    "--exclude-newer", "--exclude-newer-package", "--link-mode", "-C", "--config-setting",
    "--config-settings-package", "--no-binary", "--only-binary", "-p", "--python", "--target",
    "--prefix", "--python-version", "--python-platform", "--torch-backend", "--group",
    "--no-sources-package", "--build-constraint",
}
UV_SHORT_VALUES = set("rcbeifPCp")


def uv_words(words):
    """[(kind, text, at)] of a uv command line: ("option", "-x"), ("value", …) for an option's
    value, ("word", …) for a command or a package; `at` is the word's index in `words`."""
    found = []
    at = 0
    while at < len(words):
        word = words[at]
        if word == "--":
            found.extend(("word", w, i) for i, w in enumerate(words[at + 1 :], at + 1))
            break
        if word.startswith("--"):
            found.append(("option", word.split("=", 1)[0], at))
            if "=" in word:
                found.append(("value", word.split("=", 1)[1], at))
            elif word in UV_VALUE_OPTIONS and at + 1 < len(words):
                at += 1
                found.append(("value", words[at], at))
        elif word.startswith("-") and len(word) > 1:
            # Combined short flags (`-qr FILE`, `-rFILE`): a letter that takes a value takes
            # the rest of the word, or the next word.
            for offset, letter in enumerate(word[1:], 2):
                found.append(("option", "-" + letter, at))
                if letter in UV_SHORT_VALUES:
                    if word[offset:]:
                        found.append(("value", word[offset:], at))
                    elif at + 1 < len(words):
                        at += 1
                        found.append(("value", words[at], at))
                    break
        else:
            found.append(("word", word, at))
        at += 1
    return found


def guard_uv(argv):
    """`python -m uv pip install|uninstall|sync …`: refuses what would change a protected
    package, adds the constraints to an install, and takes the lock for the uv program."""
    words = argv[1:]
    parsed = uv_words(words)
    commands = [(text, at) for kind, text, at in parsed if kind == "word"]
    verbs = [text for text, _ in commands]
    if len(verbs) < 2 or verbs[0] != "pip" or verbs[1] not in ("install", "uninstall", "sync"):
        return
    action = verbs[1]
    tool = tool_run()
    constraints, pins = protection(tool)
    options = {text for kind, text, _ in parsed if kind == "option"}
    if action == "sync" or (action == "install" and "--exact" in options):
        raise Refused(
            "`uv pip %s` removes every package its list does not name, ComfyUI's protected "
            "ones too: use `uv pip install -r FILE` in this environment"
            % ("sync" if action == "sync" else "install --exact")
        )
    if action == "uninstall":
        names = [requirement_name(text) for text in verbs[2:]]
        for index, (kind, text, _) in enumerate(parsed):
            if kind == "option" and text in ("-r", "--requirements", "--requirement"):
                if index + 1 < len(parsed) and parsed[index + 1][0] == "value":
                    names.extend(names_in_file(parsed[index + 1][1]))
        refusal = refusal_to_uninstall(names, pins, "uv pip uninstall")
        if refusal:
            raise Refused(refusal)
    else:
        # Right after `install`: uv's own -c would replace a UV_CONSTRAINT, not add to it.
        position = 1 + commands[1][1] + 1
        argv[position:position] = ["--constraint", constraints]
    # Inherited by the uv program (exec on POSIX; on Windows this process waits for it).
    hold_lock(inheritable=True)


# -- the import hook -----------------------------------------------------------------------


class PatchingLoader:
    """A module's own loader, then a patch of the module it made."""

    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def real_spec(watch, name, path, target):
    after = False
    for finder in sys.meta_path:
        if finder is watch:
            after = True
            continue
        find = getattr(finder, "find_spec", None)
        if after and find is not None:
            spec = find(name, path, target)
            if spec is not None:
                return spec
    return None


def find_spec(watch, name, path, target):
    if not is_this_environment():
        return None
    if name == "uv.__main__":
        try:
            guard_uv(sys.argv)
        except Refused as e:
            _stderr("error: %s" % e)
            raise SystemExit(2)
        except (OSError, IndexError) as e:
            _stderr("error: this environment could not check `uv %s`: %s" % (" ".join(sys.argv[1:]), e))
            raise SystemExit(2)
        return None
    spec = real_spec(watch, name, path, target)
    if spec is None or spec.loader is None:
        return spec
    patch = patch_install if name.endswith(".install") else patch_uninstall
    spec.loader = PatchingLoader(spec.loader, patch)
    return spec
