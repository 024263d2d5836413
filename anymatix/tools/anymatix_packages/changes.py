"""Install, uninstall and undo as transactions on the environment.

A session holds the lock (one change at a time, whoever asks: another packages.sh, the page, a
pip started by ComfyUI-Manager), finishes a restore a killed run left half done, finds the state
the environment is in (the kept state when nothing changed since; otherwise a new one, and the
history says what changed outside this tool), compares the protected packages' files with the
zip's, records the change as running before it starts, and as done, failed, refused, rolled back
or interrupted after. A change killed half way stays "running" in the history; the next session
marks it interrupted and keeps the state it left, so `undo` takes the environment back to the
state before it. A change through this tool that touched a protected package's files is rolled
back at once.

Every step that could be cut short by a kill is ordered so that the next run needs no hand:
a state's id is saved before the state is made (never given twice), a state is built under a
temporary name and renamed whole, a restore records where it is going before it starts.
"""

import errno
import os
import time

from . import protection, states
from .environment import PackagesError, canonical
from .history import History, package_changes
from .pip_run import explain_refusal, refusals, run_pip


class Ownership:
    """Which files under site-packages some installed package's RECORD names: restore moves the
    others (a package's downloads) aside instead of deleting them."""

    def __init__(self, env):
        self.owned = env.file_owners()
        self.sites = [env.relative(d) + "/" for d in env.site_dirs]

    def unowned(self, rel):
        return rel not in self.owned and any(rel.startswith(site) for site in self.sites)


