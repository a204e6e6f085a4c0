"""Record + augmentation -> network input and the training targets (``i2lmesh.losses.LossTargets``).

Per sample (official_spec.md 4.2-4.7):

1. box: ``Preprocessing.crop_box`` (sanitise, square, x1.25) unless the record's box is final (RootNet test boxes);
2. flip (virtual mirrored view, see ``augment``), then the affine crop with scale and rotation
   (``geometry.preprocessing.Preprocessing``, the crop the Predictor uses) -> (3, S, S) RGB in [0, 1] with the
   colour jitter;
3. "orig" joints: the dataset's 2D joints through the crop -> x, y bins; depth relative to the dataset's root ->
   z bins; mapped by name onto the network's joint set; valid where annotated and inside the heatmap (z checked
   only for 3D samples);
4. mesh: the body model evaluated on the (flipped) parameters, or the stored (flipped) vertices, projected the
   same way with depth relative to the fit's own root joint; valid where inside the heatmap and the fit is usable
   and has the network's vertex count; "fit" joints = the fit's joints mapped onto the network's set;
5. camera-space ground truth for the parameter stage and evaluation, in metres, with the root-relative joints
   and vertices rotated by Rz(-rot) as the crop rotation (the parameters' root orientation is rotated the same
   way), so a body model driven by the parameters reproduces them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import JointSet
from ..geometry.camera import camera_to_heatmap, crop_px_to_heatmap, relative_m_to_depth_bins
from ..geometry.crop import apply_affine, compose_affine, flip_transform
from ..geometry.preprocessing import Preprocessing
from ..losses import LossTargets
from . import augment as aug_
from .augment import Augmentation
from .record import SampleRecord, map_joints

log = logging.getLogger(__name__)


class BadSampleError(ValueError):
    """A sample that cannot be used (unreadable image, unusable box); the message names the image path."""


@dataclass(frozen=True)
class TargetSpec:
    """What the network expects: crop size, heatmap bins, metric depth range, joint set and mesh size.

    joint_regressor (J, V): the network's J x mesh, used for vertices-only records without a body model.
    """

    input_size: int
    heatmap_size: int
    depth_bins: int
    bbox_3d_size_m: float
    joint_set: JointSet
    num_vertices: int
    joint_regressor: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Derived from a field, not one: set on the frozen instance once, for regress_joints.
        object.__setattr__(self, "_regressor_rows", _row_nonzeros(self.joint_regressor))

    @property
    def preprocessing(self) -> Preprocessing:
        """The crop and value range of the network's input (the Predictor's too; mean/std are the network's)."""
        return Preprocessing(self.input_size)

    def regress_joints(self, vertices: np.ndarray) -> np.ndarray:
        """The network's joints (J, 3) of a mesh (V, 3), ``joint_regressor @ vertices``, same units.

        A sparse regressor (Anny's: at most 23 of 6,890 weights a joint) is applied through its nonzero weights
        only: the same sums up to float64 rounding (another summation order), without numpy's BLAS, which starts a
        thread per core in every DataLoader worker (measured: 1-8 ms CPU for this product in a loaded worker
        against ~0.02 ms so).
        """
        rows = self._regressor_rows  # type: ignore[attr-defined]
        if rows is None:
            return self.joint_regressor @ vertices
        index, weights = rows
        return (weights[:, :, None] * np.asarray(vertices, np.float64)[index]).sum(1)

    @classmethod
    def from_config(cls, config, body_model: BodyModel | None = None, joint_set: JointSet | None = None
                    ) -> "TargetSpec":
        """From a ``ModelConfig`` and the network's body model (which gives the joint set and regressor)."""
        if body_model is not None:
            joint_set = body_model.joint_set
            regressor = body_model.joint_regressor.detach().cpu().numpy().astype(np.float64)
        else:
            regressor = None
        assert joint_set is not None, "TargetSpec.from_config needs a body model or a joint set."
        return cls(config.input_size, config.heatmap_size, config.depth_bins, config.bbox_3d_size_m, joint_set,
                   config.num_vertices, regressor)


