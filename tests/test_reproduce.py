"""`i2lmesh reproduce`: the tables map to valid configs at any scale, runs are shared and cached, reports are
written with the paper's numbers beside ours."""
from __future__ import annotations

import json

import pytest

from i2lmesh import get_preset
from i2lmesh.reproduce import TABLES, run_row, table_names
from i2lmesh.reproduce.runner import write_markdown
from i2lmesh.reproduce.tables import MESHNET, Row


@pytest.mark.parametrize("preset", ["cpu-small", "paper-body"])
def test_every_row_is_a_valid_config_at_every_scale(preset):
    heatmap = get_preset(preset).heatmap_size
    for table in TABLES.values():
        for row in table.rows:
            cfg = get_preset(preset, **row.model_overrides(heatmap))
            if row.resolution is not None:  # the paper's resolution keeps its ratio to the 64-bin grid
                assert cfg.mesh_xy_bins == cfg.depth_bins == row.resolution * heatmap // 64


def test_resolution_mapping_and_shared_runs():
    # Paper 8 bins on its 64-bin grid = no upsampling of the 8x8 ResNet output; on cpu-small's 32-bin grid, 4.
    row = Row("lixel 8", MESHNET, resolution=8)
    assert row.model_overrides(32) == {"cascade": "meshnet", "xy_bins": 4, "depth_bins": 4}
    assert row.model_overrides(64)["xy_bins"] == 8
    # The MeshNet-alone lixel network appears in four tables and is trained once.
    keys = {t: {r.key(32) for r in TABLES[t].rows} for t in TABLES}
    shared = Row("x", MESHNET).key(32)
    assert all(shared in k for k in keys.values() if k is not keys["table3"]) and shared in keys["table3"]
    assert len({k for ks in keys.values() for k in ks}) == 17


def test_table_names():
    assert table_names(["all"]) == list(TABLES)
    with pytest.raises(ValueError, match="unknown table 'table7'"):
        table_names(["table7"])


def test_markdown_puts_the_paper_beside_ours(tmp_path):
    table = TABLES["table3"]
    results = [{"mpjpe_mm": 100.0 + i, "pa_mpjpe_mm": 50.0, "mpvpe_mm": 120.0, "params_m": 33.0, "steps": 10,
                "train_cpu_s": 60.0} for i in range(len(table.rows))]
    write_markdown(table, results, tmp_path / "t.md")
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[4].startswith("| MeshNet | 100.0 | 50.0 | 120.0 | 33.0 | 10 | 1.0 | 86.2 | 59.8 |")
    assert "| 25.5 | 17.1 |" in lines[6]


def test_run_row_trains_scores_and_caches(tmp_path, monkeypatch):
    from i2lmesh.data.synth.generate import SynthConfig, generate

    data = tmp_path / "data"
    generate(SynthConfig(kind="body", num=8, seed=1, size=128), data, workers=1)
    row = Row("MeshNet", MESHNET)
    kwargs = dict(data=[str(data)], val=str(data), budget_minutes=None, batch_size=4, workers=0, device="cpu",
                  max_steps=2)
    result = run_row(row, tmp_path / "out", **kwargs)
    assert result["steps"] == 2 and result["num_samples"] == 8 and result["mpjpe_mm"] > 0
    run_dir = tmp_path / "out" / "runs" / "2steps" / row.key(32)
    assert json.loads((run_dir / "result.json").read_text()) == result
    assert not (run_dir / "checkpoints").exists()  # removed unless --keep-checkpoints

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant must not train again")

    monkeypatch.setattr("i2lmesh.engine.train.train", no_training)
    assert run_row(row, tmp_path / "out", **kwargs) == result
