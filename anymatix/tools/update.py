"""update.sh and update.bat run this with the environment's own python: update this portable
anymatix to a new release, downloading only what changed, and go back. See `update.sh --help`;
the code is in anymatix_update/, beside this file."""

import sys

from anymatix_update.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
