"""Atomic file writes: a crash, an exception or a kill never leaves a complete-looking but truncated file under
the final name.

Every writer writes to a temporary name in the same folder (so the rename stays on one file system) and renames it
to the final name with :func:`os.replace` (atomic on POSIX and Windows) only once the file is complete. On an
exception (KeyboardInterrupt included) the temporary file is removed and an older file of the final name stays
untouched. After a hard kill (SIGKILL, power loss) at most a hidden ``.NAME.*.tmp.SUFFIX`` file is left behind.
The temporary name keeps the final suffix, so libraries that pick the format from it (PIL, OpenCV's VideoWriter,
numpy's ``savez``) behave as for the final name.

    with atomic_write("out/person.ply") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name next to ``path``: ``.NAME.PID.RANDOM.tmp.SUFFIX`` (hidden, same suffix). The file
    is not created, so the writer creates it with the usual permissions (umask), as it would the final file."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


def discard(tmp: str | os.PathLike) -> None:
    """Remove a temporary file if it exists (never raises for a missing file)."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; the body writes the whole file there. On a normal exit it is
    renamed to ``path`` (replacing an older file); on an exception it is removed and the exception propagates."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
    return path


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "temporary_path", "discard"]
