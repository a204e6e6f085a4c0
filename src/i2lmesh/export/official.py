"""The authors' released checkpoints: convert an I2L-MeshNet ``snapshot_N.pth.tar`` into an i2lmesh network.

A snapshot (``main/train.py`` of mks0601/I2L-MeshNet_RELEASE) is ``{'epoch': int, 'network': state dict,
'optimizer': Adam state}``; the state dict comes from ``nn.DataParallel``, so every key starts with ``module.``
(official_spec.md 1.8; full listings in shared/reference/official_state_dict_{body,hand}.txt).

Every key goes through one explicit rule of ``KEY_RULES`` (official name -> our name):

- backbones: torchvision names on both sides; the mesh backbone's stem (``mesh_backbone.conv1`` / ``.bn1``) is
  dropped on purpose: the reference never runs it (``skip_early=True``) and our MeshNet backbone has no stem;
- lixel heads: ``conv_x.0`` -> ``conv_x``, ``conv_y.0`` -> ``conv_y``, ``conv_z_1.0`` -> ``conv_z_1``,
  ``conv_z_1.1`` (BatchNorm1d) -> ``bn_z_1``, ``conv_z_2.0`` -> ``conv_z_2``; ``deconv.{0..8}`` keep their indices
  (ConvTranspose 0/3/6, BatchNorm 1/4/7, ReLU 2/5/8 in both);
- ``pose2feat.conv.0`` -> ``pose2feat.conv``, ``pose2feat.conv.1`` -> ``pose2feat.bn``;
- parameter regressor: ``fc.{0,1,3,4}`` keep their indices, ``fc_pose.0`` -> ``fc_pose``,
  ``fc_shape.0`` -> ``fc_shape``;
- ``human_model_layer.th_*`` (the SMPL / MANO layer's buffers) are not weights: they give the faces and the
  J x V joint regressor (SMPL 24 + 5 face vertices, MANO 16 + 5 fingertips, as the reference builds them), so no
  SMPL/MANO file is needed.

A key no rule knows, a key the network needs but the file lacks, or a shape that does not fit is an error that
lists them (the reference loads with ``strict=False`` and would silently keep random weights).
J, V, D, the upsampling width and the ResNet depth are read from the shapes. The preprocessing is recorded as the
authors trained it: RGB in [0, 1] without mean/std (official_spec.md 1.1), bbox_3d_size 2 m (body) / 0.3 m (hand).
"""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import ModelConfig
from ..nets.factory import CheckpointError, atomic_torch_save, network_state
from ..nets.i2l import I2LMeshNet

DROP = "<dropped>"
BODY_MODEL = "<body model>"

_PLACEHOLDERS = {
    "backbone": r"pose_backbone|mesh_backbone",
    "head": r"pose_net|mesh_net",
    "layer": r"layer[1-4]\.\d+",
    "part": r"conv[1-3]|bn[1-3]|downsample\.[01]",
    "leaf": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "deconv": r"[0-8]",
    "fc": r"[0-5]",
    "buffer": r"th_\w+",
}

# (official key without 'module.', our key | DROP | BODY_MODEL). Placeholders match the same text on both sides.
KEY_RULES: tuple[tuple[str, str], ...] = (
    ("pose_backbone.conv1.weight", "pose_backbone.conv1.weight"),
    ("pose_backbone.bn1.{leaf}", "pose_backbone.bn1.{leaf}"),
    ("mesh_backbone.conv1.weight", DROP),  # the reference's unused mesh stem (9,536 parameters)
    ("mesh_backbone.bn1.{leaf}", DROP),
    ("{backbone}.{layer}.{part}.{leaf}", "{backbone}.{layer}.{part}.{leaf}"),
    ("{head}.deconv.{deconv}.{leaf}", "{head}.deconv.{deconv}.{leaf}"),
    ("{head}.conv_x.0.{leaf}", "{head}.conv_x.{leaf}"),
    ("{head}.conv_y.0.{leaf}", "{head}.conv_y.{leaf}"),
    ("{head}.conv_z_1.0.{leaf}", "{head}.conv_z_1.{leaf}"),
    ("{head}.conv_z_1.1.{leaf}", "{head}.bn_z_1.{leaf}"),
    ("{head}.conv_z_2.0.{leaf}", "{head}.conv_z_2.{leaf}"),
    ("pose2feat.conv.0.{leaf}", "pose2feat.conv.{leaf}"),
    ("pose2feat.conv.1.{leaf}", "pose2feat.bn.{leaf}"),
    ("param_regressor.fc.{fc}.{leaf}", "param_regressor.fc.{fc}.{leaf}"),
    ("param_regressor.fc_pose.0.{leaf}", "param_regressor.fc_pose.{leaf}"),
    ("param_regressor.fc_shape.0.{leaf}", "param_regressor.fc_shape.{leaf}"),
    ("human_model_layer.{buffer}", BODY_MODEL),
)

