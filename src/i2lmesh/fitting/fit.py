"""SMPLify-style fitting of a body model to 2D (and optionally 3D) keypoints: :func:`fit_to_keypoints`.

Method (Bogo et al., "Keep it SMPL", ECCV 2016, section 3; Pavlakos et al., SMPLify-X, CVPR 2019, section 3.5),
for any :class:`~i2lmesh.bodymodels.base.BodyModel`:

1. Initial pose and shape: the priors' means (or ``init``). Initial global orientations: bodies upright and
   facing the camera (from the model's own Pelvis->Neck and R_Hip->L_Hip directions at rest), turned about the
   vertical by ``FitConfig.body_yaws`` yaws; hands: ``FitConfig.hand_orientations`` fixed rotations spread over
   SO(3); with 3D keypoints, a weighted rigid registration (roma) of the rigid core instead. The depth of each comes
   from similar triangles (SMPLify: the torso length; here the spread of all confident keypoints), x and y from
   their centroid.
2. Rigid stage: global orientation and translation only, for every hypothesis, on the torso keypoints
   (bodies, as SMPLify) or all keypoints (hands), one LBFGS run of all hypotheses (or OpenCV's ``solvePnP`` from
   each: ``FitConfig.rigid_solver``); each person keeps the
   ``FitConfig.body_candidates`` / ``hand_candidates`` hypotheses with the lowest robust error over all keypoints,
   which all go through step 3, the lowest final loss winning (SMPLify also tries a flipped orientation and keeps
   the better one).
3. Full stages: pose, shape, global orientation and translation together, the prior weights and the robust scale
   decreasing stage by stage (SMPLify's annealing, section 3.3; the shape is re-linearised between stages, see
   ``forward.py``). Each stage is one ``torch.optim.LBFGS`` run (strong-Wolfe line search)
   minimising

   ``E = sum_k c_k rho(|pi(X_k) - x_k| / s) / sum_k c_k + w3 sum_k c3_k rho(|X_k - Y_k| / S) / sum_k c3_k
   + w_pose E_pose + w_shape E_shape``

   with pi the pinhole projection, s the person's size in pixels (the larger side of the box of its confident
   keypoints), S the model's size in metres, both errors in percent of that size, rho Geman-McClure (SMPLify eq. 3),
   E_pose and E_shape the priors of ``priors.py`` (SMPLify eqs. 5-6).
4. Outputs from the exact body-model forward.

A warm start (``init`` with pose and translation: a previous frame's :attr:`FitResult.params`, or a network's
parameters) skips steps 1-2: the translation is moved to follow the new keypoints (centroid and spread, as step 1's
depth), then the last full stage runs with ``FitConfig.warm_iters`` iterations.

People are independent problems. By default each is optimised on its own (``FitConfig.joint=False``): a batch
gives exactly the results of single fits. ``joint=True`` sums the people of a batch into one LBFGS problem, whose
evaluations are batched (several times cheaper per person, on a GPU especially) but whose shared line search and
curvature memory lead to other, measurably worse, local minima for 2D-only fits (docs/fitting.md).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import JointSet
from ..geometry.camera import DEFAULT_FOCAL_PX, default_intrinsics
from .forward import KeypointModel, _model_cache, keypoint_model
from .keypoints import keypoint_regressor, rigid_core
from .priors import PoseSpace, ShapePrior, geman_mcclure, make_pose_space

MIN_RELEVANCE = 0.1  # bones carrying less of any keypoint's skinning weight are not optimised (KeypointModel)
CONTEXT_CACHE = 128  # keypoint-model linearisations kept per model and keypoint set (_prepare; ~0.1 MB each)
CONTEXT_REUSE_SHAPE = 0.02  # warm starts reuse one within this distance (max over phenotypes, in [0, 1]) of its shape


@dataclass(frozen=True)
class FitConfig:
    """Weights, schedule and optimiser settings of :func:`fit_to_keypoints`.

    sigma_2d / sigma_3d: Geman-McClure scale, percent of the person's size (2D: pixels of its keypoint box; 3D:
    the model's size in metres). weight_3d: weight of the 3D term relative to the 2D one.
    stages: per full stage, in order: (pose prior weight, shape prior weight, LBFGS iterations[, sigma multiplier]);
    the default starts with strong priors and a 10x wider Geman-McClure (nearly least squares: a far-off keypoint
    still pulls, so a leg bent the wrong way comes round) and ends with weak priors and the robust scale.
    rigid_iters: LBFGS iterations of the rigid stage; warm_iters: of the one stage run from a warm start.
    body_yaws / hand_orientations: initial orientation hypotheses; body_candidates / hand_candidates: how many of
    the best after the rigid stage go through the full stages (the best final loss wins). history_size: LBFGS memory.
    optimize_shape: False keeps the shape at its initial value (e.g. known from earlier frames). warm_shape: False
    keeps ``init``'s shape in warm starts only (a video's person keeps the shape of their cold fit: it does not
    wander from frame to frame, and the shape's linearisation is reused, docs/fitting.md "Video").
    precondition: scale the variables by the inverse square root of the Gauss-Newton diagonal (``_Variables``).
    joint: optimise the people of a batch as one problem (see the module docstring).
    tolerance_grad / tolerance_change: torch.optim.LBFGS's; relative_tolerance > 0 also stops a stage once an
    iteration changes the loss by less than that fraction of its starting value.
    rigid_solver: how the rigid stage (step 2) places the orientation hypotheses: "lbfgs" (``rigid_iters`` LBFGS
    iterations of the robust error, all hypotheses as one problem) or "pnp" (OpenCV's solvePnP from each, Levenberg-
    Marquardt on the rigid core's reprojection error, ~1 ms per hypothesis, no loss evaluation; needs 4 confident
    core keypoints, else LBFGS): a cold body fit ~25 % faster, as accurate from exact keypoints (50 bodies: PA-MPJPE
    31.5 mm against 33.0) but with a longer tail from detected ones (57 rendered bodies: mean 73.9 mm against 71.2,
    p90 126 against 117); hands: MPJPE 12.5 mm against 9.9 (16 hands). docs/fitting.md.
    threads: torch's CPU threads during the fit (restored after it; None leaves them as they are). The fit runs
    thousands of tiny operations that one thread does fastest; with two threads on 2 busy cores (load ~8) the
    demo's fits of two people took 41-45 s, with one ~3 s (docs/fitting.md, Speed).
    """

    sigma_2d: float = 10.0
    sigma_3d: float = 10.0
    weight_3d: float = 1.0
    stages: tuple[tuple[float, ...], ...] = ((10.0, 10.0, 20, 10.0), (1.0, 1.0, 10, 1.0))
    rigid_iters: int = 30
    warm_iters: int = 15
    body_yaws: int = 8
    hand_orientations: int = 128
    body_candidates: int = 1
    hand_candidates: int = 3
    history_size: int = 100
    optimize_shape: bool = True
    warm_shape: bool = True
    precondition: bool = True
    joint: bool = False
    tolerance_grad: float = 1e-6
    tolerance_change: float = 1e-9
    relative_tolerance: float = 0.0
    threads: int | None = 1
    rigid_solver: str = "lbfgs"


@dataclass
class FitResult:
    """What :func:`fit_to_keypoints` returns. B people, V vertices, J model joints, K keypoints.

    vertices_m (B, V, 3), joints_m (B, J, 3) (the model's joint set, e.g. SMPL_29), keypoints_m (B, K, 3): camera
    frame (x right, y down, z forward), metres. keypoints_px (B, K, 2): their projection with K (NaN without K).
    pose (B, J, 3) axis-angle in the body model's forward convention (``pose[:, 0]``: global orientation in the
    camera frame), shape (B, S), translation (B, 3) metres: ``body_model(pose, shape, translation)`` gives
    ``vertices_m``. residual_px (B, K): distance between projected and given 2D keypoints, pixels (NaN where none
    was given or its confidence is 0). residual_3d_m (B, K) likewise for 3D keypoints (after removing the centroids
    for root-relative ones), or None. loss_history[b]: the loss of person b's problem (per person) after each
    evaluation, all stages in order. evaluations (B,): loss evaluations with a gradient per problem.
    """

    vertices_m: torch.Tensor
    joints_m: torch.Tensor
    keypoints_m: torch.Tensor
    keypoints_px: torch.Tensor
    pose: torch.Tensor
    shape: torch.Tensor
    translation: torch.Tensor
    residual_px: torch.Tensor
    residual_3d_m: torch.Tensor | None
    keypoint_set: str
    loss_history: list[list[float]] = field(default_factory=list)
    evaluations: torch.Tensor | None = None

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """``{"pose", "shape", "trans"}``: the body model's forward arguments, and a warm start for the next fit."""
        return {"pose": self.pose, "shape": self.shape, "trans": self.translation}


