"""i2lmesh: I2L-MeshNet (Moon & Lee, ECCV 2020), 3D human body and hand mesh from one RGB image."""
import os as _os

# FFmpeg (inside OpenCV) prints its own lines for unreadable videos; we report those in one line instead. OpenCV
# reads this variable once, at the process's first video open, so it is set at the earliest point: here (the
# user's own setting wins; -8 is AV_LOG_QUIET). See i2lmesh.inference.video.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from .config import PRESETS, ModelConfig, get_preset
from .nets.factory import CheckpointError, build_network, load_network, save_network
from .nets.i2l import I2LMeshNet, I2LOutput

__version__ = "0.1.0"


def __getattr__(name: str):
    """``i2lmesh.Predictor`` without importing the inference stack (OpenCV, rendering) for every user."""
    if name == "Predictor":
        from .inference import Predictor

        return Predictor
    raise AttributeError(f"module 'i2lmesh' has no attribute {name!r}")


__all__ = ["ModelConfig", "PRESETS", "get_preset", "build_network", "load_network", "save_network",
           "CheckpointError", "I2LMeshNet", "I2LOutput", "Predictor", "__version__"]
