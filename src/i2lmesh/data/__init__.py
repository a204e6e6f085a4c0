"""Data: one sample record for every dataset, the dataset formats, augmentation and training targets."""
from __future__ import annotations

from .augment import NO_AUGMENTATION, Augmentation, sample_augmentation
from .dataset import MixedDataset, RecordDataset, collate
from .record import SampleRecord, get_joint_set, map_joints, validate_records
from .targets import BadSampleError, BodyModelBank, TargetSpec, build_sample, collate_samples, load_image

__all__ = ["NO_AUGMENTATION", "Augmentation", "sample_augmentation", "MixedDataset", "RecordDataset", "collate",
           "SampleRecord", "get_joint_set", "map_joints", "validate_records", "BadSampleError", "BodyModelBank",
           "TargetSpec", "build_sample", "collate_samples", "load_image"]