# The SMPL / MANO layer buffers each kind's snapshot holds (smplpytorch / manopth).
BODY_MODEL_BUFFERS: dict[str, tuple[str, ...]] = {
    "body": ("th_betas", "th_shapedirs", "th_posedirs", "th_v_template", "th_J_regressor", "th_weights", "th_faces"),
    "hand": ("th_betas", "th_shapedirs", "th_posedirs", "th_v_template", "th_J_regressor", "th_weights", "th_faces",
             "th_hands_mean", "th_selected_comps"),
}
KIND_VERTICES = {"body": 6890, "hand": 778}
KIND_JOINTS = {"body": 29, "hand": 21}
BBOX_3D_SIZE_M = {"body": 2.0, "hand": 0.3}  # reference config.py: bbox_3d_size 2 (body), 0.3 (FreiHAND)
INPUT_SIZE = 256  # reference input_img_shape (256, 256): not recorded in the weights
SIGMA_BINS = 2.5  # reference cfg.sigma

# Torchvision ResNet layouts: blocks per layer and whether blocks are bottlenecks -> depth.
_RESNET_LAYOUTS = {((2, 2, 2, 2), False): 18, ((3, 4, 6, 3), False): 34, ((3, 4, 6, 3), True): 50,
                   ((3, 4, 23, 3), True): 101, ((3, 8, 36, 3), True): 152}
_LIST_LIMIT = 40  # keys named in one error message before "... and N more"


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.escape(pattern)
    for name, body in _PLACEHOLDERS.items():
        regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{body})")
    return re.compile(regex + r"\Z")


_FORWARD = [(_compile(official), ours) for official, ours in KEY_RULES]
_BACKWARD = [(_compile(ours), official) for official, ours in KEY_RULES if ours not in (DROP, BODY_MODEL)]


def official_key_to_ours(key: str) -> str | None:
    """Our name for an official key (``module.`` stripped), DROP, BODY_MODEL, or None when no rule knows it."""
    for regex, target in _FORWARD:
        match = regex.match(key)
        if match:
            return target if target in (DROP, BODY_MODEL) else target.format(**match.groupdict())
    return None


def our_key_to_official(key: str) -> str | None:
    """The official name a key of ours is read from (inverse of ``official_key_to_ours``), or None."""
    for regex, source in _BACKWARD:
        match = regex.match(key)
        if match:
            return source.format(**match.groupdict())
    return None


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else "")


@dataclass
class OfficialSnapshot:
    """A snapshot file's network state (``module.`` stripped), its epoch, and the file it came from."""

    path: Path
    state: dict[str, torch.Tensor]
    epoch: int | None


