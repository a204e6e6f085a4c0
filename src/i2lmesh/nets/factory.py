"""Build a network from a config and a body model: the body model a config names, the parameter sizes it
implies and the network itself (a parameter-regression head starts at the body model's ``rest_rotations()``).

Files (``save_network``, ``load_network``, ``CheckpointError``) live in ``i2lmesh.engine.checkpoint``; those names
are still importable from here (see :func:`__getattr__`).
"""
from __future__ import annotations

import os
from typing import Any

from ..bodymodels import BodyModel, body_model_class
from ..config import ModelConfig
from .i2l import I2LMeshNet


def body_model_for(config: ModelConfig, model_path: str | os.PathLike | None = None) -> BodyModel:
    """The body model a config names (``body_model``, ``kind``, ``mesh``, see ``BodyModel.from_options``); models
    that need user files (SMPL/MANO, neutral SMPL) load from ``model_path``."""
    return body_model_class(config.body_model, config.kind).from_options(model_path, mesh=config.mesh)


# ModelConfig's defaults for the parameter sizes (SMPL's 24 rotations and 10 betas, as the reference).
_DEFAULT_PARAM_SIZES = {"param_num_rotations": 24, "param_shape_dim": 10}


def param_sizes(body_model: BodyModel) -> dict[str, int]:
    """``param_num_rotations`` and ``param_shape_dim`` of a body model (Anny body 104 bones + 6 phenotypes, Anny
    hand 21 + 6, SMPL 24 + 10, MANO 16 + 10)."""
    return {"param_num_rotations": body_model.num_pose_rotations, "param_shape_dim": body_model.num_shape_params}


def param_sizes_for(config: ModelConfig, body_model: BodyModel) -> dict[str, int]:
    """Config overrides that fit the parameter sizes to ``body_model`` (empty when they already fit).

    The "param" target always takes the body model's sizes. The parameter regressor takes them when the config
    leaves the defaults (SMPL's, which do not fit Anny or MANO); explicit sizes that do not fit raise ValueError,
    as the regressor could not drive the body model.
    """
    wanted = param_sizes(body_model)
    current = {"param_num_rotations": config.param_num_rotations, "param_shape_dim": config.param_shape_dim}
    if current == wanted or not (config.param_regressor or config.target == "param"):
        return {}
    if config.target == "param" or current == _DEFAULT_PARAM_SIZES:
        return wanted
    raise ValueError(f"param_num_rotations={current['param_num_rotations']}, param_shape_dim="
                     f"{current['param_shape_dim']} do not fit the body model {body_model.name!r} "
                     f"({wanted['param_num_rotations']} rotations, {wanted['param_shape_dim']} shape values); leave "
                     f"them at their defaults to use the body model's")


def build_network(config: ModelConfig, body_model: BodyModel | None = None) -> I2LMeshNet:
    """The network for ``config``; J, V, kind, faces and the joint regressor come from the body model
    (by default the one ``config`` names, see :func:`body_model_for`), and so do the parameter sizes
    (:func:`param_sizes_for`)."""
    if body_model is None:
        body_model = body_model_for(config)
    config = config.override(num_joints=body_model.num_joints, num_vertices=body_model.num_vertices,
                             kind=body_model.kind, **param_sizes_for(config, body_model))
    net = I2LMeshNet(config, body_model.joint_regressor.cpu(), body_model.faces.cpu(),
                     body_model=body_model if config.target == "param" else None)
    net.topology = body_model.topology_info()
    if config.target == "param":
        net.mesh_net.set_rest_rotations(body_model.rest_rotations())
    return net


# The checkpoint names callers import from here (the package root, inference, commands, the official converter);
# they are defined once, in engine/checkpoint.py, and imported on first use, so nets does not import engine.
_CHECKPOINT_NAMES = ("CheckpointError", "load_network", "save_network", "atomic_torch_save", "network_state")


def __getattr__(name: str) -> Any:
    """``nets.factory.load_network`` etc.: the objects of ``engine.checkpoint`` (PEP 562 module attribute)."""
    if name in _CHECKPOINT_NAMES:
        from ..engine import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
