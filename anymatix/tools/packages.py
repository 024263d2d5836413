"""packages.sh and packages.bat run this with the environment's own python: install, uninstall,
list, history, undo and check the packages of this portable anymatix environment. See
`packages.sh --help`; the code is in anymatix_packages/, beside this file."""

import sys

from anymatix_packages.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
