"""SMPL (neutral / male / female) and MANO from model files the user supplies (licensed, never shipped).

Joint sets follow the reference (I2L-MeshNet_RELEASE ``common/utils/smpl.py`` and ``mano.py``):

- SMPL: the model's 24-joint ``J_regressor`` plus one-hot rows for the face vertices nose 331, L_eye 2802,
  R_eye 6262, L_ear 3489, R_ear 3990 -> ``SMPL_29`` (29 x 6890).
- MANO: the 16-joint ``J_regressor`` plus one-hot fingertip rows thumb 745, index 317, middle 445, ring 556,
  pinky 673, reordered to wrist-then-finger order -> ``MANO_21`` (21 x 778). The reference's
  ``fingertip_vertex_idx`` (and manopth's forward) say 444 for the middle tip, but the regressor its model uses
  is built with 445; we use 445.

The skinning is smplx's ``lbs`` (an optional dependency, ``pip install i2lmesh[smpl]``) applied to arrays we load
ourselves (see ``model_files``), so chumpy is never needed. Output is in metres for both models (the reference's
manopth MANO layer returns millimetres). Model data are non-persistent buffers: they never end up in our
checkpoints (the licence forbids redistributing them).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch

from .base import BodyModel, BodyModelFileError, BodyModelOutput
from .joint_sets import H36M_17, MANO_21, SMPL_29, JointSet
from .model_files import (MANO_PARENTS, MODEL_SIZES, SMPL_PARENTS, ModelFileFormatError, check_model_data,
                          load_model_file)

# Extra one-hot joint vertices (reference: common/utils/smpl.py:16-27, common/utils/mano.py:25-32).
SMPL_FACE_VERTICES: dict[str, int] = {"Nose": 331, "L_Eye": 2802, "R_Eye": 6262, "L_Ear": 3489, "R_Ear": 3990}
MANO_FINGERTIP_VERTICES: dict[str, int] = {"Thumb_4": 745, "Index_4": 317, "Middle_4": 445, "Ring_4": 556,
                                           "Pinky_4": 673}
# Left/right pairs of SMPL's 24 pose rotations (the first 24 joints of SMPL_29), for mirroring parameters.
SMPL_POSE_FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(p for p in SMPL_29.flip_pairs if max(p) < 24)
# Rows of [16 MANO joints; 5 tips] in MANO_21 order (wrist, thumb, index, middle, ring, pinky; base to tip).
MANO_21_ORDER: tuple[int, ...] = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

SMPL_URL = "https://smpl.is.tue.mpg.de"
SMPLIFY_URL = "https://smplify.is.tue.mpg.de"
MANO_URL = "https://mano.is.tue.mpg.de"

Gender = Literal["neutral", "male", "female"]
Side = Literal["right", "left"]

_SMPL_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "neutral": ("SMPL_NEUTRAL.pkl", "SMPL_NEUTRAL.npz", "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl",
                "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"),
    "male": ("SMPL_MALE.pkl", "SMPL_MALE.npz", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl",
             "basicModel_m_lbs_10_207_0_v1.0.0.pkl", "basicmodel_m_lbs_10_207_0_v1.1.0.pkl"),
    "female": ("SMPL_FEMALE.pkl", "SMPL_FEMALE.npz", "basicModel_f_lbs_10_207_0_v1.0.0.pkl",
               "basicmodel_f_lbs_10_207_0_v1.0.0.pkl", "basicmodel_f_lbs_10_207_0_v1.1.0.pkl"),
}


def _smplx_lbs():
    try:
        from smplx.lbs import lbs
    except ImportError:
        raise ImportError("SMPL/MANO need the optional package smplx: pip install i2lmesh[smpl]") from None
    return lbs


def find_model_file(model_path: str | os.PathLike, names: tuple[str, ...], subfolders: tuple[str, ...], what: str,
                    where_to_get: str) -> Path:
    """``model_path`` itself if it is a file, else the first of ``names`` in ``model_path`` or its ``subfolders``.

    Raises :class:`BodyModelFileError` with one line: what is missing, the paths tried, where to get it.
    """
    model_path = Path(model_path).expanduser()
    if model_path.is_file():
        return model_path
    if not model_path.is_dir():
        raise BodyModelFileError(f"{what} model file not found: {model_path} does not exist; {where_to_get}")
    folders = [model_path] + [model_path / sub for sub in subfolders]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise BodyModelFileError(
        f"{what} model file not found: looked in {', '.join(str(f) for f in folders)} for {', '.join(names)}; "
        f"{where_to_get}")


def read_model(path: Path, kind: Literal["smpl", "mano"]) -> dict[str, Any]:
    """Load and check one model file; any problem becomes a one-line :class:`BodyModelFileError` naming the file."""
    try:
        data = load_model_file(path)
        check_model_data(data, kind)
    except ModelFileFormatError as exc:
        raise BodyModelFileError(f"{path}: cannot use this {kind.upper()} model file: {exc}") from None
    except OSError as exc:
        raise BodyModelFileError(f"{path}: cannot read {kind.upper()} model file ({exc.strerror or exc})") from None
    return data


def _one_hot_rows(vertex_ids: list[int], num_vertices: int) -> np.ndarray:
    rows = np.zeros((len(vertex_ids), num_vertices), dtype=np.float32)
    rows[np.arange(len(vertex_ids)), vertex_ids] = 1.0
    return rows


def smpl_29_regressor(j_regressor_24: np.ndarray) -> np.ndarray:
    """(29, 6890): SMPL's 24 joint rows, then one-hot rows at the nose, eyes and ears (reference ``smpl.py``)."""
    j_regressor_24 = np.asarray(j_regressor_24, dtype=np.float32)
    face = _one_hot_rows(list(SMPL_FACE_VERTICES.values()), j_regressor_24.shape[1])
    return np.concatenate([j_regressor_24, face], 0)


