"""Skin, hair and clothing colours per vertex, and random lighting.

Body parts are found once per body model on the rest pose (Anny's frame: metres, Z up, facing -Y): every vertex
goes to the nearest bone segment of the network's joint skeleton (SMPL_29 names), and arm and leg vertices also get
a coordinate along the limb (0 at the shoulder/hip, 1 at the elbow/knee, 2 at the wrist/ankle), so that a sampled
sleeve or trouser length is a threshold on it. Per sample we draw a skin tone, a hair colour and style (bald, short,
covering the back of the head), a shirt (sleeve length, optional stripes), trousers or shorts, shoes, a low-frequency
albedo variation (cloth folds, skin shading), and a light (direction from the camera's hemisphere, ambient share,
slightly tinted). Hands are skin (sometimes a glove).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

# Part ids of a body vertex.
HEAD, NECK, TORSO, HIPS, ARM, HAND, LEG, FOOT = range(8)
PART_NAMES = ("head", "neck", "torso", "hips", "arm", "hand", "leg", "foot")

# Skin tones from light to dark (linear blends between neighbours are sampled).
SKIN_TONES = np.array([[0.98, 0.87, 0.78], [0.95, 0.78, 0.65], [0.86, 0.65, 0.50], [0.72, 0.52, 0.38],
                       [0.55, 0.38, 0.26], [0.40, 0.27, 0.18], [0.27, 0.18, 0.12]])
HAIR_COLOURS = np.array([[0.05, 0.04, 0.04], [0.18, 0.11, 0.06], [0.35, 0.22, 0.12], [0.70, 0.55, 0.30],
                         [0.55, 0.25, 0.10], [0.60, 0.60, 0.60], [0.90, 0.88, 0.82]])


@dataclass
class BodyParts:
    """Per-vertex labels of a mesh, computed once on the rest pose (model frame, Z up, facing -Y).

    part (V,) int: one of HEAD..FOOT (hand meshes: all HAND). limb_t (V,) float: position along an arm
    (shoulder 0, elbow 1, wrist 2) or leg (hip 0, knee 1, ankle 2), else 0. rest_m (Vx3): rest positions, used for
    patterns and albedo noise. hair_height (V,) float: for head vertices, height above the eyes (m), minus a back
    bonus for vertices behind the ears (hair covers the back of the head lower down); -inf elsewhere.
    waist_height (V,): height above the waist line (m); the shirt/trouser boundary on the torso.
    """

    part: np.ndarray
    limb_t: np.ndarray
    rest_m: np.ndarray
    hair_height: np.ndarray
    waist_height: np.ndarray


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points (Nx3) to the segment a-b and the position t in [0, 1] of the closest point."""
    ab = b - a
    t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1), t


