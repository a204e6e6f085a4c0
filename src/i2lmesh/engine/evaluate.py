"""Evaluation: decode the network's lixel outputs to camera space and score them (docs/evaluation.md).

Protocol: the predicted mesh is decoded with the sample's crop transform, intrinsics and the ground-truth root
depth (the reference's ``use_gt_info``; RootNet's depth when the dataset provides one) by the decoder the Predictor
uses (``inference.decode``): joints = J x the camera-space mesh with the network's regressor (paper Eq. 7).
MPJPE is root-aligned (each skeleton's root joint subtracted), PA-MPJPE after a similarity Procrustes per sample
(batched: one roma call for the samples that share their valid joints);
MPVPE/PA-MPVPE likewise on the vertices (root-aligned with each mesh's own root joint); F@5/F@15 mm on
Procrustes-aligned vertices for hands. Only valid ground-truth joints count.

A network with a parameter regressor also gets its body-model mesh scored (keys prefixed ``param_``), as the
reference reports both meshes: the regressor's root-relative mesh and J x mesh, same protocol and ground truth.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..bodymodels import body_model_class
from ..bodymodels.base import BodyModel, BodyModelFileError
from ..data.dataset import collate
from ..device import resolve_device
from ..geometry.procrustes import procrustes_align
from ..inference.decode import decode
from ..metrics import f_score, pa_errors, point_errors_mm
from ..nets.i2l import I2LMeshNet, I2LOutput
from .datasets import check_kinds, check_network, dataset_kinds
from .distributed import DistEnv, all_gather_objects
from .objective import forward_network
from .param_stage import param_prediction

_ROW_KEYS = ("joint_err", "joint_valid", "pa_joint", "mesh_err", "pa_mesh", "f5", "f15", "pred_joints", "pred_verts")


def decode_camera(net: I2LMeshNet, out: I2LOutput, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``out``'s mesh (B,V,3) and joints (B,J,3) in camera metres (float64), decoded with the batch's meta
    (``bb2img_trans`` (B,2,3), ``K`` (B,3,3), ``root_depth_m`` (B,)) by :func:`~i2lmesh.inference.decode.decode`:
    joints = J x the camera-space mesh, the Predictor's joints for the same output."""
    decoded = decode(out.vertices_hm.double().cpu(), net.joint_regressor.double().cpu(),
                     meta["bb2img_trans"].double(), meta["K"].double(), meta["root_depth_m"].double(), net.config)
    return decoded.vertices_m.numpy(), decoded.joints_m.numpy()


def _param_body_model(net: I2LMeshNet, body_model: BodyModel | None, device: str | torch.device
                      ) -> BodyModel | None:
    """The body model that turns ``net``'s regressor output into a mesh: ``body_model``, else the built-in one its
    config names (Anny); None without a regressor or when the model needs user files (SMPL/MANO) not given."""
    if net.param_regressor is None:
        return None
    if body_model is None:
        if body_model_class(net.config.body_model, net.config.kind).needs_user_files:
            return None
        from ..nets.factory import body_model_for

        try:
            body_model = body_model_for(net.config)
        except (BodyModelFileError, FileNotFoundError):
            return None
    cfg = net.config
    if (body_model.num_vertices, body_model.num_pose_rotations, body_model.num_shape_params) != (
            cfg.num_vertices, cfg.param_num_rotations, cfg.param_shape_dim):
        raise ValueError(f"body model {body_model.name!r} does not fit the network's parameter regressor "
                         f"({cfg.num_vertices} vertices, {cfg.param_num_rotations} rotations, "
                         f"{cfg.param_shape_dim} shape values)")
    return body_model.to(device)


