"""Body model -> body model conversion of existing fits (SMPL -> Anny, MANO -> Anny hand, Anny -> Anny, ...).

Two methods, both through the SMPLify-style fitter (``fitting.fit_to_keypoints``) on 3D targets in the camera frame:

- ``"keypoints"``: the source mesh's joints of a keypoint set both models regress with the same meaning
  (SMPL_29 for bodies: Anny's SMPL_29 regressor is made to match SMPL's joints; MANO_21 for hands) become 3D
  keypoints (and their projections when K is given) of the target model.
- ``"surface"``: a fixed vertex correspondence (:class:`SurfaceCorrespondence`: for N target vertices spread over
  the mesh, the nearest source vertex, found once on a pair of meshes in the same pose) gives N dense 3D targets;
  the target is fitted to them (SMPLify-X-style "mesh to model" transfer, as smplx's ``transfer_model``, here on
  a vertex subset).

Tested without SMPL files (not available here): Anny -> Anny round trips, where source and target are the same
model and the exact answer is known (docs/pseudo_label.md gives the numbers); SMPL and MANO go through the same
:class:`~i2lmesh.bodymodels.base.BodyModel` interface. Anny's own ``anny.AnnyInverter`` (mesh -> parameters) needs
a mesh in Anny's full topology, i.e. a dense correspondence first; it is not wired in here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import JointSet
from ..fitting import FitConfig, FitResult, fit_to_keypoints, keypoint_regressor


def common_keypoint_set(source: BodyModel, target: BodyModel) -> str:
    """"smpl29" for bodies, "mano21" for hands: a set both models regress (KeyError if either cannot)."""
    name = "smpl29" if target.kind == "body" else "mano21"
    keypoint_regressor(source, name)
    keypoint_regressor(target, name)
    return name


@dataclass
class SurfaceCorrespondence:
    """``target_ids`` (N,) target vertices and ``source_ids`` (N,) the source vertex each one follows."""

    target_ids: torch.Tensor
    source_ids: torch.Tensor
    name: str

    def joint_set(self) -> JointSet:
        return JointSet(name=self.name, names=tuple(f"v{int(i)}" for i in self.target_ids), root_index=0,
                        flip_pairs=(), skeleton=())


def _spread_vertices(vertices: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` vertex indices spread over a mesh (V, 3) by farthest-point sampling from vertex 0."""
    count = min(count, vertices.shape[0])
    chosen = [0]
    dist = (vertices - vertices[0]).norm(dim=1)
    for _ in range(count - 1):
        nxt = int(dist.argmax())
        chosen.append(nxt)
        dist = torch.minimum(dist, (vertices - vertices[nxt]).norm(dim=1))
    return torch.tensor(sorted(chosen), dtype=torch.long)


def build_correspondence(source: BodyModel, target: BodyModel, num_points: int = 256,
                         source_params: dict[str, torch.Tensor] | None = None,
                         config: FitConfig | None = None) -> SurfaceCorrespondence:
    """The :class:`SurfaceCorrespondence` of ``num_points`` target vertices: the source mesh in ``source_params``
    (default: its rest pose, mean shape) is matched by the target with the keypoint method, then each chosen target
    vertex takes its nearest source vertex. Raises KeyError when the models share no keypoint set."""
    if source_params is None:
        pose = torch.zeros(1, source.num_pose_rotations, 3)
        source_params = {"pose": pose, "trans": torch.tensor([[0.0, 0.0, 3.0]])}
    with torch.no_grad():
        src = source(**source_params).vertices_m
    fit = convert_fit(source, source_params, target, method="keypoints", config=config)
    tgt = fit.vertices_m[0]
    ids = _spread_vertices(tgt.cpu(), num_points)
    nearest = torch.cdist(tgt[ids].cpu()[None], src[0].cpu()[None])[0].argmin(1)
    return SurfaceCorrespondence(ids, nearest, f"surface_{source.name}_{len(ids)}".replace("-", "_"))


def _register(target: BodyModel, corr: SurfaceCorrespondence) -> JointSet:
    js = corr.joint_set()
    if js.name not in target.extra_joint_sets:
        regressor = torch.zeros(len(js), target.num_vertices)
        regressor[torch.arange(len(js)), corr.target_ids] = 1.0
        target.add_extra_regressor(js, regressor.to(target.joint_regressor.device))
    return js


def convert_fit(source: BodyModel, source_params: dict[str, torch.Tensor], target: BodyModel,
                method: Literal["keypoints", "surface"] = "keypoints", K: torch.Tensor | None = None,
                correspondence: SurfaceCorrespondence | None = None, config: FitConfig | None = None,
                init: dict[str, torch.Tensor] | None = None) -> FitResult:
    """Fits of ``target`` reproducing the meshes of ``source`` evaluated at ``source_params`` (batched forward
    arguments, camera frame). ``K`` (3, 3) or (B, 3, 3): also fit the projections (the fit then follows the image
    where the models differ). Returns the target's :class:`~i2lmesh.fitting.FitResult` (vertices, params, errors).

    Raises ValueError for an unknown method or a surface method without a correspondence, KeyError when the models
    share no keypoint set."""
    config = config or FitConfig(joint=True)
    with torch.no_grad():
        out = source(**{k: v for k, v in source_params.items() if v is not None})
    if method == "keypoints":
        name = common_keypoint_set(source, target)
        _, regressor = keypoint_regressor(source, name)
        points = regressor.to(out.vertices_m) @ out.vertices_m
        keypoint_set: str | JointSet = name
    elif method == "surface":
        if correspondence is None:
            raise ValueError("method 'surface' needs a correspondence (build_correspondence(source, target))")
        keypoint_set = _register(target, correspondence)
        points = out.vertices_m[:, correspondence.source_ids.to(out.vertices_m.device)]
    else:
        raise ValueError(f"unknown conversion method {method!r}; choose 'keypoints' or 'surface'")
    points = points.to(target.joint_regressor.device)
    kp2d = None
    if K is not None:
        Kt = torch.as_tensor(K, dtype=torch.float32, device=points.device)
        Kt = Kt.expand(points.shape[0], 3, 3) if Kt.ndim == 2 else Kt
        z = points[..., 2:3].clamp_min(1e-3)
        kp2d = (points[..., :2] / z) * torch.stack([Kt[:, 0, 0], Kt[:, 1, 1]], -1)[:, None] + Kt[:, None, :2, 2]
        K = Kt
    return fit_to_keypoints(target, kp2d, None, K, keypoint_set=keypoint_set, keypoints_3d=points, init=init,
                            config=config)


def vertex_errors_mm(pred: torch.Tensor, gt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(MPVPE, PA-MPVPE) per mesh (B,), mm, of meshes (B, V, 3) m on the same topology."""
    from ..metrics import pa_errors, point_errors_mm

    return point_errors_mm(pred, gt).mean(1), pa_errors(pred, gt).mean(1)


__all__ = ["SurfaceCorrespondence", "build_correspondence", "convert_fit", "common_keypoint_set",
           "vertex_errors_mm"]