def _row_nonzeros(matrix: np.ndarray | None, max_density: float = 0.1) -> tuple[np.ndarray, np.ndarray] | None:
    """A (J, V) matrix's nonzeros per row as (indices (J, n) int64, weights (J, n) float64), rows padded with weight
    0 on vertex 0 to the longest row's n; None without a matrix or when it is denser than ``max_density`` (then
    the dense product is the faster)."""
    if matrix is None or matrix.ndim != 2 or matrix.size == 0:
        return None
    nonzero = matrix != 0
    counts = nonzero.sum(1)
    width = max(int(counts.max()), 1)
    if width > max_density * matrix.shape[1]:
        return None
    index = np.zeros((matrix.shape[0], width), np.int64)
    weights = np.zeros((matrix.shape[0], width), np.float64)
    for j in range(matrix.shape[0]):
        cols = np.flatnonzero(nonzero[j])
        index[j, :len(cols)] = cols
        weights[j, :len(cols)] = matrix[j, cols]
    return index, weights


class BodyModelBank:
    """Body models by (name, gender) to evaluate record parameters, built lazily from the user's model folder.

    ``models``: ready models keyed by name ("smpl", "mano", "anny") or (name, gender). ``model_path``: folder or
    file for the models that need user files (SMPL/MANO, see ``bodymodels.smpl``), built on first use with
    ``BodyModel.from_options``. Models are evaluated on CPU, one sample at a time.
    """

    def __init__(self, models: Mapping[Any, BodyModel] | None = None, model_path: str | Path | None = None) -> None:
        self._models: dict[Any, BodyModel] = dict(models or {})
        self.model_path = model_path
        self._rest_root: dict[tuple, np.ndarray] = {}

    def get(self, name: str, gender: str = "neutral") -> BodyModel | None:
        for key in ((name, gender), name):
            if key in self._models:
                return self._models[key]
        if self.model_path is None:
            return None
        from ..bodymodels import body_model_class
        try:
            cls = body_model_class(name)
        except ValueError:  # a name no body model has: nothing to evaluate the record with
            return None
        if not cls.needs_user_files:
            return None
        model = cls.from_options(self.model_path, gender=gender).eval()
        self._models[(name, gender)] = model
        return model

    @torch.no_grad()
    def evaluate(self, name: str, gender: str, params: Mapping[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, BodyModel] | None:
        """(vertices (V,3), joints (J,3), model) in metres for one parameter set, or None without the model."""
        model = self.get(name, gender)
        if model is None:
            return None
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(1, -1) for k, v in params.items()
                   if k in ("pose", "shape", "trans") and v is not None}
        out = model(**tensors)
        return out.vertices_m[0].double().numpy(), out.joints_m[0].double().numpy(), model

    @torch.no_grad()
    def evaluate_batch(self, name: str, gender: str, params: Sequence[Mapping[str, np.ndarray]]
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """(vertices (B,V,3), joints (B,J,3)) float32 metres for B parameter sets in one forward pass, or None
        without the model. The sets must have the same keys and sizes. Equal to :meth:`evaluate` on each set up to
        float32 rounding (a batch can change the summation order of the model's matrix products)."""
        model = self.get(name, gender)
        if model is None:
            return None
        keys = [k for k in ("pose", "shape", "trans") if params[0].get(k) is not None]
        tensors = {k: torch.as_tensor(np.stack([np.asarray(p[k], dtype=np.float32).reshape(-1) for p in params]))
                   for k in keys}
        out = model(**tensors)
        return out.vertices_m.cpu().numpy(), out.joints_m.cpu().numpy()

    @torch.no_grad()
    def rest_root_joint(self, name: str, gender: str, shape: np.ndarray | None) -> np.ndarray | None:
        """The root joint J0 (3,) of the shaped rest pose (what SMPL/MANO rotate about), metres
        (``BodyModel.rest_root_joint``); None without the model or for models whose root stays at the origin."""
        model = self.get(name, gender)
        if model is None:
            return None
        shape_t = None if shape is None else torch.as_tensor(np.asarray(shape, np.float32)).reshape(1, -1)
        j0 = model.rest_root_joint(shape_t)
        return None if j0 is None else j0[0].double().numpy()


POSED_BATCH = 64  # bodies per forward pass when posing a dataset: Anny costs ~2.6 ms a body so, ~15 ms one at a time


class PosedMeshes:
    """The body-model mesh of each record, posed once on its recorded parameters (what :meth:`BodyModelBank.evaluate`
    gives, but batched), so that a sample does not run the body model again.

    A record's posed mesh depends on the record alone (pose, shape, translation); augmentation moves it afterwards
    (crop, rotation; a flip mirrors the mesh for models with a vertex mirror map, such as Anny). Records whose
    flipped view needs the model on flipped parameters (SMPL/MANO) still pose that view per sample.

    Storage: one float32 array (n, V, 3) of vertices and one (n, J, 3) of joints per (model, parameter sizes) group,
    metres, with a row per posed record: a DataLoader worker forked after :meth:`compute` shares them copy-on-write
    (reads touch only the arrays' headers, never their pages). Records beyond the memory budget, without parameters
    or without their model are not held: :meth:`get` gives None and the sample poses them as before.
    """

    def __init__(self, num_records: int) -> None:
        self._group = np.full(num_records, -1, np.int32)  # record -> group, -1 when not held
        self._row = np.zeros(num_records, np.int64)       # record -> row within its group
        self._vertices: list[np.ndarray] = []
        self._joints: list[np.ndarray] = []
        self.seconds = 0.0  # wall time :meth:`compute` took

    def __len__(self) -> int:
        """Records held."""
        return int(np.count_nonzero(self._group >= 0))

    @property
    def nbytes(self) -> int:
        """Bytes held by the posed vertices and joints."""
        return sum(a.nbytes for a in self._vertices + self._joints)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(vertices (V,3), joints (J,3)) float64 metres of record ``index``, fresh arrays (free to modify), or None
        when not held. float32 -> float64 is exact: the same values as ``BodyModelBank.evaluate`` would give from the
        same float32 model output."""
        group = int(self._group[index])
        if group < 0:
            return None
        row = int(self._row[index])
        return self._vertices[group][row].astype(np.float64), self._joints[group][row].astype(np.float64)

    @classmethod
    def compute(cls, records: Sequence[SampleRecord], bank: BodyModelBank, budget_bytes: int,
                batch_size: int = POSED_BATCH, name: str = "dataset") -> "PosedMeshes":
        """Pose the records that carry usable body-model parameters, in record order until ``budget_bytes``
        (float32 vertices and joints) is spent, ``batch_size`` at a time (torch's current thread count).

        A group whose batched evaluation fails (e.g. parameters the model refuses) is left out: its samples pose
        per record and raise there, as without this cache.
        """
        t0 = time.perf_counter()
        posed = cls(len(records))
        groups: dict[tuple, list[int]] = {}
        spent = over = 0
        for i, r in enumerate(records):
            if not (r.fit_valid and r.body_params and r.body_model is not None):
                continue
            model = bank.get(r.body_model, r.body_gender)
            if model is None:
                continue
            size = (model.num_vertices + model.num_joints) * 3 * 4
            if spent + size > budget_bytes:
                over += 1
                continue  # beyond the budget: posed per sample (a smaller model's record may still fit)
            spent += size
            sizes = tuple((k, np.shape(r.body_params[k])) for k in ("pose", "shape", "trans")
                          if r.body_params.get(k) is not None)
            groups.setdefault((r.body_model, r.body_gender, id(model), sizes), []).append(i)
        for (model_name, gender, _, _), indices in groups.items():
            vertices = joints = None
            try:
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    v, j = bank.evaluate_batch(model_name, gender, [records[i].body_params for i in chunk])
                    if vertices is None:
                        vertices = np.empty((len(indices),) + v.shape[1:], np.float32)
                        joints = np.empty((len(indices),) + j.shape[1:], np.float32)
                    vertices[start:start + len(chunk)] = v
                    joints[start:start + len(chunk)] = j
            except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
                log.warning("%s: could not pose %d %s records in batches (%s); they are posed per sample", name,
                            len(indices), model_name, exc)
                continue
            posed._group[indices] = len(posed._vertices)
            posed._row[indices] = np.arange(len(indices))
            posed._vertices.append(vertices)
            posed._joints.append(joints)
        posed.seconds = time.perf_counter() - t0
        if groups or over:
            log.info("%s: posed %d body-model meshes in %.1f s (%.0f MB)%s", name, len(posed), posed.seconds,
                     posed.nbytes / 2 ** 20, f"; {over} beyond the {budget_bytes / 2 ** 20:.0f} MB budget are posed "
                     f"per sample" if over else "")
        return posed


def load_image(path: str | Path) -> np.ndarray:
    """RGB float32 0..255 (H, W, 3), EXIF orientation ignored, as the reference; BadSampleError if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        reason = "missing" if not Path(path).exists() else "unreadable or corrupt"
        raise BadSampleError(f"image {reason}: {path}")
    # cvtColor's channel swap, then the cast: the values of image[:, :, ::-1].astype(float32), but ~45 us instead of
    # ~640 us for a 256 px image (the strided reversed copy cost more than the JPEG decode).
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)


def _inside(hm: np.ndarray, size_xy: int, depth_bins: int, check_z: bool) -> np.ndarray:
    ok = (hm[:, 0] >= 0) & (hm[:, 0] < size_xy) & (hm[:, 1] >= 0) & (hm[:, 1] < size_xy)
    if check_z:
        ok &= (hm[:, 2] >= 0) & (hm[:, 2] < depth_bins)
    return ok & np.all(np.isfinite(hm), axis=1)


def build_sample(record: SampleRecord, image: np.ndarray, augmentation: Augmentation, spec: TargetSpec,
                 bank: BodyModelBank | None = None, posed: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, Any]]:
    """One sample: (image (3,S,S) float32 in [0,1], target arrays (LossTargets fields, unbatched), meta).

    ``image``: the record's image, RGB float 0..255 (H, W, 3). ``posed``: the record's body model already evaluated
    on its recorded parameters, (vertices (V,3), joints (J,3)) float64 metres as ``bank.evaluate`` gives them
    (:meth:`PosedMeshes.get`), used instead of evaluating it again. Raises BadSampleError for an unusable box.
    """
    width, height = record.image_size
    a = augmentation
    s, hm, depth_bins, size_3d = spec.input_size, spec.heatmap_size, spec.depth_bins, spec.bbox_3d_size_m
    js_net = spec.joint_set

    # 1. box and crop in the (possibly mirrored) virtual view
    prep = spec.preprocessing
    box = np.asarray(record.bbox_xywh, np.float64) if record.bbox_is_final else prep.crop_box(
        record.bbox_xywh, width, height)
    if box is None or box[2] <= 0 or box[3] <= 0:
        raise BadSampleError(f"unusable box {np.asarray(record.bbox_xywh).tolist()} for image {record.image_path}")
    K = np.asarray(record.K, np.float64)
    if a.flip:
        box, K = aug_.flip_bbox(box, width), aug_.flip_intrinsics(K, width)
    img2patch, patch2img = prep.transforms(box, a.scale, a.rot_deg)
    source2patch = compose_affine(img2patch, flip_transform(width)) if a.flip else img2patch
    patch = aug_.apply_colour(prep.warp(image, source2patch), a.colour)
    image_t = torch.from_numpy(np.ascontiguousarray(prep.to_unit_chw(patch)))

    # 2. the dataset's own joints ("orig")
    j_net = len(js_net)
    joints_hm = np.zeros((j_net, 3))
    joints_valid = np.zeros(j_net)
    joints_cam_rel = np.zeros((j_net, 3))
    joints_cam_valid = np.zeros(j_net)
    root_depth_gt = None
    has_z = bool(record.has_3d and record.joints_cam_m is not None)
    if record.joint_set is not None and (record.joints_img_px is not None or record.joints_cam_m is not None):
        js = record.joint_set
        valid = np.ones(len(js)) if record.joints_valid is None else np.asarray(record.joints_valid, np.float64)
        valid = valid.reshape(-1)
        joints_img = record.joints_img_px
        if joints_img is None:  # 3D only: project
            from ..geometry.camera import project
            joints_img = project(np.asarray(record.joints_cam_m, np.float64), np.asarray(record.K, np.float64))
        joints_img = np.asarray(joints_img, np.float64)
        joints_cam = None if record.joints_cam_m is None else np.asarray(record.joints_cam_m, np.float64)
        if a.flip:
            joints_img, valid = aug_.flip_joints_img(joints_img, valid, width, js)
            joints_cam = None if joints_cam is None else aug_.flip_joints_cam(joints_cam, js)
        xy = crop_px_to_heatmap(apply_affine(joints_img, img2patch), s, hm)
        if has_z:
            root_depth_gt = float(joints_cam[js.root_index, 2])
            z = relative_m_to_depth_bins(joints_cam[:, 2] - root_depth_gt, depth_bins, size_3d)
        else:
            z = np.full(len(js), depth_bins / 2.0)
        own_hm = np.concatenate([xy, z[:, None]], 1)
        own_valid = valid * _inside(own_hm, hm, depth_bins, check_z=has_z)
        joints_hm = map_joints(own_hm, js, js_net)
        joints_valid = map_joints(own_valid, js, js_net)
        if has_z:
            rel = aug_.rotate_points_z(joints_cam - joints_cam[js.root_index], a.rot_deg)
            joints_cam_rel = map_joints(rel, js, js_net)
            joints_cam_valid = map_joints(valid, js, js_net)

    # 3. the body-model fit ("fit"): mesh and its joints
    v_net = spec.num_vertices
    vertices_hm, vertices_valid = np.zeros((v_net, 3)), np.zeros(v_net)
    fit_hm, fit_valid = np.zeros((j_net, 3)), np.zeros(j_net)
    fit_cam_rel, fit_cam_valid = np.zeros((j_net, 3)), np.zeros(j_net)
    vertices_cam, vertices_cam_rel = np.zeros((v_net, 3)), np.zeros((v_net, 3))
    mesh_ok = False
    params_out = None
    fit = _fit_in_view(record, a, width, bank, posed) if record.fit_valid else None
    if fit is not None:
        verts, fit_joints, fit_js, params_out = fit
        fit_root = fit_joints[fit_js.root_index] if fit_joints is not None and fit_js is not None else None
        if verts is not None and verts.shape[0] == v_net:
            if fit_joints is None and spec.joint_regressor is not None:
                fit_joints, fit_js = spec.regress_joints(verts), js_net
                fit_root = fit_joints[js_net.root_index]
            mesh_ok = fit_root is not None
        if fit_root is not None:
            root_z = float(fit_root[2])
            if verts is not None and mesh_ok:
                vertices_hm = camera_to_heatmap(verts, K, img2patch, root_z, s, hm, depth_bins, size_3d)
                vertices_valid = _inside(vertices_hm, hm, depth_bins, True).astype(np.float64)
                vertices_cam = verts
                vertices_cam_rel = aug_.rotate_points_z(verts - fit_root, a.rot_deg)
            f_hm = camera_to_heatmap(fit_joints, K, img2patch, root_z, s, hm, depth_bins, size_3d)
            f_valid = _inside(f_hm, hm, depth_bins, True).astype(np.float64)
            fit_hm = map_joints(f_hm, fit_js, js_net)
            fit_valid = map_joints(f_valid, fit_js, js_net)
            fit_cam_rel = map_joints(aug_.rotate_points_z(fit_joints - fit_root, a.rot_deg), fit_js, js_net)
            fit_cam_valid = map_joints(np.ones(len(fit_joints)), fit_js, js_net)
            if root_depth_gt is None:
                root_depth_gt = root_z
        if params_out is not None:
            params_out = aug_.rotate_root_pose(params_out, a.rot_deg)

    root_depth = record.root_depth_m if record.root_depth_m is not None else root_depth_gt
    targets = {
        "joints_hm": joints_hm.astype(np.float32), "joints_valid": joints_valid.astype(np.float32),
        "has_z": np.float32(has_z),
        "vertices_hm": vertices_hm.astype(np.float32), "vertices_valid": vertices_valid.astype(np.float32),
        "fit_joints_hm": fit_hm.astype(np.float32), "fit_joints_valid": fit_valid.astype(np.float32),
    }
    meta = {
        "bb2img_trans": patch2img.astype(np.float32), "img2bb_trans": img2patch.astype(np.float32),
        "K": K.astype(np.float32), "root_depth_m": np.float32(np.nan if root_depth is None else root_depth),
        "image_size": np.array([width, height], np.int64), "flip": np.bool_(a.flip),
        "rot_deg": np.float32(a.rot_deg), "scale": np.float32(a.scale),
        "joints_cam_rel_m": joints_cam_rel.astype(np.float32), "joints_cam_valid": joints_cam_valid.astype(np.float32),
        "fit_joints_cam_rel_m": fit_cam_rel.astype(np.float32),
        "fit_joints_cam_valid": fit_cam_valid.astype(np.float32),
        "vertices_cam_m": vertices_cam.astype(np.float32), "has_mesh": np.bool_(mesh_ok),
        "vertices_cam_rel_m": vertices_cam_rel.astype(np.float32),
        "image_path": record.image_path, "sample_id": record.sample_id, "dataset": record.dataset,
        "body_params": params_out, "body_model": record.body_model if params_out is not None else None,
    }
    return image_t, targets, meta


