"""The README's main job at toy scale: synthesise, train briefly, evaluate, render, report."""
from __future__ import annotations

import json

from PIL import Image

from i2lmesh.cli import main


def test_quickstart_writes_report_results_and_pictures(tmp_path, anny_body):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--minutes", "0.02", "--num-train", "16", "--num-val", "4",
                 "--workers", "1", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] >= 1 and results["val_samples"] == 4
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "mpvpe_mm", "pa_mpvpe_mm"):
        assert 0 < results["val_after_training"][key] < 5000
    assert 0 < results["mean_pose_baseline"]["mpjpe_mm"] < 2000
    report = (out / "report.md").read_text()
    assert "| MPJPE |" in report and "predictions.png" in report
    picture = Image.open(out / "predictions.png")
    assert picture.size == (3 * 256, 4 * 256)  # input | prediction | ground truth, one row per held-out image
    assert (out / "run" / "checkpoints" / "last.pt").is_file()