def _score(rows: dict[str, list], verts: np.ndarray, joints: np.ndarray, meta: dict[str, Any],
           regressor: np.ndarray, root: int, hand: bool, keep_predictions: bool) -> None:
    """Append one batch's errors to ``rows``: vertices (B,V,3) and joints (B,J,3) in metres, any origin (each is
    made relative to its own root joint)."""
    if keep_predictions:
        rows["pred_joints"].extend(joints)
        rows["pred_verts"].extend(verts)
    gt_rel = meta["joints_cam_rel_m"].double().numpy()
    valid = meta["joints_cam_valid"].numpy() > 0
    if not valid.any():  # no dataset joints: score against the fit's joints
        gt_rel = meta["fit_joints_cam_rel_m"].double().numpy()
        valid = np.broadcast_to(meta["has_mesh"].numpy()[:, None], gt_rel.shape[:2])
    pred_rel = joints - joints[:, root:root + 1]
    rows["joint_err"].extend(point_errors_mm(pred_rel, gt_rel))
    rows["joint_valid"].extend(valid)
    rows["pa_joint"].extend(e for e in _pa_joint_errors(pred_rel, gt_rel, valid) if e is not None)
    with_mesh = np.flatnonzero(meta["has_mesh"].numpy())
    if len(with_mesh):
        gt_v = meta["vertices_cam_m"][with_mesh].double().numpy()
        gt_v = gt_v - (regressor @ gt_v)[:, root:root + 1]
        pred_v = verts[with_mesh] - joints[with_mesh, root:root + 1]
        rows["mesh_err"].extend(point_errors_mm(pred_v, gt_v).mean(axis=1))
        rows["pa_mesh"].extend(pa_errors(pred_v, gt_v).mean(axis=1))
        if hand:
            aligned = procrustes_align(pred_v, gt_v)
            rows["f5"].extend(f_score(aligned, gt_v, 0.005))
            rows["f15"].extend(f_score(aligned, gt_v, 0.015))


