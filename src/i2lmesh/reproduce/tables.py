"""The paper's ablation tables as experiment lists: each row is a network config and the paper's numbers.

Rows name their settings as the paper does, at the paper's heatmap resolution r (8, 16, 32 or 64 bins on a 64-bin
grid). At another scale the resolution keeps its ratio to the preset's heatmap (r * heatmap_size / 64: on
``cpu-small``'s 32-bin grid, 8 -> 4 bins, i.e. no upsampling, exactly as the paper's 8 on its 8x8 ResNet output).

Paper numbers: Moon & Lee, ECCV 2020, Tables 1-3 (Human3.6M protocol 2, MPJPE / PA-MPJPE in mm, GPU memory at
batch 16 per GPU) and supplementary Tables 8-10. ``None`` where the paper reports none (e.g. out of memory).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    """One table row: the label the paper uses, model-config overrides, and the paper's result."""

    label: str
    settings: dict[str, Any]
    paper_mpjpe: float | None = None
    paper_pa_mpjpe: float | None = None
    paper_memory_gb: float | None = None
    paper_params_m: float | None = None
    note: str = ""
    resolution: int | None = None  # the paper's heatmap resolution (bins on its 64-bin grid); None: full

    def model_overrides(self, heatmap_size: int) -> dict[str, Any]:
        """Config overrides at a preset whose heatmap has ``heatmap_size`` bins (see the module docstring)."""
        overrides = dict(self.settings)
        if self.resolution is not None:
            bins = max(1, self.resolution * heatmap_size // 64)
            overrides.update(xy_bins=bins, depth_bins=bins)
        return overrides

    def key(self, heatmap_size: int) -> str:
        """A run name shared by identical configs across tables (a run is trained once)."""
        overrides = self.model_overrides(heatmap_size)
        return "-".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "default"


MESHNET = {"cascade": "meshnet"}  # "we removed PoseNet from all models" (Tables 1, 2, 8, 9, 10)


def _lixel(resolution: int | None, mpjpe: float, memory: float) -> Row:
    label = "xyz lixel hm. (ours)" + (f" {resolution}, {resolution}, {resolution}" if resolution else "")
    return Row(label, MESHNET, mpjpe, 59.8 if resolution is None else None, memory, 73 if resolution is None else None,
               resolution=resolution)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


TABLES: dict[str, Table] = {
    "table1": Table("table1", "Target representations (paper Table 1)", (
        Row("SMPL param.", {**MESHNET, "target": "param"}, 100.3, None, 4.3, 91,
            note="Anny: 104 bone rotations + 6 phenotypes"),
        Row("xyz coord.", {**MESHNET, "target": "xyz-fc"}, 114.3, None, 5.4, 117),
        Row("xyz lixel hm. wo. spatial", {**MESHNET, "target": "lixel-fc"}, 92.6, None, 4.5, 82),
        Row("xyz lixel hm. (ours)", MESHNET, 86.2, 59.8, 4.6, 73),
    )),
    "table2": Table("table2", "Heatmap representations and resolution (paper Table 2, with Table 10's 2.5D)", (
        Row("xyz voxel hm. 8x8x8", {**MESHNET, "target": "voxel"}, 102.8, None, 4.3, resolution=8),
        Row("xyz voxel hm. 16x16x16", {**MESHNET, "target": "voxel"}, None, None, None, resolution=16,
            note="out of memory in the paper (12 GB GPU)"),
        Row("xy pixel hm. + z lixel hm. 8x8, 8", {**MESHNET, "target": "pixel-lixel"}, 97.9, None, 3.5, resolution=8),
        Row("xy pixel hm. + z lixel hm. 32x32, 32", {**MESHNET, "target": "pixel-lixel"}, 89.4, None, 5.7,
            resolution=32),
        Row("2.5D hm. [Iqbal] 8x8, 8x8", {**MESHNET, "target": "2.5d"}, 107.4, None, 3.6, resolution=8),
        Row("2.5D hm. [Iqbal] 32x32, 32x32", {**MESHNET, "target": "2.5d"}, 100.4, None, 8.4, resolution=32),
        _lixel(8, 100.2, 3.4),
        _lixel(32, 94.8, 4.0),
        _lixel(None, 86.2, 4.6),
    )),
    "table3": Table("table3", "Cascading PoseNet and MeshNet (paper Table 3)", (
        Row("MeshNet", MESHNET, 86.2, 59.8),
        Row("PoseNet+MeshNet (ours)", {}, 81.8, 58.0),
        Row("MeshNet GT (ground-truth pose in)", {"cascade": "gt-pose"}, 25.5, 17.1),
    )),
    "marginalisation": Table("marginalisation", "Marginalisation (supplementary Tables 8 and 9)", (
        Row("avg on the ResNet output (early)", {**MESHNET, "early_marginalisation": True}, 93.5, 64.1, 4.4),
        Row("max pooling", {**MESHNET, "marginalisation": "max"}, 93.5, 64.1),
        Row("weighted sum", {**MESHNET, "marginalisation": "weighted"}, 89.4, 61.4),
        Row("avg pooling (ours)", MESHNET, 86.2, 59.8, 4.6),
    )),
}


__all__ = ["Row", "Table", "TABLES"]
