"""The health of the environment: the protected core at the zip's versions, `pip check`, and the
smoke imports and checks the build ran on this zip (tools/environment.json), all of them, each
failure named."""

import json
import os
import subprocess
import tempfile

from . import protection
from .environment import canonical
from .pip_run import run_pip

MARK = "@@anymatix-smoke@@"


def run_check(env, say):
    """Says each result as it comes; returns the failures ([] when the environment is healthy)."""
    failures = []
    installed = env.installed()
    for name, version, _ in env.protected():
        found = installed.get(canonical(name))
        if found is None:
            failures.append("%s (protected) is not installed: the zip has %s" % (name, version))
        elif found[1] != version:
            failures.append("%s (protected) is %s: the zip has %s" % (name, found[1], version))
    failures.extend(protected_files(env, say))
    say("%-6s the protected packages are the zip's versions, with every file as the zip has it"
        % ("ok" if not failures else "FAILED"))
    for failure in failures:
        say("         " + failure)

    lines = []
    status, _ = run_pip(env, ["check"], lines.append)
    if status == 0:
        say("ok     pip check: every installed package has what it requires")
    else:
        failures.append("pip check: " + "; ".join(l.strip() for l in lines if l.strip()))
        say("FAILED pip check:")
        for line in lines:
            say("         " + line)

    failures.extend(smoke(env, say))
    return failures


def protected_files(env, say):
    """Each protected package at the zip's version whose files are not the zip's, by content."""
    try:
        differences = protection.verify(env, say)
    except (OSError, ValueError) as e:
        return ["%s is missing or damaged (%s): the protected files cannot be checked"
                % (os.path.join(env.tools, "protected-files.json"), e)]
    return [
        "%s %s (protected): %d of its files are not the zip's: %s%s"
        % (d.name, d.version, len(d.files()), d.describe(5),
           "; edited in place, so only a reinstall brings them back" if d.in_place else "")
        for d in differences
    ]


def smoke(env, say):
    steps = env.setup.get("smoke", [])
    if not steps:
        return []
    failures = []
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smoke_runner.py")
    with tempfile.TemporaryDirectory(prefix="anymatix-check-") as scratch:
        for step in steps:
            step["args"] = [scratch if a == "{scratch}" else a for a in step.get("args", [])]
        with open(runner, encoding="utf-8") as f:
            code = f.read()
        # With -c, as the build runs it: no folder of this tool on sys.path to shadow a module.
        process = subprocess.run(
            [env.python, "-s", "-c", code, json.dumps(steps), "--all"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=scratch,
        )
    output = process.stdout.decode("utf-8", "replace")
    finished = set()
    started = None
    for line in output.splitlines():
        if not line.startswith(MARK):
            continue
        event = json.loads(line[len(MARK):])
        if event["event"] == "start":
            started = event["name"]
        elif event["event"] == "ok":
            finished.add(event["name"])
            say("ok     " + event["name"])
        elif event["event"] == "failed":
            finished.add(event["name"])
            error = event.get("error", "").strip()
            failures.append("%s: %s" % (event["name"], error.splitlines()[-1] if error else "failed"))
            say("FAILED " + event["name"])
            for text in error.splitlines():
                say("         " + text)
    if process.returncode != 0 and started is not None and started not in finished:
        failures.append("%s: python crashed (exit status %d)" % (started, process.returncode))
        say("FAILED %s: python crashed (exit status %d)" % (started, process.returncode))
    return failures
