"""Runs the smoke imports and checks of a build in one process, in order, each in a namespace of
its own: as the product imports them (torch once, not once per check). Given a JSON list of
{"name", "code", "args"}; says what it does on stdout in lines that start with MARK, and stops at
the first failure, with its traceback (with `--all`, as `packages.sh check` runs it from the zip,
it goes on and exits 1 at the end). The build reads those lines (a process that dies without
saying how a step ended is reported as crashing in the step it started last)."""

import json
import sys
import traceback

MARK = "@@anymatix-smoke@@"


def say(event, name, **extra):
    sys.stderr.flush()
    print(MARK, json.dumps(dict(event=event, name=name, **extra)), flush=True)


def main():
    steps = json.loads(sys.argv[1])
    keep_going = sys.argv[2:] == ["--all"]
    failed = 0
    for step in steps:
        name = step["name"]
        say("start", name)
        sys.argv = ["-c"] + step.get("args", [])
        try:
            code = compile(step["code"], "<smoke check: %s>" % name, "exec")
            exec(code, {"__name__": "__main__"})
        except SystemExit as stop:
            if stop.code not in (None, 0):
                say("failed", name, error="it exited with %r" % (stop.code,))
                failed = 1
                if not keep_going:
                    return 1
                continue
        except BaseException:
            say("failed", name, error=traceback.format_exc())
            failed = 1
            if not keep_going:
                return 1
            continue
        say("ok", name)
    return failed


if __name__ == "__main__":
    sys.exit(main())
