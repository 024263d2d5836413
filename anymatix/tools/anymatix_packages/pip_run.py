"""pip, run by this environment's python for the package tool, and its refusals explained.

The protection itself is the start-up guard's (`_anymatix_guard`, in site-packages): every pip
this python runs obeys tools/protected.txt. The tool's own pip may obey a copy without the names
given to --unprotect: the guard takes it only from `.packages/run.json`, written here for the
length of one pip run while this process holds the lock, and only in a pip whose parent is this
process and whose environment carries the run's random token.
"""

import json
import os
import secrets
import subprocess
import tempfile

import _anymatix_guard as guard

from .environment import canonical


def constraints_without(env, unprotect):
    """The constraints file pip obeys: the protected one, or a copy without `unprotect`."""
    if not unprotect:
        return env.protected_file
    lifted = {canonical(n) for n in unprotect}
    kept = []
    with open(env.protected_file, encoding="utf-8") as f:
        for line in f:
            name = guard.requirement_name(line.split("#", 1)[0])
            if not name or name not in lifted:
                kept.append(line)
    handle, path = tempfile.mkstemp(prefix="constraints-", suffix=".txt", dir=env.state_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.writelines(kept)
    return path


def run_pip(env, args, echo, unprotect=None):
    """Runs `python -m pip ARGS`, passing each line of its output to `echo` as it comes. With
    `unprotect` (a list, maybe empty) it is a change: the caller holds the lock, and the pip is
    told so through run.json. Returns (exit status, the whole output)."""
    child_env = dict(os.environ)
    child_env.pop(guard.RUN_VAR, None)
    child_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    child_env["PYTHONIOENCODING"] = "utf-8"
    constraints = None
    if unprotect is not None:
        constraints = constraints_without(env, unprotect)
        token = secrets.token_urlsafe(32)
        _write_json(guard.RUN_FILE, {
            "token": token,
            "pid": os.getpid(),
            "constraints": constraints,
            "unprotect": sorted(unprotect),
        })
        child_env[guard.RUN_VAR] = token
    try:
        process = subprocess.Popen(
            [env.python, "-s", "-m", "pip"] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
        lines = []
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            echo(line)
        return process.wait(), "\n".join(lines)
    finally:
        if unprotect is not None:
            for path in (guard.RUN_FILE, constraints if constraints != env.protected_file else None):
                if path:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass


def _write_json(path, data):
    partial = "%s.%d" % (path, os.getpid())
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(partial, path)


def refusals(output, protected):
    """[(name, kept version, [what asked for another])] for each protected package pip's
    resolver could not change. `protected` is {canonical: (name, version)}."""
    found = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if "The conflict is caused by:" not in line:
            continue
        causes = []
        for cause in lines[index + 1 :]:
            if not cause.startswith("    "):
                break
            causes.append(cause.strip())
        for key, (name, version) in protected.items():
            constraint = [c for c in causes if "(constraint)" in c and _names(c, key)]
            if not constraint:
                continue
            askers = [c for c in causes if "(constraint)" not in c and _names(c, key)]
            entry = found.setdefault(key, (name, version, []))
            entry[2].extend(a for a in askers if a not in entry[2])
    return list(found.values())


def _names(cause, key):
    """Whether a cause line of pip's ("x 1.0 depends on torch<2", "The user requested torch==2")
    asks for the package `key`."""
    text = cause.replace("The user requested (constraint) ", "").replace(
        "The user requested ", ""
    )
    if " depends on " in text:
        text = text.split(" depends on ", 1)[1]
    name = ""
    for ch in text:
        if ch.isalnum() or ch in "-_.":
            name += ch
        else:
            break
    return canonical(name) == key


def explain_refusal(refused, args, script):
    lines = [
        "",
        "Refused: this would change protected packages, which the environment's ComfyUI "
        "depends on. Nothing was changed.",
    ]
    for name, version, askers in refused:
        asked = "; ".join("`%s`" % a for a in askers) or "the request"
        lines.append("  %s: %s asks for another version; the environment keeps %s %s." % (
            name, asked, name, version))
    names = " ".join("--unprotect %s" % name for name, _, _ in refused)
    lines.append(
        "To change it deliberately (`%s undo` brings it back): %s install %s %s"
        % (script, script, names, " ".join(_quote(a) for a in args))
    )
    return "\n".join(lines)


def _quote(arg):
    if arg and all(ch.isalnum() or ch in "-_.=<>/:@+~,[]" for ch in arg):
        return arg
    return '"%s"' % arg
