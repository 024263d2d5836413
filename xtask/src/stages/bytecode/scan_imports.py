"""Build-only, never in a zip. Lists the module files that the smoke imports, checks and
commands reach through their import statements, read without running them (what an
`if TYPE_CHECKING:` block imports is left out): where the target's python cannot run (a macOS
zip built on Linux), a CPython of this machine of the same version stands in for it (sys.prefix
is the target's), and this takes the place of the recording run.
It finds more than a run imports (every import statement, taken or not) and less (what is
imported by name at run time, such as ComfyUI's nodes and custom nodes): the first costs some
bytecode, the second a compile at the first start.

argv[1]: JSON {"imports": [module...], "codes": [python source...], "scripts": [path...]}.
Prints the module files found, one per line.
"""
import ast
import importlib.machinery
import io
import json
import modulefinder
import os
import sys
import sysconfig
import threading

spec = json.loads(sys.argv[1])
prefix = sys.prefix
# The target's own standard library and site-packages, never this machine's.
stdlib = sysconfig.get_paths()["stdlib"]
path = [stdlib, os.path.join(stdlib, "lib-dynload")]
path += [p for p in sys.path if p.startswith(prefix + os.sep) and p not in path]

# What every start imports: the `import` lines of the site-packages' .pth files.
imports = list(spec["imports"])
for folder in path:
    if folder.endswith("site-packages") and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".pth"):
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as pth:
                    for line in pth:
                        if line.startswith(("import ", "import\t")):
                            imports += [m.strip() for m in line[7:].split(";")[0].split(",")]



SOURCE = getattr(modulefinder, "_PY_SOURCE", 1)
NAMESPACE = "namespace package"


class _NoTypeChecking(ast.NodeTransformer):
    """`if TYPE_CHECKING:` bodies emptied: never run, and transformers' name every model."""

    def visit_If(self, node):
        test = node.test
        name = getattr(test, "id", None) or getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            node.body = [ast.Pass()]
        self.generic_visit(node)
        return node


class _Parsed:
    """A source read as modulefinder reads it, handing compile() the trimmed tree instead."""

    def __init__(self, text, pathname):
        tree = _NoTypeChecking().visit(ast.parse(text, pathname))
        self.tree = ast.fix_missing_locations(tree)

    def read(self):
        return self.tree


class Finder(modulefinder.ModuleFinder):
    """modulefinder, for what it cannot read taken as a module not found (nothing compiled)."""

    def find_module(self, name, path, parent=None):
        try:
            return super().find_module(name, path, parent)
        except AttributeError:
            # A namespace package (no __init__.py, no loader), such as ComfyUI's `comfy`:
            # modulefinder cannot follow one by itself.
            spec = importlib.machinery.PathFinder.find_spec(name, path or self.path)
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("cannot read package " + name)
            return None, list(spec.submodule_search_locations), ("", "", NAMESPACE)

    def load_module(self, fqname, fp, pathname, file_info):
        if file_info[2] == NAMESPACE:
            module = self.add_module(fqname)
            module.__path__ = pathname
            return module
        try:
            if file_info[2] == SOURCE:
                fp = _Parsed(fp.read(), pathname)
            return super().load_module(fqname, fp, pathname, file_info)
        except (SyntaxError, ValueError) as e:
            # Not Python this version compiles (a template, another version's syntax).
            raise ImportError("%s: %s" % (pathname, e))


def scan():
    finder = Finder(path=list(path))
    for name in imports:
        try:
            finder.import_hook(name)
        except ImportError as e:
            print("cannot find %s: %s" % (name, e), file=sys.stderr)
    for number, code in enumerate(spec["codes"]):
        finder.load_module("__check%d__" % number, io.StringIO(code), "<check>", ("", "r", SOURCE))
    for script in spec["scripts"]:
        # As python runs a script: its folder first on the path.
        finder.path = [os.path.dirname(os.path.abspath(script))] + list(path)
        finder.run_script(script)
    for module in finder.modules.values():
        file = getattr(module, "__file__", None)
        if file and file.endswith(".py"):
            found.add(os.path.abspath(file))


# modulefinder recurses once per import in a chain: torch's and transformers' chains are deep.
found = set()
sys.setrecursionlimit(100000)
threading.stack_size(1 << 29)
worker = threading.Thread(target=scan)
worker.start()
worker.join()
if not found:
    sys.exit("the scan found no module (its error is above)")
sys.stdout.write("".join(f + "\n" for f in sorted(found)))
