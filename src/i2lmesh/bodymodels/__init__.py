"""Body models behind one interface (see ``base.BodyModel``): Anny body/hand by default, SMPL/MANO from user files."""
from __future__ import annotations

from typing import Any

from .base import BodyModel, BodyModelFileError, BodyModelOutput
from .joint_sets import H36M_17, JOINT_SETS, MANO_21, SMPL_29, JointSet


# Model names (``BodyModel.name``, as records and checkpoints store them) -> (module, class), imported on first use
# so that SMPL's optional dependency and Anny's cache are touched only when used.
_REGISTRY: dict[str, tuple[str, str]] = {
    "anny": ("anny", "AnnyBody"), "anny-hand": ("anny", "AnnyHand"), "smpl": ("smpl", "SMPL"), "mano": ("smpl", "MANO"),
}


def body_model_class(name: str, kind: str = "body") -> type[BodyModel]:
    """The class of the body model called ``name``: a model name ("anny", "anny-hand", "smpl", "mano") or a config's
    ``body_model`` with its ``kind`` ("anny" with any kind but "body" is the Anny hand; SMPL and MANO have one kind).

    Lets callers ask a model class what it needs (e.g. ``needs_user_files``) before building it. Raises
    ValueError for an unknown name.
    """
    if name == "anny" and kind != "body":
        name = "anny-hand"
    if name not in _REGISTRY:
        raise ValueError(f"unknown body model {name!r}; choose 'anny', 'smpl' or 'mano'")
    from importlib import import_module

    module, cls = _REGISTRY[name]
    return getattr(import_module(f".{module}", __name__), cls)


def create_body_model(name: str = "anny", kind: str = "body", **kwargs: Any) -> BodyModel:
    """Build a body model by name (see :func:`body_model_class`).

    name "anny": kind "body" (kwargs: mesh "reduced"|"full") or "hand" (kwargs: side "right"|"left").
    name "smpl" (kwargs: model_path, gender) or "mano" (kwargs: model_path, side): files the user supplies.
    """
    return body_model_class(name, kind)(**kwargs)


__all__ = ["BodyModel", "BodyModelFileError", "BodyModelOutput", "JointSet", "JOINT_SETS", "SMPL_29", "H36M_17",
           "MANO_21", "body_model_class", "create_body_model"]
