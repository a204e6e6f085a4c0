"""Issue 14, training configs and dataset folders: every bad input is refused with one line naming the input (file
and field) and the problem, exit code 2 from the command line, and never a NaN/inf or a silently wrong result.

Table-driven: one case per kind of fault. Datasets are written in our format directly (docs/datasets.md) into
tmp_path: two 128 x 128 images of a body (SMPL-29 joints, Anny parameters) or a hand (MANO-21 joints). A tiny random
body network (ResNet-18 at 64 px) stands in for a trained checkpoint.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch

from i2lmesh.bodymodels.joint_sets import MANO_21, SMPL_29
from i2lmesh.cli import main
from i2lmesh.config import ConfigError, get_preset
from i2lmesh.data.formats.i2lmesh import DatasetFormatError, read_dataset
from i2lmesh.data.record import DatasetError, joint_set_to_dict
from i2lmesh.engine.train import TrainConfig
from i2lmesh.geometry import intrinsics, project

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 128
K = intrinsics(150.0, (SIZE / 2, SIZE / 2))


def _doc(folder: Path, kind: str = "body", num: int = 2, fit: bool = True) -> dict:
    """A good annotations.json document (and its images) for ``num`` samples."""
    rng = np.random.default_rng(0)
    joint_set, depth = (SMPL_29, 3.0) if kind == "body" else (MANO_21, 0.4)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        cam = np.array([0.0, 0.0, depth]) + rng.uniform(-0.1, 0.1, (len(joint_set), 3)) * depth
        img = project(cam, K)
        cv2.imwrite(str(folder / "images" / f"{i}.png"), np.full((SIZE, SIZE, 3), 90, np.uint8))
        images.append({"id": i, "file_name": f"images/{i}.png", "width": SIZE, "height": SIZE, "K": K.tolist()})
        lo, hi = img.min(0), img.max(0)
        ann = {"id": i, "image_id": i, "sample_id": str(i), "dataset": "test", "kind": kind,
               "bbox": [*lo.tolist(), *(hi - lo).tolist()], "bbox_is_final": False, "joint_set": joint_set.name,
               "joints_img": img.tolist(), "joints_cam": cam.tolist(), "joints_valid": [1.0] * len(joint_set),
               "has_3d": True, "fit_valid": fit, "root_depth_m": depth}
        if fit:
            bones = 104 if kind == "body" else 21
            ann.update(body_model="anny" if kind == "body" else "anny-hand", body_gender="neutral",
                       body_params={"pose": np.zeros((bones, 3)).tolist(), "shape": [0.5] * 6,
                                    "trans": [0.0, 0.0, depth]})
        annotations.append(ann)
    return {"format": "i2lmesh-dataset", "version": 1, "units": {"3d": "camera metres", "2d": "pixels"},
            "info": {}, "joint_sets": {joint_set.name: joint_set_to_dict(joint_set)}, "images": images,
            "annotations": annotations}


def _write(folder: Path, doc) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotations.json").write_text(json.dumps(doc))
    return folder


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("i2lmesh ")]
    assert len(lines) == 1 and lines[0].startswith(f"i2lmesh {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------------ annotations.json
# (name, edit of a good document (may return a replacement), field the message names, problem it states)

def _set(path: str, value):
    """An edit that sets doc[a][b]... (dots; integers index lists); value DELETE removes the key."""
    def edit(doc, folder):
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = doc
        for k in keys[:-1]:
            target = target[k]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return edit


DELETE = object()


def _vertex_file(shape, name="vertices_6890.npy", row=0):
    def edit(doc, folder):
        np.save(folder / name, np.zeros(shape, np.float32))
        doc["annotations"][0]["vertices"] = {"file": name, "row": row}
    return edit


def _flip_file(length):
    def edit(doc, folder):
        np.save(folder / "vertices_40.npy", np.zeros((2, 40, 3), np.float32))
        np.save(folder / "flip_index_m.npy", np.arange(length))
        doc["annotations"][0]["vertices"] = {"file": "vertices_40.npy", "row": 0}
        doc["annotations"][0]["vertex_flip_index"] = {"file": "flip_index_m.npy"}
    return edit


DATASET_CASES = [
    ("top-level-not-object", lambda doc, folder: [doc], "top level", "must be a JSON object; got list"),
    ("missing-top-key", _set("images", DELETE), "top level", "missing key images"),
    ("missing-annotation-key", _set("annotations.1.bbox", DELETE), "annotations[1]", "missing key bbox"),
    ("missing-image-key", _set("images.0.K", DELETE), "images[0]", "missing key K"),
    ("unknown-key", _set("annotations.0.has3d", True), "annotations[0]", "unknown key has3d"),
    ("dangling-image-id", _set("annotations.1.image_id", 7), "annotations[1].image_id",
     "7 is not the id of any entry of images"),
    ("version-null", _set("version", None), "version", "must be an integer; got None"),
    ("version-newer", _set("version", 2), "version", "this i2lmesh reads up to 1"),
    ("units-mm", _set("units.3d", "camera millimetres"), "units", "camera metres"),
    ("root-index-out-of-range", _set("joint_sets.smpl29.root_index", 29), "joint_sets.smpl29.root_index",
     r"29 is out of range \[0, 29\)"),
    ("flip-pair-out-of-range", _set("joint_sets.smpl29.flip_pairs.0", [1, 40]), "joint_sets.smpl29.flip_pairs[0]",
     r"40 is out of range \[0, 29\)"),
    ("pose-wrong-length", _set("annotations.0.body_params.pose", [0.0] * 72), "annotations[0].body_params.pose",
     "anny takes 312 values; got 72"),
    ("shape-wrong-length", _set("annotations.1.body_params.shape", [0.5] * 10), "annotations[1].body_params.shape",
     "anny takes 6 values; got 10"),
    ("joints-wrong-count", _set("annotations.0.joints_img", [[1.0, 2.0]] * 17), "annotations[0].joints_img",
     r"must have shape \(29, 2\); got \(17, 2\)"),
    ("kind-alien", _set("annotations.0.kind", "alien"), "annotations[0].kind", "must be one of body, hand; got 'alien'"),
    ("has-3d-string", _set("annotations.0.has_3d", "no"), "annotations[0].has_3d", "must be true or false; got 'no'"),
    ("unknown-body-model", _set("annotations.0.body_model", "smplx"), "annotations[0].body_model",
     "must be one of smpl, mano, anny, anny-hand; got 'smplx'"),
    ("body-model-of-other-kind", _set("annotations.0.body_model", "mano"), "annotations[0].body_model",
     "'mano' is a hand model but kind is 'body'"),
    ("unknown-gender", _set("annotations.0.body_gender", "robot"), "annotations[0].body_gender", "must be one of"),
    ("undefined-joint-set", _set("annotations.0.joint_set", "h36m17"), "annotations[0].joint_set",
     "'h36m17' is not defined in joint_sets"),
    ("vertex-file-missing", lambda doc, folder: doc["annotations"][0].update(
        vertices={"file": "vertices_6890.npy", "row": 0}), "annotations[0].vertices.file", "not found"),
    ("vertex-file-mismatched", _vertex_file((2, 778, 3)), "annotations[0].vertices.file",
     "vertices_6890.npy holds 778-vertex meshes"),
    ("vertex-file-not-xyz", _vertex_file((2, 6890)), "annotations[0].vertices.file", r"must hold \(N, V, 3\)"),
    ("vertex-row-out-of-range", _vertex_file((2, 6890, 3), row=5), "annotations[0].vertices.row",
     r"5 is out of range \[0, 2\)"),
    ("flip-index-mismatched", _flip_file(39), "annotations[0].vertex_flip_index.file", "must be 40 vertex indices"),
    ("negative-root-depth", _set("annotations.1.root_depth_m", -3.0), "annotations[1].root_depth_m",
     r"must be a depth in front of the camera \(> 0 m\); got -3.0"),
    ("joints-valid-out-of-range", _set("annotations.0.joints_valid", [2.0] * 29), "annotations[0].joints_valid",
     r"\[0, 1\]"),
]


@pytest.mark.parametrize("name, edit, field, problem", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_annotations_are_refused_with_one_line_naming_file_and_field(name, edit, field, problem, tmp_path):
    folder = tmp_path / "data"
    doc = _doc(folder)
    doc = edit(doc, folder) or doc
    _write(folder, doc)
    with pytest.raises(DatasetFormatError) as info:
        read_dataset(folder)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message  # the CLI prints a ValueError as 1 line, exit 2
    assert message.startswith(f"{folder / 'annotations.json'}: {field}: "), message
    assert re.search(problem, message), message


def test_good_documents_still_read(tmp_path):
    for kind in ("body", "hand"):
        records = read_dataset(_write(tmp_path / kind, _doc(tmp_path / kind, kind)))
        assert len(records) == 2 and records[0].kind == kind and records[0].has_3d is True
        assert records[0].body_params["pose"].size == (312 if kind == "body" else 63)


# ------------------------------------------------------------------------------------------------ training configs
# (name, files to write {name: text}, command-line arguments after `train`, message pattern)

CONFIG_CASES = [
    ("invalid-yaml", {"c.yaml": "batch_size: [1\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: not valid YAML at line 2, column 1"),
    ("yaml-not-a-mapping", {"c.yaml": "- 1\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: expected a mapping of training config fields"),
    ("wrong-type", {"c.yaml": "batch_size: sixteen\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: batch_size must be an integer >= 1; got 'sixteen'"),
    ("bool-as-string", {"c.yaml": "amp: 'no'\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: amp must be true or false; got 'no'"),
    ("preset-nope", {"c.yaml": "preset: nope\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: preset must be one of paper-body, paper-hand, cpu-small, cpu-small-hand; got 'nope'"),
    ("model-kind-alien", {"c.yaml": "model: {kind: alien}\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: model\.kind must be one of body, hand; got 'alien'"),
    ("model-unknown-body-model", {"c.yaml": "model: {body_model: smplx}\n"}, ["--config", "{d}/c.yaml"],
     r"c\.yaml: model\.body_model must be one of anny, smpl, mano; got 'smplx'"),
    ("unknown-field", {"c.yaml": "batchsize: 4\n"}, ["--config", "{d}/c.yaml"], r"c\.yaml: unknown field batchsize"),
    ("config-is-a-folder", {}, ["--config", "{d}"], r": is a folder, not a training config YAML file"),
    ("config-missing", {}, ["--config", "{d}/absent.yaml"], r"absent\.yaml: training config file not found"),
    ("set-batch-size-0", {}, ["--preset", "cpu-small", "--set", "batch_size=0"],
     r"--set: batch_size must be an integer >= 1; got 0"),
    ("set-batch-size-negative", {}, ["--preset", "cpu-small", "--set", "batch_size=-1"],
     r"--set: batch_size must be an integer >= 1; got -1"),
    ("set-lr-fast", {}, ["--set", "lr=fast"], r"--set: lr must be a finite number > 0; got 'fast'"),
    ("set-lr-inf", {}, ["--set", "lr=inf"], r"--set: lr must be a finite number > 0; got 'inf'"),
    ("set-lr-nan", {}, ["--set", "lr=.nan"], r"--set: lr must be a finite number > 0; got nan"),
    ("set-preset-nope", {}, ["--set", "preset=nope"], r"--set: preset must be one of"),
    ("set-unknown-field", {}, ["--set", "model.depth=3"], r"--set: unknown field model\.depth"),
    ("set-not-a-pair", {}, ["--set", "lr"], r"--set expects FIELD=VALUE, got 'lr'"),
    ("model-input-size", {}, ["--set", "model.input_size=100"],
     r"command line: model\.input_size must be a multiple of 32"),
    ("flag-max-steps-0", {}, ["--max-steps", "0"], r"command line: max_steps must be an integer >= 1; got 0"),
]


@pytest.mark.parametrize("name, files, args, pattern", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_training_configs_exit_2_with_one_line(name, files, args, pattern, tmp_path, capsys):
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    data = _write(tmp_path / "data", _doc(tmp_path / "data"))
    args = [a.format(d=tmp_path) for a in args]
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *args])
    line = _one_error_line(capsys, "train")
    assert code == 2 and re.search(pattern, line), line
    assert not (tmp_path / "run").exists()  # refused before any work


def test_config_schema_in_code_and_coercion(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="model config: kind must be one of body, hand; got 'alien'"):
        get_preset("cpu-small", kind="alien")
    with pytest.raises(ConfigError, match="training config: batch_size must be an integer >= 1; got -1"):
        TrainConfig(batch_size=-1)
    with pytest.raises(ConfigError, match="training config: lr must be a finite number > 0; got inf"):
        TrainConfig(lr=float("inf"))
    (tmp_path / "c.yaml").write_text("lr: 3e-4\ndata: some/folder\nmax_steps: 2\nmodel: {pixel_std: [1, 2, 3]}\n")
    cfg = TrainConfig.from_yaml(tmp_path / "c.yaml")  # YAML 1.1 reads 3e-4 as a string; one folder as a list
    assert cfg.lr == 3e-4 and cfg.data == ["some/folder"] and cfg.model_config().pixel_std == (1.0, 2.0, 3.0)
    assert TrainConfig(out=tmp_path, data=[tmp_path]).out == str(tmp_path)  # paths become strings


# ------------------------------------------------------------------------------------------------ evaluation

@pytest.fixture(scope="module")
def body_checkpoint(tmp_path_factory):
    from i2lmesh.nets.factory import body_model_for, build_network, save_network

    config = get_preset("cpu-small", input_size=64, depth_bins=16, deconv_channels=16)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "body.pt"
    save_network(build_network(config, body_model_for(config)), path)
    return path


def _hand_config_on_body_weights(tmp_path, ckpt):
    data = torch.load(ckpt, weights_only=False)
    data["model_config"]["kind"] = "hand"
    torch.save(data, tmp_path / "says-hand.pt")
    return tmp_path / "says-hand.pt"


def _all_rejected(doc, folder):
    for ann in doc["annotations"]:
        ann["bbox"] = [float("nan")] * 4
    return doc


def _images_missing(doc, folder):
    for file in (folder / "images").iterdir():
        file.unlink()


def _no_valid_joints(doc, folder):
    for ann in doc["annotations"]:
        ann["joints_valid"] = [0.0] * 29


@dataclass
class EvalCase:
    name: str
    pattern: str
    kind: str = "body"
    fit: bool = True
    edit: Callable | None = None
    checkpoint: Callable | None = None
    out: str = "r.json"


EVAL_CASES = [
    EvalCase("hand-data-on-body-checkpoint", r"data: hand samples, but the network is a body network", kind="hand"),
    EvalCase("body-checkpoint-config-says-hand", r"says-hand\.pt: the network's config \(kind 'hand'.*contradicts its "
             r"topology \(a body network: joint set 'smpl29'", checkpoint=_hand_config_on_body_weights),
    EvalCase("no-annotations", r"data: no usable samples", edit=lambda doc, folder: doc.update(annotations=[])),
    EvalCase("every-annotation-rejected", r"data: no usable samples", edit=_all_rejected),
    EvalCase("every-image-unusable", r"data: no usable image found \(2 of 2 unusable so far\), e\.g\. image missing",
             edit=_images_missing),
    EvalCase("no-valid-ground-truth", r"evaluation gives mpjpe_mm = nan: no sample has a valid ground-truth joint",
             fit=False, edit=_no_valid_joints),
    EvalCase("bad-annotation-file", r"annotations\.json: annotations\[0\]\.root_depth_m: must be a depth in front",
             edit=_set("annotations.0.root_depth_m", -1.0)),
    EvalCase("out-is-a-folder", r"--out .*: is a folder; give a file name, e\.g\. .*results\.json", out=""),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=[c.name for c in EVAL_CASES])
def test_eval_refuses_with_exit_2_and_one_line(case, body_checkpoint, tmp_path, capsys):
    folder = tmp_path / "data"
    doc = _doc(folder, case.kind, fit=case.fit)
    if case.edit is not None:
        doc = case.edit(doc, folder) or doc
    _write(folder, doc)
    ckpt = case.checkpoint(tmp_path, body_checkpoint) if case.checkpoint else body_checkpoint
    out = tmp_path / case.out
    code = main(["eval", "--checkpoint", str(ckpt), "--data", str(folder), "--out", str(out), "--device", "cpu"])
    line = _one_error_line(capsys, "eval")
    assert code == 2 and re.search(case.pattern, line), line
    assert not out.is_file()  # nothing written: no empty or NaN metrics


def test_eval_of_good_data_reports_finite_metrics(body_checkpoint, tmp_path, capsys):
    folder = _write(tmp_path / "data", _doc(tmp_path / "data"))
    out = tmp_path / "r.json"
    assert main(["eval", "--checkpoint", str(body_checkpoint), "--data", str(folder), "--out", str(out),
                 "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["num_samples"] == 2 and all(np.isfinite(result[k]) for k in ("mpjpe_mm", "mpvpe_mm"))


def test_unusable_images_stop_a_dataloader_worker_with_the_same_one_line(body_checkpoint, tmp_path):
    from i2lmesh.data.dataset import collate
    from i2lmesh.engine.datasets import open_datasets
    from i2lmesh.nets.factory import load_network

    folder = tmp_path / "data"
    doc = _doc(folder, fit=False)
    _images_missing(doc, folder)
    net, _ = load_network(body_checkpoint)
    dataset = open_datasets([_write(folder, doc)], net, train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate)
    with pytest.raises(DatasetError) as info:
        next(iter(loader))
    assert str(info.value).startswith(f"{folder}: no usable image found") and "\n" not in str(info.value)


def test_config_kind_contradicting_the_dataset_is_refused_in_training(tmp_path, capsys):
    hand = _write(tmp_path / "hand", _doc(tmp_path / "hand", "hand", fit=False))
    code = main(["train", "--preset", "cpu-small", "--data", str(hand), "--out", str(tmp_path / "run"),
                 "--max-steps", "1", "--device", "cpu", "--set", "num_workers=0", "batch_size=2", "model.input_size=64",
                 "model.deconv_channels=16", "model.depth_bins=16"])
    line = _one_error_line(capsys, "train")
    assert code == 2 and "hand: hand samples, but the network is a body network" in line, line

