#!/bin/sh
# Updates this portable anymatix to a new release, downloading only what changed, and goes back
# (`./update.sh --help` says how). A switch between releases is finished by .update/switch.sh,
# outside the folders it renames; one that was stopped is taken back first.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
if [ -e "$here/.update/switch.journal" ]; then
    sh "$here/.update/switch.sh" recover "$here" || exit 2
fi
"$here/python/bin/python3" -s "$here/tools/update.py" "$@"
status=$?
if [ "$status" -eq 100 ]; then
    exec sh "$here/.update/switch.sh" finish "$here"
fi
exit "$status"
