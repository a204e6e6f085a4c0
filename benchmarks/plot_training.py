"""Plot a run's learning curve from RUN/metrics.jsonl: training loss and held-out errors against steps.

    python benchmarks/plot_training.py runs/body --out docs/images/learning_curve_body.png
Needs matplotlib (``pip install matplotlib``). Prints the first/last validation metrics as JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.jsonl)")
    parser.add_argument("--labels", nargs="*", help="legend labels, one per run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    summary = {}
    for i, run in enumerate(args.runs):
        label = args.labels[i] if args.labels and i < len(args.labels) else run.name
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if "val_mpjpe_mm" in r]
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
        for key, style in (("val_mpjpe_mm", "-"), ("val_pa_mpjpe_mm", "--"), ("val_mpvpe_mm", ":")):
            ax_err.plot([r["step"] for r in val], [r.get(key) for r in val], style, marker="o", markersize=3,
                        label=f"{label} {key[4:].replace('_mm', '')}")
        if val:
            summary[label] = {"first": val[0], "last": val[-1], "train_steps": train[-1]["step"] if train else 0}
    ax_loss.set(xlabel="step", ylabel="training loss (sum of terms, bins)", title="training loss")
    ax_err.set(xlabel="step", ylabel="mm", title="held-out error", yscale="log")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
