"""Fit the Anny joint regressors and build the reduced body mesh; writes the package assets.

Run once (about 25 s and 1.5 GB RAM on 2 CPU cores once the Anny cache exists)::

    python -m i2lmesh.bodymodels.fit_regressor [--seed 0] [--out src/i2lmesh/assets]

What it makes (see docs/body_models.md):

- ``anny_body.npz``: the reduced mesh (a vertex subset of Anny's 13,718-vertex topology and its faces, from a
  left/right symmetric quadric-error half-edge-collapse decimation of the skin surface), the reduced -> full
  barycentric mapping, vertex flip permutations, the face/head landmark vertices, and the SMPL_29 and H36M_17
  regressors for both meshes, stored sparse.
- ``anny_hand.npz``: the MANO_21 regressor of the right hand (1,609 vertices) and its fingertip vertices.

Regressor targets are anatomical points of Anny's skeleton: bone heads, or points on a bone between its head and
a child's head (a rigid point of that bone), see ``BODY_TARGETS`` / ``HAND_TARGETS``; face points, the H36M head
top and the fingertips are single vertices. Each row is fitted by non-negative least squares over random posed
and shaped samples (``pose_sampler``), restricted to the K vertices nearest to the target in the rest pose, with
a heavily weighted sum-to-one row, then renormalised: rows are >= 0 and sum to 1, so regressed joints follow any
rigid motion of the mesh exactly. Errors are measured on held-out samples (another seed).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .joint_sets import H36M_17, MANO_21, SMPL_29

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BODY_ASSET = "anny_body.npz"
HAND_ASSET = "anny_hand.npz"

# joint -> {bone: weight} over posed bone heads (weights sum to 1; each target is a rigid point of one bone), or
# "vertex:<landmark>" for a landmark vertex. Left names; ".R" twins are made by mirroring the "L_" joints.
_BODY_TARGETS_LEFT: dict[str, dict[str, float] | str] = {
    "Pelvis": {"root": 1.0},
    "L_Hip": {"upperleg01.L": 1.0},
    "Torso": {"spine04": 0.35, "spine03": 0.65},           # SMPL spine1, ~11 cm above the pelvis
    "L_Knee": {"lowerleg01.L": 1.0},
    "Spine": {"spine02": 0.75, "spine01": 0.25},            # SMPL spine2
    "L_Ankle": {"foot.L": 1.0},
    "Chest": {"spine02": 0.35, "spine01": 0.65},            # SMPL spine3
    "L_Toe": {"toe2-1.L": 0.5, "toe3-1.L": 0.5},            # ball of the foot
    "Neck": {"neck01": 1.0},
    "L_Thorax": {"clavicle.L": 0.4, "shoulder01.L": 0.6},   # SMPL collar: on the clavicle, 60% from the sternum
    "Head": {"head": 1.0},
    "L_Shoulder": {"upperarm01.L": 1.0},
    "L_Elbow": {"lowerarm01.L": 1.0},
    "L_Wrist": {"wrist.L": 1.0},
    "L_Hand": {"metacarpal2.L": 0.25, "finger3-1.L": 0.75},  # on the middle metacarpal, near the knuckle
    "Nose": "vertex:nose",
    "L_Eye": "vertex:eye.L",
    "L_Ear": "vertex:ear.L",
    "Head_top": "vertex:head_top",
    "H36M_Torso": {"spine02": 0.67, "spine01": 0.33},        # half way from the pelvis to the thorax
}


def _mirror_name(name: str) -> str:
    for a, b in ((".L", ".R"), ("L_", "R_")):
        if name.endswith(a):
            return name[: -len(a)] + b
        if name.startswith(a):
            return b + name[len(a):]
    return name


def _mirror_target(target):
    return _mirror_name(target) if isinstance(target, str) else {_mirror_name(k): w for k, w in target.items()}


BODY_TARGETS: dict[str, dict[str, float] | str] = {
    **_BODY_TARGETS_LEFT,
    **{_mirror_name(k): _mirror_target(t) for k, t in _BODY_TARGETS_LEFT.items() if k.startswith("L_")},
}
# H36M joints in terms of the targets above (same anatomical point unless listed).
H36M_TARGET_OF = {"Torso": "H36M_Torso", "Neck": "Neck", "Nose": "Nose", "Head_top": "Head_top"}

_FINGERS = {"Thumb": 1, "Index": 2, "Middle": 3, "Ring": 4, "Pinky": 5}
HAND_TARGETS: dict[str, dict[str, float] | str] = {"Wrist": {"wrist.R": 1.0}}
for _name, _k in _FINGERS.items():
    for _i in (1, 2, 3):
        HAND_TARGETS[f"{_name}_{_i}"] = {f"finger{_k}-{_i}.R": 1.0}
    HAND_TARGETS[f"{_name}_4"] = f"vertex:tip{_k}"

NUM_CANDIDATES = 256
SUM_TO_ONE_WEIGHT = 100.0


# ----------------------------------------------------------------------------------------------------------------
# Anny access (float32 models, local-bone pose)
# ----------------------------------------------------------------------------------------------------------------
def load_anny(kind: str, cache_dir=None):
    from .anny_cache import construct_anny

    kwargs = dict(pose_parameterization="local-bone")
    if kind == "hand":
        kwargs.update(rig="anny-hand.R", topology="hand.R")
    return construct_anny(kind, cache_dir, **kwargs).to(torch.float32)


@torch.no_grad()
def posed_samples(model, pose_rotvec: torch.Tensor, shape: torch.Tensor, batch: int = 32):
    """Vertices (S, V, 3) and bone heads (S, K, 3), float32, for local-bone rotations (S, K, 3), shapes (S, 6)."""
    import roma

    verts, heads = [], []
    for s in range(0, len(pose_rotvec), batch):
        rot = roma.rotvec_to_rotmat(pose_rotvec[s:s + batch].float())
        delta = torch.zeros(*rot.shape[:2], 4, 4)
        delta[..., :3, :3] = rot
        delta[..., 3, 3] = 1.0
        out = model(pose_parameters=delta, phenotype_kwargs=shape[s:s + batch].float())
        verts.append(out["vertices"].float())
        heads.append(out["bone_poses"][..., :3, 3].float())
    return torch.cat(verts), torch.cat(heads)


def random_samples(model, ranges, count: int, seed: int):
    from .pose_sampler import PoseSampler, sample_phenotypes

    generator = torch.Generator().manual_seed(seed)
    pose = PoseSampler(model.bone_labels, ranges).sample(count, generator)
    shape = sample_phenotypes(count, generator)
    return posed_samples(model, pose, shape)


def target_points(targets: Mapping[str, dict | str], names: Sequence[str], bone_labels: Sequence[str],
                  landmarks: Mapping[str, int], vertices: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """(S, J, 3) target joints for ``names`` from posed vertices (S, V, 3) and bone heads (S, K, 3)."""
    out = []
    for name in names:
        target = targets[name]
        if isinstance(target, str):
            out.append(vertices[:, landmarks[target.split(":", 1)[1]]])
        else:
            out.append(sum(w * heads[:, bone_labels.index(b)] for b, w in target.items()))
    return torch.stack(out, 1)


# ----------------------------------------------------------------------------------------------------------------
# Landmark vertices
# ----------------------------------------------------------------------------------------------------------------
def connected_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components as cc

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices,) * 2)
    return cc(adjacency, directed=False)[1]


def mirror_index(vertices: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """Index of each vertex's left/right (x -> -x) twin; asserts the mesh is exactly symmetric."""
    from scipy.spatial import cKDTree

    dist, index = cKDTree(vertices).query(vertices * np.array([-1.0, 1.0, 1.0]))
    assert dist.max() < tol, f"mesh is not left/right symmetric (max mirror distance {dist.max():.2e} m)."
    return index


