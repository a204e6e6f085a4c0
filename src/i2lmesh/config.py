"""Network configuration: one dataclass with the defaults in one place, and presets by name.

The config travels inside every checkpoint (``to_dict`` / ``from_dict``), including the input
preprocessing, so a checkpoint is always decoded the way it was trained.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Mapping

BACKBONE_DEPTHS = (18, 34, 50, 101, 152)
# MeshNet output representations (paper Tables 1, 2 and 10): body-model parameters, xyz coordinates from two FC
# layers, lixel heatmaps from FC layers (no spatial relationship), voxel heatmaps, pixel xy + lixel z, the 2.5D
# heatmap of Iqbal et al. (ECCV 2018), and the lixel heatmap (ours).
TARGETS = ("lixel", "param", "xyz-fc", "lixel-fc", "voxel", "pixel-lixel", "2.5d")
CASCADES = ("posenet-meshnet", "meshnet", "gt-pose")
MARGINALISATIONS = ("average", "max", "weighted")
STAGES = ("lixel", "param")  # TrainConfig.stage (engine/train.py)
# TrainConfig.lr_schedule: the reference's step decay at epochs, or a cosine from lr to lr x lr_min_factor over
# the run's steps (after the warm-up).
LR_SCHEDULES = ("step", "cosine")


class ConfigError(ValueError):
    """A config value that breaks the schema: one line naming the source (file or flag), the field and the
    problem. A ValueError, so the command line prints it as one line with exit code 2."""


@dataclass(frozen=True)
class Rule:
    """What one config field accepts. ``type``: "int", "float", "bool", "str" (a path becomes its string),
    "str-list" (a list of non-empty strings; one string is a list of one), "int-list", "float3" (three numbers),
    "model" (ModelConfig field overrides, checked with :data:`MODEL_FIELDS`). Numbers are bounded by ``low`` (>=),
    ``above`` (>) and ``high`` (<=), list items too; floats must be finite. ``optional``: None allowed.
    ``check(value, values)``: a further rule across fields, returning the problem or None."""

    type: str
    low: float | None = None
    above: float | None = None
    high: float | None = None
    choices: Any = None
    optional: bool = False
    check: Callable[[Any, Mapping[str, Any]], str | None] | None = None


def _number(value: Any, integer: bool) -> int | float | None:
    """``value`` as an int (integer) or a finite float, else None. Floats may be strings: YAML 1.1 reads "3e-4"
    as a string."""
    if isinstance(value, bool):
        return None
    if integer:
        return value if isinstance(value, int) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _bounds(rule: Rule) -> str:
    parts = [f">= {rule.low:g}" if rule.low is not None else "", f"> {rule.above:g}" if rule.above is not None else "",
             f"<= {rule.high:g}" if rule.high is not None else ""]
    return " and ".join(p for p in parts if p)


def _in_bounds(x: float, rule: Rule) -> bool:
    return ((rule.low is None or x >= rule.low) and (rule.above is None or x > rule.above)
            and (rule.high is None or x <= rule.high))


def _coerce(name: str, value: Any, rule: Rule, source: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {name} must be {expected}; got {value!r}")

    if value is None:
        if rule.optional:
            return None
        raise fail("given (it cannot be null)")
    if rule.choices is not None:
        if not isinstance(value, (str, int)) or isinstance(value, bool) or value not in rule.choices:
            raise fail(f"one of {', '.join(str(c) for c in rule.choices)}")
        return value
    kind = rule.type
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "str":
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(value, str) or not value:
            raise fail("a non-empty string")
        return value
    if kind == "model":
        if not isinstance(value, Mapping):
            raise fail("a mapping of network fields (FIELD: VALUE)")
        return check_fields(value, MODEL_FIELDS, source, partial=True, prefix=f"{name}.")
    if kind in ("int", "float"):
        number = _number(value, kind == "int")
        what = "an integer" if kind == "int" else "a finite number"
        if number is None or not _in_bounds(number, rule):
            raise fail(f"{what} {_bounds(rule)}".strip())
        return number
    if kind == "str-list":
        items = [value] if isinstance(value, (str, os.PathLike)) else value
        items = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in items] if isinstance(
            items, (list, tuple)) else None
        if items is None or not all(isinstance(v, str) and v for v in items):
            raise fail("a list of non-empty strings")
        return items
    if kind in ("int-list", "float3"):
        integer = kind == "int-list"
        numbers = [_number(v, integer) for v in value] if isinstance(value, (list, tuple)) else [None]
        what = "a list of integers" if integer else "three finite numbers"
        if None in numbers or (not integer and len(numbers) != 3) or not all(_in_bounds(v, rule) for v in numbers):
            bounds = _bounds(rule)
            raise fail(what + (f", each {bounds}" if bounds else ""))
        return list(numbers) if integer else tuple(numbers)
    raise AssertionError(f"unknown rule type {kind!r}")


def check_fields(values: Mapping[str, Any], schema: Mapping[str, Rule], source: str, partial: bool = False,
                 prefix: str = "") -> dict[str, Any]:
    """The one validation of config fields (:data:`MODEL_FIELDS`, :data:`TRAIN_FIELDS`): unknown names, types,
    ranges, choices, then the cross-field rules (not when ``partial``: a set of overrides). Returns the values
    coerced (ints given for floats, numeric strings for floats, lists for float triples become tuples); raises
    :class:`ConfigError` naming ``source`` and the first bad field."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields (FIELD: VALUE), got {type(values).__name__}")
    unknown = [str(k) for k in values if k not in schema]
    if unknown:
        raise ConfigError(f"{source}: unknown field{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(prefix + k for k in unknown)}; known: {', '.join(schema)}")
    out = {name: _coerce(prefix + name, value, schema[name], source) for name, value in values.items()}
    if not partial:
        for name, value in out.items():
            problem = schema[name].check(value, out) if schema[name].check and value is not None else None
            if problem:
                raise ConfigError(f"{source}: {prefix}{name} {problem}")
    return out


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape and the meaning of its outputs.

    Units: ``input_size`` in pixels (square crop); heatmaps have ``input_size // 4`` bins on x and y
    (one bin = 4 crop pixels) and ``depth_bins`` (D) bins on z spanning ``bbox_3d_size_m`` metres
    centred on the root joint. ``sigma_bins`` is the std of the 3D Gaussian of the joints, in bins.
    """

    backbone_depth: int = 50
    input_size: int = 256
    depth_bins: int = 64
    sigma_bins: float = 2.5
    bbox_3d_size_m: float = 2.0
    deconv_channels: int = 256
    num_joints: int = 29
    num_vertices: int = 6890
    kind: str = "body"
    body_model: str = "anny"
    mesh: str = "reduced"
    pose2feat: str = "separable"  # "separable" (fast, exact) or "materialised" (the reference's volume)
    # Paper ablations (docs/reproduction.md); the defaults are the paper's I2L-MeshNet.
    target: str = "lixel"  # MeshNet's output representation: one of TARGETS
    marginalisation: str = "average"  # 2D -> 1D for the x/y lixel heatmaps: "average", "max" or "weighted"
    early_marginalisation: bool = False  # marginalise the backbone output and upsample in 1D (Table 8)
    cascade: str = "posenet-meshnet"  # "posenet-meshnet", "meshnet" (MeshNet alone) or "gt-pose" (Table 3)
    xy_bins: int | None = None  # x/y heatmap resolution of MeshNet (None: input_size // 4); Table 2 uses 8, 32
    fc_hidden: int = 4096  # width of the first FC layer of the "xyz-fc" and "param" targets
    param_regressor: bool = False
    param_num_rotations: int = 24
    param_shape_dim: int = 10
    # Documented deviation from the paper (off in the paper presets): fixed prior logits per point and bin added
    # to every lixel heatmap, a Gaussian at each joint's / vertex's mean training position (docs/network.md, "Body
    # prior"); the training loop fills them from the training set at the start of a run.
    head_prior: bool = False
    # Input preprocessing applied inside the network to RGB in [0, 1]: (rgb - mean) / std.
    # The authors' checkpoints use mean 0 / std 1 (official_spec.md 1.1).
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        values = check_fields({f.name: getattr(self, f.name) for f in fields(self)}, MODEL_FIELDS, "model config")
        for name, value in values.items():  # coerced values (ints given for floats, lists for tuples)
            object.__setattr__(self, name, value)

    @property
    def heatmap_size(self) -> int:
        """Bins on the image axes x and y: the backbone's 1/32 feature upsampled 8x."""
        return self.input_size // 4

    @property
    def mesh_xy_bins(self) -> int:
        """MeshNet's x/y heatmap resolution (its coordinates are always returned in ``heatmap_size`` bins)."""
        return self.xy_bins or self.heatmap_size

    @property
    def backbone_channels(self) -> int:
        return 512 if self.backbone_depth < 50 else 2048

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return cls(**check_fields(data, MODEL_FIELDS, "model config", partial=True))

    def override(self, **changes: Any) -> "ModelConfig":
        return replace(self, **check_fields(changes, MODEL_FIELDS, "model config", partial=True))