class Session:
    def __init__(self, env, say):
        self.env = env
        self.say = say
        self.states_dir = os.path.join(env.state_dir, "states")
        self._held = None
        self.base = None
        self.base_listing = None
        self.protected_before = []

    # -- opening: lock, history, the state the environment is in ---------------------------

    def __enter__(self):
        states.check_writable(self.env.root)
        os.makedirs(self.states_dir, exist_ok=True)
        import _anymatix_guard

        self._held = _anymatix_guard.hold_lock(self.say)
        try:
            self.history = History(self.env.state_dir, self._environment_id())
            self._finish_restores()
            self._settle()
        except BaseException:
            self._held.release()
            raise
        return self

    def __exit__(self, *exc):
        self._held.release()

    def _environment_id(self):
        """A random name for this environment, kept inside python/ (so it moves with it, and a
        .packages folder from another unpack is told apart)."""
        import secrets

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

    def state_path(self, state):
        return os.path.join(self.states_dir, str(state))

    def _by_inode(self, state):
        """Whether a kept state is compared by inode: its files are links (on Windows the
        walk gives no inodes)."""
        return states.POSIX and bool(self.history.states.get(state, {}).get("linked"))

    def _recorded(self, state):
        """(listing, compare by inode) of a kept state, or (None, False)."""
        if state is None or not os.path.isdir(self.state_path(state)):
            return None, False
        listing, _ = states.load_listing(self.state_path(state))
        return listing, self._by_inode(state)

    def _verify(self):
        try:
            return protection.verify(self.env, self.say)
        except (OSError, ValueError) as e:
            raise PackagesError(
                "%s cannot be read (%s): the protected packages cannot be checked. Unpack "
                "tools/ from the zip again" % (os.path.join(self.env.tools, "protected-files.json"), e)
            ) from None

    def _settle(self):
        history = self.history
        listing = states.walk(self.env.prefix)
        now = self.env.installed()
        now_packages = {k: list(v) for k, v in now.items()}
        protected_now = self._verify()
        interrupted = [e for e in history.entries if e.get("status") == "running"]
        current = history.current_state()
        recorded, by_inode = self._recorded(current)
        differences = None
        if recorded is not None:
            differences = states.Differences(recorded, listing, by_inode)
            if not interrupted and not differences:
                self.base, self.base_listing, self.protected_before = current, listing, protected_now
                self._tidy()
                history.save()
                return
        kept = self._keep(listing, now_packages, protected_now)
        if interrupted:
            for entry in interrupted:
                entry["status"] = "interrupted"
                entry.pop("pid", None)
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
                protected=[d.as_data() for d in protected_now],
            )
        elif kept is not None:
            previous = self._packages_of(current)
            changes = package_changes(previous, now_packages) if previous is not None else {}
            files = differences.files() if differences else []
            history.add(
                kind="outside",
                status="done",
                asked=[],
                before=current,
                after=kept,
                changed=bool(changes or files),
                changes=changes,
                files=files[:20],
                in_place=(differences.in_place if differences else [])[:20],
                protected=[d.as_data() for d in self._new_differences(current, protected_now)],
            )
        self.base, self.base_listing, self.protected_before = kept, listing, protected_now
        self._tidy()
        history.save()

    def _new_differences(self, state, protected_now):
        """The protected packages whose files differ now where they did not in `state`."""
        known = self.history.states.get(state, {}).get("protected", {}) if state is not None else {}
        return [d for d in protected_now if set(d.files()) - set(known.get(d.name, []))]

    def _packages_of(self, state):
        if state is None or state not in self.history.states:
            return None
        return self.history.states[state]["packages"]

    def _keep(self, listing, packages, protected_now):
        """Keeps the environment's state; returns its id (None when no states are kept)."""
        if self.history.keep_count == 0:
            return None
        state = self.history.new_state_id()
        started = time.monotonic()
        size = sum(kind[2] for kind in listing.values() if kind[0] == "f")
        try:
            try:
                linked = states.keep(self.env.prefix, self.state_path(state), listing)
            except states.Copying:
                self.say(
                    "This folder's filesystem has no hard links (exFAT or FAT32?): keeping the "
                    "state for undo copies the whole environment (%.1f GB) each time it changed. "
                    "`%s keep 0` stops keeping states (then there is no undo)."
                    % (size / 1e9, self.env.script())
                )
                linked = states.keep(
                    self.env.prefix, self.state_path(state), listing, allow_copy=True
                )
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            states.remove_leftover(self.state_path(state) + ".partial")
            raise PackagesError(
                "no space left on this drive to keep the environment's state for undo (a copy "
                "takes up to %.1f GB where the drive has no hard links): free some space, or "
                "`%s keep 0` to stop keeping states (then there is no undo)"
                % (size / 1e9, self.env.script())
            ) from None
        self.history.states[state] = {
            "packages": packages,
            "kept": time.time(),
            "linked": linked,
            "protected": {d.name: d.files() for d in protected_now},
        }
        self.say(
            "Kept the environment's state for undo (%d files, %.1f s)."
            % (len(listing), time.monotonic() - started)
        )
        return state

    def _tidy(self):
        """Removes the states no longer needed, and whatever a killed run left half made."""
        needed = self.history.referenced_states(self.history.keep_count) | {self.base}
        for name in os.listdir(self.states_dir):
            path = os.path.join(self.states_dir, name)
            stem = name[: -len(".json")] if name.endswith(".json") else name
            if stem.isdigit() and int(stem) in needed:
                continue
            if name.isdigit():
                self.history.states.pop(int(name), None)
                states.remove(path)
            elif not stem.isdigit() or not os.path.isdir(os.path.join(self.states_dir, stem)):
                states.remove_leftover(path)
        for state in list(self.history.states):
            if state not in needed:
                del self.history.states[state]

    # -- putting a state back ------------------------------------------------------------

    def _restore(self, entry, target, then):
        """Makes python/ the kept state `target`, recording first where it is going, so a run
        killed half way is finished by the next (`then` is the entry's status after)."""
        entry["restoring"] = target
        entry["then"] = then
        self.history.save()
        started = time.monotonic()
        by_inode = self._by_inode(target)
        aside = os.path.join(self.env.state_dir, "set-aside", str(entry["id"]))
        moved = states.restore(
            self.state_path(target), self.env.prefix, by_inode, aside, Ownership(self.env)
        )
        if moved:
            entry["set_aside"] = {"folder": aside, "files": moved[:20], "count": len(moved)}
            self.say(
                "%d file%s no package installed (written by a package after it was installed, "
                "such as downloaded weights) %s moved to %s, not deleted."
                % (len(moved), "" if len(moved) == 1 else "s", "was" if len(moved) == 1 else "were", aside)
            )
        return time.monotonic() - started

    def _settle_restore(self, entry):
        target = entry.pop("restoring")
        status = entry.pop("then")
        entry["status"] = status
        entry.pop("pid", None)
        entry["after"] = target
        entry["changed"] = status == "done"
        if "changes" not in entry:
            now = {k: list(v) for k, v in self.env.installed().items()}
            entry["changes"] = package_changes(self._packages_of(entry.get("before")) or {}, now)
        if entry["kind"] == "undo" and status == "done":
            for undone in self.history.entries:
                if undone["id"] in entry.get("undoes", []):
                    undone["undone_by"] = entry["id"]
        self.base = target
        self.base_listing = states.walk(self.env.prefix)

    def _finish_restores(self):
        """A restore a killed run left half done is finished first: the environment is a mix
        of two states until then."""
        for entry in self.history.entries:
            if entry.get("restoring") is None:
                continue
            self.say(
                "Change #%d stopped half way through putting back an earlier state: finishing it."
                % entry["id"]
            )
            try:
                self._restore(entry, entry["restoring"], entry["then"])
            except OSError as e:
                raise PackagesError(
                    "putting back the state of change #%d stopped at %s (%s). Close every program "
                    "that uses this environment (ComfyUI), then run `%s list` to finish it"
                    % (entry["id"], getattr(e, "filename", None) or "a file", e.strerror or e,
                       self.env.script())
                ) from None
            entry["resumed"] = True
            self._settle_restore(entry)
            self.history.save()

    # -- changes ------------------------------------------------------------------------------

    def change(self, kind, pip_args, asked, unprotect, echo):
        """Runs pip to install or uninstall; returns (exit status, explanation of a refusal or
        a roll-back, data of a refusal or roll-back for the page)."""
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
        interrupted = False
        try:
            status, output = run_pip(self.env, pip_args, echo, unprotect)
        except KeyboardInterrupt:
            status, output, interrupted = 130, "", True
        if not interrupted:
            touched = self._touched(unprotect)
            if touched:
                return self._roll_back_change(entry, touched, asked, echo)
        installed = self.env.installed()
        kept = {k: (n, v) for k, (n, v) in installed.items() if k in protected}
        refused = refusals(output, {k: (protected[k], v[1]) for k, v in kept.items()})
        self._finish(entry, "interrupted" if interrupted else "done" if status == 0 else (
            "refused" if refused else "failed"))
        if refused and status != 0:
            return status, explain_refusal(refused, asked[1:], self.env.script()), {
                "kind": "refused",
                "packages": [{"name": n, "kept": v, "asked_by": a} for n, v, a in refused],
            }
        return status, "", None

    def _touched(self, unprotect):
        """The protected packages (other than those lifted for this change) whose files or
        version this change altered: {name: (what, [Difference or None])}."""
        lifted = {canonical(n) for n in unprotect}
        before = {d.name: set(d.files()) for d in self.protected_before}
        touched = {}
        for d in self._verify():
            if canonical(d.name) not in lifted and set(d.files()) - before.get(d.name, set()):
                touched[d.name] = d
        versions = self._packages_of(self.base) or {}
        now = self.env.installed()
        for name, version, _ in self.env.protected():
            key = canonical(name)
            if key in lifted or name in touched:
                continue
            was = versions.get(key, [None, None])[1]
            if was is not None and now.get(key, (None, None))[1] != was:
                touched[name] = None
        return touched

    def _roll_back_change(self, entry, touched, asked, echo):
        files = [f for d in touched.values() if d for f in d.files()]
        owners = protection.owners(self.env, files, {canonical(n) for n in touched})
        lines = [
            "",
            "Rolled back: this change altered packages that the environment's ComfyUI depends "
            "on, which stay as the zip has them.",
        ]
        data = []
        for name, difference in sorted(touched.items()):
            if difference is None:
                lines.append("  %s: its version changed." % name)
                data.append({"name": name, "files": [], "by": []})
                continue
            by = sorted({owners[f] for f in difference.files() if f in owners})
            lines.append("  %s %s: %s%s" % (
                name, difference.version, difference.describe(),
                " (also installed by %s)" % ", ".join(by) if by else ""))
            data.append({"name": name, "files": difference.files(), "by": by})
        names = " ".join("--unprotect %s" % n for n in sorted(touched))
        if self.base is None:
            lines[1] = ("This change altered packages that the environment's ComfyUI depends on, "
                        "and it cannot be rolled back: no states are kept (`%s keep 5` keeps "
                        "them). `%s check` names what differs." % (self.env.script(), self.env.script()))
            self._finish(entry, "done")
            return 1, "\n".join(lines), {"kind": "not rolled back", "packages": data}
        try:
            self._restore(entry, self.base, "rolled back")
        except OSError as e:
            raise PackagesError(
                "%s\nRolling it back stopped at %s (%s). Close every program that uses this "
                "environment (ComfyUI), then run `%s list` to finish rolling it back"
                % ("\n".join(lines), getattr(e, "filename", None) or "a file", e.strerror or e,
                   self.env.script())
            ) from None
        entry["changes"] = {}
        self._settle_restore(entry)
        entry["protected"] = data
        self._tidy()
        self.history.save()
        lines.append(
            "Nothing was changed. To change it deliberately (`%s undo` brings it back): %s "
            "install %s %s" % (self.env.script(), self.env.script(), names, " ".join(asked[1:]))
        )
        return 1, "\n".join(lines), {"kind": "rolled back", "packages": data}

    def _finish(self, entry, status):
        listing = states.walk(self.env.prefix)
        now = {k: list(v) for k, v in self.env.installed().items()}
        recorded, by_inode = self._recorded(self.base)
        changed = recorded is None or bool(states.Differences(recorded, listing, by_inode))
        after = self.base
        if changed:
            # Kept while the entry still says running: killed now, the next run finds it
            # interrupted and keeps the state again.
            protected_now = self._verify()
            after = self._keep(listing, now, protected_now)
            self.protected_before = protected_now
        before = self._packages_of(self.base)
        entry["status"] = status
        entry.pop("pid", None)
        entry["changed"] = changed
        entry["changes"] = package_changes(before, now) if before is not None else {}
        entry["after"] = after
        self.base, self.base_listing = after, listing
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
                   self.history.keep_count, self.env.script())
            )
        before_packages = self._packages_of(self.base) or {}
        entry = self.history.add(
            kind="undo",
            status="running",
            asked=["undo", str(steps)],
            undoes=[c["id"] for c in chosen],
            before=self.base,
            pid=os.getpid(),
        )
        try:
            elapsed = self._restore(entry, target, "done")
        except OSError as e:
            self._roll_back_undo(entry, e)
        now = {k: list(v) for k, v in self.env.installed().items()}
        entry["changes"] = package_changes(before_packages, now)
        self._settle_restore(entry)
        self.protected_before = self._verify()
        self._tidy()
        self.history.save()
        return entry, elapsed

    def _roll_back_undo(self, entry, error):
        """A file could not be replaced (on Windows, one a running ComfyUI has open): back to
        where the undo started, so the environment is whole, and say what to do."""
        what = "%s: %s" % (getattr(error, "filename", None) or "a file", error.strerror or error)
        try:
            if entry["before"] is not None:
                self._restore(entry, entry["before"], "failed")
        except OSError:
            # Left restoring: the next run finishes going back to where this undo started.
            raise PackagesError(
                "undo stopped half way (%s), and going back failed too. Close every program that "
                "uses this environment (ComfyUI), then run `%s list`: it finishes going back to "
                "where it was before this undo" % (what, self.env.script())
            ) from None
        entry.pop("restoring", None)
        entry.pop("then", None)
        entry["status"] = "failed"
        entry.pop("pid", None)
        entry["changed"] = False
        entry["after"] = entry["before"]
        self.history.save()
        raise PackagesError(
            "undo could not replace %s; nothing was changed. Close every program that uses this "
            "environment (ComfyUI, a console running its python) and run it again" % what
        ) from None

    def set_keep(self, count):
        self.history.keep = count
        self._tidy()
        self.history.save()
