"""Package management that cannot break this portable anymatix environment.

- environment: where things are, what the build shipped (tools/environment.json, manifest.json)
  and what is installed now;
- states: a state of the environment kept as hard links, restored exactly and offline;
- history: every change, written atomically;
- changes: install, uninstall and undo as transactions (a state kept before, the history after);
- pip_run: pip run with the protected core, its refusals explained;
- check: pip check and the build's smoke imports and checks;
- cli: the command line.

Nothing here needs more than the standard library and pip.
"""
