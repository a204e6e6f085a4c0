"""i2lmesh: I2L-MeshNet (Moon & Lee, ECCV 2020), 3D human body and hand mesh from one RGB image."""
import os as _os

# FFmpeg (inside OpenCV) prints its own lines for unreadable videos; we report those in one line instead. OpenCV
# reads this variable once, at the process's first video open, so it is set at the earliest point: here (the
# user's own setting wins; -8 is AV_LOG_QUIET). See i2lmesh.inference.video.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from .config import PRESETS, ModelConfig, get_preset

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that ``import i2lmesh`` and the command line's --help and usage errors do not
# wait for torch (~2 s on an idle machine, ~10 s on a busy one) or the inference stack (OpenCV, rendering).
_LAZY = {"CheckpointError": ".nets.factory", "build_network": ".nets.factory", "load_network": ".nets.factory",
         "save_network": ".nets.factory", "I2LMeshNet": ".nets.i2l", "I2LOutput": ".nets.i2l",
         "Predictor": ".inference"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'i2lmesh' has no attribute {name!r}")


__all__ = ["ModelConfig", "PRESETS", "get_preset", "build_network", "load_network", "save_network",
           "CheckpointError", "I2LMeshNet", "I2LOutput", "Predictor", "__version__"]