def body_landmarks(rest: np.ndarray, skin: np.ndarray, eye_parts: Sequence[np.ndarray], mirror: np.ndarray):
    """Landmark vertex ids on the skin of the rest template (Z up, facing -Y, body left at +X)."""
    midline = np.flatnonzero((mirror == np.arange(len(rest))) & skin)
    head = midline[rest[midline, 2] > 0.55]
    nose = int(head[np.argmin(rest[head, 1])])                 # most forward midline point of the head
    head_top = int(midline[np.argmax(rest[midline, 2])])        # crown
    skin_ids = np.flatnonzero(skin)
    left_eye = max(eye_parts, key=lambda ids: rest[ids, 0].mean())
    pupil = rest[left_eye[np.argmin(rest[left_eye, 1])]]        # front of the left eyeball
    eye_l = int(skin_ids[np.argmin(np.linalg.norm(rest[skin_ids] - pupil, axis=1))])
    # Left ear: the skin protruding beyond 7.5 cm from the midline at ear height; its centroid's nearest vertex.
    ear_region = skin_ids[(rest[skin_ids, 0] > 0.075) & (rest[skin_ids, 2] > 0.58) & (rest[skin_ids, 2] < 0.68)
                          & (rest[skin_ids, 1] > -0.2)]
    centre = rest[ear_region].mean(0)
    ear_l = int(ear_region[np.argmin(np.linalg.norm(rest[ear_region] - centre, axis=1))])
    return {"nose": nose, "head_top": head_top, "eye.L": eye_l, "eye.R": int(mirror[eye_l]),
            "ear.L": ear_l, "ear.R": int(mirror[ear_l])}


