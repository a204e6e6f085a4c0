"""Where Anny keeps its built model data, and the one-time build that fills it.

Anny builds its model data (blendshapes, skinning, bone orientations) the first time a given rig/topology is
constructed and caches it as safetensors files. Measured here (2 CPU cores, anny 0.6.2): the body takes ~1.5 min
(up to ~4 min on slower machines) and ~2.3 GB peak RAM, the hand ~1.5 min more; 1.4 GB on disk, of which only the
``build_compact_model_data_*`` files (51 MB body, 4 MB hand) are read afterwards. Later constructions take ~1 s.

Cache directory, first match wins:

1. the ``cache_dir`` argument of :func:`construct_anny`;
2. ``ANNY_CACHE_DIR`` (Anny's own variable);
3. ``I2LMESH_CACHE_DIR`` -> ``<that>/anny``;
4. ``~/.cache/i2lmesh/anny``.

Two processes building at once are serialised by a file lock in the cache directory (the second one waits, then
loads what the first built). A build that fails or is killed half way leaves partial files behind: they are
removed on failure, and a marker file is written only after a build succeeded, so a half-built cache is rebuilt.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Approximate one-time build durations on 2 CPU cores, shown to the user before a build starts.
EXPECTED_BUILD_MINUTES = {"body": "1.5-4", "hand": "1.5-3"}
_PROGRESS_EVERY_S = 30.0


def default_cache_dir() -> Path:
    """The Anny cache directory from the environment (see module docstring), without creating it."""
    if os.environ.get("ANNY_CACHE_DIR"):
        return Path(os.environ["ANNY_CACHE_DIR"]).expanduser()
    if os.environ.get("I2LMESH_CACHE_DIR"):
        return Path(os.environ["I2LMESH_CACHE_DIR"]).expanduser() / "anny"
    return Path.home() / ".cache" / "i2lmesh" / "anny"


def _marker(cache_dir: Path, key: str) -> Path:
    import anny

    return cache_dir / f"i2lmesh-built-{key}-anny{anny.__version__}.ok"


def is_built(key: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """True if :func:`construct_anny` already built model ``key`` ("body", "hand") into ``cache_dir``."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return _marker(cache_dir, key).exists()


def _report_progress(message: str, stop: threading.Event, start: float) -> None:
    while not stop.wait(_PROGRESS_EVERY_S):
        line = f"{message}: still building, {time.monotonic() - start:.0f} s elapsed"
        logger.warning(line)


def _quiet_warp() -> None:
    """Anny skins with NVIDIA Warp, which prints a banner and a line per kernel load at INFO: keep it to warnings.
    Its native runtime prints "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver" when initialised on
    any machine without a GPU (we run Warp on the CPU), and anny initialises it at import: we initialise it first,
    with native stderr silenced (``warp.init()`` runs once; anny's later call does nothing)."""
    from ..native_stderr import quiet_native_stderr

    try:
        import warp
    except ImportError:
        return
    if isinstance(warp.config.log_level, int) and warp.config.log_level < logging.WARNING:
        warp.config.log_level = logging.WARNING
    with quiet_native_stderr():
        warp.init()


def construct_anny(key: str, cache_dir: str | os.PathLike | None = None, **anny_kwargs: Any):
    """``anny.Anny(**anny_kwargs)`` with its cache in ``cache_dir``, building it once (with progress) if needed.

    key: "body" or "hand", names the build in messages and in the marker file.
    Returns the Anny module (float64, on the CPU).
    """
    _quiet_warp()
    import anny
    import anny.paths
    from filelock import FileLock  # a dependency of torch

    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Anny reads ANNY_CACHE_DIR once at import; setting the path explicitly also covers an earlier import.
    anny.paths.set_anny_cache_path(cache_dir)
    marker = _marker(cache_dir, key)
    if marker.exists():
        return anny.Anny(**anny_kwargs)

    with FileLock(str(cache_dir / f"i2lmesh-build-{key}.lock")):
        if marker.exists():  # another process built it while we waited for the lock
            return anny.Anny(**anny_kwargs)
        message = (f"Anny {key} model: preparing its cache in {cache_dir}; a missing cache is built once "
                   f"(about {EXPECTED_BUILD_MINUTES.get(key, 'a few')} min on 2 idle cores, longer on a busy "
                   f"machine; ~2.3 GB RAM peak; ~0.8 GB disk for the body, 1.4 GB with the hand; later loads ~1 s)")
        logger.warning(message)
        before = {p.name for p in cache_dir.rglob("*.safetensors")}
        start = time.monotonic()
        stop = threading.Event()
        reporter = threading.Thread(target=_report_progress, args=(f"Anny {key}", stop, start), daemon=True)
        reporter.start()
        try:
            model = anny.Anny(**anny_kwargs)
        except BaseException:
            # Files written by this failed build may be truncated: remove them so the next try rebuilds.
            for path in cache_dir.rglob("*.safetensors"):
                if path.name not in before:
                    path.unlink(missing_ok=True)
            raise
        finally:
            stop.set()
        marker.write_text(f"built in {time.monotonic() - start:.0f} s\n")
        done = f"Anny {key} model: cache built in {time.monotonic() - start:.0f} s"
        logger.warning(done)
        return model
