"""Build-only, never in a zip. Lists the module files that the smoke imports, checks and
commands reach through their import statements, read without running them: where the target's
python cannot run (a macOS zip built on Linux), a CPython of this machine of the same version
stands in for it (sys.prefix is the target's), and this takes the place of the recording run.
It finds more than a run imports (every import statement, taken or not) and less (what is
imported by name at run time, such as ComfyUI's nodes and custom nodes): the first costs some
bytecode, the second a compile at the first start.

argv[1]: JSON {"imports": [module...], "codes": [python source...], "scripts": [path...]}.
Prints the module files found, one per line.
"""
import io
import json
import modulefinder
import os
import sys
import sysconfig

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

finder = modulefinder.ModuleFinder(path=list(path))
source = getattr(modulefinder, "_PY_SOURCE", 1)
for name in imports:
    try:
        finder.import_hook(name)
    except ImportError as e:
        print("cannot find %s: %s" % (name, e), file=sys.stderr)
for number, code in enumerate(spec["codes"]):
    finder.load_module("__check%d__" % number, io.StringIO(code), "<check>", ("", "r", source))
for script in spec["scripts"]:
    # As python runs a script: its folder first on the path.
    finder.path = [os.path.dirname(os.path.abspath(script))] + list(path)
    finder.run_script(script)

found = set()
for module in finder.modules.values():
    file = getattr(module, "__file__", None)
    if file and file.endswith(".py"):
        found.add(os.path.abspath(file))
sys.stdout.write("".join(f + "\n" for f in sorted(found)))
