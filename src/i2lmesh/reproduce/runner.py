"""Train and score every row of the paper's ablation tables with an equal budget, then write tables and charts.

Each distinct network config is trained once (rows shared between tables reuse the run) with the same data, data
order, seed, optimizer and budget; a finished run leaves ``result.json`` in its folder, so an interrupted study
continues where it stopped. The budget is CPU time of the training process (``--budget-minutes`` x its torch
threads, i.e. that many minutes of an otherwise idle machine), so other work on a shared machine does not shrink
one variant's share (only roughly: busy-waiting threads count as CPU time, so a loaded machine still shrinks a
run). ``--budget-steps`` gives every variant the same number of training images instead — the paper's protocol
(same schedule for all), independent of the machine — and reports the CPU time each took. On GPUs use
``--budget-minutes`` as plain wall time with ``--wall-clock``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..config import get_preset, training_preset
from .tables import TABLES, Row, Table

log = logging.getLogger(__name__)


def run_row(row: Row, out: Path, data: list[str], val: str, budget_minutes: float | None, preset: str = "cpu-small",
            lr: float | None = None, batch_size: int = 16, seed: int = 0, workers: int = 2, device: str = "auto",
            wall_clock: bool = False, imagenet_weights: str = "none", keep_checkpoints: bool = False,
            max_steps: int | None = None) -> dict[str, Any]:
    """Train one row's network within the budget (``budget_minutes`` and/or ``max_steps``) and score it on ``val``;
    cached in OUT/runs/BUDGET/KEY/result.json. Training settings: the training preset "budget"
    (``config.TRAINING_PRESETS``; ``lr`` None: its lr, 3e-4) with this row's network."""
    from ..engine.checkpoint import seed_everything
    from ..engine.datasets import training_inputs
    from ..engine.evaluate import evaluate
    from ..engine.train import TrainConfig, train

    heatmap = get_preset(preset).heatmap_size
    key = row.key(heatmap)
    budget_tag = f"{max_steps}steps" if budget_minutes is None else (
        f"{budget_minutes:g}min" + ("-wall" if wall_clock else "") + (f"-{max_steps}steps" if max_steps else ""))
    run_dir = out / "runs" / budget_tag / key
    result_file = run_dir / "result.json"
    if result_file.is_file():
        log.info("reproduce: %s: reusing %s", row.label, result_file)
        return json.loads(result_file.read_text())
    if run_dir.exists():  # an interrupted run: start it again from scratch (the budget must be whole)
        shutil.rmtree(run_dir)
    if budget_minutes is None and max_steps is None:
        raise ValueError("set a budget: minutes, steps or both")
    budget = {} if budget_minutes is None else {"max_minutes": budget_minutes} if wall_clock else {
        "max_cpu_minutes": budget_minutes * torch.get_num_threads()}
    cfg = TrainConfig(**training_preset(
        "budget", preset=preset, model=row.model_overrides(heatmap), data=list(data), val=None, out=str(run_dir),
        batch_size=batch_size, seed=seed, num_workers=workers, device=device, imagenet_weights=imagenet_weights,
        max_steps=max_steps, **({} if lr is None else {"lr": lr}), **budget))
    seed_everything(cfg.seed)  # before the network is built: the seed fixes its initial weights too
    inputs = training_inputs(cfg, val=val)
    net, train_set, val_set = inputs.net, inputs.train_set, inputs.val_set
    log.info("reproduce: %s (%s): training, budget %s", row.label, key, budget_tag)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    progress = {"step": 0}
    train(cfg, train_set, None, net=net, on_step=progress.update)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    steps = progress["step"]
    metrics = evaluate(net, val_set, batch_size=batch_size, device=next(net.parameters()).device)
    head_params = sum(p.numel() for p in net.mesh_net.parameters())
    result = {
        "label": row.label, "key": key, "preset": preset, "model": cfg.model, "steps": steps,
        "images": steps * batch_size, "train_wall_s": wall, "train_cpu_s": cpu, "lr": cfg.lr, "batch_size": batch_size,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6, "head_params_m": head_params / 1e6,
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
    }
    if not keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    tmp = result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, result_file)
    return result


def run_table(table: Table, out: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """Every row of ``table`` (see :func:`run_row` for the arguments); writes OUT/TABLE.md and OUT/TABLE.png."""
    results = [{**run_row(row, out, **kwargs), "label": row.label} for row in table.rows]
    write_markdown(table, results, out / f"{table.name}.md")
    draw_chart(table, results, out / f"{table.name}.png")
    return results


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_markdown(table: Table, results: list[dict[str, Any]], path: Path) -> None:
    """Ours next to the paper's, one row per setting."""
    lines = [f"### {table.title}", "",
             "| setting | MPJPE | PA-MPJPE | MPVPE | params (M) | steps | CPU min | paper MPJPE | paper PA-MPJPE |"
             " paper GPU mem (GB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row, res in zip(table.rows, results):
        note = f" ({row.note})" if row.note else ""
        lines.append(f"| {row.label}{note} | {_fmt(res.get('mpjpe_mm'))} | {_fmt(res.get('pa_mpjpe_mm'))} | "
                     f"{_fmt(res.get('mpvpe_mm'))} | {_fmt(res.get('params_m'))} | {res['steps']} | "
                     f"{res['train_cpu_s'] / 60:.1f} | {_fmt(row.paper_mpjpe)} | {_fmt(row.paper_pa_mpjpe)} | "
                     f"{_fmt(row.paper_memory_gb)} |")
    path.write_text("\n".join(lines) + "\n")


def draw_chart(table: Table, results: list[dict[str, Any]], path: Path) -> None:
    """Two bar panels with the rows in the same order: our MPJPE / PA-MPJPE and the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row.label for row in table.rows]
    y = range(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.55 * len(labels) + 1.6), sharey=True)
    panels = (("ours (synthetic, equal budget)", [r.get("mpjpe_mm") for r in results],
               [r.get("pa_mpjpe_mm") for r in results]),
              ("paper (Human3.6M)", [row.paper_mpjpe for row in table.rows],
               [row.paper_pa_mpjpe for row in table.rows]))
    for ax, (title, mpjpe, pa) in zip(axes, panels):
        ax.barh([i - 0.2 for i in y], [v or 0 for v in mpjpe], height=0.4, label="MPJPE", color="#4477aa")
        ax.barh([i + 0.2 for i in y], [v or 0 for v in pa], height=0.4, label="PA-MPJPE", color="#ee7733")
        for i, v in enumerate(mpjpe):
            ax.text(v or 0, i - 0.2, " –" if v is None else f" {v:.0f}", va="center", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("mm (lower is better)")
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(list(y), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(table.title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_names(names: list[str]) -> list[str]:
    """Expand "all" and check the names (one-line error listing the choices)."""
    if "all" in names:
        return list(TABLES)
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ValueError(f"unknown table {unknown[0]!r}; choose from: {', '.join(TABLES)}, all")
    return names


__all__ = ["run_row", "run_table", "write_markdown", "draw_chart", "table_names"]