def body_parts(rest_vertices_m: np.ndarray, rest_joints_m: np.ndarray, joint_names, kind: str) -> BodyParts:
    """Label the vertices of a rest-pose mesh (Vx3, model frame: Z up, facing -Y) by body part.

    rest_joints_m (Jx3) with ``joint_names`` from SMPL_29 (body); for kind "hand" every vertex is HAND.
    """
    v = np.asarray(rest_vertices_m, dtype=np.float64)
    n = len(v)
    if kind == "hand":
        return BodyParts(part=np.full(n, HAND), limb_t=np.zeros(n), rest_m=v, hair_height=np.full(n, -np.inf),
                         waist_height=np.zeros(n))
    j = {name: np.asarray(p, dtype=np.float64) for name, p in zip(joint_names, rest_joints_m)}
    # (segment start, end, part, limb offset): limb_t = offset + t along the segment
    segments = [("Pelvis", "Torso", TORSO, None), ("Torso", "Spine", TORSO, None), ("Spine", "Chest", TORSO, None),
                ("Chest", "Neck", TORSO, None), ("Neck", "Head", NECK, None), ("Head", "Nose", HEAD, None)]
    for s in ("L", "R"):
        segments += [("Pelvis", f"{s}_Hip", HIPS, None), (f"{s}_Hip", f"{s}_Knee", LEG, 0.0),
                     (f"{s}_Knee", f"{s}_Ankle", LEG, 1.0), (f"{s}_Ankle", f"{s}_Toe", FOOT, None),
                     ("Chest", f"{s}_Thorax", TORSO, None), (f"{s}_Thorax", f"{s}_Shoulder", TORSO, None),
                     (f"{s}_Shoulder", f"{s}_Elbow", ARM, 0.0), (f"{s}_Elbow", f"{s}_Wrist", ARM, 1.0),
                     (f"{s}_Wrist", f"{s}_Hand", HAND, None), ("Head", f"{s}_Ear", HEAD, None),
                     ("Nose", f"{s}_Eye", HEAD, None)]
    dist = np.empty((len(segments), n))
    tpos = np.empty((len(segments), n))
    for k, (a, b, _, _) in enumerate(segments):
        dist[k], tpos[k] = _segment_distance(v, j[a], j[b])
    nearest = dist.argmin(0)
    part = np.array([seg[2] for seg in segments])[nearest]
    offsets = np.array([np.nan if seg[3] is None else seg[3] for seg in segments])[nearest]
    limb_t = np.where(np.isnan(offsets), 0.0, offsets + tpos[nearest, np.arange(n)])
    # The neck segment reaches the head joint: its upper half (above the ears' lowest point) is head.
    ear_z = min(j["L_Ear"][2], j["R_Ear"][2])
    part[(part == NECK) & (v[:, 2] > ear_z - 0.04)] = HEAD
    # Everything above the ankle's segment end and below the knee is leg; feet start a little above the ankle.
    part[(part == LEG) & (limb_t > 1.93)] = FOOT
    eye_z = (j["L_Eye"][2] + j["R_Eye"][2]) / 2.0
    behind = v[:, 1] - (j["L_Ear"][1] + j["R_Ear"][1]) / 2.0  # > 0 behind the ears (the body faces -Y)
    hair_height = np.where(part == HEAD, v[:, 2] - eye_z + 2.0 * np.clip(behind, 0.0, None), -np.inf)
    waist_z = j["Pelvis"][2] + 0.55 * (j["Torso"][2] - j["Pelvis"][2])
    return BodyParts(part=part, limb_t=limb_t, rest_m=v, hair_height=hair_height, waist_height=v[:, 2] - waist_z)


def _random_cloth_colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.uniform()
    sat = rng.uniform(0.0, 0.85) if rng.uniform() < 0.8 else 0.0
    val = rng.uniform(0.12, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val))


def _blend(palette: np.ndarray, t: float) -> np.ndarray:
    """Linear blend along a palette (Kx3) at t in [0, K-1]."""
    k = min(int(t), len(palette) - 2)
    return palette[k] + (t - k) * (palette[k + 1] - palette[k])


def _smooth_noise(rng: np.random.Generator, rest_m: np.ndarray, freq_per_m: tuple[float, float], waves: int = 4
                  ) -> np.ndarray:
    """A smooth scalar field on the rest mesh in about [-1, 1]: a sum of random plane waves (V,)."""
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    freq = rng.uniform(*freq_per_m, size=waves) * 2.0 * np.pi
    phase = rng.uniform(0.0, 2.0 * np.pi, size=waves)
    k = directions * freq[:, None]  # (waves, 3) wave vectors; written out, not a BLAS product (see generate.py)
    arg = rest_m[:, :1] * k[:, 0] + rest_m[:, 1:2] * k[:, 1] + rest_m[:, 2:3] * k[:, 2] + phase
    return np.sin(arg).sum(1) / np.sqrt(waves * 0.5)


