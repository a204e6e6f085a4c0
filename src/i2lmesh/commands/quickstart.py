"""``i2lmesh quickstart``: the whole method on the embedded default (Anny), with nothing but the package.

1. renders a small synthetic training set and a held-out set from the Anny body model (exact ground truth);
2. trains ``cpu-small`` for a bounded few minutes (the engine, checkpoints and metrics as in any run);
3. evaluates on the held-out images (MPJPE, PA-MPJPE, MPVPE, PA-MPVPE) against a mean-pose baseline;
4. predicts through the public ``Predictor`` API and renders predictions next to the ground truth;
5. writes OUT/report.md (+ pictures, results.json) saying what was done and the numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..config import FAST_START

HELP = "Synthesise data, train cpu-small for a few minutes, evaluate, render predictions, write a report."
log = logging.getLogger(__name__)

# The quickstart trains with the training preset "cpu-fast-body" (bodies) or "cpu-fast" (hands): "budget" + the
# CPU fast start (config.FAST_START_BODY, config.FAST_START), or "budget" with --paper-training. The fast start's
# fields under their old name here: docs/training.md cites quickstart.FAST_TRAINING and benchmarks/bench_learning.py
# imports it.
FAST_TRAINING = FAST_START


# The default training budget, in steps so that a busy machine does not decide what is learned (docs/benchmarks.md,
# "Learning fast on a CPU"); --minutes caps the wall time.
DEFAULT_STEPS = 300


def training_preset_for(kind: str, paper_training: bool = False) -> str:
    """The training preset of the quickstart: "budget" (--paper-training), else the CPU fast start, at 64 px and 32
    images a step without augmentation for bodies ("cpu-fast-body"), as measured for hands ("cpu-fast")."""
    if paper_training:
        return "budget"
    return "cpu-fast-body" if kind == "body" else "cpu-fast"


def preset_for(kind: str) -> str:
    """The CPU preset of a kind ("body" or "hand")."""
    return "cpu-small" if kind == "body" else "cpu-small-hand"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("i2lmesh-quickstart"), help="output folder")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"training budget in optimizer steps (32 images at 64 px for bodies, 16 at 128 px for "
                        f"hands; default {DEFAULT_STEPS}, capped by --minutes)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time cap on training: stops early on a "
                        "busy or slow machine (default 10)")
    parser.add_argument("--paper-training", action="store_true", help="train as the paper (no body prior, "
                        "constant lr 3e-4, no warm-up): the reference's setting, slower to learn on a CPU")
    parser.add_argument("--num-train", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--num-val", type=int, default=200, help="held-out synthetic images")
    parser.add_argument("--kind", choices=("body", "hand"), default="body")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes for data synthesis and loading")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from ..config import training_preset
    from ..data.synth.generate import SynthConfig, generate
    from ..device import resolve_device
    from ..engine.checkpoint import load_network, seed_everything
    from ..engine.datasets import open_datasets, training_inputs
    from ..engine.evaluate import evaluate, sides_and_width
    from ..engine.prior import mean_pose_baseline
    from ..engine.train import TrainConfig, train

    resolve_device(args.device)  # a device this machine lacks stops the run before minutes of synthesis
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    preset = preset_for(args.kind)
    if args.steps < 1:
        raise ValueError(f"--steps should be >= 1, got {args.steps}")

    t0 = time.perf_counter()
    data_train, data_val = out / "data" / "train", out / "data" / "val"
    for folder, num, seed in ((data_train, args.num_train, args.seed * 2 + 1), (data_val, args.num_val,
                                                                                  args.seed * 2 + 2)):
        if not (folder / "annotations.json").is_file():
            generate(SynthConfig(kind=args.kind, num=num, seed=seed, size=256), folder, workers=args.workers)
    timings["synthesise_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fields = training_preset(training_preset_for(args.kind, args.paper_training))
    # A small --num-train still trains: a step takes at most the whole training set.
    batch_size = min(fields.get("batch_size", 16), args.num_train)
    if batch_size < fields.get("batch_size", 16):
        log.info("batch size %d (the %d training images)", batch_size, args.num_train)
    cfg = TrainConfig(**{**fields, **dict(
        preset=preset, data=[str(data_train)], val=str(data_val), out=str(out / "run"), batch_size=batch_size,
        num_workers=args.workers, seed=args.seed, device=args.device, val_every_steps=max(1, args.steps // 6),
        max_steps=args.steps, max_minutes=args.minutes, checkpoint_every_steps=100)})
    seed_everything(cfg.seed)  # before the network is built: --seed fixes its initial weights too
    inputs = training_inputs(cfg)
    body, train_set, val_set = inputs.body_model, inputs.train_set, inputs.val_set
    last = train(cfg, train_set, val_set, net=inputs.net)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    net, _ = load_network(last)
    result = evaluate(net, val_set, batch_size=16)
    sides = sides_and_width(net, val_set, list(body.joint_set.names))  # why the meshes may look thin (bodies)
    # The unaugmented training set's mean pose: the stronger reference, the same whether or not training augments.
    plain = open_datasets(cfg.data, net, train=False, body_model=body) if cfg.augment else train_set
    baseline = mean_pose_baseline(plain, val_set, net.joint_regressor.double().numpy(),
                                  net.topology.get("root_index", 0))
    timings["evaluate_s"] = time.perf_counter() - t0
    curve = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    val_curve = [r for r in curve if "val_mpjpe_mm" in r]

    t0 = time.perf_counter()
    picture = _predictions_picture(last, data_val, body, out / "predictions.png")
    curve_png = _curve_picture(val_curve, out / "learning_curve.png", baseline)
    timings["render_s"] = time.perf_counter() - t0

    results = {"preset": preset, "kind": args.kind, "train_samples": len(train_set), "val_samples": len(val_set),
               "steps": max((r["step"] for r in curve), default=0), "step_budget": args.steps,
               "minutes": args.minutes, "train_minutes": round(timings["train_s"] / 60, 1),
               "training": "paper" if args.paper_training else "fast", "lr": cfg.lr, "batch_size": cfg.batch_size,
               "input_size": cfg.model_config().input_size, "augment": cfg.augment,
               "learning_curve": [{k: r[k] for k in ("step", "val_mpjpe_mm", "val_pa_mpjpe_mm", "val_mpvpe_mm",
                                                     "val_pa_mpvpe_mm") if k in r} for r in val_curve],
               "val_before_training": val_curve[0] if val_curve else None, "val_after_training": result,
               "mean_pose_baseline": baseline, "sides": sides, "timings_s": {k: round(v, 1) for k, v in timings.items()},
               "checkpoint": str(last)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    _write_report(out / "report.md", results, picture, curve_png)
    print(f"quickstart: trained {preset} for {results['steps']} steps; held-out MPJPE "
          f"{result.get('mpjpe_mm', float('nan')):.1f} mm, PA-MPJPE {result.get('pa_mpjpe_mm', float('nan')):.1f} "
          f"mm (mean-pose baseline {baseline['mpjpe_mm']:.1f} / {baseline['pa_mpjpe_mm']:.1f} mm); "
          f"report: {out / 'report.md'}")
    return 0


MEANINGFUL_RATIO = 0.95  # error / mean-pose baseline below which the report says the network learned from the image


def meaning(after: dict, baseline: dict) -> str:
    """One sentence saying what the held-out numbers mean against the mean-pose baseline, and one on the limbs'
    pose against the Procrustes-mean body (``procrustes_mean_pa_mpjpe_mm``) where the baseline has it."""
    keys = [k for k in ("mpjpe_mm", "pa_mpjpe_mm") if after.get(k) is not None and baseline.get(k)]
    if len(keys) < 2:
        return "The errors are in millimetres on held-out images; lower is better."
    ratio = {k: after[k] / baseline[k] for k in keys}
    # Within MEANINGFUL_RATIO of the baseline is noise: the baseline itself moves ~2 % with the draw of training
    # samples and augmentations (docs/benchmarks.md, "Learning fast on a CPU").
    better = [name for name, k in (("the whole pose", "mpjpe_mm"), ("the body's aligned 3D layout", "pa_mpjpe_mm"))
              if ratio[k] < MEANINGFUL_RATIO]
    verdict = ("the network reads " + " and ".join(better) + " from the image better than answering one average "
               "pose for every image" if better else "the network has not yet learned more than the average pose "
               f"(a network that has must score below {MEANINGFUL_RATIO:.2f}x; train longer with --steps/--minutes)")
    text = (f"In one sentence: held-out MPJPE is {ratio['mpjpe_mm']:.2f}x and PA-MPJPE (after aligning scale and "
            f"rotation) {ratio['pa_mpjpe_mm']:.2f}x the mean-pose baseline, "
            f"i.e. {verdict}.")
    reference = baseline.get("procrustes_mean_pa_mpjpe_mm")
    if reference:
        limbs = after["pa_mpjpe_mm"] / reference
        text += (f" The limbs' pose: against one body in the training poses' average articulation (their Procrustes "
                 f"mean, PA-MPJPE {reference:.1f} mm), the network's PA-MPJPE is {limbs:.2f}x, so "
                 + ("it reads the limbs' pose from the image." if limbs < MEANINGFUL_RATIO else
                    "it has not yet learned the limbs' pose from the image"
                    + (", only the body's layout." if ratio["pa_mpjpe_mm"] < MEANINGFUL_RATIO else ".")))
    return text


def sides_sentence(sides: dict | None) -> str:
    """One sentence on which way the predicted bodies face and how wide they are (``sides_and_width``'s dict), or
    "" when there is none (hands)."""
    if not sides or sides.get("side_agreement") is None:
        return ""
    text = (f"Which way the people face: the predicted body's left side is on the same side of the image as the person's in "
            f"{100 * sides['side_agreement']:.0f} % of the held-out bodies (50 % is chance), and the meshes are "
            f"{100 * sides['vertex_x_spread_ratio']:.0f} % as wide and {100 * sides['vertex_y_spread_ratio']:.0f} % "
            f"as tall as the bodies.")
    if sides["side_agreement"] < 0.75:
        text += (" Until the network tells front from back, each vertex's best guess is between the two mirror "
                 "layouts, on the body's axis: that is why the meshes below look thin; telling which way a person "
                 "faces takes far longer than this run (docs/benchmarks.md, \"Fourth session\").")
    return text


def _predictions_picture(checkpoint: Path, data_val: Path, body, path: Path, count: int = 4) -> Path:
    """Input | prediction (through the public Predictor) | ground truth, for a few held-out images."""
    from PIL import Image

    from ..data.formats.i2lmesh import read_dataset
    from ..inference import Predictor
    from ..render import overlay, render_mesh

    predictor = Predictor.from_checkpoint(checkpoint)
    rows = []
    for record in read_dataset(data_val)[:count]:
        image = np.asarray(Image.open(record.image_path).convert("RGB"))
        K = np.asarray(record.K, np.float64)
        person = predictor.predict(image, boxes=[list(record.bbox_xywh)], intrinsics=K,
                                   root_depth_m=[record.root_depth_m])[0]
        import torch

        params = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32)[None] for k, v in record.body_params.items()}
        with torch.no_grad():
            gt = body(**params).vertices_m[0].numpy()
        size = image.shape[:2]
        pred_img = overlay(image, render_mesh(person.vertices_m, person.faces, K, size, backend="numba"), 0.85)
        gt_img = overlay(image, render_mesh(gt, body.faces.numpy(), K, size, (0.55, 0.8, 0.55), backend="numba"),
                         0.85)
        rows.append(np.concatenate([image, pred_img, gt_img], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


CURVE_KEYS = (("val_mpjpe_mm", "MPJPE", (31, 119, 180)), ("val_pa_mpjpe_mm", "PA-MPJPE", (255, 127, 14)),
              ("val_mpvpe_mm", "MPVPE", (44, 160, 44)), ("val_pa_mpvpe_mm", "PA-MPVPE", (214, 39, 40)))


def _curve_picture(val_curve: list[dict], path: Path, baseline: dict | None = None) -> Path | None:
    """The held-out learning curve (error in mm against training step), with the mean-pose baseline dashed;
    matplotlib when installed, else drawn with PIL (always available). None without any validation point."""
    if not val_curve:
        return None
    baseline = baseline or {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _curve_picture_pil(val_curve, path, baseline)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label, rgb in CURVE_KEYS:
        points = [(r["step"], r[key]) for r in val_curve if r.get(key) is not None]
        if not points:
            continue
        color = tuple(c / 255 for c in rgb)
        ax.plot(*zip(*points), marker="o", label=label, color=color)
        if baseline.get(key[4:]) is not None:
            ax.axhline(baseline[key[4:]], linestyle="--", color=color, alpha=0.6)
        if baseline.get("procrustes_mean_" + key[4:]) is not None:
            ax.axhline(baseline["procrustes_mean_" + key[4:]], linestyle=":", color=color, alpha=0.8)
    ax.set(xlabel="training step", ylabel="held-out error (mm)")
    ax.set_title("learning curve (dashed: mean pose; dotted: Procrustes-mean body)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _curve_picture_pil(val_curve: list[dict], path: Path, baseline: dict,
                       size: tuple[int, int] = (640, 360)) -> Path:
    """The learning curve drawn with PIL alone (no matplotlib): lines with dots, dashed baselines, axes, labels."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 60, 110, 25, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    series = [(label, rgb, [(r["step"], r[key]) for r in val_curve if r.get(key) is not None],
               baseline.get(key[4:]), baseline.get("procrustes_mean_" + key[4:])) for key, label, rgb in CURVE_KEYS]
    series = [s for s in series if s[2]]
    values = [v for _, _, pts, *refs in series for v in [p[1] for p in pts] + [b for b in refs if b is not None]]
    steps = [p[0] for _, _, pts, *_ in series for p in pts]
    lo, hi = 0.0, max(values) * 1.05
    s_hi = max(max(steps), 1)

    def xy(step: float, value: float) -> tuple[float, float]:
        return (left + (width - left - right) * step / s_hi,
                height - bottom - (height - top - bottom) * (value - lo) / max(hi - lo, 1e-9))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for k in range(6):  # y ticks
        value = lo + (hi - lo) * k / 5
        y = xy(0, value)[1]
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((5, y - 6), f"{value:.0f}", fill="black")
    for k in range(5):  # x ticks
        step = s_hi * k / 4
        x = xy(step, lo)[0]
        draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
        draw.text((x - 10, height - bottom + 6), f"{step:.0f}", fill="black")
    draw.text((left, 5), "held-out error (mm) vs step; dashed: mean pose; dotted: Procrustes-mean body", fill="black")
    for n, (label, rgb, points, base, body) in enumerate(series):
        pixels = [xy(*p) for p in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=rgb, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=rgb)
        if base is not None:
            y = xy(0, base)[1]
            for x0 in range(left, width - right, 12):
                draw.line([x0, y, min(x0 + 6, width - right), y], fill=rgb, width=1)
        if body is not None:
            y = xy(0, body)[1]
            for x0 in range(left, width - right, 6):
                draw.point([(x0, y), (x0 + 1, y)], fill=rgb)
        draw.line([width - right + 10, top + 10 + 18 * n, width - right + 30, top + 10 + 18 * n], fill=rgb, width=3)
        draw.text((width - right + 34, top + 4 + 18 * n), label, fill="black")
    image.save(path)
    return path