def hand_landmarks(model, rest: np.ndarray) -> dict[str, int]:
    """Fingertips: per finger, the vertex mostly skinned by the distal bone that lies farthest along that bone."""
    labels = model.bone_labels
    heads = model()["bone_poses"][0, :, :3, 3].detach().numpy()
    weights = model.vertex_bone_weights.numpy()
    indices = model.vertex_bone_indices.numpy()
    main_bone = indices[np.arange(len(indices)), weights.argmax(1)]
    tips = {}
    for k in range(1, 6):
        distal = labels.index(f"finger{k}-3.R")
        middle = labels.index(f"finger{k}-2.R")
        axis = heads[distal] - heads[middle]
        axis /= np.linalg.norm(axis)
        ids = np.flatnonzero(main_bone == distal)
        tips[f"tip{k}"] = int(ids[np.argmax((rest[ids] - heads[distal]) @ axis)])
    return tips


# ----------------------------------------------------------------------------------------------------------------
# Reduced mesh: symmetric half-edge-collapse decimation (vertices are a subset of the full mesh's)
# ----------------------------------------------------------------------------------------------------------------
def _face_normal(p: np.ndarray) -> np.ndarray:
    n = np.cross(p[1] - p[0], p[2] - p[0])
    return n / (np.linalg.norm(n) + 1e-20)


def _quality(p: np.ndarray) -> float:
    """4 sqrt(3) area / sum of squared edge lengths: 1 for an equilateral triangle, 0 when degenerate."""
    area = 0.5 * np.linalg.norm(np.cross(p[1] - p[0], p[2] - p[0]))
    lengths = ((p[[1, 2, 0]] - p) ** 2).sum()
    return 4.0 * math.sqrt(3.0) * area / (lengths + 1e-20)