def read_official_snapshot(path: str | os.PathLike, trust_file: bool = False) -> OfficialSnapshot:
    """Load ``snapshot_N.pth.tar``; raise :class:`CheckpointError` naming the file if it is not one.

    The file is read with ``weights_only=True`` (it holds tensors, numbers and the Adam state), memory-mapped when
    its format allows, so the optimizer moments (twice the weights' size) are never read into memory.
    ``trust_file=True`` allows arbitrary pickled objects: only for files from a source you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: snapshot file not found")
    data = _torch_load(path, trust_file)
    if isinstance(data, dict) and data.get("format") == "i2lmesh":
        raise CheckpointError(f"{path}: already an i2lmesh checkpoint, not an original I2L-MeshNet snapshot; "
                              "use it directly")
    network = data.get("network") if isinstance(data, dict) else None
    if not isinstance(network, Mapping) or not network or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in network.items()):
        raise CheckpointError(f"{path}: not an I2L-MeshNet snapshot (expected a dict with 'network': a state dict, "
                              "as the authors' train.py writes snapshot_N.pth.tar)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in network.items()}
    epoch = data.get("epoch")
    return OfficialSnapshot(path, state, int(epoch) if isinstance(epoch, int) else None)


def _torch_load(path: Path, trust_file: bool) -> Any:
    def load(mmap: bool) -> Any:
        return torch.load(path, map_location="cpu", weights_only=not trust_file, mmap=mmap)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as exc:  # legacy (pre-zip) serialisation cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            return load(mmap=False)
    except pickle.UnpicklingError as exc:
        if not trust_file and "weights_only" in str(exc):
            raise CheckpointError(f"{path}: holds Python objects other than tensors and numbers, which safe loading "
                                  "refuses; if you trust where the file came from, pass --trust-file") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # not a torch file, truncated, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {first})") from None


def _snapshot_kind(state: Mapping[str, torch.Tensor]) -> str | None:
    """'body' or 'hand' from the body-model buffers (or MeshNet's vertex count), None if neither fits."""
    template = state.get("human_model_layer.th_v_template")
    num_vertices = (template.shape[-2] if template is not None and template.ndim >= 2 else
                    state["mesh_net.conv_x.0.weight"].shape[0] if "mesh_net.conv_x.0.weight" in state else None)
    for kind, count in KIND_VERTICES.items():
        if num_vertices == count:
            return kind
    return None


def _resnet_depth(state: Mapping[str, torch.Tensor], path: Path) -> int:
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
    bottleneck = False
    for key in state:
        match = re.match(r"pose_backbone\.layer([1-4])\.(\d+)\.(\w+)", key)
        if match:
            blocks[int(match.group(1))].add(int(match.group(2)))
            bottleneck |= match.group(3) == "conv3"
    # Blocks 0..n-1 present: a stray higher index is then reported as an unknown key, not as a strange layout.
    counts = tuple(next(n for n in range(len(found) + 1) if n not in found) for found in blocks.values())
    layout = (counts, bottleneck)
    if layout not in _RESNET_LAYOUTS:
        raise CheckpointError(f"{path}: the pose backbone is not a torchvision ResNet (blocks per layer "
                              f"{layout[0]}, bottleneck {layout[1]})")
    return _RESNET_LAYOUTS[layout]


def _infer_config(snapshot: OfficialSnapshot, kind: str, input_size: int) -> ModelConfig:
    """The network's sizes from the weights' shapes; the rest is what the authors trained with."""
    state, path = snapshot.state, snapshot.path
    needed = ["pose_net.conv_x.0.weight", "mesh_net.conv_x.0.weight", "pose_net.conv_z_1.0.weight"]
    absent = [k for k in needed if k not in state]
    if absent:
        raise CheckpointError(_key_error(path, kind, [], absent))
    num_joints, channels = state["pose_net.conv_x.0.weight"].shape[:2]
    num_vertices = state["mesh_net.conv_x.0.weight"].shape[0]
    depth_bins = state["pose_net.conv_z_1.0.weight"].shape[0] // channels
    has_param = "param_regressor.fc_pose.0.weight" in state
    param = {}
    if has_param:
        param = {"param_num_rotations": state["param_regressor.fc_pose.0.weight"].shape[0] // 6,
                 "param_shape_dim": state["param_regressor.fc_shape.0.weight"].shape[0]
                 if "param_regressor.fc_shape.0.weight" in state else 10}
    return ModelConfig(
        backbone_depth=_resnet_depth(state, path), input_size=input_size, depth_bins=int(depth_bins),
        sigma_bins=SIGMA_BINS, bbox_3d_size_m=BBOX_3D_SIZE_M[kind], deconv_channels=int(channels),
        num_joints=int(num_joints), num_vertices=int(num_vertices), kind=kind,
        body_model="smpl" if kind == "body" else "mano", mesh="full", pose2feat="separable",
        param_regressor=has_param, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), **param)


def _body_model(buffers: dict[str, torch.Tensor], kind: str, path: Path):
    from ..bodymodels.smpl import MANO, SMPL

    try:
        if kind == "body":
            return SMPL.from_official_buffers(buffers)
        return MANO.from_official_buffers(buffers, side="right", flat_hand_mean=False)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the snapshot's {'SMPL' if kind == 'body' else 'MANO'} layer buffers are "
                              f"not usable ({exc})") from None


