"""Build a network from a config (and a body model), save it, and load it back with one clear error on bad files.

File format (a ``torch.save`` dict): ``{"format": "i2lmesh", "version": 1, "model_config": {...},
"topology": {...}, "model": state_dict}``. Training checkpoints add optimizer state etc. around the same keys,
so ``load_network`` reads both.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..bodymodels import BodyModel, create_body_model
from ..config import ModelConfig
from ..device import resolve_device
from .i2l import I2LMeshNet

FORMAT_NAME = "i2lmesh"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not an i2lmesh network; the message names the file."""


def body_model_for(config: ModelConfig, model_path: str | os.PathLike | None = None) -> BodyModel:
    """The body model a config names (``body_model``, ``kind``, ``mesh``); SMPL/MANO load from ``model_path``."""
    if config.body_model == "anny":
        kwargs = {"mesh": config.mesh} if config.kind == "body" else {}
        return create_body_model("anny", config.kind, **kwargs)
    return create_body_model(config.body_model, config.kind, model_path=model_path)


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
        net.mesh_net.set_rest_rotations(rest_rotations(body_model))
    return net


def rest_rotations(body_model: BodyModel) -> torch.Tensor:
    """Per-bone rotations (R,3,3) of a body standing upright facing the camera (rest pose otherwise): where a
    parameter-regression head starts. Hands start at the rest pose."""
    rotations = torch.eye(3).repeat(param_sizes(body_model)["param_num_rotations"], 1, 1)
    if body_model.kind == "body":
        if body_model.name == "anny":
            from ..bodymodels.anny import ANNY_TO_CAMERA

            rotations[0] = ANNY_TO_CAMERA
        else:  # SMPL: y up, facing +z -> camera y down: 180 degrees about x
            rotations[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    return rotations


def network_state(net: I2LMeshNet) -> dict[str, Any]:
    """What a file needs to rebuild ``net`` exactly (training checkpoints embed this dict's keys)."""
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model_config": net.config.to_dict(),
            "topology": getattr(net, "topology", {}), "model": net.state_dict()}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, flushed to disk, then rename: a crash never leaves half a
    file under ``path``. The temporary name is ``<name>.<8 random [a-z0-9_]>.tmp`` (``tempfile.mkstemp``); a kill -9
    during the write leaves it behind, and ``engine.checkpoint.remove_stale_temp_files`` recognises it by that name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the rename makes it the file (node crash)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# DataParallel and DistributedDataParallel save the wrapped network's keys as "module.<key>"; most checkpoints in
# this field (the reference's included) carry it.
PARALLEL_PREFIX = "module."


def strip_parallel_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``module.`` prefix of DataParallel/DDP (removed only when every key has it, as
    many times as it was nested); other state dicts are returned as they are."""
    while state and all(isinstance(k, str) and k.startswith(PARALLEL_PREFIX) for k in state):
        state = {k[len(PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def state_dict_mismatch(own: dict[str, Any], state: dict[str, Any], limit: int = 5) -> str:
    """'' when ``state`` fits ``own`` (same keys, same shapes), else one line naming the first missing, unexpected
    and misshapen keys (at most ``limit`` of each)."""
    def first(keys: list[str]) -> str:
        return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(getattr(state[k], 'shape', ()))} (network {tuple(own[k].shape)})" for k in own
                 if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    # Values a load would silently cast: complex weights (imaginary part dropped), floats into integer buffers.
    mistyped = [f"{k} {getattr(state[k], 'dtype', type(state[k]).__name__)} (network {own[k].dtype})" for k in own
                if k in state and not (isinstance(state[k], torch.Tensor) and not state[k].is_complex()
                                       and state[k].is_floating_point() == own[k].is_floating_point())]
    parts = [f"{name}: {first(keys)}" for name, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                                          ("wrong shapes", misshapen), ("wrong types", mistyped))
             if keys]
    return "; ".join(parts)


def save_network(net: I2LMeshNet, path: str | os.PathLike) -> None:
    atomic_torch_save(network_state(net), path)


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[I2LMeshNet, ModelConfig]:
    """Load an i2lmesh network file or training checkpoint; returns (network in eval mode, its config).

    Raises :class:`~i2lmesh.device.DeviceError` for a device this machine lacks (checked first) and
    :class:`CheckpointError` (one line naming the file) for a missing, unreadable or mismatched file."""
    device = resolve_device(device)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        hint = (" (looks like an original I2L-MeshNet snapshot: convert it with `i2lmesh convert-official`)"
                if isinstance(data, dict) and "network" in data else "")
        raise CheckpointError(f"{path}: not an i2lmesh checkpoint{hint}")
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: checkpoint format version should be a whole number, got "
                              f"{str(version)[:40]!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {data['version']} is newer than this i2lmesh "
                              f"supports ({FORMAT_VERSION}); upgrade i2lmesh")
    state = data.get("model")
    if not isinstance(state, dict) or not isinstance(data.get("model_config"), dict):
        raise CheckpointError(f"{path}: checkpoint has no weights ('model') or no 'model_config'")
    state = strip_parallel_prefix(state)
    missing = [k for k in ("joint_regressor", "faces") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: weights do not match the network (missing keys: {', '.join(missing)})")
    problem = mesh_buffers_problem(state["joint_regressor"], state["faces"])
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        config = ModelConfig.from_dict(data["model_config"])
        body = body_model_for(config) if config.target == "param" else None
        net = I2LMeshNet(config, state["joint_regressor"], state["faces"], body_model=body)
    except (KeyError, ValueError, TypeError, RuntimeError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: checkpoint's network config is not usable ({first})") from None
    mismatch = state_dict_mismatch(net.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{path}: weights do not match the network its config describes ({mismatch})")
    net.load_state_dict(state, strict=True)
    topology = data.get("topology") or {}
    problem = topology_problem(topology, config.num_joints)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    net.topology = topology
    return net.to(device).eval(), config


def mesh_buffers_problem(joint_regressor: Any, faces: Any) -> str | None:
    """Why a checkpoint's joint regressor (J, V) and faces (F, 3) cannot drive a network, or None."""
    if not isinstance(joint_regressor, torch.Tensor) or joint_regressor.ndim != 2 \
            or not joint_regressor.is_floating_point() or not torch.isfinite(joint_regressor).all():
        return "joint_regressor should be a finite (J, V) float tensor"
    if not isinstance(faces, torch.Tensor) or faces.ndim != 2 or faces.shape[1] != 3 or faces.is_floating_point():
        return "faces should be an (F, 3) integer tensor"
    num_vertices = joint_regressor.shape[1]
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= num_vertices):
        return f"faces index vertices outside 0..{num_vertices - 1}"
    return None


def topology_problem(topology: Any, num_joints: int) -> str | None:
    """Why a checkpoint's topology (joint names, root index, kind) is unusable, or None. Empty is allowed."""
    if not isinstance(topology, dict):
        return f"topology should be a dict, got {type(topology).__name__}"
    names = topology.get("joint_names")
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != num_joints
                              or not all(isinstance(n, str) for n in names)):
        return f"topology joint_names should be {num_joints} strings"
    root = topology.get("root_index", 0)
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < num_joints:
        return f"topology root_index should be a joint index 0..{num_joints - 1}, got {str(root)[:20]}"
    return None
