"""The command line's user error, in a module of its own: commands raise it without importing ``i2lmesh.cli``
(which imports every command module), and the CLI prints it as one line (exit code 2). Also :func:`print_line`:
a command's one-line messages (``skipped: ...``) on stderr, kept off a progress bar's line."""
from __future__ import annotations

import sys
from typing import TextIO


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


def print_line(message: str, file: TextIO | None = None) -> None:
    """Print one line on ``file`` (default stderr). While a tqdm progress bar may be on screen (tqdm imported), it
    goes through ``tqdm.write``, which clears the bars, prints the line and draws them again below it, so the line
    never lands on a bar's line (plain ``print`` would append it to the bar, whose line ends without a newline)."""
    file = sys.stderr if file is None else file
    tqdm_module = sys.modules.get("tqdm")  # no bar can exist before tqdm is imported; do not import it for nothing
    if tqdm_module is not None:
        tqdm_module.tqdm.write(message, file=file)
    else:
        print(message, file=file)


__all__ = ["UserError", "print_line"]
