"""Checkpoints: the one place that writes and reads weights files.

Two kinds of file, one format (a ``torch.save`` dict):

* a **network file** (:func:`save_network`, :func:`load_network`): ``{"format": "i2lmesh", "version": 1,
  "model_config": {...}, "topology": {...}, "model": state_dict}`` -- everything needed to rebuild the network, its
  input preprocessing included (``model_config``);
* a **training checkpoint** (:func:`save_training_checkpoint`, :func:`load_training_checkpoint`): a network file
  plus ``optimizer``, ``scaler`` (AMP), ``progress`` (epoch, batches done in it, global step), ``train_config``
  (the resolved ``TrainConfig``), ``rng`` (every global generator) and ``hooks`` (each training hook's
  ``state_dict``, by name). ``load_network`` reads it like any network file.

Files are written atomically (temporary file in the same folder, fsync, rename), so a kill at any moment leaves
the previous complete file; :func:`remove_stale_temp_files` clears the temporaries such a kill leaves behind.
Start weights come from here too: :func:`load_initial_weights` (``init_from``: a network file or checkpoint of
another run) and :func:`load_imagenet_weights` (torchvision's ResNets). Errors are :class:`CheckpointError`, one
line naming the file. The authors' released snapshots are converted by ``i2lmesh.export.official``.
"""
from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..device import resolve_device
from ..nets.i2l import I2LMeshNet

logger = logging.getLogger(__name__)

FORMAT_NAME = "i2lmesh"
FORMAT_VERSION = 1

# atomic_torch_save's temporary files: tempfile.mkstemp(prefix="<name>.", suffix=".tmp") adds 8 characters of
# [a-z0-9_], e.g. "last.pt.k3j_9x0q.tmp". A kill -9 during the write leaves one behind.
TEMP_FILE_PATTERN = re.compile(r"^.+\.[a-z0-9_]{8}\.tmp$")

# DataParallel and DistributedDataParallel save the wrapped network's keys as "module.<key>"; most checkpoints in
# this field (the reference's included) carry it.
PARALLEL_PREFIX = "module."


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not an i2lmesh network; the message names the file."""


# --- writing -------------------------------------------------------------------------------------------------------

def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, flushed to disk, then rename: a crash never leaves half a
    file under ``path``. The temporary name is ``<name>.<8 random [a-z0-9_]>.tmp`` (``tempfile.mkstemp``); a kill -9
    during the write leaves it behind, and :func:`remove_stale_temp_files` recognises it by that name.
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


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_torch_save` left in ``folder`` (only names matching
    its pattern); returns them. Call it only while no other process writes there (training holds the run lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if TEMP_FILE_PATTERN.match(path.name) and path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
            logger.info("removed %s (%.1f MB): a checkpoint write that was interrupted", path, size / 1e6)
    return removed


def network_state(net: I2LMeshNet) -> dict[str, Any]:
    """What a file needs to rebuild ``net`` exactly (training checkpoints embed this dict's keys)."""
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model_config": net.config.to_dict(),
            "topology": getattr(net, "topology", {}), "model": net.state_dict()}


def save_network(net: I2LMeshNet, path: str | os.PathLike) -> None:
    """Write ``net`` (the bare network, not a DDP wrapper) as a network file, atomically."""
    atomic_torch_save(network_state(net), path)