def sample_vertex_colors(rng: np.random.Generator, parts: BodyParts) -> np.ndarray:
    """(V, 3) float32 albedo in [0, 1] for one sample: skin, hair, shirt, trousers/shorts, shoes (body) or skin or
    a glove (hand), with low-frequency variation."""
    part, limb_t = parts.part, parts.limb_t
    skin = _blend(SKIN_TONES, rng.uniform(0.0, len(SKIN_TONES) - 1.0)) * rng.uniform(0.92, 1.05)
    colours = np.broadcast_to(skin, (len(part), 3)).copy()
    if np.all(part == HAND):
        if rng.uniform() < 0.1:  # a glove
            colours[:] = _random_cloth_colour(rng)
    else:
        shirt, shirt2 = _random_cloth_colour(rng), _random_cloth_colour(rng)
        trousers = _random_cloth_colour(rng) if rng.uniform() < 0.6 else _blend(
            np.array([[0.08, 0.1, 0.2], [0.2, 0.28, 0.5], [0.45, 0.5, 0.62]]), rng.uniform(0.0, 2.0))  # denims
        shoes = _random_cloth_colour(rng) * (0.5 if rng.uniform() < 0.6 else 1.0)
        sleeve = rng.choice([rng.uniform(0.15, 0.6), rng.uniform(0.6, 1.3), rng.uniform(1.6, 2.0)])
        leg = rng.choice([rng.uniform(0.3, 0.8), rng.uniform(1.85, 2.0)], p=[0.25, 0.75])
        one_piece = rng.uniform() < 0.08  # a dress / overall: shirt colour on the hips and legs too
        shirt_mask = (part == TORSO) | ((part == ARM) & (limb_t < sleeve))
        trouser_mask = (part == HIPS) | ((part == LEG) & (limb_t < leg)) | ((part == TORSO) & (parts.waist_height < 0))
        shirt_mask &= ~trouser_mask
        colours[trouser_mask] = shirt if one_piece else trousers
        if rng.uniform() < 0.3:  # stripes, horizontal on the rest pose
            period = rng.uniform(0.03, 0.12)
            stripes = np.sin(parts.rest_m[:, 2] * 2.0 * np.pi / period + rng.uniform(0.0, 6.3)) > 0.0
            colours[shirt_mask] = np.where(stripes[shirt_mask, None], shirt, shirt2)
        else:
            colours[shirt_mask] = shirt
        colours[part == FOOT] = shoes
        style = rng.choice(3, p=[0.1, 0.5, 0.4])  # bald, short (top), covering the back of the head
        if style > 0:
            hair = _blend(HAIR_COLOURS, rng.uniform(0.0, len(HAIR_COLOURS) - 1.0)) * rng.uniform(0.8, 1.1)
            threshold = rng.uniform(0.02, 0.05) if style == 1 else rng.uniform(-0.04, 0.0)
            colours[parts.hair_height > threshold] = hair
    # Low-frequency albedo variation: folds and shading on cloth, a little on skin.
    variation = _smooth_noise(rng, parts.rest_m, (2.0, 12.0))
    colours *= (1.0 + rng.uniform(0.03, 0.12) * variation)[:, None]
    return np.clip(colours, 0.0, 1.0).astype(np.float32)


@dataclass
class Lighting:
    """light_dir (3,): from the surface towards the light, camera frame; ambient in [0, 1]; tint (3,) RGB gain."""

    light_dir: np.ndarray
    ambient: float
    tint: np.ndarray


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A light from the camera's side of the scene (z < 0: towards the camera), mostly from above (y < 0), with an
    ambient share in [0.25, 0.65] and a mild colour tint (warm or cool)."""
    direction = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.4), -rng.uniform(0.3, 1.2)])
    tint = 1.0 + rng.uniform(-0.08, 0.08) * np.array([1.0, 0.0, -1.0]) + rng.uniform(-0.03, 0.03, size=3)
    return Lighting(light_dir=direction / np.linalg.norm(direction), ambient=float(rng.uniform(0.25, 0.65)),
                    tint=tint)


__all__ = ["BodyParts", "body_parts", "sample_vertex_colors", "Lighting", "sample_lighting", "PART_NAMES",
           "HEAD", "NECK", "TORSO", "HIPS", "ARM", "HAND", "LEG", "FOOT"]
