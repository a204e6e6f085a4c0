"""Torch datasets over sample records, and the reference's half-3D / half-2D mixing (``MultipleDatasets``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from .augment import NO_AUGMENTATION, sample_augmentation
from .record import DatasetError, SampleRecord, validate_records
from .targets import (BadSampleError, BodyModelBank, PosedMeshes, TargetSpec, build_sample, collate_samples,
                      load_image)

log = logging.getLogger(__name__)

MAX_SKIPS = 50  # consecutive unusable samples tolerated before giving up (a dataset that is mostly broken)


class RecordDataset(Dataset):
    """Records -> (image (3,S,S), target arrays, meta) through the sample pipeline of ``targets.build_sample``.

    train: draw the paper's augmentation per sample (deterministic in ``seed``, the epoch and the index; call
    :meth:`set_epoch`), flip disabled for hands. A missing or corrupt image (or an unusable box) is logged with its
    path, counted in ``skipped`` and replaced by the next usable sample; nothing crashes mid-epoch. Records with
    NaN/inf or empty boxes are rejected up front with a count in the log.

    posed_cache_bytes: memory (bytes) for the records' posed body-model meshes, computed here in batches
    (:meth:`pose_meshes`, :class:`PosedMeshes`); records beyond it, or all with 0, pose the body model per sample.
    Samples are the same either way up to float32 rounding of the model's output (a batch may sum in another
    order; tests/test_data_cache.py bounds the difference).
    """

    def __init__(self, records: Sequence[SampleRecord], spec: TargetSpec, train: bool = False,
                 bank: BodyModelBank | None = None, image_root: str | Path | None = None, seed: int = 0,
                 name: str = "dataset", posed_cache_bytes: int = 0) -> None:
        self.name = name
        self.records = validate_records(list(records), name)
        self.spec, self.train, self.bank = spec, train, bank
        self.image_root = None if image_root is None else Path(image_root)
        self.seed, self.epoch = seed, 0
        self.skipped: dict[str, str] = {}  # image path -> reason (per worker process)
        self.posed: PosedMeshes | None = None
        if posed_cache_bytes > 0:
            self.pose_meshes(posed_cache_bytes)

    def pose_meshes(self, budget_bytes: int) -> int:
        """Pose the records' body models now, in batches, within ``budget_bytes`` (:meth:`PosedMeshes.compute`);
        returns the bytes held. Call it before DataLoader workers fork (they then share the meshes copy-on-write,
        even when re-created every epoch); 0 drops the meshes."""
        self.posed = None
        if budget_bytes > 0 and self.bank is not None:
            self.posed = PosedMeshes.compute(self.records, self.bank, budget_bytes, name=self.name)
        return 0 if self.posed is None else self.posed.nbytes

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def image_path(self, record: SampleRecord) -> Path:
        path = Path(record.image_path)
        return path if path.is_absolute() or self.image_root is None else self.image_root / path

    def load(self, index: int):
        record = self.records[index]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            augmentation = sample_augmentation(rng, allow_flip=record.kind != "hand")
        else:
            augmentation = NO_AUGMENTATION
        image = load_image(self.image_path(record))
        posed = None if self.posed is None else self.posed.get(index)
        return build_sample(record, image, augmentation, self.spec, self.bank, posed)

    def __getitem__(self, index: int):
        if not self.records:
            raise IndexError(f"{self.name}: no usable records")
        attempts = min(MAX_SKIPS, len(self.records))
        for attempt in range(attempts):
            i = (index + attempt) % len(self.records)
            try:
                return self.load(i)
            except BadSampleError as exc:
                self._skip(self.records[i], str(exc))
        reason = next(iter(self.skipped.values()))
        what = ("no usable image found" if attempts == len(self.records)
                else f"{attempts} consecutive unusable samples from index {index}")
        raise DatasetError(f"{self.name}: {what} ({len(self.skipped)} of {len(self.records)} unusable so far), "
                           f"e.g. {reason}")

    def _skip(self, record: SampleRecord, reason: str) -> None:
        path = str(self.image_path(record))
        if path not in self.skipped:
            self.skipped[path] = reason
            log.warning("%s: skipping sample (%d skipped so far): %s", self.name, len(self.skipped), reason)


class MixedDataset(Dataset):
    """The reference's mixing: 3D sets concatenated, 2D sets concatenated, then each group fills half of an epoch
    of 2 x max(len3D, len2D) samples; the shorter group is cycled, its last partial cycle drawn at random.
    With only one group present, it is just that group."""

    def __init__(self, datasets_3d: Sequence[Dataset], datasets_2d: Sequence[Dataset] = (), seed: int = 0) -> None:
        self.groups = [g for g in (list(datasets_3d), list(datasets_2d)) if g]
        assert self.groups, "MixedDataset needs at least one dataset."
        self.group_lengths = [sum(len(d) for d in g) for g in self.groups]
        self.max_len = max(self.group_lengths)
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return self.max_len * len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for group in self.groups:
            for d in group:
                if hasattr(d, "set_epoch"):
                    d.set_epoch(epoch)

    def source_index(self, index: int) -> tuple[int, int]:
        """(group, index within the group's concatenation) of a mixed index."""
        group, i = divmod(index, self.max_len)
        length = self.group_lengths[group]
        full_cycles = (self.max_len // length) * length
        if i >= full_cycles:  # last partial cycle: a random sample (deterministic in seed, epoch and index)
            i = int(np.random.default_rng([self.seed, self.epoch, index]).integers(length))
        else:
            i %= length
        return group, i

    def __getitem__(self, index: int):
        group, i = self.source_index(index)
        for d in self.groups[group]:
            if i < len(d):
                return d[i]
            i -= len(d)
        raise IndexError(index)


def collate(batch: list[Any]):
    """DataLoader ``collate_fn``: (images (B,3,S,S), LossTargets, meta)."""
    return collate_samples(batch)


__all__ = ["RecordDataset", "MixedDataset", "collate"]