def mano_21_regressor(j_regressor_16: np.ndarray) -> np.ndarray:
    """(21, 778): MANO's 16 joint rows plus fingertip one-hots, reordered wrist, thumb..pinky (ref. ``mano.py``)."""
    j_regressor_16 = np.asarray(j_regressor_16, dtype=np.float32)
    tips = _one_hot_rows(list(MANO_FINGERTIP_VERTICES.values()), j_regressor_16.shape[1])
    return np.concatenate([j_regressor_16, tips], 0)[list(MANO_21_ORDER)]


class _SkinnedModel(BodyModel):
    """Linear-blend-skinned model (SMPL family) on top of :class:`BodyModel`.

    Buffers (float32, non-persistent): ``v_template`` (V, 3), ``shapedirs`` (V, 3, num_betas), ``posedirs`` (P, V*3)
    in smplx's flattened layout, ``kinematic_regressor`` (K, V) (the model's own joints, which drive the skeleton),
    ``lbs_weights`` (V, K) and ``parents`` (K,) int64 with -1 at the root.
    """

    num_pose_joints: int = 24
    needs_user_files = True

    def __init__(self, data: Mapping[str, Any], joint_regressor: np.ndarray, joint_set: JointSet, parents,
                 num_betas: int = 10) -> None:
        super().__init__(torch.as_tensor(np.asarray(data["f"], dtype=np.int64)), torch.from_numpy(joint_regressor),
                         joint_set)
        f32 = dict(dtype=torch.float32)
        posedirs = np.asarray(data["posedirs"])  # (V, 3, P), as in the pkl and in smplpytorch/manopth buffers
        num_vertices = posedirs.shape[0]
        self.num_betas = min(num_betas, int(np.shape(data["shapedirs"])[-1]))
        self.register_buffer("v_template", torch.as_tensor(np.asarray(data["v_template"]), **f32), persistent=False)
        self.register_buffer("shapedirs", torch.as_tensor(np.asarray(data["shapedirs"])[..., :self.num_betas], **f32),
                             persistent=False)
        self.register_buffer("posedirs", torch.as_tensor(posedirs.reshape(num_vertices * 3, -1).T.copy(), **f32),
                             persistent=False)
        self.register_buffer("kinematic_regressor", torch.as_tensor(np.asarray(data["J_regressor"]), **f32),
                             persistent=False)
        self.register_buffer("lbs_weights", torch.as_tensor(np.asarray(data["weights"]), **f32), persistent=False)
        parents = torch.as_tensor(np.asarray(parents, dtype=np.int64))
        parents[0] = -1  # the files store uint32 4294967295
        self.register_buffer("parents", parents, persistent=False)

    @property
    def num_pose_rotations(self) -> int:
        return self.num_pose_joints

    @property
    def num_shape_params(self) -> int:
        return self.num_betas

    def rest_root_joint(self, shape: torch.Tensor | None = None) -> torch.Tensor:
        """J0 (B, 3) in metres: the model's own root joint (``kinematic_regressor`` row 0) on the shaped rest mesh
        (identity rotations, so MANO's mean hand is not added), the point the global rotation turns about.
        shape: (B, <=num_betas) betas or None (zeros, B = 1)."""
        batch = 1 if shape is None else shape.shape[0]
        eye = torch.eye(3, device=self.v_template.device).expand(batch, self.num_pose_joints, 3, 3)
        verts = self._skin(eye, None if shape is None else shape.to(self.v_template.device), None).vertices_m
        return torch.stack([self.kinematic_regressor[0] @ v for v in verts])

    def _skin(self, pose: torch.Tensor, shape: torch.Tensor | None, trans: torch.Tensor | None) -> BodyModelOutput:
        """pose (B, K*3) axis-angle or (B, K, 3, 3) rotations; shape (B, <=num_betas); trans (B, 3) metres."""
        lbs = _smplx_lbs()
        k = self.num_pose_joints
        pose = pose.to(self.v_template.dtype)
        pose2rot = not (pose.ndim == 4 and pose.shape[-2:] == (3, 3))
        if pose2rot:
            assert pose.ndim in (2, 3) and pose.shape[1:].numel() == 3 * k, f"pose should be (B, {3 * k}) axis-angle."
            pose = pose.reshape(-1, 3 * k)
        else:
            assert pose.shape[1] == k, f"rotation-matrix pose should be (B, {k}, 3, 3)."
        batch = pose.shape[0]
        if shape is None:
            betas = pose.new_zeros(batch, self.num_betas)
        else:
            assert shape.ndim == 2 and shape.shape[0] == batch and shape.shape[1] <= self.num_betas, \
                f"shape should be (B, <= {self.num_betas}) betas."
            betas = torch.nn.functional.pad(shape.to(pose.dtype), (0, self.num_betas - shape.shape[1]))
        vertices, _ = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs, self.kinematic_regressor,
                          self.parents, self.lbs_weights, pose2rot=pose2rot)
        if trans is not None:
            vertices = vertices + trans.to(vertices.dtype).reshape(batch, 1, 3)
        return BodyModelOutput(vertices_m=vertices, joints_m=self.regress_joints(vertices))

    @staticmethod
    def _buffers_to_data(buffers: Mapping[str, torch.Tensor], expected_kind: str) -> dict[str, np.ndarray]:
        """smplpytorch / manopth layer buffers (``th_*``) -> the pkl-style numpy dict; any key prefix is ignored.

        Layouts assumed (verified against the released state dicts' shapes): th_v_template (1, V, 3),
        th_shapedirs (V, 3, 10), th_posedirs (V, 3, P) -- the pkl's own layout, indexed by the row-major entries
        of (R_j - I) for joints 1..K-1, which is also what smplx flattens to (P, V*3) --, th_J_regressor (K, V),
        th_weights (V, K), th_faces (F, 3); MANO adds th_hands_mean (1, 45).
        """
        plain = {key.rsplit(".", 1)[-1]: value for key, value in buffers.items()}
        names = {"v_template": "th_v_template", "shapedirs": "th_shapedirs", "posedirs": "th_posedirs",
                 "J_regressor": "th_J_regressor", "weights": "th_weights", "f": "th_faces"}
        if expected_kind == "mano":
            names["hands_mean"] = "th_hands_mean"
        missing = [n for n in names.values() if n not in plain]
        if missing:
            raise KeyError(f"official {expected_kind.upper()} layer buffers lack {', '.join(missing)}")
        data = {key: plain[name].detach().cpu().numpy() for key, name in names.items()}
        data["v_template"] = data["v_template"].reshape(-1, 3)
        if expected_kind == "mano":
            data["hands_mean"] = data["hands_mean"].reshape(45)
            data["hands_components"] = np.eye(45)  # unused: the full-pose (no PCA) forward never reads it
        parents = SMPL_PARENTS if expected_kind == "smpl" else MANO_PARENTS
        data["kintree_table"] = np.stack([np.array(parents), np.arange(len(parents))])
        check_model_data(data, expected_kind)  # type: ignore[arg-type]
        return data