def _write_report(path: Path, r: dict, picture: Path, curve: Path | None) -> None:
    after, before, base = r["val_after_training"], r["val_before_training"] or {}, r["mean_pose_baseline"]
    rows = [("MPJPE", "mpjpe_mm"), ("PA-MPJPE", "pa_mpjpe_mm"), ("MPVPE", "mpvpe_mm"), ("PA-MPVPE", "pa_mpvpe_mm")]

    def mm(value) -> str:
        return "–" if value is None else f"{value:.1f}"

    def ratio(value, reference) -> str:
        return "–" if value is None or not reference else f"{value / reference:.2f}x"

    table = "\n".join(f"| {name} | {mm(before.get('val_' + key))} | {mm(after.get(key))} | {mm(base.get(key))} | "
                      f"{ratio(after.get(key), base.get(key))} |" for name, key in rows)
    curve_rows = "\n".join(f"| {p['step']} | " + " | ".join(mm(p.get('val_' + key)) for _, key in rows) + " |"
                           for p in r["learning_curve"])
    steps = (f"{r['steps']} steps of {r['batch_size']} images (budget {r['step_budget']}, capped at "
             f"{r['minutes']:g} minutes; took {r['train_minutes']:g} min)")
    if r["training"] == "fast":
        how = (f"{steps} with the CPU fast start: Adam, lr {r['lr']:g} with a 30-step warm-up and a cosine decay, a "
               f"body prior in the lixel heads, the paper's five losses"
               f"{'' if r['augment'] else ', no augmentation'} (docs/training.md, \"Learning fast on a CPU\")")
    else:
        how = f"{steps} as the paper: Adam, constant lr {r['lr']:g}, the paper's five losses"
    text = f"""# i2lmesh quickstart report

What was done, on this machine, with nothing but the package:

1. Rendered {r['train_samples']} synthetic training images and {r['val_samples']} held-out images of random Anny
   {r['kind']} samples (random pose, shape, camera, colours, backgrounds, occluders) with exact ground truth.
2. Trained the `{r['preset']}` I2L-MeshNet (ResNet-18, {r['input_size']}x{r['input_size']} input, lixel heatmaps
   with D = 32) from scratch for {how}.
3. Evaluated on the held-out images (camera-space decoding with the true root depth; docs/evaluation.md).
4. Predicted through the public `i2lmesh.Predictor` API and rendered the meshes.

| held-out error (mm) | before training | after training | mean-pose baseline | after / baseline |
|---|---|---|---|---|
{table}

{meaning(after, base)} The mean-pose baseline always answers the training set's mean pose and mesh: a network that
learned nothing from the image scores about that. MPJPE also counts the body's global orientation (the synthetic
bodies face every direction, so their mean is a thin average body); PA-MPJPE aligns scale and rotation first, and
against that thin mean it mostly measures the body's layout (height, depth, width), not the limbs' pose: for that,
the reference is one body in the average articulated pose (the Procrustes mean; dotted in the learning curve).
{sides_sentence(r.get("sides"))} A few CPU minutes from random initialisation are
far from the paper's setting (ImageNet initialisation, hours on GPUs); see docs/benchmarks.md for longer runs and
`i2lmesh train` to go further.

Input, prediction and ground truth for held-out images:

![predictions]({picture.name})

## Learning curve (held-out error, mm)

"""
    if curve is not None:
        text += f"![learning curve]({curve.name})\n\n"
    text += "| step | " + " | ".join(name for name, _ in rows) + " |\n|---|---|---|---|---|\n" + curve_rows + "\n"
    text += f"\nTimings (s): {json.dumps(r['timings_s'])}. Checkpoint: `{r['checkpoint']}`.\n"
    path.write_text(text)