def _pa_joint_errors(pred_rel: np.ndarray, gt_rel: np.ndarray, valid: np.ndarray) -> list[np.ndarray | None]:
    """PA-MPJPE terms per sample: (J,) mm on the sample's valid joints after a similarity Procrustes on those
    joints alone (NaN on the others), or None for a sample with fewer than 3 valid joints (no defined alignment).

    pred_rel, gt_rel (B,J,3) metres; valid (B,J) bool. Samples with the same valid joints (usually the whole
    batch) are aligned in one batched Procrustes (roma), equal to aligning each alone (tests/test_house_engine.py).
    """
    out: list[np.ndarray | None] = [None] * len(valid)
    usable = np.flatnonzero(valid.sum(axis=1) >= 3)
    if not len(usable):
        return out
    masks, group = np.unique(valid[usable], axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, mask in enumerate(masks):
        members = usable[group == g]
        err = np.full((len(members), valid.shape[1]), np.nan)
        err[:, mask] = pa_errors(pred_rel[members][:, mask], gt_rel[members][:, mask])
        for b, e in zip(members, err):
            out[b] = e
    return out


def _gather(rows: dict[str, list], env: DistEnv | None) -> dict[str, list]:
    if env is None or not env.distributed:
        return rows
    merged: dict[str, list] = {k: [] for k in rows}
    for part in all_gather_objects(rows, env):
        for k in rows:
            merged[k].extend(part[k])
    return merged


def evaluate(net: I2LMeshNet, dataset: Dataset, batch_size: int = 16, device: str | torch.device = "cpu",
             num_workers: int = 0, env: DistEnv | None = None, joint_names: list[str] | None = None,
             keep_predictions: bool = False, body_model: BodyModel | None = None) -> dict[str, Any]:
    """Score ``net`` on ``dataset`` (items as ``i2lmesh.data`` gives them). Under DDP each rank takes a slice and
    rank 0 returns the merged result. Keys: mpjpe_mm, pa_mpjpe_mm, mpvpe_mm, pa_mpvpe_mm, num_samples,
    per_joint_mpjpe_mm (and f5, f15 for hands; predictions when ``keep_predictions``).

    With a parameter regressor and a body model (``body_model``, or the embedded Anny model the config names)
    the regressor's mesh adds param_mpjpe_mm, param_pa_mpjpe_mm, param_mpvpe_mm, param_pa_mpvpe_mm (and
    param_f5, param_f15 for hands).

    Refused (ValueError, one line): an empty dataset, records of another kind than the network, a network whose
    config contradicts its topology, and a metric that comes out NaN/inf (no valid ground truth, or predictions
    that are not finite): never a NaN in the result."""
    device = resolve_device(device)
    if net.topology:
        check_network(net)
    check_kinds(dataset_kinds(dataset), net, getattr(dataset, "name", "dataset"))
    if len(dataset) == 0:
        raise ValueError(f"{getattr(dataset, 'name', 'dataset')}: no samples to evaluate")
    was_training = net.training
    net.eval()
    if env is not None and env.distributed:
        dataset = Subset(dataset, list(range(env.rank, len(dataset), env.world_size)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    root = net.topology.get("root_index", 0) if net.topology else 0
    rows: dict[str, list] = {k: [] for k in _ROW_KEYS}
    param_body = _param_body_model(net, body_model, device)
    param_rows: dict[str, list] = {k: [] for k in _ROW_KEYS}
    hand = net.config.kind == "hand"
    regressor = net.joint_regressor.double().cpu().numpy()
    for images, targets, meta in loader:
        with torch.no_grad():
            out = forward_network(net, net, images.to(device), targets)
            verts, joints = decode_camera(net, out, meta)
            _score(rows, verts, joints, meta, regressor, root, hand, keep_predictions)
            if param_body is not None:
                mesh = param_prediction(param_body, out.param_rotations, out.param_shape)
                _score(param_rows, mesh.vertices_m.double().cpu().numpy(), mesh.joints_m.double().cpu().numpy(),
                       meta, regressor, root, hand, False)
    rows, param_rows = _gather(rows, env), _gather(param_rows, env)
    if was_training:
        net.train()
    names = joint_names or (net.topology or {}).get("joint_names")
    result = summarise(rows, names, hand)
    if param_body is not None:
        result.update({f"param_{k}": v for k, v in summarise(param_rows, names, hand).items()
                       if k not in ("num_samples", "per_joint_mpjpe_mm")})
    _refuse_non_finite(result, rows)
    return result


def _refuse_non_finite(result: dict[str, Any], rows: dict[str, list]) -> None:
    """Raise ValueError when a metric is NaN/inf or missing, naming it and the likely cause."""
    bad = [(k, v) for k, v in result.items() if isinstance(v, float) and not np.isfinite(v)]
    bad += [(f"per_joint_mpjpe_mm[{j}]", v) for j, v in result.get("per_joint_mpjpe_mm", {}).items()
            if v is not None and not np.isfinite(v)]
    if "mpjpe_mm" not in result:
        bad.insert(0, ("mpjpe_mm", None))
    if bad:
        cause = ("no sample has a valid ground-truth joint of the network's joint set (does the data match the "
                 "network?)" if not np.asarray(rows["joint_valid"], bool).any() else
                 "the network's predictions are not finite (a diverged checkpoint?)")
        name, value = bad[0]
        raise ValueError(f"evaluation gives {name} = {value}: {cause}; refusing to report it")


def summarise(rows: dict[str, list], joint_names: list[str] | None, hand: bool) -> dict[str, Any]:
    err = np.asarray(rows["joint_err"], np.float64)
    valid = np.asarray(rows["joint_valid"], bool)
    result: dict[str, Any] = {"num_samples": int(len(err))}
    if len(err):
        result["mpjpe_mm"] = float(err[valid].mean()) if valid.any() else float("nan")
        per_joint = [float(err[valid[:, j], j].mean()) if valid[:, j].any() else None for j in range(err.shape[1])]
        names = joint_names if joint_names and len(joint_names) == len(per_joint) else [str(j) for j in
                                                                                          range(len(per_joint))]
        result["per_joint_mpjpe_mm"] = dict(zip(names, per_joint))
    if rows["pa_joint"]:
        result["pa_mpjpe_mm"] = float(np.nanmean(np.asarray(rows["pa_joint"])))
    for key, name in (("mesh_err", "mpvpe_mm"), ("pa_mesh", "pa_mpvpe_mm")):
        if rows[key]:
            result[name] = float(np.mean(rows[key]))
    if hand and rows["f5"]:
        result["f5"] = float(np.mean(rows["f5"]))
        result["f15"] = float(np.mean(rows["f15"]))
    if rows["pred_joints"]:
        result["predictions"] = {"joints_m": np.asarray(rows["pred_joints"]), "vertices_m": np.asarray(rows[
            "pred_verts"])}
    return result


SIDE_JOINTS = ("L_Shoulder", "L_Hip", "R_Shoulder", "R_Hip")


def sides_and_width(net: I2LMeshNet, dataset: Dataset, joint_names: list[str], limit: int = 200,
                    batch_size: int = 32) -> dict[str, Any] | None:
    """Does the network tell the person's sides apart? The measure behind thin-scribble meshes: with every yaw in
    the data, a network that cannot yet tell which way a person faces puts each vertex near the body's vertical
    axis (the L1-optimal answer between the two mirror layouts). On the first ``limit`` samples of ``dataset``
    (targets in heatmap bins), with the mesh joints J x M:

    - side_agreement: over samples whose true left-right offset d = x(L_Shoulder) + x(L_Hip) - x(R_Shoulder) -
      x(R_Hip) exceeds 1 bin, the share whose predicted d has the same sign (1: the left side always where it is;
      0.5: chance); None without such samples;
    - side_offset_ratio: mean |d| predicted / true over those samples (0: the sides collapse onto one x);
    - vertex_x_spread_ratio / vertex_y_spread_ratio: per-sample standard deviation of the vertices' x (y),
      predicted / true, averaged over samples (1: as wide / tall as the bodies);
    - samples, clear_samples: how many were scored. Returns None when ``joint_names`` lack the four joints (hands).

    The network runs in eval mode on its own device; its mode is restored. Source: ours (docs/benchmarks.md,
    "Fourth session")."""
    if not set(SIDE_JOINTS) <= set(joint_names):
        return None
    ix = [joint_names.index(n) for n in SIDE_JOINTS]
    device = next(net.parameters()).device
    count = min(len(dataset), limit)
    pred_j, pred_v, true_j, true_v = [], [], [], []
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for start in range(0, count, batch_size):
                images, targets, _ = collate([dataset[i] for i in range(start, min(start + batch_size, count))])
                out = net(images.to(device))
                pred_j.append(out.mesh_joints_hm.double().cpu().numpy())
                pred_v.append(out.vertices_hm.double().cpu().numpy())
                true_j.append(targets.joints_hm.double().numpy())
                true_v.append(targets.vertices_hm.double().numpy())
    finally:
        net.train(was_training)
    pj, pv, tj, tv = (np.concatenate(a) for a in (pred_j, pred_v, true_j, true_v))

    def offset(j: np.ndarray) -> np.ndarray:
        return j[:, ix[0], 0] + j[:, ix[1], 0] - j[:, ix[2], 0] - j[:, ix[3], 0]

    d_true, d_pred = offset(tj), offset(pj)
    clear = np.abs(d_true) > 1.0
    agreement = float((np.sign(d_pred[clear]) == np.sign(d_true[clear])).mean()) if clear.any() else None
    offset_ratio = float(np.abs(d_pred[clear]).mean() / np.abs(d_true[clear]).mean()) if clear.any() else None
    return {"samples": int(count), "clear_samples": int(clear.sum()), "side_agreement": agreement,
            "side_offset_ratio": offset_ratio,
            "vertex_x_spread_ratio": float((pv[..., 0].std(1) / tv[..., 0].std(1)).mean()),
            "vertex_y_spread_ratio": float((pv[..., 1].std(1) / tv[..., 1].std(1)).mean())}


def write_freihand_pred(path: str | Path, joints_m: np.ndarray, vertices_m: np.ndarray) -> None:
    """FreiHAND's submission file pred.json: [joints (N,21,3), vertices (N,778,3)] in camera metres."""
    Path(path).write_text(json.dumps([np.asarray(joints_m).tolist(), np.asarray(vertices_m).tolist()]))