class _Setup:
    """Per body model and keypoint set: regressor, keypoint model, pose space, priors, upright frame (cached)."""

    def __init__(self, body_model: BodyModel, keypoint_set: str | JointSet) -> None:
        self.joint_set, regressor = keypoint_regressor(body_model, keypoint_set)
        self.model: KeypointModel = keypoint_model(body_model, regressor, self.joint_set.name)
        bones = [b for b in self.model.bones_used if float(self.model.relevance[b]) >= MIN_RELEVANCE]
        self.pose_space: PoseSpace = make_pose_space(body_model, bones)
        self.shape_prior = ShapePrior(body_model)
        self.core = rigid_core(self.joint_set)
        # Anny with Euler pose parameters: the kinematic chain reduced to the optimised bones (forward.py)
        self.chain = None
        if hasattr(self.model, "reduced") and hasattr(self.pose_space, "rotations"):
            self.chain = self.model.reduced(self.pose_space.bones)
        if self.chain is not None:
            order = {b: i for i, b in enumerate(self.pose_space.bones)}
            self.chain_order = torch.tensor([order[b] for b in self.chain.bones],
                                            device=body_model.joint_regressor.device)
            self.fixed_bones = [b for b in self.model.bones if b != 0 and b not in order]
        self.contexts: OrderedDict[bytes, list[dict[str, torch.Tensor]]] = OrderedDict()  # _prepare
        device = body_model.joint_regressor.device
        zero = torch.zeros(1, body_model.num_pose_rotations, 3, device=device)
        with torch.no_grad():
            out, kp = self.model.exact(zero, self.shape_prior.mean[None])
        kp = kp[0]
        self.size_m = float((kp.max(0).values - kp.min(0).values).max())
        self.upright = _upright_rotation(body_model, out.joints_m[0]) if body_model.kind == "body" else None


def _setup(body_model: BodyModel, keypoint_set: str | JointSet) -> _Setup:
    """The :class:`_Setup` of ``body_model`` and a keypoint set, cached on the model (it dies with it)."""
    name = keypoint_set if isinstance(keypoint_set, str) else keypoint_set.name
    key = ("setup", name, str(body_model.joint_regressor.device))
    cache = _model_cache(body_model)
    if key not in cache:
        cache[key] = _Setup(body_model, keypoint_set)
    return cache[key]


def _upright_rotation(body_model: BodyModel, joints: torch.Tensor) -> torch.Tensor | None:
    """(3, 3) rotation putting the model upright (Pelvis->Neck to image up) and facing the camera (its left at +x),
    from its own joint set at rest; None if the joint set lacks those joints."""
    import roma

    names = body_model.joint_names
    if not all(n in names for n in ("Pelvis", "Neck", "L_Hip", "R_Hip")):
        return None
    up = joints[names.index("Neck")] - joints[names.index("Pelvis")]
    left = joints[names.index("L_Hip")] - joints[names.index("R_Hip")]
    x = torch.stack([left / left.norm(), up / up.norm()])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], device=joints.device)
    return roma.rigid_vectors_registration(x, y)


def _as_batch(x, batch: int | None, shape_tail: tuple[int, ...], name: str, device) -> torch.Tensor | None:
    """None, or ``x`` as a float32 (B, *shape_tail) tensor; ValueError for a wrong shape or device."""
    if x is None:
        return None
    x = torch.as_tensor(x)
    if x.ndim != len(shape_tail) + 1 or tuple(x.shape[1:]) != shape_tail or (batch is not None and x.shape[0] != batch):
        want = "x".join(str(d) for d in ((batch if batch is not None else "B"),) + shape_tail)
        raise ValueError(f"{name} should be a {want} array, got shape {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but the body model is on {device}; move one of them")
    return x.to(torch.float32)


