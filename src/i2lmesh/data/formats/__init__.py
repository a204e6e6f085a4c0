"""Dataset formats: ours (``i2lmesh``) and the real datasets in the files the reference reads.

Every loader is ``load(root, split, **options) -> list[SampleRecord]`` with units converted to metres and pixels.
``LOADERS`` maps a format name to its module; :func:`load_records` imports it lazily.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..record import SampleRecord

LOADERS: dict[str, str] = {
    "i2lmesh": "i2lmesh",
    "h36m": "h36m",
    "coco": "coco",
    "muco": "muco",
    "pw3d": "pw3d",
    "freihand": "freihand",
    "surreal": "surreal",
}


def load_records(format_name: str, root: str | Path, split: str = "train", **options: Any) -> list[SampleRecord]:
    """Records of dataset ``format_name`` under ``root`` for ``split`` (see each module for its options)."""
    if format_name not in LOADERS:
        raise ValueError(f"unknown dataset format {format_name!r}; choose one of: {', '.join(LOADERS)}")
    module = importlib.import_module(f"{__name__}.{LOADERS[format_name]}")
    return module.load(root, split, **options)


def read_json(path: Path) -> Any:
    """A dataset's JSON file, with an error that names the file and what to do."""
    import json

    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path} (check --root and the dataset's folder layout in "
                                "docs/datasets.md)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


__all__ = ["LOADERS", "load_records", "read_json"]