def _multiple_of_32(value: int, values: Mapping[str, Any]) -> str | None:
    return None if value % 32 == 0 else f"must be a multiple of 32 (ResNet stride); got {value}"


def _xy_bins(value: int, values: Mapping[str, Any]) -> str | None:
    feature = values.get("input_size", 256) // 32
    allowed = [feature * 2 ** k for k in range(4)]
    return None if value in allowed else (
        f"must be the backbone's {feature}x{feature} feature upsampled 1, 2, 4 or 8 times "
        f"({', '.join(map(str, allowed))}); got {value}")


# The schema of ModelConfig (and of a training config's ``model:`` overrides).
MODEL_FIELDS: dict[str, Rule] = {
    "backbone_depth": Rule("int", choices=BACKBONE_DEPTHS),
    "input_size": Rule("int", low=32, check=_multiple_of_32),
    "depth_bins": Rule("int", low=2),
    "sigma_bins": Rule("float", above=0),
    "bbox_3d_size_m": Rule("float", above=0),
    "deconv_channels": Rule("int", low=1),
    "num_joints": Rule("int", low=1),
    "num_vertices": Rule("int", low=3),
    "kind": Rule("str", choices=("body", "hand")),
    "body_model": Rule("str", choices=("anny", "smpl", "mano")),
    "mesh": Rule("str", choices=("reduced", "full")),
    "pose2feat": Rule("str", choices=("separable", "materialised")),
    "target": Rule("str", choices=TARGETS),
    "marginalisation": Rule("str", choices=MARGINALISATIONS),
    "early_marginalisation": Rule("bool"),
    "cascade": Rule("str", choices=CASCADES),
    "xy_bins": Rule("int", low=1, optional=True, check=_xy_bins),
    "fc_hidden": Rule("int", low=1),
    "param_regressor": Rule("bool"),
    "param_num_rotations": Rule("int", low=1),
    "param_shape_dim": Rule("int", low=1),
    "head_prior": Rule("bool"),
    "pixel_mean": Rule("float3"),
    "pixel_std": Rule("float3", above=0),
}
assert set(MODEL_FIELDS) == {f.name for f in fields(ModelConfig)}, "MODEL_FIELDS must cover ModelConfig"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, ModelConfig] = {
    # The paper's body network: ResNet-50, 256x256 input, D = 64, bbox_3d_size 2 m, 29 joints.
    "paper-body": ModelConfig(),
    # The paper's hand network (FreiHAND): 21 MANO-order joints, bbox_3d_size 0.3 m.
    "paper-hand": ModelConfig(kind="hand", num_joints=21, num_vertices=1609, bbox_3d_size_m=0.3, mesh="full"),
    # Small enough to learn in minutes on 2 CPU cores: ResNet-18 at 128x128, D = 32 (same 4 px per bin on
    # x/y as the paper), 128 upsampling channels; ImageNet-normalised input for fast fine-tuning.
    "cpu-small": ModelConfig(backbone_depth=18, input_size=128, depth_bins=32, deconv_channels=128,
                             pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD),
    "cpu-small-hand": ModelConfig(backbone_depth=18, input_size=128, depth_bins=32, deconv_channels=128,
                                  kind="hand", num_joints=21, num_vertices=1609, bbox_3d_size_m=0.3,
                                  mesh="full", pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD),
}


