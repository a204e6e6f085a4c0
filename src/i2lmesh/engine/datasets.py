"""Open dataset folders (our on-disk format) as training/evaluation datasets for a given network, and the one
path from a training config to what a run needs: body model -> network -> datasets (:func:`training_inputs`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from torch.utils.data import ConcatDataset, Dataset, Subset

from ..bodymodels import BodyModel
from ..bodymodels.joint_sets import JOINT_SETS
from ..data.dataset import MixedDataset, RecordDataset
from ..data.formats.i2lmesh import read_dataset
from ..data.record import DatasetError, SampleRecord
from ..data.targets import BodyModelBank, TargetSpec
from ..nets.factory import body_model_for, build_network
from ..nets.i2l import I2LMeshNet
from .checkpoint import CheckpointError

if TYPE_CHECKING:
    from .train import TrainConfig

# Memory for the posed body-model meshes of the datasets one ``open_datasets`` call opens (RecordDataset's
# posed_cache_bytes): ~6,400 Anny bodies (83 kB each) or ~27,000 Anny hands; records beyond it are posed per sample.
POSED_CACHE_BYTES = 512 * 2 ** 20


def check_network(net: I2LMeshNet, source: str = "network") -> None:
    """Refuse a network whose config contradicts its topology (the joints and mesh its weights were made for),
    e.g. a body checkpoint whose config says "hand": it would load and score nonsense. ``source``: its file."""
    cfg, topology = net.config, net.topology or {}
    name = topology.get("joint_set")
    if name not in JOINT_SETS:
        raise CheckpointError(f"{source}: network has no known joint set (topology joint_set={name!r})")
    joints, kind = len(JOINT_SETS[name]), topology.get("kind", cfg.kind)
    vertices = topology.get("num_vertices", cfg.num_vertices)
    if (kind, joints, vertices) != (cfg.kind, cfg.num_joints, cfg.num_vertices):
        raise CheckpointError(f"{source}: the network's config (kind {cfg.kind!r}, {cfg.num_joints} joints, "
                              f"{cfg.num_vertices} vertices) contradicts its topology (a {kind} network: joint set "
                              f"{name!r} of {joints} joints, {vertices} vertices)")


def dataset_kinds(dataset: Dataset) -> set[str]:
    """The kinds ("body", "hand") of the records under ``dataset`` (RecordDataset, MixedDataset, Subset or
    ConcatDataset of them); empty when it holds no records (a plain Dataset)."""
    if isinstance(dataset, RecordDataset):
        return {r.kind for r in dataset.records}
    children = (dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset.dataset]
                if isinstance(dataset, Subset) else [d for g in dataset.groups for d in g]
                if isinstance(dataset, MixedDataset) else [])
    return set().union(*(dataset_kinds(d) for d in children))


def check_kinds(kinds: set[str], net: I2LMeshNet, source: str) -> None:
    """Refuse data of another kind than the network (hand data on a body network gives no valid joints)."""
    other = sorted(kinds - {net.config.kind})
    if other:
        raise DatasetError(f"{source}: {other[0]} samples, but the network is a {net.config.kind} network: use a "
                           f"{other[0]} checkpoint or preset, or {net.config.kind} data")


def _check_folder(path: Path, records: list[SampleRecord], net: I2LMeshNet, spec: TargetSpec) -> None:
    """A folder the network can learn from / be scored on: usable samples, of its kind, with its joints or a mesh."""
    if not records:
        raise DatasetError(f"{path}: no usable samples (the file lists none, or every annotation was rejected: see "
                           f"the warning above)")
    check_kinds({r.kind for r in records}, net, str(path))
    sets = {r.joint_set.name: r.joint_set for r in records if r.joint_set is not None}
    shared = {n for js in sets.values() for n in js.names} & set(spec.joint_set.names)
    has_mesh = any(r.fit_valid and (r.body_params or r.vertices_cam_m is not None) for r in records)
    if sets and not shared and not has_mesh:
        raise DatasetError(f"{path}: its joint set{'s' if len(sets) > 1 else ''} {', '.join(sets)} share no joint "
                           f"name with the network's {spec.joint_set.name!r}, and it has no mesh: nothing to learn or "
                           f"score")


def target_spec(net: I2LMeshNet) -> TargetSpec:
    """What the data pipeline must produce for ``net``: its crop/heatmap sizes, joint set and J x mesh."""
    cfg = net.config
    check_network(net)
    name = net.topology["joint_set"]
    return TargetSpec(cfg.input_size, cfg.heatmap_size, cfg.depth_bins, cfg.bbox_3d_size_m, JOINT_SETS[name],
                      cfg.num_vertices, net.joint_regressor.detach().cpu().double().numpy())


def open_datasets(paths: Sequence[str | Path], net: I2LMeshNet, train: bool, seed: int = 0,
                  body_model: BodyModel | None = None, model_path: str | Path | None = None,
                  posed_cache_bytes: int | None = None) -> Dataset:
    """Folders in our format -> one dataset; 3D and 2D sets are mixed half-half as the reference.

    ``body_model`` evaluates records stored as body-model parameters (e.g. Anny for our synthetic data);
    ``model_path`` is where SMPL/MANO files are, for real datasets' fits. The records' body-model meshes are posed
    here, in batches, within ``posed_cache_bytes`` over this call's folders (default :data:`POSED_CACHE_BYTES`;
    ``RecordDataset.pose_meshes``); the rest, or all with 0, are posed per sample (Anny CPU time: ~2.5 ms a body
    batched against ~15 ms alone). Refused with one line (:class:`DatasetError`, a ValueError): a folder with no
    usable sample, of another kind than ``net``, or whose joints share no name with the network's and that has no
    mesh.
    """
    if not paths:
        raise ValueError("no dataset folders given (--data DIR)")
    spec = target_spec(net)
    posed_cache_bytes = POSED_CACHE_BYTES if posed_cache_bytes is None else posed_cache_bytes
    bank = BodyModelBank({body_model.name: body_model} if body_model is not None else None, model_path)
    sets_3d, sets_2d = [], []
    for path in paths:
        path = Path(path)
        records = read_dataset(path)
        _check_folder(path, records, net, spec)
        dataset = RecordDataset(records, spec, train=train, bank=bank, seed=seed, name=str(path))
        posed_cache_bytes -= dataset.pose_meshes(posed_cache_bytes)
        has_3d = sum(bool(r.has_3d) for r in dataset.records) * 2 >= max(len(dataset.records), 1)
        (sets_3d if has_3d else sets_2d).append(dataset)
    if not train:
        return sets_3d[0] if len(sets_3d) == 1 and not sets_2d else MixedDataset(sets_3d, sets_2d, seed)
    return MixedDataset(sets_3d, sets_2d, seed)


@dataclass
class TrainingInputs:
    """What a training run of a config needs besides the config: its body model, a freshly built network and the
    opened datasets (``val_set`` None without a validation folder)."""

    body_model: BodyModel
    net: I2LMeshNet
    train_set: Dataset
    val_set: Dataset | None


def training_inputs(cfg: "TrainConfig", model_path: str | os.PathLike | None = None,
                    val: str | os.PathLike | None = None) -> TrainingInputs:
    """Body model -> network -> datasets for ``cfg``: the body model its network config names (SMPL/MANO files
    from ``model_path``), the network built from it (random weights: seed first, e.g.
    ``engine.checkpoint.seed_everything(cfg.seed)``, for the seed to fix them), ``cfg.data`` opened for training
    (augmented when ``cfg.augment``, seeded by ``cfg.seed``) and ``val`` (default ``cfg.val``) for scoring.
    Errors as :func:`open_datasets`."""
    model_cfg = cfg.model_config()
    body = body_model_for(model_cfg, model_path)
    net = build_network(model_cfg, body)
    kwargs = dict(body_model=body, model_path=model_path)
    train_set = open_datasets(cfg.data, net, train=cfg.augment, seed=cfg.seed, **kwargs)
    val = val if val is not None else cfg.val
    val_set = open_datasets([val], net, train=False, **kwargs) if val else None
    return TrainingInputs(body, net, train_set, val_set)
