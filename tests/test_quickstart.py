"""The README's main job at toy scale: synthesise, train briefly, evaluate, render, report."""
from __future__ import annotations

import json

from metric_bounds import ground_truth, pa_error_bounds_mm
from PIL import Image

from i2lmesh import load_network
from i2lmesh.cli import main


def test_quickstart_writes_report_results_and_pictures(tmp_path, anny_body):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--minutes", "0.02", "--num-train", "16", "--num-val", "4",
                 "--workers", "1", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] >= 1 and results["val_samples"] == 4
    # Not a 0-5000 mm range: the PA errors of the trained network and of the mean-pose baseline are below the
    # ground truth's spread (tests/metric_bounds.py), whatever the network learnt in its few steps.
    after, baseline = results["val_after_training"], results["mean_pose_baseline"]
    net, _ = load_network(results["checkpoint"])
    bounds = pa_error_bounds_mm(ground_truth(out / "data" / "val", net))
    for key, bound in bounds.items():
        assert 0 < after[key] <= bound and 0 < baseline[key] <= bound, (key, after[key], baseline[key], bound)
        # one body in the training poses' average articulation (their Procrustes mean), the reference for the limbs
        body = baseline["procrustes_mean_" + key]
        assert 0 < body <= bound, (key, body, bound)
    report = (out / "report.md").read_text()
    assert "| MPJPE |" in report and "predictions.png" in report
    # Which way the bodies face and how wide the meshes are (engine.evaluate.sides_and_width), said in the report
    sides = results["sides"]
    assert sides["samples"] == 4 and sides["vertex_x_spread_ratio"] >= 0.0 and sides["vertex_y_spread_ratio"] > 0.0
    assert ("Which way the people face" in report) == (sides["side_agreement"] is not None)
    picture = Image.open(out / "predictions.png")
    assert picture.size == (3 * 256, 4 * 256)  # input | prediction | ground truth, one row per held-out image
    assert (out / "run" / "checkpoints" / "last.pt").is_file()
