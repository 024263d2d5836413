"""Updates an unpacked anymatix to a new release in place: only what changed is downloaded, the
new release is built beside this one, the user's models, nodes, outputs, settings and packages
are carried over, and the switch is a rename that `update --rollback` takes back. Standard
library only (and pip's vendored packaging and truststore when present)."""
