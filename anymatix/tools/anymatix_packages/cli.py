"""The command line of packages.sh / packages.bat."""

import json
import os
import subprocess
import sys
import traceback

import _anymatix_guard as guard

from .changes import Session
from .check import run_check
from .environment import Environment, NotWritable, PackagesError
from .history import describe_changes
from .views import history_view, human, packages_view, read_history, states_view

USAGE = """usage: {script} COMMAND [ARGUMENTS]

Adds and removes Python packages in this portable anymatix environment without breaking it:
the packages ComfyUI depends on are protected, every change is recorded, and undo brings back
the exact state before a change, offline.

commands:
  install ARGS...     install with pip: any `pip install` arguments, e.g.
                        {script} install opencv-python
                        {script} install -r ComfyUI/custom_nodes/SomeNode/requirements.txt
                      --unprotect NAME lets this one install change the protected package NAME
  uninstall NAME...   remove packages (protected ones only with --unprotect NAME)
  list                the protected packages, then what was added since the zip was made
  history             every change, newest first
  undo [N]            back to the state before the last N changes (default 1)
  check               pip check and the zip's own import checks: exit status 0 when all pass
  keep [N]            how many changes undo can go back through (default 5; 0 keeps none)
  gui [--no-browser] [--port N]
                      the same on a page in your browser, served by this python on 127.0.0.1;
                      the first line printed is the page's address, with its one-time token

The protection holds for every pip this environment's python runs (ComfyUI-Manager's too):
a request for another version of a protected package is refused, and nothing changes.
"""


# Exit statuses: 0 done, 1 pip or a check failed, 2 a usage or environment error, 3 refused
# (the protected core), 4 an unexpected error (the details are logged).
REFUSED = 3
UNEXPECTED = 4


def main(argv):
    # Piped on Windows, stdout has the ANSI code page: a name it lacks is replaced, not fatal.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
    result = None
    if argv[:1] == ["--result-json"] and len(argv) > 1:
        # The page's: what came of the command, as data, in this file.
        result, argv = argv[1], argv[2:]
    env_script = "packages.bat" if os.name == "nt" else "packages.sh"
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(script=env_script))
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    handlers = {
        "install": install,
        "uninstall": uninstall,
        "list": list_packages,
        "history": show_history,
        "undo": undo,
        "check": check,
        "keep": keep,
        "gui": gui,
    }
    if command not in handlers:
        sys.stderr.write(
            "error: unknown command `%s`: the commands are %s (see `%s --help`)\n"
            % (command, ", ".join(handlers), env_script)
        )
        return 2
    outcome = {"status": None, "outcome": None}
    try:
        status = handlers[command](Environment(), args, outcome)
    except PackagesError as e:
        sys.stderr.write("error: %s\n" % e)
        status = 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        status = 130
    except BrokenPipeError:
        # `packages.sh history | head`: the reader has what it wanted.
        sys.stdout = open(os.devnull, "w")
        status = 0
    except Exception as e:
        status = unexpected(e)
    if result:
        outcome["status"] = status
        with open(result, "w", encoding="utf-8") as f:
            json.dump(outcome, f)
    return status


def unexpected(error):
    """No command ends in a traceback: one line says what happened, and the traceback goes to
    a log beside the history for whoever looks into it."""
    script = "packages.bat" if os.name == "nt" else "packages.sh"
    log = os.path.join(guard.STATE_DIR, "errors.log")
    where = "the details could not be written"
    try:
        os.makedirs(guard.STATE_DIR, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)) + "\n")
        where = "the details are in %s" % log
    except OSError:
        pass
    sys.stderr.write(
        "error: something unexpected stopped this command (%s: %s); %s. The next run finds what "
        "it left half done: `%s list` shows where the environment stands, `%s undo` goes back\n"
        % (type(error).__name__, error, where, script, script)
    )
    return UNEXPECTED


def say(text=""):
    print(text, flush=True)


def take_unprotect(args):
    """Splits `--unprotect NAME` (or --unprotect=NAME, any number) from the other arguments."""
    names, rest = [], []
    it = iter(args)
    for arg in it:
        if arg == "--unprotect":
            name = next(it, None)
            if name is None:
                raise PackagesError("--unprotect needs a package name")
            names.append(name)
        elif arg.startswith("--unprotect="):
            names.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return names, rest


def install(env, args, outcome):
    if any(a in ("-h", "--help") for a in args):
        say("usage: %s install [--unprotect NAME] PIP-INSTALL-ARGUMENTS...\n" % env.script())
        return subprocess.call([env.python, "-s", "-m", "pip", "install", "--help"])
    unprotect, pip_args = take_unprotect(args)
    if not pip_args:
        raise PackagesError("install what? e.g. `%s install opencv-python`" % env.script())
    with Session(env, say) as session:
        status, explanation, data = session.change(
            "install", ["install"] + pip_args, ["install"] + pip_args, unprotect, say
        )
    return finish(status, explanation, data, outcome)


def finish(status, explanation, data, outcome):
    if explanation:
        sys.stderr.write(explanation + "\n")
    if data:
        outcome["outcome"] = dict(data, text=explanation.strip())
        return REFUSED
    return status


