"""Body models behind one interface (see ``base.BodyModel``): Anny body/hand by default, SMPL/MANO from user files."""
from __future__ import annotations

from typing import Any

from .base import BodyModel, BodyModelFileError, BodyModelOutput
from .joint_sets import H36M_17, JOINT_SETS, MANO_21, SMPL_29, JointSet


def create_body_model(name: str = "anny", kind: str = "body", **kwargs: Any) -> BodyModel:
    """Build a body model by name.

    name "anny": kind "body" (kwargs: mesh "reduced"|"full") or "hand" (kwargs: side "right"|"left").
    name "smpl" (kwargs: model_path, gender) or "mano" (kwargs: model_path, side): files the user supplies.
    Imports are lazy so that SMPL's optional dependency and Anny's cache are touched only when used.
    """
    if name == "anny":
        from .anny import AnnyBody, AnnyHand
        return AnnyBody(**kwargs) if kind == "body" else AnnyHand(**kwargs)
    if name == "smpl":
        from .smpl import SMPL
        return SMPL(**kwargs)
    if name == "mano":
        from .smpl import MANO
        return MANO(**kwargs)
    raise ValueError(f"unknown body model {name!r}; choose 'anny', 'smpl' or 'mano'")


__all__ = ["BodyModel", "BodyModelFileError", "BodyModelOutput", "JointSet", "JOINT_SETS", "SMPL_29", "H36M_17",
           "MANO_21", "create_body_model"]
