"""Open dataset folders (our on-disk format) as training/evaluation datasets for a given network."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch.utils.data import Dataset

from ..bodymodels import BodyModel
from ..bodymodels.joint_sets import JOINT_SETS
from ..data.dataset import MixedDataset, RecordDataset
from ..data.formats.i2lmesh import read_dataset
from ..data.targets import BodyModelBank, TargetSpec
from ..nets.i2l import I2LMeshNet


def target_spec(net: I2LMeshNet) -> TargetSpec:
    """What the data pipeline must produce for ``net``: its crop/heatmap sizes, joint set and J x mesh."""
    cfg = net.config
    name = (net.topology or {}).get("joint_set")
    if name not in JOINT_SETS:
        raise ValueError(f"network has no known joint set (topology joint_set={name!r})")
    return TargetSpec(cfg.input_size, cfg.heatmap_size, cfg.depth_bins, cfg.bbox_3d_size_m, JOINT_SETS[name],
                      cfg.num_vertices, net.joint_regressor.detach().cpu().double().numpy())


def open_datasets(paths: Sequence[str | Path], net: I2LMeshNet, train: bool, seed: int = 0,
                  body_model: BodyModel | None = None, model_path: str | Path | None = None) -> Dataset:
    """Folders in our format -> one dataset; 3D and 2D sets are mixed half-half as the reference.

    ``body_model`` evaluates records stored as body-model parameters (e.g. Anny for our synthetic data);
    ``model_path`` is where SMPL/MANO files are, for real datasets' fits.
    """
    if not paths:
        raise ValueError("no dataset folders given (--data DIR)")
    spec = target_spec(net)
    bank = BodyModelBank({body_model.name: body_model} if body_model is not None else None, model_path)
    sets_3d, sets_2d = [], []
    for path in paths:
        path = Path(path)
        records = read_dataset(path)
        dataset = RecordDataset(records, spec, train=train, bank=bank, seed=seed, name=str(path))
        has_3d = sum(bool(r.has_3d) for r in dataset.records) * 2 >= max(len(dataset.records), 1)
        (sets_3d if has_3d else sets_2d).append(dataset)
    if not train:
        return sets_3d[0] if len(sets_3d) == 1 and not sets_2d else MixedDataset(sets_3d, sets_2d, seed)
    return MixedDataset(sets_3d, sets_2d, seed)
