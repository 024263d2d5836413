#!/usr/bin/env python3
"""conda-standalone's stand-in for the cross route's solve (test-only, never in a zip).

It answers `install --dry-run --json --yes --prefix P --override-channels --channel URL SPEC...`
as conda does (conda/cli/common.py, stdout_json_success): FETCH holds whole package records,
LINK and UNLINK each package's dist_fields_dump(); a failure is {"error": ...} and exit 1. It
reads the channel's repodata for $CONDA_SUBDIR and noarch over HTTP and the prefix's
conda-meta records, and knows the target's virtual packages only from CONDA_OVERRIDE_* (as conda
on another OS than the subdir's). Its solver is a toy: each spec's newest match, and the newest
of each dependency not installed; a Python of another X.Y relinks every noarch: python package,
as conda's diff_for_unlink_link_precs does.
"""

import json
import os
import sys
import urllib.request


def fail(name, message):
    print(json.dumps({"error": f"{name}: {message}", "exception_name": name}))
    sys.exit(1)


def version_key(version):
    return tuple(int(p) if p.isdigit() else -1 for p in version.replace("_", ".").split("."))


def parse_args(argv):
    if not argv or argv[0] != "install":
        fail("ArgumentError", "this stand-in answers only `install`")
    args = {"flags": set(), "specs": []}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in ("--prefix", "-p", "--channel", "-c"):
            args[arg.lstrip("-")[0]] = next(rest)
        elif arg.startswith("-"):
            args["flags"].add(arg)
        else:
            args["specs"].append(arg)
    if not {"--dry-run", "--json", "--override-channels"} <= args["flags"]:
        fail("ArgumentError", "this stand-in answers only --dry-run --json --override-channels")
    return args


def repodata(channel, subdir, offline):
    cache = os.path.join(os.environ["CONDA_PKGS_DIRS"], "cache", f"{subdir}.json")
    if offline:
        if not os.path.isfile(cache):
            fail("UnavailableInvalidChannel", f"{channel}/{subdir} is not cached (offline)")
        with open(cache, "rb") as f:
            text = f.read()
    else:
        with urllib.request.urlopen(f"{channel}/{subdir}/repodata.json") as response:
            text = response.read()
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "wb") as f:
            f.write(text)
    records = []
    for fn, record in json.loads(text).get("packages.conda", {}).items():
        records.append(dict(record, fn=fn, url=f"{channel}/{subdir}/{fn}", channel=channel))
    return records


def matches(record, spec):
    name, _, version = spec.partition("=")
    if record["name"] != name:
        return False
    if version.startswith("="):
        return record["version"] == version[1:]
    return not version or record["version"] == version or record["version"].startswith(version + ".")


def newest(records, spec):
    found = [r for r in records if matches(r, spec)]
    if not found:
        fail("PackagesNotFoundError", f"The following packages are not available from current channels: {spec}")
    return max(found, key=lambda r: (version_key(r["version"]), r.get("build_number", 0)))


def virtual_ok(dep, subdir):
    name, _, constraint = dep.partition(" ")
    override = {"__osx": "CONDA_OVERRIDE_OSX", "__glibc": "CONDA_OVERRIDE_GLIBC"}.get(name)
    if override:
        have = os.environ.get(override) if subdir.startswith(("osx-" if name == "__osx" else "linux-")) else None
        if not have:
            return False
        if constraint.startswith(">="):
            return version_key(have) >= version_key(constraint[2:])
        return True
    return name == ("__win" if subdir.startswith("win-") else "__unix")


def dist(record):
    return {
        "base_url": record.get("channel", ""),
        "build_number": record.get("build_number", 0),
        "build_string": record["build"],
        "channel": record.get("channel", "").rsplit("/", 1)[-1],
        "dist_name": f"{record['name']}-{record['version']}-{record['build']}",
        "name": record["name"],
        "platform": record.get("subdir"),
        "version": record["version"],
    }


def main():
    args = parse_args(sys.argv[1:])
    prefix, channel, subdir = args["p"], args["c"], os.environ.get("CONDA_SUBDIR")
    if not subdir:
        fail("ArgumentError", "CONDA_SUBDIR is not set: the stand-in solves only for a named subdir")
    meta = os.path.join(prefix, "conda-meta")
    if not os.path.isfile(os.path.join(meta, "history")):
        fail("DirectoryNotACondaEnvironmentError", f"{prefix} is not a conda environment")
    installed = {}
    for name in sorted(os.listdir(meta)):
        if name.endswith(".json"):
            with open(os.path.join(meta, name)) as f:
                record = json.load(f)
            installed[record["name"]] = record
    offline = "--offline" in args["flags"]
    records = repodata(channel, subdir, offline) + repodata(channel, "noarch", offline)

    link, unlink = {}, {}
    wanted = list(args["specs"])
    while wanted:
        spec = wanted.pop(0)
        name = spec.partition("=")[0]
        if name in link or (name in installed and name not in unlink and (spec == name or matches(installed[name], spec))):
            continue
        record = newest(records, spec)
        for dep in record.get("depends", []):
            if dep.startswith("__"):
                if not virtual_ok(dep, subdir):
                    fail("UnsatisfiableError", f"{record['fn']} needs {dep}, which this solve does not have")
            else:
                wanted.append(dep.split(" ")[0])
        link[name] = record
        if name in installed:
            unlink[name] = installed[name]
    old, new = installed.get("python"), link.get("python")
    if old and new and old["version"].split(".")[:2] != new["version"].split(".")[:2]:
        for name, record in installed.items():
            if record.get("noarch") == "python" and name not in link:
                unlink[name], link[name] = record, record
    if not link:
        print(json.dumps({"message": "All requested packages already installed.", "success": True}))
        return
    # Each package after what it depends on, as conda orders LINK.
    ordered, placed = [], set()
    while len(ordered) < len(link):
        ready = [
            (name, record)
            for name, record in sorted(link.items())
            if name not in placed
            and not ({d.split(" ")[0] for d in record.get("depends", [])} & (set(link) - placed - {name}))
        ]
        if not ready:
            fail("SolverError", f"a dependency cycle among {sorted(set(link) - placed)}")
        for name, record in ready:
            ordered.append(record)
            placed.add(name)
    actions = {
        "FETCH": ordered,
        "LINK": [dist(r) for r in ordered],
        "PREFIX": prefix,
        "UNLINK": [dist(r) for r in unlink.values()],
    }
    print(json.dumps({"actions": actions, "dry_run": True, "prefix": prefix, "success": True}, indent=2))


if __name__ == "__main__":
    main()