def convert_official_snapshot(path: str | os.PathLike, kind: str = "body", input_size: int = INPUT_SIZE,
                              trust_file: bool = False) -> I2LMeshNet:
    """The authors' ``snapshot_N.pth.tar`` as our network (eval mode), same outputs as their test-mode forward.

    ``kind``: "body" (SMPL, 29 joints, 6890 vertices) or "hand" (MANO, 21 joints, 778 vertices); a snapshot of the
    other kind is an error. ``input_size``: the crop size the network is fed (the authors trained at 256).
    Raises :class:`CheckpointError` (one message naming the file and listing any unknown/missing/misshapen keys).
    """
    if kind not in KIND_VERTICES:
        raise ValueError(f"kind must be 'body' or 'hand', got {kind!r}")
    snapshot = path if isinstance(path, OfficialSnapshot) else read_official_snapshot(path, trust_file)
    path, state = snapshot.path, snapshot.state
    found = _snapshot_kind(state)
    if found is None:
        raise CheckpointError(f"{path}: neither an I2L-MeshNet body snapshot ({KIND_VERTICES['body']} vertices) "
                              f"nor a hand one ({KIND_VERTICES['hand']} vertices)")
    if found != kind:
        raise CheckpointError(f"{path}: this is a {found} snapshot ({KIND_VERTICES[found]} vertices, "
                              f"{KIND_JOINTS[found]} joints), not a {kind} one; use --kind {found}")

    weights: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        target = official_key_to_ours(key)
        if target is None or (target == BODY_MODEL and key.split(".", 1)[1] not in BODY_MODEL_BUFFERS[kind]):
            unknown.append(key)
        elif target == BODY_MODEL:
            buffers[key.split(".", 1)[1]] = value
        elif target != DROP:
            weights[target] = value
    missing_buffers = [f"human_model_layer.{b}" for b in BODY_MODEL_BUFFERS[kind]
                       if b not in buffers and b != "th_betas"]  # th_betas: a zero default, never used
    try:
        config = _infer_config(snapshot, kind, input_size)
    except CheckpointError:
        if unknown:  # a foreign network: its unknown keys say more than the sizes that could not be read
            raise CheckpointError(_key_error(path, kind, unknown, missing_buffers)) from None
        raise
    expected_vertices = KIND_VERTICES[kind]
    if config.num_vertices != expected_vertices:
        raise CheckpointError(f"{path}: MeshNet predicts {config.num_vertices} vertices, the {kind} model has "
                              f"{expected_vertices}")
    with torch.device("meta"):  # names and shapes only: nothing allocated
        net_keys = I2LMeshNet(config, torch.zeros(config.num_joints, config.num_vertices),
                              torch.zeros(1, 3, dtype=torch.long)).state_dict()
    derived = {"joint_regressor", "faces"}
    foreign = [k for k in weights if k not in net_keys]  # matched a rule but this network has no such layer
    # BatchNorm fills a missing num_batches_tracked itself (files from torch < 0.4.1 lack it).
    missing = [k for k in net_keys if k not in weights and k not in derived and not k.endswith("num_batches_tracked")]
    if unknown or foreign or missing or missing_buffers:
        unknown += [our_key_to_official(k) or k for k in foreign]
        raise CheckpointError(_key_error(path, kind, unknown, [our_key_to_official(k) or k for k in missing]
                                         + missing_buffers))
    misshapen = [f"module.{our_key_to_official(k)} {tuple(v.shape)} (expected {tuple(net_keys[k].shape)})"
                 for k, v in weights.items() if v.shape != net_keys[k].shape]
    if misshapen:
        raise CheckpointError(f"{path}: {len(misshapen)} weight(s) do not fit an I2L-MeshNet {kind} network with "
                              f"J={config.num_joints}, V={config.num_vertices}, D={config.depth_bins}: "
                              f"{_listing(misshapen)}")

    body_model = _body_model(buffers, kind, path)
    net = I2LMeshNet(config, body_model.joint_regressor.cpu(), body_model.faces.cpu())
    net.topology = body_model.topology_info()
    weights.update(joint_regressor=net.joint_regressor, faces=net.faces)
    net.load_state_dict({k: v.to(net_keys[k].dtype) for k, v in weights.items()}, strict=True)
    net.official_source = {"file": path.name, "epoch": snapshot.epoch, "kind": kind}
    return net.eval()


def _key_error(path: Path, kind: str, unknown: list[str], missing: list[str]) -> str:
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} unknown key(s): {_listing(['module.' + k for k in unknown])}")
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(['module.' + k for k in missing])}")
    return f"{path}: not a complete I2L-MeshNet {kind} snapshot: " + "; ".join(parts)


def convert_official_file(path: str | os.PathLike, out: str | os.PathLike, kind: str = "body",
                          input_size: int = INPUT_SIZE, trust_file: bool = False) -> I2LMeshNet:
    """Convert ``path`` (the authors' snapshot) and write our checkpoint to ``out`` (atomically); returns the net.

    The file is a normal i2lmesh checkpoint (``load_network`` reads it) plus a ``source`` entry naming the snapshot.
    """
    net = convert_official_snapshot(path, kind, input_size, trust_file)
    atomic_torch_save(network_state(net) | {"source": {"official_snapshot": net.official_source}}, out)
    return net


__all__ = ["KEY_RULES", "convert_official_snapshot", "convert_official_file", "read_official_snapshot",
           "official_key_to_ours", "our_key_to_official", "OfficialSnapshot"]
