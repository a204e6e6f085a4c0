"""Training checkpoints: written atomically, holding everything needed to continue exactly.

A training checkpoint is a network file (``nets.factory.network_state``: format, model_config, topology, model)
plus optimizer, AMP scaler, progress (epoch, batches done in it, global step), RNG states and the resolved
training config. ``i2lmesh.load_network`` reads it like any network file.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..nets.factory import CheckpointError, atomic_torch_save, network_state, strip_parallel_prefix

logger = logging.getLogger(__name__)

# atomic_torch_save's temporary files: tempfile.mkstemp(prefix="<name>.", suffix=".tmp") adds 8 characters of
# [a-z0-9_], e.g. "last.pt.k3j_9x0q.tmp". A kill -9 during the write leaves one behind.
TEMP_FILE_PATTERN = re.compile(r"^.+\.[a-z0-9_]{8}\.tmp$")


def seed_everything(seed: int) -> None:
    """Seed every global generator training may touch (Python ``random``, NumPy, torch CPU and CUDA). Call it
    before anything random happens, in particular before building the network, so the seed fixes the initial
    weights too."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)  # CUDA generators included


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted ``atomic_torch_save`` left in ``folder`` (only names matching
    its pattern); returns them. Call it only while no other process writes there (training holds the run lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if TEMP_FILE_PATTERN.match(path.name) and path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append(path)
            logger.info("removed %s (%.1f MB): a checkpoint write that was interrupted", path, size / 1e6)
    return removed


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: str | Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                             scaler_state: dict | None, progress: dict[str, int], train_config: dict) -> None:
    """Write ``path`` atomically (temp file + rename). ``net`` is the bare network (not the DDP wrapper)."""
    state = network_state(net)
    state.update({"optimizer": optimizer.state_dict(), "scaler": scaler_state, "progress": dict(progress),
                  "train_config": train_config, "rng": capture_rng()})
    atomic_torch_save(state, path)


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "progress" not in data or "optimizer" not in data:
        raise CheckpointError(f"{path}: not an i2lmesh training checkpoint (no optimizer/progress state)")
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: training checkpoint has no weights ('model')")
    data["model"] = strip_parallel_prefix(data["model"])
    return data