# The schema of TrainConfig (engine/train.py), checked when a config is made (YAML file, --set, or in code).
TRAIN_FIELDS: dict[str, Rule] = {
    "preset": Rule("str", choices=PRESETS),
    "model": Rule("model"),
    "data": Rule("str-list"),
    "val": Rule("str", optional=True),
    "out": Rule("str"),
    "epochs": Rule("int", low=1),
    "max_steps": Rule("int", low=1, optional=True),
    "max_minutes": Rule("float", above=0, optional=True),
    "max_cpu_minutes": Rule("float", above=0, optional=True),
    "batch_size": Rule("int", low=1),
    "lr": Rule("float", above=0),
    "lr_decay_epochs": Rule("int-list", low=0),
    "lr_decay_factor": Rule("float", low=1),
    "grad_accum_steps": Rule("int", low=1),
    "amp": Rule("bool"),
    "sync_bn": Rule("bool"),
    "freeze_bn": Rule("bool"),
    "num_workers": Rule("int", low=0),
    "seed": Rule("int", low=0),
    "device": Rule("str"),
    "checkpoint_every_steps": Rule("int", low=0),
    "keep_epoch_checkpoints": Rule("bool"),
    "log_every_steps": Rule("int", low=1),
    "val_every_steps": Rule("int", low=0),
    "imagenet_weights": Rule("str"),
    "fit_orig_split": Rule("bool"),
    "augment": Rule("bool"),
    "stage": Rule("str", choices=STAGES),
    "init_from": Rule("str", optional=True),
    "param_epochs": Rule("int", low=1),
    "lr_warmup_steps": Rule("int", low=0),
    "lr_schedule": Rule("str", choices=LR_SCHEDULES),
    "lr_min_factor": Rule("float", low=0, high=1),
    "channels_last": Rule("bool"),
    "prior_samples": Rule("int", low=1),
}


