"""A web page for i2lmesh: ``i2lmesh app`` (docs/app.md).

:mod:`i2lmesh.app.core` does the work (no web dependency); :mod:`i2lmesh.app.page` is the Gradio page around it
(the optional extra ``pip install "i2lmesh[app]"``).
"""
from __future__ import annotations

from .core import ItemView, MeshService, RunResult, ServiceError

__all__ = ["MeshService", "RunResult", "ItemView", "ServiceError"]
