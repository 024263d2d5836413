"""Install, uninstall and undo as transactions on the environment.

A session holds the lock (one change at a time, whoever asks: another packages.sh, the page, a
pip started by ComfyUI-Manager), finds the state the environment is in (a kept state when nothing
changed since; otherwise a new one, and the history says what changed outside this tool), records
the change as running before it starts, and as done, failed, refused or interrupted after. A
change killed half way stays "running" in the history; the next session marks it interrupted and
keeps the state it left, so `undo` takes the environment back to the state before it.
"""

import os
import secrets
import shutil
import time

from . import states
from .environment import PackagesError, canonical
from .history import History, package_changes
from .pip_run import constraints_without, explain_refusal, refusals, run_pip

DEFAULT_KEEP = 5


class Session:
    def __init__(self, env, say):
        self.env = env
        self.say = say
        self.states_dir = os.path.join(env.state_dir, "states")
        self._lock_file = None
        self.base = None
        self.base_listing = None

    # -- opening: lock, history, the state the environment is in ---------------------------

    def __enter__(self):
        states.check_writable(self.env.root)
        os.makedirs(self.states_dir, exist_ok=True)
        import _anymatix_site

        self._lock_file = open(os.path.join(self.env.state_dir, "lock"), "a+b")
        if not _anymatix_site.lock(self._lock_file, wait=False):
            self.say("Waiting for another change of this environment's packages to finish...")
            _anymatix_site.lock(self._lock_file, wait=True)
        self.history = History(self.env.state_dir, self._environment_id())
        self._settle()
        return self

    def __exit__(self, *exc):
        self._lock_file.close()

    def _environment_id(self):
        """A random name for this environment, kept inside python/ (so it moves with it, and a
        .packages folder from another unpack is told apart)."""
        path = os.path.join(self.env.prefix, "anymatix-environment-id")
        try:
            with open(path, encoding="ascii") as f:
                return f.read().strip()
        except FileNotFoundError:
            pass
        name = secrets.token_hex(8)
        with open(path, "w", encoding="ascii") as f:
            f.write(name + "\n")
        return name

    @property
    def keep_count(self):
        keep = self.history.keep
        return DEFAULT_KEEP if keep is None else keep

    def state_path(self, state):
        return os.path.join(self.states_dir, str(state))

    def _settle(self):
        history = self.history
        listing = states.walk(self.env.prefix)
        now = self.env.installed()
        now_packages = {k: list(v) for k, v in now.items()}
        interrupted = [e for e in history.entries if e.get("status") == "running"]
        current = history.current_state()
        if not interrupted and current is not None and os.path.isdir(self.state_path(current)):
            if states.same_tree(listing, states.walk(self.state_path(current))):
                self.base, self.base_listing = current, listing
                self._tidy()
                return
        kept = self._keep(listing, now_packages)
        if interrupted:
            for entry in interrupted:
                entry["status"] = "interrupted"
                entry["after"] = kept
                entry["changed"] = True
                before = self._packages_of(entry.get("before"))
                entry["changes"] = package_changes(before, now_packages) if before else {}
        elif not history.entries:
            shipped = {k: [now.get(k, (k,))[0], v] for k, v in self.env.shipped().items()}
            history.add(
                kind="found",
                status="done",
                asked=[],
                before=None,
                after=kept,
                changed=False,
                changes=package_changes(shipped, now_packages),
            )
        elif kept is not None:
            previous = self._packages_of(current)
            changes = package_changes(previous, now_packages) if previous is not None else {}
            files = self._files_changed(current, listing)
            history.add(
                kind="outside",
                status="done",
                asked=[],
                before=current,
                after=kept,
                changed=bool(changes or files),
                changes=changes,
                files=files[:20],
            )
        self.base, self.base_listing = kept, listing
        self._tidy()
        history.save()

    def _files_changed(self, state, listing):
        """Files (bytecode aside) that differ from a kept state."""
        if state is None or not os.path.isdir(self.state_path(state)):
            return []
        kept = states.walk(self.state_path(state))
        return sorted(
            rel
            for rel in set(kept) | set(listing)
            if "__pycache__" not in rel and kept.get(rel, (None,))[:2] != listing.get(rel, (None,))[:2]
        )

    def _packages_of(self, state):
        if state is None or state not in self.history.states:
            return None
        return self.history.states[state]["packages"]

    def _keep(self, listing, packages):
        """Keeps the environment's state; returns its id (None when no states are kept)."""
        if self.keep_count == 0:
            return None
        state = self.history.new_state_id()
        started = time.monotonic()
        try:
            states.keep(self.env.prefix, self.state_path(state), listing)
        except states.Copying:
            size = sum(kind[2] for kind in listing.values() if kind[0] == "f")
            self.say(
                "This folder's filesystem has no hard links (exFAT or FAT32?): keeping the state "
                "for undo copies the whole environment (%.1f GB) each time. `%s keep 0` stops "
                "keeping states (then there is no undo)." % (size / 1e9, self.env.script())
            )
            states.keep(self.env.prefix, self.state_path(state), listing, allow_copy=True)
        self.history.states[state] = {"packages": packages, "kept": time.time()}
        self.say(
            "Kept the environment's state for undo (%d files, %.1f s)."
            % (len(listing), time.monotonic() - started)
        )
        return state

    def _tidy(self):
        """Removes the states no longer needed (and any left half-written by a killed run)."""
        needed = self.history.referenced_states(self.keep_count) | {self.base}
        for name in os.listdir(self.states_dir):
            path = os.path.join(self.states_dir, name)
            if name.isdigit() and int(name) in needed:
                continue
            if name.isdigit():
                self.history.states.pop(int(name), None)
                states.remove(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
        for state in list(self.history.states):
            if state not in needed:
                del self.history.states[state]

    # -- changes ------------------------------------------------------------------------------

    def change(self, kind, pip_args, asked, unprotect, echo):
        """Runs pip to install or uninstall; returns (exit status, explanation of a refusal)."""
        protected = self.env.protected_names()
        unknown = [n for n in unprotect if canonical(n) not in protected]
        if unknown:
            raise PackagesError(
                "--unprotect %s: not a protected package (the protected ones: %s)"
                % (", ".join(unknown), ", ".join(sorted(protected.values())) or "none")
            )
        entry = self.history.add(
            kind=kind,
            status="running",
            asked=list(asked),
            unprotected=sorted(unprotect),
            before=self.base,
            pid=os.getpid(),
        )
        self.history.save()
        constraints = constraints_without(self.env, unprotect, self.env.state_dir)
        interrupted = False
        try:
            status, output = run_pip(self.env, pip_args, constraints, echo)
        except KeyboardInterrupt:
            status, output, interrupted = 130, "", True
        finally:
            if constraints != self.env.protected_file:
                os.unlink(constraints)
        installed = self.env.installed()
        kept = {k: (n, v) for k, (n, v) in installed.items() if k in protected}
        refused = refusals(output, {k: (protected[k], v[1]) for k, v in kept.items()})
        self._finish(entry, "interrupted" if interrupted else "done" if status == 0 else (
            "refused" if refused else "failed"))
        explanation = ""
        if refused and status != 0:
            explanation = explain_refusal(refused, asked[1:], self.env.script())
        return status, explanation

    def _finish(self, entry, status):
        listing = states.walk(self.env.prefix)
        now = {k: list(v) for k, v in self.env.installed().items()}
        changed = self.base_listing is None or not states.same_tree(listing, self.base_listing)
        entry["status"] = status
        entry.pop("pid", None)
        entry["changed"] = changed
        before = self._packages_of(self.base)
        entry["changes"] = package_changes(before, now) if before is not None else {}
        if changed:
            entry["after"] = self._keep(listing, now)
            self.base, self.base_listing = entry["after"], listing
        else:
            entry["after"] = self.base
        self._tidy()
        self.history.save()

    def undo(self, steps):
        todo = self.history.undoable()
        if not todo:
            raise PackagesError("there is nothing to undo (see `%s history`)" % self.env.script())
        if steps < 1 or steps > len(todo):
            raise PackagesError(
                "cannot undo %d changes: %d can be undone (see `%s history`)"
                % (steps, len(todo), self.env.script())
            )
        chosen = todo[:steps]
        oldest = chosen[-1]
        target = oldest.get("before")
        if target is None or not os.path.isdir(self.state_path(target)):
            raise PackagesError(
                "the state before change #%d (%s) is no longer kept, so it cannot be undone "
                "(this environment keeps the states of the last %d changes: `%s keep N`)"
                % (oldest["id"], " ".join(oldest.get("asked", [])) or oldest["kind"],
                   self.keep_count, self.env.script())
            )
        entry = self.history.add(
            kind="undo",
            status="running",
            asked=["undo", str(steps)],
            undoes=[c["id"] for c in chosen],
            before=self.base,
            pid=os.getpid(),
        )
        self.history.save()
        started = time.monotonic()
        try:
            states.restore(self.state_path(target), self.env.prefix)
        except OSError as e:
            self._roll_back(entry, e)
        elapsed = time.monotonic() - started
        now = {k: list(v) for k, v in self.env.installed().items()}
        entry["status"] = "done"
        entry.pop("pid", None)
        entry["changed"] = True
        entry["changes"] = package_changes(self._packages_of(self.base) or {}, now)
        entry["after"] = target
        for undone in chosen:
            undone["undone_by"] = entry["id"]
        self.base, self.base_listing = target, states.walk(self.env.prefix)
        self._tidy()
        self.history.save()
        return entry, elapsed

    def _roll_back(self, entry, error):
        """A file could not be replaced (on Windows, one a running ComfyUI has open): back to
        where the undo started, so the environment is whole, and say what to do."""
        what = "%s: %s" % (getattr(error, "filename", None) or "a file", error.strerror or error)
        try:
            if self.base is not None:
                states.restore(self.state_path(self.base), self.env.prefix)
        except OSError:
            # Left "running": the next run finds it interrupted, and `undo` goes back.
            raise PackagesError(
                "undo stopped half way (%s), and going back failed too. Close every program that "
                "uses this environment (ComfyUI), then run `%s undo` to return to where it was "
                "before this undo" % (what, self.env.script())
            ) from None
        entry["status"] = "failed"
        entry.pop("pid", None)
        entry["changed"] = False
        entry["after"] = self.base
        self.history.save()
        raise PackagesError(
            "undo could not replace %s; nothing was changed. Close every program that uses this "
            "environment (ComfyUI, a console running its python) and run it again" % what
        ) from None

    def set_keep(self, count):
        self.history.keep = count
        self._tidy()
        self.history.save()