# Training presets: named sets of TrainConfig fields (engine/train.py) that runs start from, the rest at
# TrainConfig's defaults; a run's own fields (data, out, seed, budget, ...) go on top (:func:`training_preset`).
# Read by ``i2lmesh train --training-preset``, ``i2lmesh quickstart`` and ``i2lmesh reproduce``.
# The CPU fast start (docs/training.md, "Learning fast on a CPU"; measured in docs/benchmarks.md): deviations from
# the paper's training that make a from-scratch network learn a body within minutes.
FAST_START: dict[str, Any] = {"lr": 1e-3, "lr_warmup_steps": 30, "lr_schedule": "cosine", "lr_min_factor": 0.05,
                              "channels_last": True, "model": {"head_prior": True}}
# A run bounded by max_steps / minutes instead of epochs (1000 epochs, no lr decay within them): the reference's
# optimiser at a constant lr 3e-4, metrics every 10 steps, only last.pt kept.
_BUDGET: dict[str, Any] = {"epochs": 1000, "lr": 3e-4, "lr_decay_epochs": [1000], "log_every_steps": 10,
                           "keep_epoch_checkpoints": False}
# Bodies learn more per step at 64 px with 32 images a step and no augmentation (docs/benchmarks.md, "Learning fast
# on a CPU", third session: PA-MPJPE 0.71x the mean pose at step 300, 0.74x already at 150; with augmentation it
# takes off ~100 steps later). Hands did not learn at 64 px within 250 steps: they keep FAST_START.
FAST_START_BODY: dict[str, Any] = {**FAST_START, "batch_size": 32, "augment": False,
                                   "model": {**FAST_START["model"], "input_size": 64}}
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's schedule (TrainConfig's defaults): Adam, lr 1e-4 decayed x0.1 at epochs 10 and 12 of 13.
    "paper": {},
    # A step or time budget at a constant lr: the ablation study (reproduce) and the quickstart's --paper-training.
    "budget": _BUDGET,
    # "budget" with the CPU fast start: the quickstart's default.
    "cpu-fast": {**_BUDGET, **FAST_START},
    # "cpu-fast" at 64 px, 32 images a step, no augmentation: the quickstart's default for bodies.
    "cpu-fast-body": {**_BUDGET, **FAST_START_BODY},
}


def training_preset(name: str, **fields: Any) -> dict[str, Any]:
    """The TrainConfig fields of training preset ``name`` (:data:`TRAINING_PRESETS`) with ``fields`` on top (a
    ``model`` mapping is merged into the preset's); a fresh dict, for ``TrainConfig(**...)`` or
    ``TrainConfig.from_dict``. ConfigError for an unknown name."""
    if name not in TRAINING_PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; choose one of: {', '.join(TRAINING_PRESETS)}")
    preset = TRAINING_PRESETS[name]
    values = {k: list(v) if isinstance(v, list) else v for k, v in preset.items() if k != "model"}
    values.update({k: v for k, v in fields.items() if k != "model"})
    if "model" in preset or "model" in fields:
        values["model"] = {**preset.get("model", {}), **(fields.get("model") or {})}
    return values


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with field overrides (e.g. ``num_vertices=6890``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].override(**overrides) if overrides else PRESETS[name]


__all__ = ["ModelConfig", "PRESETS", "TARGETS", "CASCADES", "MARGINALISATIONS", "STAGES", "get_preset", "IMAGENET_MEAN",
           "IMAGENET_STD", "ConfigError", "Rule", "check_fields", "MODEL_FIELDS", "TRAIN_FIELDS", "TRAINING_PRESETS",
           "FAST_START", "FAST_START_BODY", "training_preset"]
