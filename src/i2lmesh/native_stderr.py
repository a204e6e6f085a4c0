"""The process's standard error: silencing what native libraries print straight to it (file descriptor 2), and
whether it is a terminal (where progress bars belong)."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """File descriptor 2 points to /dev/null inside the block (Python exceptions still propagate).

    Native libraries write straight to fd 2, past Python's ``sys.stderr``: mediapipe's C++ side (absl, TFLite:
    "Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...", which neither its Python API nor
    GLOG_/TF_ environment variables silence), and NVIDIA Warp's loader, used by Anny ("Warp CUDA warning: Could not
    find or load the NVIDIA CUDA driver", on every machine without a GPU). Our one-line messages should stand
    alone."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. a closed stderr): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is a terminal: progress bars are drawn only there (a log file, a pipe or CI gets
    lines, not carriage-return redraws). False for a stream without ``isatty``."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


__all__ = ["quiet_native_stderr", "stderr_is_terminal"]
