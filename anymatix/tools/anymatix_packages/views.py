"""What the environment's packages look like, as data: the command line prints it, the page
(`packages.sh gui`) sends it as JSON. Reading never changes anything and takes no lock."""

import os

from . import protection, states
from .environment import canonical
from .history import History, describe_changes


def read_history(env):
    """The history as it is on disk."""
    id_file = os.path.join(env.prefix, "anymatix-environment-id")
    try:
        with open(id_file, encoding="ascii") as f:
            environment_id = f.read().strip()
    except FileNotFoundError:
        environment_id = None
    return History(env.state_dir, environment_id)


def when_text(entry):
    return entry["when"][:16].replace("T", " ")


def added_dates(history):
    """{canonical name: (when, entry id)} of the last change that added or changed it."""
    when = {}
    for entry in history.entries:
        if entry.get("undone_by"):
            continue
        for kind in ("added", "upgraded", "downgraded"):
            for item in entry.get("changes", {}).get(kind, []):
                when[canonical(item[0])] = (when_text(entry), entry["id"])
    return when


def packages_view(env, history, differences=None):
    """The protected core (each with what differs from the zip and the command that brings it
    back), then what changed since the zip was made."""
    installed = env.installed()
    shipped = env.shipped()
    protected_names = env.protected_names()
    if differences is None:
        try:
            differences = protection.verify(env)
        except (OSError, ValueError):
            differences = []
    by_name = {canonical(d.name): d for d in differences}
    protected = []
    for name, version, why in env.protected():
        found = installed.get(canonical(name))
        now = found[1] if found else None
        difference = by_name.get(canonical(name))
        item = {"name": name, "version": now, "zip_version": version, "why": why,
                "protected": True, "differs": None, "fix": None}
        if difference is not None:
            item["differs"] = {"files": difference.files()[:20], "count": len(difference.files()),
                               "in_place": bool(difference.in_place), "text": difference.describe()}
        if now != version or difference is not None:
            in_place = difference is not None and bool(difference.in_place)
            item["fix"] = bring_back(env, history, name, version, in_place)
        protected.append(item)
    dates = added_dates(history)
    added = [
        {"name": name, "version": version, "protected": False,
         "when": dates.get(key, (None, None))[0], "change": dates.get(key, (None, None))[1]}
        for key, (name, version) in sorted(installed.items())
        if key not in shipped
    ]
    changed = [
        {"name": name, "version": version, "zip_version": shipped[key], "protected": False}
        for key, (name, version) in sorted(installed.items())
        if key in shipped and shipped[key] != version and key not in protected_names
    ]
    removed = [key for key in sorted(shipped) if key not in installed]
    return {"protected": protected, "added": added, "changed": changed, "removed": removed}


def bring_back(env, history, name, version, in_place):
    """The command that makes a protected package the zip's again: the undo back to the newest
    kept state where it was (none for a file edited in place: every state shares it), else a
    reinstall of the zip's version (the guard lets only that build in)."""
    key = canonical(name)
    if not in_place:
        for count, entry in enumerate(history.undoable(), 1):
            state = history.states.get(entry.get("before"))
            folder = os.path.join(env.state_dir, "states", str(entry.get("before")))
            if state is None or not os.path.isdir(folder):
                break
            kept = state.get("packages", {}).get(key, [None, None])[1]
            if kept == version and name not in state.get("protected", {}):
                return "%s undo%s" % (env.script(), " %d" % count if count > 1 else "")
    return "%s install --force-reinstall --no-deps %s==%s" % (env.script(), name, version)


def states_view(env, history):
    folder = os.path.join(env.state_dir, "states")
    kept = [
        (os.path.join(folder, str(s)), bool(record.get("linked")))
        for s, record in sorted(history.states.items())
        if os.path.isdir(os.path.join(folder, str(s)))
    ]
    keep = history.keep_count
    held = states.held_bytes(kept, states.walk(env.prefix)) if kept else 0
    return {"kept": len(kept), "held_bytes": held, "keep": keep}


def history_view(env, history):
    """Every change, newest first, with its title line, notes and what it changed."""
    shown = []
    undoable = {e["id"] for e in history.undoable()}
    for entry in reversed(history.entries):
        if entry["kind"] == "outside" and not entry.get("changed"):
            continue
        lines = describe_changes(entry.get("changes", {}))
        if entry["kind"] == "outside" and entry.get("changed") and not entry.get("changes"):
            files = entry.get("files", [])
            lines.append("files changed: %s%s" % (", ".join(files[:5]), " ..." if len(files) > 5 else ""))
        if entry.get("in_place"):
            lines.append(
                "edited in place (undo cannot bring back their earlier content: the kept states "
                "share these files): %s" % ", ".join(entry["in_place"][:5]))
        for item in entry.get("protected", []):
            files = item.get("changed", []) + item.get("missing", []) or item.get("files", [])
            what = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
            by = " (also installed by %s)" % ", ".join(item["by"]) if item.get("by") else ""
            lines.append("protected %s: %s%s" % (item["name"], what or "its version changed", by))
        aside = entry.get("set_aside")
        if aside:
            lines.append("%d file%s no package installed moved to %s" % (
                aside["count"], "" if aside["count"] == 1 else "s", aside["folder"]))
        shown.append(
            {"id": entry["id"], "when": when_text(entry), "what": title(env, entry),
             "notes": notes(entry), "changes": lines, "undoable": entry["id"] in undoable}
        )
    return shown


def title(env, entry):
    kind = entry["kind"]
    if kind == "found":
        return "the environment as %s first found it" % env.script()
    if kind == "outside":
        return "changed outside this tool (ComfyUI-Manager, or pip run by hand)"
    if kind == "undo":
        asked = entry.get("asked", [])
        return "undo %s (back to before #%s)" % (
            asked[1] if len(asked) > 1 else "1", min(entry.get("undoes", [0])))
    what = " ".join(entry.get("asked", []))
    if entry.get("unprotected"):
        what += "  (unprotected: %s)" % ", ".join(entry["unprotected"])
    return what


def notes(entry):
    status = entry.get("status", "")
    found = [status] if status != "done" else []
    if entry.get("undone_by"):
        found.append("undone by #%d" % entry["undone_by"])
    if entry["kind"] in ("install", "uninstall") and not entry.get("changed") and status == "done":
        found.append("nothing changed")
    if entry.get("resumed"):
        found.append("finished after an interruption")
    return found


def human(count):
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return ("%d %s" if unit == "bytes" else "%.1f %s") % (count, unit)
        count /= 1000.0