def save_training_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint (``Trainer.state_dict()``: :func:`network_state`'s keys + optimizer, scaler,
    progress, train_config, rng, hooks) to ``path`` atomically."""
    atomic_torch_save(state, path)


# --- random generators ---------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed every global generator training may touch (Python ``random``, NumPy, torch CPU and CUDA). Call it
    before anything random happens, in particular before building the network, so the seed fixes the initial
    weights too."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)  # CUDA generators included


def capture_rng() -> dict[str, Any]:
    """The state of every global generator (torch CPU, NumPy, Python; CUDA when present), for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` returned (CUDA states only when this machine has CUDA)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- reading -------------------------------------------------------------------------------------------------------

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
        from ..nets.factory import body_model_for

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


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's dict (see the module docstring), weights without a DDP ``module.`` prefix.
    CheckpointError (naming ``path``) for an unreadable file or one without optimizer/progress state or weights."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "progress" not in data or "optimizer" not in data:
        raise CheckpointError(f"{path}: not an i2lmesh training checkpoint (no optimizer/progress state)")
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: training checkpoint has no weights ('model')")
    data["model"] = strip_parallel_prefix(data["model"])
    return data


# --- start weights -------------------------------------------------------------------------------------------------

def load_initial_weights(net: I2LMeshNet, path: str | Path) -> bool:
    """Initialise ``net`` from an i2lmesh network file or training checkpoint (``TrainConfig.init_from``).

    Everything must match except the parameter regressor: a lixel-stage file may lack it (or hold one of other
    sizes, which is skipped), and its weights are ignored when ``net`` has none. A ``head_prior`` network may start
    from a file without the prior (the run then sets it from its data). Model-config fields that differ (other than
    the regressor's) are logged, as they change what the weights mean. Returns whether the regressor's weights
    were loaded; CheckpointError (naming ``path``) for a missing, unreadable, foreign or unfitting file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: init_from file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an i2lmesh network file or checkpoint (convert an original snapshot "
                              f"with `i2lmesh convert-official` first)")
    current, saved = net.config.to_dict(), data.get("model_config", {})
    differ = sorted(k for k, v in saved.items() if k in current and not k.startswith("param_")
                    and (tuple(v) if isinstance(v, list) else v) != current[k])
    if differ:
        logger.warning("init_from %s: model config differs in %s (this run: %s)", path, ", ".join(differ),
                       ", ".join(f"{k}={current[k]!r}" for k in differ))
    own = net.state_dict()
    state = {k: v for k, v in strip_parallel_prefix(data.get("model") or {}).items()
             if not (k.startswith("param_regressor.") and (k not in own or own[k].shape != v.shape))}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path}: weights do not fit this network ({first})") from None
    # A head_prior network may start from a file without the prior: the run then sets it from its data.
    missing = [k for k in result.missing_keys if not k.startswith("param_regressor.")
               and k.rpartition(".")[2] not in ("prior_x", "prior_y", "prior_z")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("param_regressor.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this network (missing: {', '.join(missing[:5]) or '-'}; "
                              f"unexpected: {', '.join(unexpected[:5]) or '-'})")
    return net.param_regressor is not None and not any(k.startswith("param_regressor.") for k in result.missing_keys)


def load_imagenet_weights(net: I2LMeshNet, source: str) -> None:
    """Initialise both backbones from ImageNet (``TrainConfig.imagenet_weights``): "torchvision" downloads
    torchvision's V1 weights (the reference's), "none" does nothing, anything else is a path to a torchvision
    ResNet state-dict file (FileNotFoundError when it is not there)."""
    if source == "none":
        return
    depth = net.config.backbone_depth
    if source == "torchvision":
        import torchvision

        weights = torchvision.models.get_weight(f"ResNet{depth}_Weights.IMAGENET1K_V1")
        state = weights.get_state_dict(progress=True)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ImageNet weights file not found (use imagenet_weights: torchvision "
                                    f"to download torchvision's, or none)")
        state = torch.load(path, map_location="cpu", weights_only=True)
    for backbone in (net.pose_backbone, net.mesh_backbone):
        if backbone is not None:  # MeshNet alone ("meshnet" cascade) has no pose backbone
            backbone.load_imagenet_state_dict(state)


__all__ = ["CheckpointError", "FORMAT_NAME", "FORMAT_VERSION", "atomic_torch_save", "remove_stale_temp_files",
           "network_state", "save_network", "save_training_checkpoint", "seed_everything", "capture_rng",
           "restore_rng", "strip_parallel_prefix", "state_dict_mismatch", "load_network", "load_training_checkpoint",
           "load_initial_weights", "load_imagenet_weights"]
