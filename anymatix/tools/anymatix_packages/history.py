"""The history of the environment's packages: every change, and the states kept around them.

One JSON file, `.packages/history.json`, rewritten whole under a temporary name and renamed over
the old one, so a reader (or a killed writer) only ever sees a complete history. It names the
environment it belongs to, so a `.packages` folder copied from another unpack is refused.
"""

import datetime
import json
import os

from .environment import PackagesError

FORMAT = 1
# How many changes undo can go back through, until `keep N` says otherwise.
DEFAULT_KEEP = 5


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class History:
    def __init__(self, folder, environment_id):
        self.folder = folder
        self.path = os.path.join(folder, "history.json")
        self.environment_id = environment_id
        self.entries = []
        # State id → {"packages": {canonical name: [name, version]}, "kept": when, "linked": its
        # files are links (not copies), "protected": {name: [files not the zip's]}}
        self.states = {}
        self.next_state = 1
        self.keep = None
        self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise self._damaged("it cannot be read (%s)" % e)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self._damaged("it is not a history this tool wrote (format %r)" % (
                data.get("format") if isinstance(data, dict) else None))
        if data.get("environment") != self.environment_id:
            raise PackagesError(
                "%s belongs to another environment (%s, this one is %s): the .packages folder "
                "was copied here from elsewhere. Move %s away (the packages themselves are not "
                "touched); a new history starts from the environment as it is"
                % (self.path, data.get("environment"), self.environment_id, self.folder)
            )
        try:
            self.entries = list(data["entries"])
            self.states = {int(k): v for k, v in data["states"].items()}
            self.next_state = int(data["next_state"])
            self.keep = data.get("keep")
        except (KeyError, TypeError, ValueError) as e:
            raise self._damaged("a part is missing or wrong (%s)" % e)

    def _damaged(self, why):
        return PackagesError(
            "%s is damaged: %s. Move the folder %s away (the packages themselves are not "
            "touched); a new history starts from the environment as it is, and undo cannot go "
            "back past that point" % (self.path, why, self.folder)
        )

    def save(self):
        data = {
            "format": FORMAT,
            "environment": self.environment_id,
            "next_state": self.next_state,
            "keep": self.keep,
            "states": {str(k): v for k, v in sorted(self.states.items())},
            "entries": self.entries,
        }
        partial = self.path + ".partial"
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.path)

    @property
    def keep_count(self):
        return DEFAULT_KEEP if self.keep is None else self.keep

    def new_state_id(self):
        """A state id no state had: saved at once, so a run killed while keeping that state
        never gives its id again."""
        state = self.next_state
        self.next_state += 1
        self.save()
        return state

    def add(self, **entry):
        entry.setdefault("id", max((e["id"] for e in self.entries), default=0) + 1)
        entry.setdefault("when", now())
        self.entries.append(entry)
        return entry

    def current_state(self):
        """The state the environment was left in by the last change that finished."""
        for entry in reversed(self.entries):
            if entry.get("status") == "running":
                continue
            if entry.get("after") is not None:
                return entry["after"]
            if entry.get("status") == "interrupted":
                return None
        return None

    def undoable(self):
        """The changes undo goes back through, newest first: those that changed something and
        were not undone (an interrupted change always counts: it may have changed anything)."""
        found = []
        for entry in reversed(self.entries):
            if entry.get("undone_by") or entry.get("status") == "running":
                continue
            if entry.get("status") == "interrupted":
                found.append(entry)
            elif entry["kind"] != "undo" and entry.get("changed"):
                found.append(entry)
        return found

    def referenced_states(self, keep):
        """The states the last `keep` undoable changes, the current state and an unfinished
        restore need."""
        needed = {self.current_state()}
        for entry in self.undoable()[:keep]:
            needed.add(entry.get("before"))
        for entry in self.entries:
            needed.add(entry.get("restoring"))
        needed.discard(None)
        return needed


def package_changes(before, after):
    """What changed between two {canonical: [name, version]} maps, as the history shows it."""
    added, removed, upgraded, downgraded = [], [], [], []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            added.append(after[key])
        elif key not in after:
            removed.append(before[key])
        elif before[key][1] != after[key][1]:
            change = [after[key][0], before[key][1], after[key][1]]
            (upgraded if newer(after[key][1], before[key][1]) else downgraded).append(change)
    return {
        name: items
        for name, items in (
            ("added", added),
            ("removed", removed),
            ("upgraded", upgraded),
            ("downgraded", downgraded),
        )
        if items
    }


def newer(a, b):
    try:
        from pip._vendor.packaging.version import Version

        return Version(a) > Version(b)
    except Exception:
        return a > b


def describe_changes(changes):
    parts = []
    for name, verb in (("added", "added"), ("removed", "removed")):
        for item in changes.get(name, []):
            parts.append("%s %s %s" % (verb, item[0], item[1]))
    for name, verb in (("upgraded", "upgraded"), ("downgraded", "downgraded")):
        for item in changes.get(name, []):
            parts.append("%s %s %s -> %s" % (verb, item[0], item[1], item[2]))
    return parts