def uninstall(env, args, outcome):
    unprotect, names = take_unprotect(args)
    if not names or any(n.startswith("-") for n in names):
        raise PackagesError("uninstall takes package names, e.g. `%s uninstall opencv-python`" % env.script())
    protected = env.protected_names()
    lifted = {guard.canonical(n) for n in unprotect}
    asked = [guard.requirement_name(n) for n in names]
    if None in asked:
        raise PackagesError("uninstall takes package names, not %s" % names[asked.index(None)])
    refused = sorted({protected[n] for n in asked if n in protected and n not in lifted})
    if refused:
        text = (
            "refused: %s %s protected (the environment's ComfyUI depends on %s). Nothing was "
            "changed. To remove it deliberately (`%s undo` brings it back): %s uninstall %s %s"
            % (", ".join(refused), "is" if len(refused) == 1 else "are",
               "it" if len(refused) == 1 else "them", env.script(), env.script(),
               " ".join("--unprotect %s" % n for n in refused), " ".join(names))
        )
        sys.stderr.write(text + "\n")
        outcome["outcome"] = {"kind": "refused", "text": text,
                              "packages": [{"name": n, "asked_by": ["uninstall"]} for n in refused]}
        return REFUSED
    with Session(env, say) as session:
        status, explanation, data = session.change(
            "uninstall", ["uninstall", "-y"] + names, ["uninstall"] + names, unprotect, say
        )
    return finish(status, explanation, data, outcome)


def settle(env):
    """Opens a session and closes it: a change made outside this tool since its last run is
    recorded now. Returns the protected packages that differ from the zip's, as the session
    found them (None where the folder cannot be written: the history is shown as it is)."""
    try:
        with Session(env, say) as session:
            return session.protected_before
    except NotWritable:
        return None


def list_packages(env, args, outcome):
    no_arguments("list", args)
    differences = settle(env)
    history = read_history(env)
    view = packages_view(env, history, differences)
    say("Protected (what the environment's ComfyUI depends on; see `%s --help`):" % env.script())
    for p in view["protected"]:
        now = p["version"] or "not installed"
        say("  %-32s %-20s protected" % (p["name"], now))
        if now != p["zip_version"]:
            say("      NOT the zip's: it has %s; `%s` brings it back" % (p["zip_version"], p["fix"]))
        elif p["differs"]:
            say("      NOT the zip's: %d of its files differ (%s); `%s` brings them back"
                % (p["differs"]["count"], p["differs"]["text"], p["fix"]))
    if not view["protected"]:
        say("  (none)")
    say("")
    say("Added since the zip was made:")
    for p in view["added"]:
        when = "%s (#%d)" % (p["when"], p["change"]) if p["when"] else ""
        say("  %-32s %-20s %s" % (p["name"], p["version"], when))
    if not view["added"]:
        say("  (nothing)")
    if view["changed"]:
        say("Changed since the zip was made:")
        for p in view["changed"]:
            say("  %-32s %-20s (the zip had %s)" % (p["name"], p["version"], p["zip_version"]))
    if view["removed"]:
        say("Removed since the zip was made: %s" % ", ".join(view["removed"]))
    say("")
    kept = states_view(env, history)
    if not kept["kept"]:
        say("No states kept yet (one is kept at the first change; undo goes back through the "
            "last %d changes)." % kept["keep"])
    else:
        say("States kept for undo: %d, holding %s of disk beyond the environment itself; undo "
            "goes back through the last %d changes (`%s keep N` changes that)."
            % (kept["kept"], human(kept["held_bytes"]), kept["keep"], env.script()))
    return 0


def show_history(env, args, outcome):
    no_arguments("history", args)
    settle(env)
    shown = history_view(env, read_history(env))
    for entry in shown:
        notes = ("  [%s]" % ", ".join(entry["notes"])) if entry["notes"] else ""
        say("#%-3d %s  %s%s" % (entry["id"], entry["when"], entry["what"], notes))
        for line in entry["changes"]:
            say("      " + line)
    if not shown:
        say("No changes yet.")
    return 0


def undo(env, args, outcome):
    if len(args) > 1 or (args and not args[0].isdigit()):
        raise PackagesError("undo takes one number, the changes to undo (default 1), e.g. `%s undo 2`" % env.script())
    steps = int(args[0]) if args else 1
    with Session(env, say) as session:
        entry, elapsed = session.undo(steps)
    say("Undid %s in %.1f s." % (", ".join("#%d" % i for i in entry["undoes"]), elapsed))
    for part in describe_changes(entry.get("changes", {})):
        say("  " + part)
    return 0


def check(env, args, outcome):
    no_arguments("check", args)
    failures = run_check(env, say)
    say("")
    if failures:
        say("%d problem%s:" % (len(failures), "" if len(failures) == 1 else "s"))
        for failure in failures:
            say("  " + failure)
        say("`%s history` shows what changed; `%s undo` goes back one change." % (env.script(), env.script()))
        return 1
    say("The environment is healthy.")
    return 0


def keep(env, args, outcome):
    if len(args) > 1 or (args and not args[0].isdigit()):
        raise PackagesError("keep takes one number, e.g. `%s keep 10`" % env.script())
    if not args:
        say("undo goes back through the last %d changes" % read_history(env).keep_count)
        return 0
    with Session(env, say) as session:
        session.set_keep(int(args[0]))
    say("undo now goes back through the last %s changes" % args[0])
    return 0


def gui(env, args, outcome):
    from .gui import serve

    open_browser, port, rest = True, 0, list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--no-browser":
            open_browser = False
        elif arg == "--port" and rest and rest[0].isdigit() and int(rest[0]) < 65536:
            port = int(rest.pop(0))
        else:
            raise PackagesError("gui takes --no-browser and --port N (got %s)" % arg)
    return serve(env, port, open_browser)


def no_arguments(command, args):
    if args:
        raise PackagesError("%s takes no arguments (got %s)" % (command, " ".join(args)))
