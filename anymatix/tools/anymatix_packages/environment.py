"""Where the parts of this environment are, what the build shipped, and what is installed now."""

import json
import os
import re
import sys
import sysconfig


class PackagesError(Exception):
    """A problem the person at the keyboard can act on: printed as it is, exit status 2."""


class NotWritable(PackagesError):
    """The unpack folder cannot be written: reading still works."""


def canonical(name):
    """A package name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def tool_root():
    """anymatix/, the folder the zip unpacked: tools/anymatix_packages/ is two levels below."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(here))


class Environment:
    def __init__(self, root=None):
        self.root = root or tool_root()
        self.prefix = os.path.join(self.root, "python")
        self.tools = os.path.join(self.root, "tools")
        self.protected_file = os.path.join(self.tools, "protected.txt")
        self.state_dir = os.path.join(self.root, ".packages")
        self.setup = self._read_json(
            os.path.join(self.tools, "environment.json"), "what the build shipped"
        )
        same = os.path.normcase(os.path.realpath(sys.prefix)) == os.path.normcase(
            os.path.realpath(self.prefix)
        )
        if not same:
            raise PackagesError(
                "this is %s's python, not the environment's (%s): run packages.sh or "
                "packages.bat from %s" % (sys.prefix, self.prefix, self.root)
            )
        self.python = sys.executable
        paths = sysconfig.get_paths()
        self.purelib = paths["purelib"]
        self.site_dirs = sorted({paths["purelib"], paths["platlib"]})

    @staticmethod
    def _read_json(path, what):
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise PackagesError(
                "%s is missing (%s): was the zip unpacked whole?" % (path, what)
            ) from None
        except (OSError, ValueError) as e:
            raise PackagesError("cannot read %s (%s): %s" % (path, what, e)) from None

    @property
    def platform(self):
        return self.setup.get("platform", "")

    def script(self):
        """How the person runs this tool on this platform."""
        return "packages.bat" if os.name == "nt" else "packages.sh"

    def protected(self):
        """[(name, version, why)] as the build wrote them."""
        return [(p["name"], p["version"], p.get("why", "")) for p in self.setup.get("protected", [])]

    def protected_names(self):
        return {canonical(name): name for name, _, _ in self.protected()}

    def shipped(self):
        """{canonical name: version} of the packages the zip was made with (manifest.json)."""
        manifest = self._read_json(os.path.join(self.root, "manifest.json"), "the zip's manifest")
        return {canonical(p["name"]): p["version"] for p in manifest.get("packages", [])}

    def relative(self, path):
        """A path under python/ as the states name it (forward slashes)."""
        return os.path.relpath(path, self.prefix).replace(os.sep, "/")

    def file_owners(self):
        """{file relative to python/: [(name, version) of each package whose RECORD names it]}."""
        from importlib.metadata import distributions

        owners = {}
        for dist in distributions(path=self.site_dirs):
            owner = (dist.metadata["Name"] or "", dist.version)
            for file in dist.files or []:
                rel = self.relative(os.path.normpath(file.locate()))
                owners.setdefault(rel, []).append(owner)
        return owners

    def installed(self):
        """{canonical name: (name, version)} of what is installed now, read from the metadata."""
        from importlib.metadata import distributions

        found = {}
        for dist in distributions(path=self.site_dirs):
            name = dist.metadata["Name"]
            if name and canonical(name) not in found:
                found[canonical(name)] = (name, dist.version)
        return found
