"""Errors the person at the keyboard can act on."""


class UpdateError(Exception):
    """Printed as it is, exit status 2: names the file, address or folder, and what to do."""


class Refused(UpdateError):
    """The update would break this anymatix (another platform, a process still running from
    it): exit status 3, nothing changed."""
