"""Getting networks in and out: the authors' released snapshots (``official``) and ONNX (``onnx``).

Submodules are imported on use, so ``onnx``/``onnxruntime`` (the optional ``i2lmesh[onnx]`` extra) are touched
only by the ONNX functions.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "convert_official_snapshot": "official",
    "convert_official_file": "official",
    "read_official_snapshot": "official",
    "official_key_to_ours": "official",
    "export_onnx": "onnx",
    "OnnxNetwork": "onnx",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