class SMPL(_SkinnedModel):
    """SMPL from the user's model file, with the reference's 29-joint set.

    ``model_path``: a model file, or a folder holding ``SMPL_<GENDER>.pkl``/``.npz`` (smplx layout, also under
    ``smpl/``) or the official names (``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl`` from SMPLify,
    ``basicmodel_m_lbs_10_207_0_v1.0.0.pkl``, ``basicModel_f_lbs_10_207_0_v1.0.0.pkl``, or the v1.1.0 files).
    ``h36m_regressor_path``: optional ``J_regressor_h36m_correct.npy`` (17 x 6890), registered as "h36m17".
    """

    name = "smpl"
    kind = "body"
    num_pose_joints = 24
    pose_flip_pairs = SMPL_POSE_FLIP_PAIRS

    def __init__(self, model_path: str | os.PathLike, gender: Gender = "neutral",
                 h36m_regressor_path: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 num_betas: int = 10, *, _data: Mapping[str, Any] | None = None) -> None:
        assert gender in _SMPL_FILE_NAMES, f"gender should be one of {tuple(_SMPL_FILE_NAMES)}, got {gender!r}."
        if _data is None:
            get = (f"download it from {SMPL_URL}" + (f" (the neutral model comes with SMPLify, {SMPLIFY_URL})"
                                                     if gender == "neutral" else "") + " and pass its file or folder")
            path = find_model_file(model_path, _SMPL_FILE_NAMES[gender], ("smpl",), f"SMPL {gender}", get)
            _data = read_model(path, "smpl")
        super().__init__(_data, smpl_29_regressor(_data["J_regressor"]), SMPL_29,
                         np.asarray(_data["kintree_table"])[0], num_betas)
        self.gender = gender
        if h36m_regressor_path is not None:
            self.add_extra_regressor(H36M_17, load_h36m_regressor(h36m_regressor_path))
        if device is not None:
            self.to(device)

    @classmethod
    def from_options(cls, model_path: str | os.PathLike | None = None, *, gender: str = "neutral",
                     mesh: str = "reduced") -> "SMPL":
        """``SMPL(model_path, gender)`` (``mesh`` is ignored: SMPL has one topology). A missing file raises
        :class:`BodyModelFileError`."""
        return cls(model_path, gender=gender)  # type: ignore[arg-type]

    def rest_rotations(self) -> torch.Tensor:
        """(24, 3, 3) identities but the root: 180 degrees about x, turning SMPL's frame (y up, facing +z) into the
        camera's (y down), so the body stands upright facing the camera."""
        rotations = super().rest_rotations()
        rotations[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
        return rotations

    @classmethod
    def from_official_buffers(cls, buffers: Mapping[str, torch.Tensor], gender: Gender = "neutral",
                              h36m_regressor: np.ndarray | torch.Tensor | None = None,
                              device: torch.device | str | None = None) -> "SMPL":
        """Build from the SMPL layer buffers saved in the authors' checkpoints (``human_model_layer.th_*``).

        The released snapshots carry smplpytorch's buffers (see ``_SkinnedModel._buffers_to_data`` for layouts),
        so faces, the 24-joint regressor and the skinning data come from the checkpoint itself; the kinematic tree
        is SMPL's fixed one. The caller strips ``module.human_model_layer.`` (any prefix is ignored anyway).
        """
        model = cls("<official checkpoint>", gender, device=None, _data=cls._buffers_to_data(buffers, "smpl"))
        if h36m_regressor is not None:
            model.add_extra_regressor(H36M_17, torch.as_tensor(h36m_regressor))
        return model.to(device) if device is not None else model

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                trans: torch.Tensor | None = None) -> BodyModelOutput:
        """pose (B, 72) axis-angle (root first) or (B, 24, 3, 3) rotations; shape (B, 10) betas; trans (B, 3) m.

        Returns vertices (B, 6890, 3) and joints (B, 29, 3) = SMPL_29 regressor x vertices, in metres. The global
        rotation turns the body about its (shaped) pelvis joint, as SMPL does; ``trans`` is added afterwards.
        """
        return self._skin(pose, shape, trans)

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Basic sampler, not a pose prior: axis-angles ~ N(0, 0.2 rad) per joint (root included), betas ~ N(0, 1)
        clipped to [-2, 2], no translation. Enough for tests and smoke runs; use real data for anything else."""
        pose = 0.2 * torch.randn(batch_size, 72, generator=generator)
        shape = torch.randn(batch_size, 10, generator=generator).clamp(-2.0, 2.0)
        device = self.v_template.device
        return {"pose": pose.to(device), "shape": shape.to(device), "trans": torch.zeros(batch_size, 3, device=device)}

    def topology_info(self) -> dict:
        return {**super().topology_info(), "gender": self.gender}


class MANO(_SkinnedModel):
    """MANO (right or left hand) from the user's model file, with the reference's 21-joint set.

    ``model_path``: ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (or ``.npz``), or a folder holding it directly, under
    ``mano/`` (smplx layout) or under ``models/`` (manopth layout). Full 48-value axis-angle pose, no PCA.
    ``flat_hand_mean=False`` (the reference) adds the file's ``hands_mean`` to the 45 finger values, so a zero pose
    is MANO's mean (slightly curled) hand; True makes zero the flat hand.
    """

    name = "mano"
    kind = "hand"
    num_pose_joints = 16

    def __init__(self, model_path: str | os.PathLike, side: Side = "right", device: torch.device | str | None = None,
                 flat_hand_mean: bool = False, num_betas: int = 10, *,
                 _data: Mapping[str, Any] | None = None) -> None:
        assert side in ("right", "left"), f"side should be 'right' or 'left', got {side!r}."
        if _data is None:
            stem = f"MANO_{side.upper()}"
            get = f"download it from {MANO_URL} and pass its file or folder"
            path = find_model_file(model_path, (f"{stem}.pkl", f"{stem}.npz"), ("mano", "models", "mano/models"),
                                   f"MANO {side}", get)
            _data = read_model(path, "mano")
        super().__init__(_data, mano_21_regressor(_data["J_regressor"]), MANO_21,
                         np.asarray(_data["kintree_table"])[0], num_betas)
        self.side = side
        self.flat_hand_mean = flat_hand_mean
        hands_mean = np.zeros(45) if flat_hand_mean else np.asarray(_data["hands_mean"]).reshape(45)
        self.register_buffer("hands_mean", torch.as_tensor(hands_mean, dtype=torch.float32), persistent=False)
        if device is not None:
            self.to(device)

    @classmethod
    def from_options(cls, model_path: str | os.PathLike | None = None, *, gender: str = "neutral",
                     mesh: str = "reduced") -> "MANO":
        """``MANO(model_path)``: the right hand with the reference's mean hand (MANO has no gender and one mesh,
        so ``gender`` and ``mesh`` are ignored). A missing file raises :class:`BodyModelFileError`."""
        return cls(model_path)

    def pose_from_rotations(self, rotations: torch.Tensor) -> torch.Tensor:
        """Rotations (B, 16, 3, 3) -> (B, 48) axis-angle: :meth:`forward` adds the mean hand to the finger
        axis-angles (the reference's ``flat_hand_mean=False``), which it cannot do to matrices."""
        from ..geometry.rotations import matrix_to_axis_angle

        return matrix_to_axis_angle(rotations).reshape(rotations.shape[0], -1)

    @classmethod
    def from_official_buffers(cls, buffers: Mapping[str, torch.Tensor], side: Side = "right",
                              flat_hand_mean: bool = False, device: torch.device | str | None = None) -> "MANO":
        """Build from manopth's layer buffers in the authors' hand checkpoint (``human_model_layer.th_*``).

        Uses th_v_template, th_shapedirs, th_posedirs, th_J_regressor, th_weights, th_faces and th_hands_mean;
        th_selected_comps (PCA, unused without PCA) and th_betas are ignored. The checkpoint is the right hand.
        """
        model = cls("<official checkpoint>", side, None, flat_hand_mean, _data=cls._buffers_to_data(buffers, "mano"))
        return model.to(device) if device is not None else model

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                trans: torch.Tensor | None = None) -> BodyModelOutput:
        """pose (B, 48) axis-angle (root, then 15 finger joints in MANO order); shape (B, 10); trans (B, 3) metres.

        ``hands_mean`` is added to pose[:, 3:] (zero if ``flat_hand_mean``). A (B, 16, 3, 3) rotation pose is used
        as given (the mean is *not* added: rotations cannot be offset in axis-angle). Returns vertices (B, 778, 3)
        and joints (B, 21, 3) = MANO_21 regressor x vertices, in metres (manopth returns mm).
        """
        if not (pose.ndim == 4 and pose.shape[-2:] == (3, 3)):
            assert pose.ndim == 2 and pose.shape[1] == 48, "pose should be (B, 48) axis-angle or (B, 16, 3, 3)."
            pose = torch.cat([pose[:, :3], pose[:, 3:] + self.hands_mean.to(pose.dtype)], 1)
        return self._skin(pose, shape, trans)

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Basic sampler, not a hand prior: global orientation ~ N(0, 0.5 rad), finger axis-angles ~ N(0, 0.2 rad)
        around the mean hand, betas ~ N(0, 1) clipped to [-2, 2], no translation."""
        pose = torch.randn(batch_size, 48, generator=generator) * torch.cat([torch.full((3,), 0.5),
                                                                             torch.full((45,), 0.2)])
        shape = torch.randn(batch_size, 10, generator=generator).clamp(-2.0, 2.0)
        device = self.v_template.device
        return {"pose": pose.to(device), "shape": shape.to(device), "trans": torch.zeros(batch_size, 3, device=device)}

    def topology_info(self) -> dict:
        return {**super().topology_info(), "side": self.side, "flat_hand_mean": self.flat_hand_mean}


def load_h36m_regressor(path: str | os.PathLike) -> torch.Tensor:
    """``J_regressor_h36m_correct.npy`` (17 x 6890) from the reference's data (Human36M folder) as a float32 tensor."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BodyModelFileError(
            f"Human3.6M joint regressor not found: {path}; it is J_regressor_h36m_correct.npy from the "
            "I2L-MeshNet release (data/Human36M), also shipped with SPIN")
    try:
        regressor = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BodyModelFileError(f"{path}: cannot read the Human3.6M regressor ({exc})") from None
    expected = (len(H36M_17), MODEL_SIZES["smpl"]["num_vertices"])
    if regressor.shape != expected:
        raise BodyModelFileError(f"{path}: Human3.6M regressor has shape {regressor.shape}, expected {expected}")
    return torch.as_tensor(regressor, dtype=torch.float32)
