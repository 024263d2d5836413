"""Run by a release's own python: for each requirements.txt given, the requirements that python's
installed packages do not meet (JSON on stdout). Lines pip would read otherwise (options, URLs,
files) are skipped: only `name[extras] specifier ; marker` lines are judged."""

import json
import sys
from importlib.metadata import PackageNotFoundError, version

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement


def unmet(path):
    missing = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            text = line.split(" #", 1)[0].strip()
            if not text or text.startswith(("#", "-")) or "://" in text or text.startswith("."):
                continue
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            try:
                have = version(requirement.name)
            except PackageNotFoundError:
                missing.append("%s (not installed)" % text)
                continue
            if not requirement.specifier.contains(have, prereleases=True):
                missing.append("%s (has %s)" % (text, have))
    return missing


if __name__ == "__main__":
    print(json.dumps([(path, unmet(path)) for path in sys.argv[1:]]))