def decimate_symmetric(vertices: np.ndarray, faces: np.ndarray, target_vertices: int, mirror: np.ndarray,
                       locked: Sequence[int] = (), length_weight: float = 1.0,
                       min_quality: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Half-edge collapses (v -> u, u keeps its position) by increasing quadric + edge-length cost, in mirror pairs.

    vertices (V, 3) of a closed manifold mesh with faces (F, 3); mirror (V,) each vertex's x -> -x twin.
    Costs are scaled by each vertex's initial mean edge length, so the mesh thins out evenly relative to its
    local density (dense face and hands stay denser). A collapse is refused if it breaks the link condition,
    flips or degrades a triangle, drops a valence below 4, or would break the symmetry.
    Returns the kept vertex ids (sorted, into ``vertices``) and the faces re-indexed into them.
    """
    num = len(vertices)
    faces = faces.copy()
    face_alive = np.ones(len(faces), bool)
    vertex_faces: list[set[int]] = [set() for _ in range(num)]
    neighbours: list[set[int]] = [set() for _ in range(num)]
    for f, (a, b, c) in enumerate(faces):
        for x, y, z in ((a, b, c), (b, c, a), (c, a, b)):
            vertex_faces[x].add(f)
            neighbours[x].update((y, z))
    # Quadrics: area-weighted planes of the incident faces.
    p = vertices[faces]
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    areas = np.linalg.norm(normals, axis=1)
    normals /= areas[:, None] + 1e-20
    planes = np.concatenate([normals, -(normals * p[:, 0]).sum(1, keepdims=True)], 1)
    face_q = 0.5 * areas[:, None, None] * planes[:, :, None] * planes[:, None, :]
    quadric = np.zeros((num, 4, 4))
    for k in range(3):
        np.add.at(quadric, faces[:, k], face_q)
    scale = np.array([np.mean([np.linalg.norm(vertices[i] - vertices[j]) for j in neighbours[i]])
                      for i in range(num)])
    homogeneous = np.concatenate([vertices, np.ones((num, 1))], 1)
    alive = np.ones(num, bool)
    is_locked = np.zeros(num, bool)
    is_locked[list(locked)] = True
    is_locked[mirror[list(locked)]] = True
    version = np.zeros(num, np.int64)

    def cost(v: int, u: int) -> float:
        q = quadric[v] + quadric[u]
        h = homogeneous[u]
        s2 = scale[v] * scale[u]
        # quadric (area x squared distance) / scale^4 and squared length / scale^2: both dimensionless
        return float(h @ q @ h) / (s2 * s2) + length_weight * float(((vertices[u] - vertices[v]) ** 2).sum()) / s2

    heap: list[tuple[float, int, int, int, int]] = []

    def push_edges(x: int) -> None:
        for y in neighbours[x]:
            for v, u in ((x, y), (y, x)):
                if not is_locked[v]:
                    heapq.heappush(heap, (cost(v, u), v, u, int(version[v]), int(version[u])))

    def can_collapse(v: int, u: int) -> bool:
        if not (alive[v] and alive[u]) or is_locked[v] or u not in neighbours[v]:
            return False
        shared = [f for f in vertex_faces[v] if u in faces[f]]
        if len(shared) != 2:
            return False
        opposite = {int(x) for f in shared for x in faces[f] if x != u and x != v}
        if neighbours[u] & neighbours[v] != opposite or any(len(neighbours[w]) <= 4 for w in opposite):
            return False
        if len(neighbours[u]) + len(neighbours[v]) - 4 > 12:  # keep valences moderate
            return False
        for f in vertex_faces[v]:
            if f in shared:
                continue
            old = vertices[faces[f]]
            new = np.where((faces[f] == v)[:, None], vertices[u][None], old)
            if _face_normal(old) @ _face_normal(new) < 0.5 or _quality(new) < min_quality:
                return False
        return True

    def collapse(v: int, u: int) -> None:
        for f in list(vertex_faces[v]):
            if u in faces[f]:
                face_alive[f] = False
                for x in faces[f]:
                    vertex_faces[x].discard(f)
            else:
                faces[f][faces[f] == v] = u
                vertex_faces[u].add(f)
        vertex_faces[v].clear()
        for w in neighbours[v]:
            neighbours[w].discard(v)
            if w != u:
                neighbours[w].add(u)
                neighbours[u].add(w)
        neighbours[v].clear()
        quadric[u] += quadric[v]
        alive[v] = False
        version[u] += 1
        version[v] += 1

    for x in range(num):
        push_edges(x)
    count = num
    while count > target_vertices and heap:
        _, v, u, ver_v, ver_u = heapq.heappop(heap)
        if ver_v != version[v] or ver_u != version[u] or not can_collapse(v, u):
            continue
        mv, mu = int(mirror[v]), int(mirror[u])
        if mv == v and mu == u:                       # an edge on the midline: its own mirror
            collapse(v, u)
            count -= 1
            push_edges(u)
            continue
        if mv == v or mu == u or mv == u:             # a midline vertex would move or be moved onto: keep symmetry
            continue
        # Both halves must be valid and far enough apart not to interact.
        if ({v, u} | neighbours[v] | neighbours[u]) & ({mv, mu} | neighbours[mv] | neighbours[mu]):
            continue
        if not can_collapse(mv, mu):
            continue
        collapse(v, u)
        collapse(mv, mu)
        count -= 2
        push_edges(u)
        push_edges(mu)
    kept = np.flatnonzero(alive)
    remap = -np.ones(num, np.int64)
    remap[kept] = np.arange(len(kept))
    return kept, remap[faces[face_alive]]


def barycentric_mapping(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 12):
    """For each point, the closest of the triangles around its k nearest vertices: (N, 3) vertex ids, (N, 3)
    barycentric weights (>= 0, sum 1). Points that coincide with a vertex get that vertex with weight 1."""
    from scipy.spatial import cKDTree

    vertex_faces: list[list[int]] = [[] for _ in range(len(vertices))]
    for f, tri in enumerate(faces):
        for x in tri:
            vertex_faces[x].append(f)
    _, near = cKDTree(vertices).query(points, k=k)
    ids = np.zeros((len(points), 3), np.int64)
    weights = np.zeros((len(points), 3))
    for i, point in enumerate(points):
        cand = np.unique(np.concatenate([vertex_faces[j] for j in near[i]]))
        tri = vertices[faces[cand]]                                   # (C, 3, 3)
        bary = _closest_barycentric(point, tri)
        closest = (bary[:, :, None] * tri).sum(1)
        best = int(np.argmin(((closest - point) ** 2).sum(1)))
        ids[i], weights[i] = faces[cand[best]], bary[best]
        if np.linalg.norm(vertices[near[i][0]] - point) < 1e-9:
            ids[i], weights[i] = (near[i][0], ids[i][1], ids[i][2]), (1.0, 0.0, 0.0)
    return ids, weights


def _closest_barycentric(point: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (C, 3) of the closest point of each triangle (C, 3, 3) to ``point`` (3,)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    best = None
    # Interior projection, then the three edges; keep the closest valid candidate per triangle.
    v0, v1, v2 = b - a, c - a, point - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01 + 1e-30
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    inside = np.stack([1 - v - w, v, w], 1)
    candidates = [np.where((inside >= 0).all(1, keepdims=True), inside, np.nan)]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        p, q = tri[:, i], tri[:, j]
        t = np.clip(((point - p) * (q - p)).sum(1) / (((q - p) ** 2).sum(1) + 1e-30), 0.0, 1.0)
        bary = np.zeros((len(tri), 3))
        bary[:, i], bary[:, j] = 1 - t, t
        candidates.append(bary)
    for bary in candidates:
        dist = np.where(np.isnan(bary).any(1), np.inf,
                        (((np.nan_to_num(bary)[:, :, None] * tri).sum(1) - point) ** 2).sum(1))
        if best is None:
            best, best_dist = np.nan_to_num(bary), dist
        else:
            better = dist < best_dist
            best = np.where(better[:, None], np.nan_to_num(bary), best)
            best_dist = np.minimum(dist, best_dist)
    return best


# ----------------------------------------------------------------------------------------------------------------
# Regressor fit
# ----------------------------------------------------------------------------------------------------------------
def fit_rows(vertices: torch.Tensor, targets: torch.Tensor, candidates: Sequence[np.ndarray]) -> np.ndarray:
    """Non-negative, sum-to-one rows (J, V) with support in ``candidates[j]``.

    vertices (S, V, 3), targets (S, J, 3). Each row minimises sum_s |sum_k w_k (v_sk - t_sj)|^2 (the same as
    |sum_k w_k v_sk - t_sj|^2 once the weights sum to 1, but translation-free) plus a heavily weighted
    (sum_k w_k - 1)^2, subject to w >= 0; then it is renormalised to sum exactly to 1.
    """
    from scipy.optimize import nnls

    rows = np.zeros((targets.shape[1], vertices.shape[1]))
    for j, cand in enumerate(candidates):
        if len(cand) == 1:
            rows[j, cand[0]] = 1.0
            continue
        rel = (vertices[:, cand] - targets[:, j, None]).double().numpy()      # (S, K, 3)
        a = rel.transpose(0, 2, 1).reshape(-1, len(cand))                    # (3S, K)
        a = np.concatenate([a, np.full((1, len(cand)), SUM_TO_ONE_WEIGHT)])
        b = np.zeros(len(a))
        b[-1] = SUM_TO_ONE_WEIGHT
        w, _ = nnls(a, b, maxiter=50 * len(cand))
        rows[j, cand] = w / w.sum()
    return rows


def candidate_sets(targets: Mapping[str, dict | str], names: Sequence[str], rest_points: np.ndarray,
                   rest_vertices: np.ndarray, allowed: np.ndarray, landmarks: Mapping[str, int],
                   count: int = NUM_CANDIDATES) -> list[np.ndarray]:
    """Per joint: its landmark vertex, or the ``count`` allowed vertices nearest to its rest location."""
    from scipy.spatial import cKDTree

    tree = cKDTree(rest_vertices[allowed])
    out = []
    for j, name in enumerate(names):
        target = targets[name]
        if isinstance(target, str):
            out.append(np.array([landmarks[target.split(":", 1)[1]]]))
        else:
            out.append(np.sort(allowed[tree.query(rest_points[j], k=count)[1]]))
    return out


def joint_errors_mm(rows: np.ndarray, vertices: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """(S, J) distances in mm between regressed (rows x vertices) and target joints."""
    pred = torch.einsum("jv,svc->sjc", torch.from_numpy(rows).float(), vertices)
    return (pred - targets).norm(dim=-1).numpy() * 1000.0


def to_sparse(prefix: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    r, c = np.nonzero(rows)
    return {f"{prefix}_shape": np.array(rows.shape, np.int64), f"{prefix}_rows": r.astype(np.int32),
            f"{prefix}_cols": c.astype(np.int32), f"{prefix}_vals": rows[r, c].astype(np.float32)}


def from_sparse(data: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    rows = np.zeros(tuple(data[f"{prefix}_shape"]), np.float32)
    rows[data[f"{prefix}_rows"], data[f"{prefix}_cols"]] = data[f"{prefix}_vals"]
    return rows


def _error_table(names: Sequence[str], errors: np.ndarray) -> dict[str, list[float]]:
    return {n: [round(float(errors[:, j].mean()), 2), round(float(errors[:, j].max()), 2)] for j, n in enumerate(names)}


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------
def fit_body(seed: int, num_train: int, num_test: int, reduced_vertices: int, cache_dir=None,
             log=print) -> tuple[dict[str, np.ndarray], dict]:
    from .pose_sampler import BODY_RANGES

    model = load_anny("body", cache_dir)
    labels = model.bone_labels
    with torch.no_grad():
        rest_out = model()
    rest = rest_out["vertices"][0].double().numpy()
    rest_heads = rest_out["bone_poses"][0, :, :3, 3].double()
    faces = model.faces.numpy().astype(np.int64)
    mirror = mirror_index(model.template_vertices.double().numpy())  # the posed rest pose is 0.4 mm off
    parts = connected_components(faces, len(rest))
    skin_part = np.bincount(parts).argmax()
    skin = parts == skin_part
    eye_parts = [np.flatnonzero(parts == c) for c in np.unique(parts)
                 if c != skin_part and rest[parts == c, 1].min() < -0.1 and abs(rest[parts == c, 0].mean()) > 0.01]
    landmarks = body_landmarks(rest, skin, eye_parts, mirror)
    log(f"body: {len(rest)} vertices, {len(faces)} faces, components {np.bincount(parts).tolist()}, "
        f"landmarks {landmarks}")

    # Reduced mesh: decimate the skin only (eyeballs and the mouth interior are dropped).
    t0 = time.time()
    skin_ids = np.flatnonzero(skin)
    local = -np.ones(len(rest), np.int64)
    local[skin_ids] = np.arange(len(skin_ids))
    skin_faces = local[faces[skin[faces].all(1)]]
    kept_local, reduced_faces = decimate_symmetric(rest[skin_ids], skin_faces, reduced_vertices,
                                                   local[mirror[skin_ids]], locked=local[list(landmarks.values())])
    reduced_ids = skin_ids[kept_local]
    log(f"reduced mesh: {len(reduced_ids)} vertices, {len(reduced_faces)} faces ({time.time() - t0:.0f} s)")
    to_reduced = -np.ones(len(rest), np.int64)
    to_reduced[reduced_ids] = np.arange(len(reduced_ids))
    reduced_mirror = to_reduced[mirror[reduced_ids]]
    assert (reduced_mirror >= 0).all(), "the decimation should keep the mesh symmetric."
    map_ids, map_weights = barycentric_mapping(rest, rest[reduced_ids], reduced_faces)

    # Samples.
    t0 = time.time()
    train_v, train_h = random_samples(model, BODY_RANGES, num_train, seed)
    test_v, test_h = random_samples(model, BODY_RANGES, num_test, seed + 1)
    log(f"samples: {num_train} train + {num_test} held out ({time.time() - t0:.0f} s)")

    def targets(names, v, h):
        return target_points(BODY_TARGETS, names, labels, landmarks, v, h)

    h36m_names = [H36M_TARGET_OF.get(n, n) for n in H36M_17.names]
    sets = {"smpl29": list(SMPL_29.names), "h36m17": h36m_names}
    assets: dict[str, np.ndarray] = {}
    report: dict = {"seed": seed, "num_train": num_train, "num_test": num_test, "landmarks": landmarks,
                    "num_candidates": NUM_CANDIDATES, "errors_mm": {}}
    allowed_full = skin_ids  # the regressors never use eyeballs or the mouth interior
    for mesh, allowed in (("full", allowed_full), ("reduced", reduced_ids)):
        for set_name, names in sets.items():
            t0 = time.time()
            rest_points = targets(names, torch.from_numpy(rest)[None].float(), rest_heads[None].float())[0].numpy()
            cands = candidate_sets(BODY_TARGETS, names, rest_points, rest, allowed, landmarks)
            rows = fit_rows(train_v, targets(names, train_v, train_h), cands)
            err = joint_errors_mm(rows, test_v, targets(names, test_v, test_h))
            joint_names = SMPL_29.names if set_name == "smpl29" else H36M_17.names
            report["errors_mm"][f"{mesh}/{set_name}"] = _error_table(joint_names, err)
            log(f"{mesh} {set_name}: held-out error mean {err.mean():.2f} mm, worst joint mean "
                f"{err.mean(0).max():.2f} mm, max {err.max():.2f} mm ({time.time() - t0:.0f} s)")
            if mesh == "reduced":
                rows = rows[:, reduced_ids]
            assets.update(to_sparse(f"{mesh}_{set_name}", rows))
    assets.update(reduced_vertex_ids=reduced_ids.astype(np.int32), reduced_faces=reduced_faces.astype(np.int32),
                  reduced_to_full_ids=map_ids.astype(np.int32), reduced_to_full_weights=map_weights.astype(np.float32),
                  full_flip_index=mirror.astype(np.int32), reduced_flip_index=reduced_mirror.astype(np.int32),
                  landmark_names=np.array(list(landmarks)), landmark_vertex_ids=np.array(list(landmarks.values())))
    return assets, report


def fit_hand(seed: int, num_train: int, num_test: int, cache_dir=None, log=print):
    from .pose_sampler import HAND_RANGES

    model = load_anny("hand", cache_dir)
    labels = model.bone_labels
    with torch.no_grad():
        rest_out = model()
        rest = rest_out["vertices"][0].double().numpy()
        rest_heads = rest_out["bone_poses"][0, :, :3, 3].double()
        landmarks = hand_landmarks(model, rest)
    log(f"hand: {len(rest)} vertices, fingertips {landmarks}")
    train_v, train_h = random_samples(model, HAND_RANGES, num_train, seed)
    test_v, test_h = random_samples(model, HAND_RANGES, num_test, seed + 1)
    names = list(MANO_21.names)
    rest_points = target_points(HAND_TARGETS, names, labels, landmarks, torch.from_numpy(rest)[None].float(),
                                rest_heads[None].float())[0].numpy()
    cands = candidate_sets(HAND_TARGETS, names, rest_points, rest, np.arange(len(rest)), landmarks, count=64)
    rows = fit_rows(train_v, target_points(HAND_TARGETS, names, labels, landmarks, train_v, train_h), cands)
    err = joint_errors_mm(rows, test_v, target_points(HAND_TARGETS, names, labels, landmarks, test_v, test_h))
    log(f"hand mano21: held-out error mean {err.mean():.2f} mm, max {err.max():.2f} mm")
    assets = {**to_sparse("mano21", rows), "landmark_names": np.array(list(landmarks)),
              "landmark_vertex_ids": np.array(list(landmarks.values()))}
    report = {"seed": seed, "num_train": num_train, "num_test": num_test, "landmarks": landmarks,
              "errors_mm": {"hand/mano21": _error_table(names, err)}}
    return assets, report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=1500)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--reduced-vertices", type=int, default=6890)
    parser.add_argument("--out", type=Path, default=ASSETS_DIR)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--only", choices=("body", "hand"), default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = {}
    if args.only in (None, "body"):
        assets, reports["body"] = fit_body(args.seed, args.num_train, args.num_test, args.reduced_vertices,
                                           args.cache_dir)
        np.savez_compressed(args.out / BODY_ASSET, fit_report=np.array(json.dumps(reports["body"])), **assets)
    if args.only in (None, "hand"):
        assets, reports["hand"] = fit_hand(args.seed, args.num_train, args.num_test, args.cache_dir)
        np.savez_compressed(args.out / HAND_ASSET, fit_report=np.array(json.dumps(reports["hand"])), **assets)
    for key, report in reports.items():
        print(json.dumps({key: report["errors_mm"]}, indent=None))


if __name__ == "__main__":
    main()
