"""The command line's user error, in a module of its own: commands raise it without importing ``i2lmesh.cli``
(which imports every command module), and the CLI prints it as one line (exit code 2)."""
from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


__all__ = ["UserError"]