def _fit_in_view(record: SampleRecord, a: Augmentation, width: int, bank: BodyModelBank | None,
                 posed: tuple[np.ndarray, np.ndarray] | None = None):
    """The record's fit in the (possibly mirrored) view: (vertices or None, joints or None, their joint set,
    flipped parameters or None); None when there is nothing to use. ``posed``: the model's output on the recorded
    parameters (see ``build_sample``), used wherever those parameters would be evaluated."""
    params = record.body_params
    if params is not None and record.body_model is not None and bank is not None \
            and bank.get(record.body_model, record.body_gender) is not None:
        model = bank.get(record.body_model, record.body_gender)
        flip_index = getattr(model, "flip_index", None)
        if a.flip and flip_index is not None:
            # Models without a mirror-symmetric parameterisation (Anny's local bones): evaluate as recorded and
            # mirror the mesh with its vertex mirror map; joints then come from the network's J x mesh.
            verts = posed[0] if posed is not None else bank.evaluate(record.body_model, record.body_gender, params)[0]
            return aug_.flip_vertices(verts, np.asarray(flip_index)), None, None, None
        if a.flip:
            j0 = bank.rest_root_joint(record.body_model, record.body_gender, params.get("shape"))
            params = aug_.flip_body_params(params, model.pose_flip_pairs, j0)
            posed = None  # the flipped parameters: a different body to evaluate
        verts, joints = posed if posed is not None else bank.evaluate(record.body_model, record.body_gender,
                                                                      params)[:2]
        return verts, joints, model.joint_set, {k: np.asarray(v, np.float64) for k, v in params.items()}
    if record.vertices_cam_m is not None:
        verts = np.asarray(record.vertices_cam_m, np.float64)
        if a.flip:
            if record.vertex_flip_index is None:
                return None  # no mirror map: a mirrored mesh would swap left and right vertices; mask it instead
            verts = aug_.flip_vertices(verts, record.vertex_flip_index)
        return verts, None, None, None
    return None


def collate_samples(samples: list[tuple[torch.Tensor, dict[str, np.ndarray], dict[str, Any]]]
                    ) -> tuple[torch.Tensor, LossTargets, dict[str, Any]]:
    """Batch samples: images (B,3,S,S), a batched LossTargets, and meta (arrays stacked as tensors; strings and
    parameter dicts kept as lists)."""
    images = torch.stack([s[0] for s in samples])
    t = {key: torch.as_tensor(np.stack([s[1][key] for s in samples])) for key in samples[0][1]}
    targets = LossTargets(**t)
    meta: dict[str, Any] = {}
    for key in samples[0][2]:
        values = [s[2][key] for s in samples]
        if isinstance(values[0], (np.ndarray, np.generic)) and all(np.shape(v) == np.shape(values[0]) for v in values):
            meta[key] = torch.as_tensor(np.stack(values))
        else:
            meta[key] = values
    return images, targets, meta


__all__ = ["BadSampleError", "TargetSpec", "BodyModelBank", "PosedMeshes", "POSED_BATCH", "load_image", "build_sample",
           "collate_samples"]