_SKEW = torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0], [0, 0, 1], [0, 0, 0], [-1, 0, 0], [0, -1, 0], [1, 0, 0],
                      [0, 0, 0]], dtype=torch.float32)  # vec(skew(v)) = _SKEW @ v, row-major


def _rotvec_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """(N, 3) rotation vectors -> (N, 3, 3) matrices, Rodrigues' formula R = I + A K + B K^2 with K = skew(v),
    A = sin(t)/t, B = (1 - cos t)/t^2 = (sin(t/2)/(t/2))^2 / 2 written with ``torch.sinc`` (finite values and
    gradients at t = 0, where every fit's variables start). Equal to ``roma.rotvec_to_rotmat`` to 1e-6 (tested), in
    a quarter of its tensor operations."""
    theta = ((rotvec * rotvec).sum(-1, keepdim=True) + 1e-20).sqrt()[..., None]  # (N, 1, 1)
    skew = (rotvec @ _SKEW.to(rotvec.device).T).reshape(-1, 3, 3)
    a = torch.sinc(theta / math.pi)
    b = 0.5 * torch.sinc(theta / (2 * math.pi)) ** 2
    return torch.eye(3, device=rotvec.device) + a * skew + b * (skew @ skew)


def _project(points: torch.Tensor, K: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, 3) camera points -> (B, N, 2) pixels with K (B, 3, 3); depths clamped at 1 mm. ``focal``: K's
    (B, 1, 2) focal lengths, if at hand."""
    z = points[..., 2:3].clamp_min(1e-3)
    if focal is None:
        focal = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None]
    return points[..., :2] / z * focal + K[:, None, :2, 2]


class _Data:
    """The observations of a fit, normalised (see the module docstring)."""

    def __init__(self, kp2d, conf2d, K, kp3d, conf3d, relative_3d: bool, size_m: float) -> None:
        self.kp2d, self.K, self.kp3d, self.relative_3d = kp2d, K, kp3d, relative_3d
        self.conf2d = conf2d
        self.conf3d = conf3d
        self.size_m = size_m
        if kp2d is not None:
            valid = conf2d > 0
            big = torch.finfo(kp2d.dtype).max
            lo = torch.where(valid[..., None], kp2d, kp2d.new_tensor(big)).amin(1)
            hi = torch.where(valid[..., None], kp2d, kp2d.new_tensor(-big)).amax(1)
            extent = (hi - lo).amax(-1)
            self.scale_px = torch.where(valid.sum(1) >= 2, extent, torch.ones_like(extent)).clamp_min(1.0)
            # constants of terms(): per-keypoint weights conf / sum(conf) in squared percent of the size, focals
            self.weight_2d = conf2d / conf2d.sum(1, keepdim=True).clamp_min(1e-6)
            self.unit_2d = ((100.0 / self.scale_px) ** 2)[:, None]
            self.focal = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None]

    def map(self, fn) -> "_Data":
        """A copy with ``fn`` applied to every per-person tensor (slicing, repeating)."""
        new = _Data.__new__(_Data)
        for key, value in vars(self).items():
            setattr(new, key, fn(value) if isinstance(value, torch.Tensor) else value)
        return new

    def terms(self, keypoints_cam: torch.Tensor, index: Sequence[int] | None, sigma_2d: float, sigma_3d: float,
              weight_3d: float) -> torch.Tensor:
        """(B,) robust data error of camera keypoints (B, K', 3), K' = the keypoints listed in ``index``."""
        sel = slice(None) if index is None else list(index)
        total = keypoints_cam.new_zeros(keypoints_cam.shape[0])
        if self.kp2d is not None:
            uv = _project(keypoints_cam, self.K, self.focal)
            err2 = ((uv - self.kp2d[:, sel]) ** 2).sum(-1) * self.unit_2d
            if index is None:
                total = total + (self.weight_2d * geman_mcclure(err2, sigma_2d)).sum(1)
            else:
                conf = self.conf2d[:, sel]
                total = total + (conf * geman_mcclure(err2, sigma_2d)).sum(1) / conf.sum(1).clamp_min(1e-6)
        if self.kp3d is not None:
            conf = self.conf3d[:, sel]
            pred, target = keypoints_cam, self.kp3d[:, sel]
            if self.relative_3d:  # compare shapes, not positions: remove each side's weighted centroid
                pred = pred - _weighted_mean(pred, conf)
                target = target - _weighted_mean(target, conf)
            err2 = ((pred - target) ** 2).sum(-1) * (100.0 / self.size_m) ** 2
            total = total + weight_3d * (conf * geman_mcclure(err2, sigma_3d)).sum(1) / conf.sum(1).clamp_min(1e-6)
        return total


def _residual_vector(data: "_Data", keypoints_cam: torch.Tensor, weight_3d: float) -> torch.Tensor:
    """(B, M) residuals whose squares sum to the data term's quadratic (small-error) approximation."""
    parts = []
    if data.kp2d is not None:
        uv = _project(keypoints_cam, data.K)
        w = (data.conf2d / data.conf2d.sum(1, keepdim=True).clamp_min(1e-6)).sqrt()
        parts.append(((uv - data.kp2d) * (100.0 / data.scale_px[:, None, None]) * w[..., None]).flatten(1))
    if data.kp3d is not None:
        pred, target = keypoints_cam, data.kp3d
        if data.relative_3d:
            pred = pred - _weighted_mean(pred, data.conf3d)
            target = target - _weighted_mean(target, data.conf3d)
        w = (weight_3d * data.conf3d / data.conf3d.sum(1, keepdim=True).clamp_min(1e-6)).sqrt()
        parts.append(((pred - target) * (100.0 / data.size_m) * w[..., None]).flatten(1))
    return torch.cat(parts, 1)


def _weighted_mean(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (points * weights[..., None]).sum(1, keepdim=True) / weights.sum(1).clamp_min(1e-6)[:, None, None]


def _lbfgs(params: list[torch.Tensor], closure_loss, iters: int, config: FitConfig, history: list[float],
           counter: list[int], batch: int) -> None:
    """``iters`` iterations of torch.optim.LBFGS (strong Wolfe) minimising ``closure_loss()`` (a scalar); stops
    early once an iteration changes the loss by less than ``config.relative_tolerance`` of its starting value."""
    if iters <= 0:
        return
    tolerance_change = config.tolerance_change
    if config.relative_tolerance > 0:
        with torch.no_grad():
            tolerance_change = max(tolerance_change, config.relative_tolerance * abs(float(closure_loss())))
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, max_eval=int(iters * 1.5) + 5,
                                  history_size=config.history_size, line_search_fn="strong_wolfe",
                                  tolerance_grad=config.tolerance_grad,
                                  tolerance_change=tolerance_change)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = closure_loss()
        loss.backward()
        history.append(float(loss.detach()) / batch)
        counter[0] += 1
        return loss

    optimizer.step(closure)


def _orientation_hypotheses(setup: _Setup, config: FitConfig, device) -> torch.Tensor:
    """(H, 3, 3) initial global orientations (see the module docstring, step 1)."""
    import roma

    if setup.upright is not None:
        base = setup.upright.to(device)
        # the model's vertical axis, in the model frame, is the preimage of the camera's -y
        up_model = base.T @ torch.tensor([0.0, -1.0, 0.0], device=device)
        yaws = torch.arange(config.body_yaws, device=device, dtype=torch.float32) * (2 * math.pi / config.body_yaws)
        return base @ roma.rotvec_to_rotmat(yaws[:, None] * up_model[None])
    generator = torch.Generator().manual_seed(0)
    rots = roma.random_rotmat(config.hand_orientations, generator=generator)
    return torch.cat([torch.eye(3)[None], rots[1:]]).to(device)


def _initial_translation(points: torch.Tensor, data: _Data, conf: torch.Tensor) -> torch.Tensor:
    """Translations (N, 3) putting model points (N, K, 3) (already rotated) at the depth where their spread matches
    the 2D keypoints' and their centroid on the 2D centroid (similar triangles, SMPLify section 3.3). With fewer
    than two confident keypoints there is no spread: the depth is then 2.5 model sizes (4.5 m for a body)."""
    K, kp2d = data.K, data.kp2d
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    depth = f * _spread(points[..., :2], conf) / _spread(kp2d, conf)
    depth = torch.where((conf > 0).sum(1) >= 2, depth, torch.full_like(depth, 2.5 * data.size_m)).clamp(0.05, 1e4)
    return _on_ray(_weighted_mean(kp2d, conf)[:, 0], depth, K) - _weighted_mean(points, conf)[:, 0]


def _spread(points: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """(N,) root of the confidence-weighted mean squared distance of points (N, K, D) from their weighted centroid."""
    centre = _weighted_mean(points, conf)
    squared = (((points - centre) ** 2).sum(-1) * conf).sum(1) / conf.sum(1).clamp_min(1e-6)
    return squared.clamp_min(1e-8).sqrt()


def _on_ray(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(N, 3) camera points at ``depth`` (N,) metres on the rays of pixels uv (N, 2) of K (N, 3, 3)."""
    xy = (uv - K[:, :2, 2]) / torch.stack([K[:, 0, 0], K[:, 1, 1]], -1) * depth[:, None]
    return torch.cat([xy, depth[:, None]], -1)


@torch.no_grad()
def _follow_keypoints(setup: _Setup, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor,
                      data: _Data) -> torch.Tensor:
    """A warm start's translations (B, 3) moved so that its keypoints' projection (pose (B, J, 3, 3), shape (B, S))
    has the new 2D keypoints' centroid and spread (depth scaled by the spread ratio, clamped to 0.5-2x; similar
    triangles, as the cold start): a person who moved since the previous frame is followed before the robust fit
    starts. Without it, one who moved more than the Geman-McClure scale (10 % of their size) is out of the robust
    term's reach and the mesh stays behind. The keypoints come from the reduced chain where there is one (its
    context is the warm start's, already computed), else from the full forward."""
    if setup.chain is not None:
        ctx = _prepare(setup, shape, pose, CONTEXT_REUSE_SHAPE)
        kp = setup.model.keypoints_reduced(setup.chain, pose[:, 0], pose[:, list(setup.chain.bones)], shape,
                                           ctx) + trans[:, None]
    else:
        kp = setup.model.exact(pose, shape, trans)[1]
    conf, K = data.conf2d, data.K
    usable = (conf > 0).sum(1) >= 2
    c3 = _weighted_mean(kp, conf)[:, 0]  # (B, 3)
    depth = c3[:, 2] * (_spread(_project(kp, K), conf) / _spread(data.kp2d, conf)).clamp(0.5, 2.0)
    moved = trans + _on_ray(_weighted_mean(data.kp2d, conf)[:, 0], depth, K) - c3
    return torch.where((usable & (c3[:, 2] > 0))[:, None], moved, trans)


def fit_to_keypoints(body_model: BodyModel, keypoints_2d=None, confidence=None, K=None, *,
                     keypoint_set: str | JointSet = "coco17", keypoints_3d=None, confidence_3d=None,
                     keypoints_3d_relative: bool = False, image_size: tuple[int, int] | None = None,
                     init: Mapping[str, torch.Tensor] | None = None,
                     config: FitConfig | None = None) -> FitResult:
    """Fit ``body_model``'s pose, shape, global orientation and translation to the keypoints of B people.

    Args:
        body_model: any :class:`BodyModel` (Anny body or hand, SMPL, MANO); the fit runs on its device.
        keypoints_2d: (B, K, 2) pixels (origin at the top-left pixel centre), or None with ``keypoints_3d``.
        confidence: (B, K) in [0, 1], None = all 1. A keypoint with confidence 0, or non-finite, is ignored.
        K: intrinsics (3, 3) or (B, 3, 3), pixels; None = :func:`~i2lmesh.geometry.camera.default_intrinsics` of
            ``image_size`` (width, height): f = 1500 px, principal point at the image centre (as the paper's demo).
        keypoint_set: the keypoints' set: "coco17", "h36m17", "mano21", "smpl29", ... or a JointSet (K must be its
            length; see :func:`~i2lmesh.fitting.keypoints.keypoint_regressor`).
        keypoints_3d: optional (B, K, 3) metres in the camera frame, or root-relative with
            ``keypoints_3d_relative`` (compared after removing each side's confidence-weighted centroid, so any
            root convention works; the translation then comes from the 2D keypoints, or stays at ``init``/0).
        confidence_3d: (B, K), None = ``confidence`` (or all 1).
        init: optional {"pose", "shape", "trans"} in the body model's forward convention, batched (a previous
            :attr:`FitResult.params`, or a network's parameters); with pose and trans it is a warm start.
        config: :class:`FitConfig` (defaults: docs/fitting.md).

    Returns:
        :class:`FitResult`, float32 tensors on the body model's device.

    Raises:
        ValueError: wrong shapes, no keypoints, inputs on another device than the body model, no intrinsics.
        KeyError: unknown keypoint set, or keypoints the model cannot regress.

    Source: SMPLify (Bogo et al., ECCV 2016, section 3, eqs. 1-6) and SMPLify-X (Pavlakos et al., CVPR 2019,
    section 3); the module docstring says what differs.
    """
    config = config or FitConfig()
    before = torch.get_num_threads()
    if config.threads is not None and config.threads != before:
        torch.set_num_threads(int(config.threads))
    try:
        return _fit_to_keypoints(body_model, keypoints_2d, confidence, K, keypoint_set, keypoints_3d, confidence_3d,
                                 keypoints_3d_relative, image_size, init, config)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _fit_to_keypoints(body_model: BodyModel, keypoints_2d, confidence, K, keypoint_set, keypoints_3d, confidence_3d,
                      keypoints_3d_relative: bool, image_size, init, config: FitConfig) -> FitResult:
    """:func:`fit_to_keypoints` with its arguments checked and torch's threads set."""
    import roma

    device = body_model.joint_regressor.device
    setup = _setup(body_model, keypoint_set)
    num_k = len(setup.joint_set)
    name = setup.joint_set.name
    if keypoints_2d is None and keypoints_3d is None:
        raise ValueError("give keypoints_2d, keypoints_3d or both")
    kp2d = _as_batch(keypoints_2d, None, (num_k, 2), f"keypoints_2d ({name}, {num_k} keypoints)", device)
    kp3d = _as_batch(keypoints_3d, None if kp2d is None else kp2d.shape[0], (num_k, 3),
                     f"keypoints_3d ({name}, {num_k} keypoints)", device)
    batch = kp2d.shape[0] if kp2d is not None else kp3d.shape[0]
    conf = _as_batch(confidence, batch, (num_k,), "confidence", device)
    conf = torch.ones(batch, num_k, device=device) if conf is None else conf.clamp(0.0, 1.0)
    conf3 = _as_batch(confidence_3d, batch, (num_k,), "confidence_3d", device)
    conf3 = conf.clone() if conf3 is None else conf3.clamp(0.0, 1.0)
    Kmat = None
    if K is not None or kp2d is not None:
        if K is None:
            if image_size is None:
                raise ValueError("give the intrinsics K or the image_size (width, height) for default intrinsics")
            K = default_intrinsics(int(image_size[0]), int(image_size[1]), DEFAULT_FOCAL_PX)
        Kmat = torch.as_tensor(K).to(device=device, dtype=torch.float32)
        if Kmat.shape == (3, 3):
            Kmat = Kmat.expand(batch, 3, 3)
        if Kmat.shape != (batch, 3, 3):
            raise ValueError(f"K should be 3x3 or {batch}x3x3, got {tuple(Kmat.shape)}")
    if kp2d is not None:
        finite = torch.isfinite(kp2d).all(-1)
        conf = torch.where(finite, conf, torch.zeros_like(conf))
        kp2d = torch.where(finite[..., None], kp2d, torch.zeros_like(kp2d))
    if kp3d is not None:
        finite = torch.isfinite(kp3d).all(-1)
        conf3 = torch.where(finite, conf3, torch.zeros_like(conf3))
        kp3d = torch.where(finite[..., None], kp3d, torch.zeros_like(kp3d))
    data = _Data(kp2d, conf if kp2d is not None else None, Kmat, kp3d, conf3 if kp3d is not None else None,
                 keypoints_3d_relative, setup.size_m)

    # initial parameters
    num_rot = body_model.num_pose_rotations
    space = setup.pose_space
    init = dict(init or {})
    if init.get("pose") is not None:
        pose0 = torch.as_tensor(init["pose"]).to(device=device, dtype=torch.float32)
        base = pose0 if pose0.ndim == 4 else roma.rotvec_to_rotmat(pose0.reshape(batch, num_rot, 3))
        pose_params = space.to_params(base)
    else:
        base = torch.eye(3, device=device).expand(batch, num_rot, 3, 3).clone()
        pose_params = space.mean.expand(batch, -1, -1).clone()  # the prior's mean pose
    shape = (torch.as_tensor(init["shape"]).to(device=device, dtype=torch.float32).reshape(batch, -1).clone()
             if init.get("shape") is not None else setup.shape_prior.mean.expand(batch, -1).clone())
    trans = (torch.as_tensor(init["trans"]).to(device=device, dtype=torch.float32).reshape(batch, 3).clone()
             if init.get("trans") is not None else None)
    warm = init.get("pose") is not None and trans is not None

    chunks = [slice(0, batch)] if config.joint else [slice(b, b + 1) for b in range(batch)]
    parts, histories, evaluations = [], [], []
    for sl in chunks:
        history: list[float] = []
        counter = [0]
        part = _fit_problem(setup, data.map(lambda x: x[sl]), base[sl], pose_params[sl], shape[sl],
                            None if trans is None else trans[sl], warm, init.get("pose") is not None, config,
                            history, counter)
        parts.append(part)
        n = sl.stop - sl.start
        histories += [history] * n
        evaluations += [counter[0]] * n
    root, trans, pose_params, shape = (torch.cat(t) for t in zip(*parts))

    with torch.no_grad():
        pose = space.to_pose(pose_params, root, base)
        out, kp = setup.model.exact(pose, shape, trans)
        pose_aa = roma.rotmat_to_rotvec(pose) if pose.ndim == 4 else pose.reshape(batch, num_rot, 3)
        nan = torch.full((batch, num_k), float("nan"), device=device)
        uv = _project(kp, Kmat) if Kmat is not None else torch.full((batch, num_k, 2), float("nan"), device=device)
        residual = nan.clone() if kp2d is None else torch.where(conf > 0, (uv - kp2d).norm(dim=-1), nan)
        residual_3d = None
        if kp3d is not None:
            pred, target = kp, kp3d
            if keypoints_3d_relative:
                pred, target = pred - _weighted_mean(pred, conf3), target - _weighted_mean(target, conf3)
            residual_3d = torch.where(conf3 > 0, (pred - target).norm(dim=-1), nan)
    return FitResult(vertices_m=out.vertices_m, joints_m=out.joints_m, keypoints_m=kp, keypoints_px=uv,
                     pose=pose_aa, shape=shape, translation=trans, residual_px=residual, residual_3d_m=residual_3d,
                     keypoint_set=name, loss_history=histories,
                     evaluations=torch.tensor(evaluations, dtype=torch.long))


def _fit_problem(setup: _Setup, data: _Data, base: torch.Tensor, pose_params: torch.Tensor, shape: torch.Tensor,
                 trans: torch.Tensor | None, warm: bool, keep_root: bool, config: FitConfig, history: list[float],
                 counter: list[int]):
    """Steps 1-3 of the module docstring for one problem (one person, or a batch with ``config.joint``).
    Returns root rotations (B, 3, 3), translations (B, 3), pose parameters and shapes."""
    space = setup.pose_space
    people = base.shape[0]
    ctx = _prepare(setup, shape, base, CONTEXT_REUSE_SHAPE if warm else 0.0)
    if warm:
        root = base[:, 0].clone()
        if data.kp2d is not None:  # follow the person before the robust fit (_follow_keypoints)
            trans = _follow_keypoints(setup, space.to_pose(pose_params, root, base), shape, trans, data)
    else:
        wanted = config.body_candidates if setup.upright is not None else config.hand_candidates
        root, trans = _rigid_stage(setup, data, base, pose_params, shape, ctx, config, history, counter, keep_root,
                                   wanted)
    num_c = root.shape[0] // people  # candidates per person, person-major
    if num_c > 1:
        def rep(x):
            return x.repeat_interleave(num_c, 0)

        data, base, pose_params, shape = data.map(rep), rep(base), rep(pose_params), rep(shape)
        ctx = {k: rep(v) for k, v in ctx.items()} if ctx is not None else None
    batch = base.shape[0]
    optimize_shape = config.optimize_shape and (config.warm_shape or not warm)
    last = tuple(config.stages[-1]) + (1.0,) * (4 - len(config.stages[-1]))
    stages = config.stages if not warm else (last[:2] + (config.warm_iters, last[3]),)
    for i, stage in enumerate(stages):
        w_pose, w_shape, iters, sigma_scale = tuple(stage) + (1.0,) * (4 - len(stage))
        sigma_2d, sigma_3d = config.sigma_2d * sigma_scale, config.sigma_3d * sigma_scale
        if i > 0 and optimize_shape:
            ctx = _prepare(setup, shape, base)  # re-linearise around the new shape
        var = _Variables(root, trans, pose_params, shape, space, setup.size_m, optimize_shape)

        pose_keypoints = _pose_keypoints(setup, base)

        def keypoints(z, ctx=ctx, unpacked=None):
            root_z, trans_z, pose_z, shape_z = var.unpack(z) if unpacked is None else unpacked
            if z.shape[0] != batch:
                n = z.shape[0] // batch
                ctx = None if ctx is None else {k: v.repeat_interleave(n, 0) for k, v in ctx.items()}
            return pose_keypoints(pose_z, root_z, shape_z, ctx) + trans_z[:, None]

        if config.precondition:
            var.precondition(keypoints, data, config.weight_3d, space, setup.shape_prior, w_pose, w_shape)

        def loss_fn(var=var, w_pose=w_pose, w_shape=w_shape, sigma_2d=sigma_2d, sigma_3d=sigma_3d):
            z = var.z()
            unpacked = var.unpack(z)
            e = data.terms(keypoints(z, unpacked=unpacked), None, sigma_2d, sigma_3d, config.weight_3d)
            return (e + w_pose * space.prior(unpacked[2]) + w_shape * setup.shape_prior(unpacked[3])).sum()

        _lbfgs([var.y], loss_fn, iters, config, history, counter, people)
        with torch.no_grad():
            root, trans, pose_params, shape = var.unpack(var.z())
    if num_c > 1:  # keep each person's best candidate
        with torch.no_grad():
            p, s = pose_params, shape
            kp = _pose_keypoints(setup, base)(p, root, s, ctx) + trans[:, None]
            loss = data.terms(kp, None, sigma_2d, sigma_3d, config.weight_3d)
            loss = loss + w_pose * space.prior(p) + w_shape * setup.shape_prior(s)
            pick = torch.arange(people, device=loss.device) * num_c + loss.reshape(people, num_c).argmin(1)
            root, trans, pose_params, shape = root[pick], trans[pick], pose_params[pick], shape[pick]
    return root, trans, pose_params, shape


def _prepare(setup: _Setup, shape: torch.Tensor, base: torch.Tensor, tolerance: float = 0.0):
    """The keypoint model's context (linearisation) at ``shape`` (B, S) for problems whose non-optimised rotations
    are ``base`` (B, J, 3, 3): the reduced chain's where there is one (forward.py).

    Reduced contexts are kept per person (``_Setup.contexts``, the ``CONTEXT_CACHE`` most recently used) and
    reused for the same fixed rotations and a shape within ``tolerance`` (max over phenotypes) of their
    linearisation point: every cold fit starts at the prior's mean shape with the rest pose (tolerance 0: the same
    context as computing it), and a video frame's warm start near the previous frame's shape (``CONTEXT_REUSE_SHAPE``:
    a linearisation that far off moves the keypoints by < 0.4 mm; the outputs use the exact forward)."""
    if setup.chain is None:
        return setup.model.prepare(shape)
    fixed = base[:, setup.fixed_bones].detach()
    shape = shape.detach()
    cache = setup.contexts
    keys = [fixed[b].cpu().numpy().tobytes() for b in range(shape.shape[0])]
    rows: list[dict[str, torch.Tensor] | None] = []
    for b, key in enumerate(keys):
        entries = cache.get(key, [])
        found = next((i for i, e in enumerate(entries) if float((e["shape0"] - shape[b]).abs().max()) <= tolerance),
                     None)
        if found is not None:  # most recently used first
            entries.insert(0, entries.pop(found))
            cache.move_to_end(key)
        rows.append(None if found is None else entries[0])
    missing = [b for b, row in enumerate(rows) if row is None]
    if missing:
        ctx = setup.model.prepare_reduced(setup.chain, shape[missing], base[missing])
        for i, b in enumerate(missing):
            rows[b] = {k: v[i] for k, v in ctx.items()}
            cache.setdefault(keys[b], []).insert(0, rows[b])
            cache.move_to_end(keys[b])
        while sum(len(e) for e in cache.values()) > CONTEXT_CACHE:  # drop the least recently used
            oldest = next(iter(cache))
            cache[oldest].pop()
            if not cache[oldest]:
                del cache[oldest]
    return {k: torch.stack([row[k] for row in rows]) for k in rows[0]}


def _pose_keypoints(setup: _Setup, base: torch.Tensor):
    """``f(pose_params, root (N, 3, 3), shape, ctx) -> keypoints (N, K, 3)`` for problems whose non-optimised
    rotations are ``base`` (B, J, 3, 3) (N a multiple of B: repeated people) and whose ``ctx`` comes from
    :func:`_prepare` with that ``base``. With Anny's keypoint model and an Euler pose space, only the optimised bones
    enter the kinematic chain (the fixed ones are folded into ``ctx``)."""
    model, space = setup.model, setup.pose_space
    if setup.chain is not None:
        chain, order = setup.chain, setup.chain_order
        return lambda p, root, shape, ctx: model.keypoints_reduced(chain, root, space.rotations(p)[:, order], shape,
                                                                   ctx)

    def repeat(x: torch.Tensor, n: int) -> torch.Tensor:
        return x if x.shape[0] == n else x.repeat_interleave(n // x.shape[0], 0)

    if not (hasattr(model, "keypoints_of_bones") and hasattr(space, "rotations")):
        return lambda p, root, shape, ctx: model.keypoints(space.to_pose(p, root, repeat(base, p.shape[0])), shape,
                                                           ctx)
    bones = list(model.bones)
    optimised = [bones.index(b) for b in space.bones]
    fixed = [i for i in range(1, len(bones)) if i not in optimised]
    perm = torch.argsort(torch.tensor([0] + optimised + fixed)).to(base.device)
    base_fixed = base[:, [bones[i] for i in fixed]]

    def f(p, root, shape, ctx):
        rot = torch.cat([root[:, None], space.rotations(p), repeat(base_fixed, p.shape[0])], 1)[:, perm]
        return model.keypoints_of_bones(rot, shape, ctx)

    return f


class _Variables:
    """The optimiser's variables ``y`` (B, n): ``z = scale * y`` with z = [global rotation (a rotation vector
    composed with the current one, rad), translation (an image-plane offset in units of the person's angular size and
    a log-depth; an additive offset in model sizes where the depth is unknown, z <= 5 cm), pose parameters' change
    (rad), shape's change]. ``scale`` is a diagonal preconditioner (:meth:`precondition`: the inverse square root
    of the diagonal of the loss's Gauss-Newton Hessian), or 1."""

    def __init__(self, root, trans, pose_params, shape, space: PoseSpace, size_m: float,
                 optimize_shape: bool = True) -> None:
        batch = root.shape[0]
        self.root_base, self.trans0, self.pose0, self.shape0 = root, trans, pose_params, shape
        self.size_m = size_m
        self.perspective = trans[:, 2] > 0.05
        self.z0 = torch.where(self.perspective, trans[:, 2], torch.ones_like(trans[:, 2]))
        self.xy0 = trans[:, :2] / self.z0[:, None]
        self.angular = size_m / self.z0
        self.all_perspective, self.all_orthographic = bool(self.perspective.all()), not bool(self.perspective.any())
        self.ones = torch.ones(batch, 1, device=root.device)
        self.space = space
        self.sizes = [3, 3, 0 if pose_params is None else pose_params[0].numel(),
                      0 if shape is None or not optimize_shape else shape.shape[1]]
        n = sum(self.sizes)
        self.y = torch.zeros(batch, n, device=root.device, requires_grad=True)
        self.scale = torch.ones(batch, n, device=root.device)
        if pose_params is not None and hasattr(space, "free"):  # fixed Euler axes never move
            self.scale[:, 6:6 + self.sizes[2]] *= space.free.reshape(1, -1).float()

    def z(self) -> torch.Tensor:
        return self.scale * self.y

    def unpack(self, z: torch.Tensor):
        n = z.shape[0] // self.root_base.shape[0]
        rep = (lambda x: x) if n == 1 else (lambda x: x.repeat_interleave(n, 0))  # noqa: E731
        d_root, q, d_pose, d_shape = torch.split(z, self.sizes, 1)
        root = _rotvec_to_rotmat(d_root) @ rep(self.root_base)
        if self.all_orthographic:
            trans = rep(self.trans0) + q * self.size_m
        else:
            depth = rep(self.z0)[:, None] * torch.exp(q[:, 2:3])
            trans = torch.cat([rep(self.xy0) + q[:, :2] * rep(self.angular)[:, None], rep(self.ones)], -1) * depth
            if not self.all_perspective:
                trans = torch.where(rep(self.perspective)[:, None], trans, rep(self.trans0) + q * self.size_m)
        pose = None if self.pose0 is None else rep(self.pose0) + d_pose.reshape(-1, *self.pose0.shape[1:])
        shape = None if self.shape0 is None else (rep(self.shape0) + d_shape if self.sizes[3] else rep(self.shape0))
        return root, trans, pose, shape

    @torch.no_grad()
    def precondition(self, keypoints, data: "_Data", weight_3d: float, space: PoseSpace, shape_prior: ShapePrior,
                     w_pose: float, w_shape: float, step: float = 1e-3) -> None:
        """Set ``scale`` from the Gauss-Newton diagonal of the data term (forward finite differences of the residual
        vector, all variables at once in one batched call) plus the priors' curvature."""
        batch, n = self.y.shape
        probes = torch.zeros(batch, n + 1, n, device=self.y.device)
        probes[:, 1:] = torch.eye(n, device=self.y.device) * step
        res = _residual_vector(data.map(lambda x: x.repeat_interleave(n + 1, 0)),
                               keypoints(probes.reshape(-1, n)), weight_3d).reshape(batch, n + 1, -1)
        jac = (res[:, 1:] - res[:, :1]) / step  # (B, n, M)
        hess = 2.0 * (jac ** 2).sum(-1)
        i = 6
        if self.sizes[2]:
            count = float(space.free.sum().clamp_min(1)) if hasattr(space, "free") else float(self.sizes[2])
            hess[:, i:i + self.sizes[2]] += w_pose * 2.0 / (space.std.reshape(1, -1) ** 2 * count)
            i += self.sizes[2]
        if self.sizes[3]:
            hess[:, i:] += w_shape * 2.0 / (shape_prior.std ** 2 * self.sizes[3])
        floor = 1e-4 * hess.amax(1, keepdim=True)
        self.scale = self.scale * hess.clamp_min(1e-12).maximum(floor).rsqrt()


def _rigid_stage(setup: _Setup, data: _Data, base: torch.Tensor, pose_params: torch.Tensor, shape: torch.Tensor,
                 ctx, config: FitConfig, history: list[float], counter: list[int],
                 keep_root: bool, candidates: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2 of the module docstring: root rotations (B C, 3, 3) and translations (B C, 3) of the best C
    hypotheses of each person (person-major; C = ``candidates``, at most the number of hypotheses)."""
    import roma

    batch, device = base.shape[0], base.device
    space = setup.pose_space
    eye = torch.eye(3, device=device).expand(batch, 3, 3)
    pose_keypoints = _pose_keypoints(setup, base)
    with torch.no_grad():
        points = pose_keypoints(pose_params, eye, shape, ctx)  # (B, K, 3), root at identity
    core = setup.core
    if keep_root:
        hyps = base[:, 0][:, None]  # (B, 1, 3, 3)
    elif data.kp3d is not None:
        w = data.conf3d[:, core]
        rot, _ = roma.rigid_points_registration(points[:, core], data.kp3d[:, core], weights=w)
        hyps = rot[:, None]
    else:
        hyps = _orientation_hypotheses(setup, config, device)[None].expand(batch, -1, -1, -1)
    num_h = hyps.shape[1]
    sub = data.map(lambda x: x.repeat_interleave(num_h, 0))
    pts = points.repeat_interleave(num_h, 0)
    rots = hyps.reshape(-1, 3, 3)
    rotated = pts @ rots.transpose(1, 2)
    if data.kp3d is not None and not data.relative_3d:
        trans0 = _weighted_mean(sub.kp3d, sub.conf3d)[:, 0] - _weighted_mean(rotated, sub.conf3d)[:, 0]
    elif data.kp2d is not None:
        trans0 = _initial_translation(rotated, sub, sub.conf2d)
    else:
        trans0 = torch.zeros(batch * num_h, 3, device=device)
    solved = None
    if config.rigid_solver == "pnp" and data.kp2d is not None and data.kp3d is None and not keep_root:
        solved = _solve_pnp(pts[:, core], sub.kp2d[:, core], sub.conf2d[:, core], sub.K, rots, trans0)
    var = _Variables(rots if solved is None else solved[0], trans0 if solved is None else solved[1], None, None,
                     space, setup.size_m)

    def loss_on(index):
        root, trans, _, _ = var.unpack(var.z())
        kp = (pts if index is None else pts[:, index]) @ root.transpose(1, 2) + trans[:, None]
        return sub.terms(kp, index, config.sigma_2d, config.sigma_3d, config.weight_3d)

    if solved is None:
        _lbfgs([var.y], lambda: loss_on(core).sum(), config.rigid_iters, config, history, counter, batch * num_h)
    with torch.no_grad():
        score = loss_on(None).reshape(batch, num_h)
        num_c = min(candidates, num_h)
        best = score.topk(num_c, dim=1, largest=False).indices  # (B, C)
        pick = (torch.arange(batch, device=device)[:, None] * num_h + best).reshape(-1)
        root, trans, _, _ = var.unpack(var.z())
        root, trans = root[pick], trans[pick]
        # Exact translation for models whose global rotation does not pivot about the origin (SMPL: the pelvis):
        # the rotated points and the model's differ by a constant offset.
        rep = (lambda x: x.repeat_interleave(num_c, 0)) if num_c > 1 else (lambda x: x)  # noqa: E731
        model_kp = pose_keypoints(rep(pose_params), root, rep(shape),
                                  None if ctx is None else {k: rep(v) for k, v in ctx.items()})
        offset = (rep(points) @ root.transpose(1, 2) - model_kp).mean(1)
    return root, trans + offset


def _solve_pnp(points: torch.Tensor, uv: torch.Tensor, conf: torch.Tensor, K: torch.Tensor, rot0: torch.Tensor,
               trans0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rigid stage by OpenCV's ``solvePnP`` (Levenberg-Marquardt on the reprojection error, from each hypothesis):
    rotations (N, 3, 3) and translations (N, 3) putting model points (N, C, 3) on pixels uv (N, C, 2) with K
    (N, 3, 3), starting from rot0 (N, 3, 3), trans0 (N, 3). Points with confidence 0 are left out; None when a
    problem has fewer than 4 points or OpenCV is missing (the caller then runs LBFGS). A start that ends behind the
    camera or fails keeps its initial placement."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency of the detector
        return None
    valid = (conf > 0).cpu().numpy()
    if int(valid.sum(1).min()) < 4:
        return None
    pts, img = points.detach().double().cpu().numpy(), uv.detach().double().cpu().numpy()
    cams, r0, t0 = K.detach().double().cpu().numpy(), rot0.detach().double().cpu().numpy(), trans0.detach().double()
    t0 = t0.cpu().numpy()
    rots, trans = r0.copy(), t0.copy()
    for n in range(pts.shape[0]):
        rvec, _ = cv2.Rodrigues(r0[n])
        try:
            ok, rvec, tvec = cv2.solvePnP(pts[n, valid[n]], img[n, valid[n]], cams[n], None, rvec=rvec,
                                          tvec=t0[n].reshape(3, 1).copy(), useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
        except cv2.error:
            continue
        if ok and np.all(np.isfinite(tvec)) and float(tvec[2, 0]) > 0.05:
            rots[n], trans[n] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
    device = rot0.device
    return (torch.as_tensor(rots, dtype=torch.float32, device=device),
            torch.as_tensor(trans, dtype=torch.float32, device=device))


__all__ = ["FitConfig", "FitResult", "fit_to_keypoints"]
