"""Mesh and result files: OBJ, PLY (binary), GLB (glTF 2.0 binary), JSON and NPZ.

The mesh files are made by trimesh (``trimesh.exchange``: ``export_obj``, ``export_ply``, ``export_glb``), which
also reads them back (``trimesh.load``); what is ours is the content: frames, names, colours, per-vertex values.

Coordinates: OBJ, PLY, JSON and NPZ keep the camera frame of the predictions (x right, y down, z forward, metres),
as the reference's demo writes its OBJ. GLB follows glTF's convention (y up, the viewer looking down -z), so its
vertices are the camera frame turned 180 degrees about x: (x, -y, -z); viewers then show the person upright and
facing them. Several meshes (people) go in one file: OBJ objects ``person_i``, one PLY with concatenated vertices,
GLB nodes and meshes ``person_i`` in order. Per-vertex values: PLY float32 vertex properties (the demo's
``uncertainty_mm``); GLB ``COLOR_0`` colours (the web page's uncertainty colours, unsigned bytes, normalised).
Every writer is atomic (:mod:`i2lmesh.export.atomic`): a crash never leaves a truncated file under the final name.
trimesh is imported inside the writers (about 1 s), so writing only JSON does not load it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import atomic_write, atomic_write_bytes, atomic_write_text

Mesh = tuple[np.ndarray, np.ndarray]  # (vertices (V,3) metres, faces (F,3) int)

GLTF_FROM_CAMERA = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x
CAMERA_FRAME_NOTE = "i2lmesh: camera frame (x right, y down, z forward), metres"
DEFAULT_RGB = (0.65, 0.74, 0.86)  # a GLB mesh's material colour when none is given


def _meshes(meshes: Mesh | Sequence[Mesh]) -> list[Mesh]:
    """One (vertices, faces) pair or a sequence of them -> checked float64 (V,3) / int64 (F,3) pairs. Raises
    AssertionError for other shapes or faces indexing missing vertices."""
    if len(meshes) == 2 and all(hasattr(m, "shape") and len(m.shape) == 2 for m in meshes):
        meshes = [meshes]  # one (vertices, faces) pair of arrays
    out = []
    for vertices, faces in meshes:
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        assert v.ndim == 2 and v.shape[1] == 3, f"vertices should be (V, 3), got {v.shape}."
        assert f.ndim == 2 and f.shape[1] == 3, f"faces should be (F, 3) triangles, got {f.shape}."
        assert f.size == 0 or (f.min() >= 0 and f.max() < len(v)), "faces index vertices that do not exist."
        out.append((v, f))
    return out


def _trimesh(vertices: np.ndarray, faces: np.ndarray):
    """A trimesh.Trimesh of exactly these vertices and faces (no merging, reordering or repair)."""
    import trimesh

    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)


def _name(names: Sequence[str] | None, i: int) -> str:
    return names[i] if names else f"person_{i}"


def write_obj(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh], names: Sequence[str] | None = None) -> Path:
    """Wavefront OBJ (``trimesh.exchange.obj.export_obj``): ``v x y z`` (metres, camera frame, 6 decimals) and
    1-based ``f a b c``; one ``o`` object per mesh (``names``, default ``person_i``). Raises AssertionError for
    malformed meshes (see :func:`_meshes`) and OSError when the file cannot be written."""
    import trimesh

    scene = trimesh.Scene()
    for i, (v, f) in enumerate(_meshes(meshes)):
        scene.add_geometry(_trimesh(v, f), node_name=_name(names, i), geom_name=_name(names, i))
    text = trimesh.exchange.obj.export_obj(scene, include_normals=False, include_color=False, include_texture=False,
                                           digits=6, header=CAMERA_FRAME_NOTE)
    return atomic_write_text(Path(path), text)


def write_ply(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh],
              vertex_values: dict[str, Sequence[np.ndarray]] | None = None) -> Path:
    """Binary little-endian PLY (``trimesh.exchange.ply.export_ply``): float32 x, y, z (metres, camera frame), the
    meshes concatenated, faces as uchar-count int32 lists, plus optional per-vertex float32 properties such as
    ``{"uncertainty_mm": [u0, u1, ...]}`` (one (V_i,) array per mesh). Raises AssertionError when a property does
    not have one value per vertex, OSError when the file cannot be written."""
    import trimesh

    meshes = _meshes(meshes)
    vertices = np.concatenate([v for v, _ in meshes]) if meshes else np.zeros((0, 3))
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    faces = np.concatenate([f + offsets[i] for i, (_, f) in enumerate(meshes)]) if meshes else np.zeros((0, 3), int)
    mesh = _trimesh(vertices, faces)
    for name, arrays in (vertex_values or {}).items():
        values = np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays])
        assert len(values) == len(vertices), f"{name}: {len(values)} values for {len(vertices)} vertices."
        mesh.vertex_attributes[name] = values
    data = trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False, include_attributes=True)
    return atomic_write_bytes(Path(path), data)


def write_glb(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh], colors: Sequence[Sequence[float]] | None = None,
              names: Sequence[str] | None = None,
              vertex_colors: Sequence[np.ndarray | None] | None = None) -> Path:
    """glTF 2.0 binary (``trimesh.exchange.gltf.export_glb``): one node + mesh per (vertices, faces) pair (``names``,
    default ``person_i``), float32 positions with min/max in glTF's frame (x, -y, -z), uint32 indices, no normals
    (viewers shade flat), a double-sided material per colour (``colors``: RGB in [0, 1] per mesh, metallic 0,
    roughness 0.8; stored as 8-bit).

    vertex_colors: per mesh a (V_i, 3) RGB array in [0, 1] (clipped) or None. A coloured mesh gets a ``COLOR_0``
    attribute (unsigned bytes, normalised) and a white material, since glTF multiplies the two. Raises ValueError
    for colours of the wrong count or shape, AssertionError for malformed meshes, OSError when the file cannot be
    written."""
    import trimesh
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import PBRMaterial

    meshes = _meshes(meshes)
    if vertex_colors is not None and len(vertex_colors) != len(meshes):
        raise ValueError(f"{path}: {len(vertex_colors)} colour arrays for {len(meshes)} meshes")
    scene = trimesh.Scene()
    for i, (v, f) in enumerate(meshes):
        rgb = [float(c) for c in (colors[i] if colors is not None else DEFAULT_RGB)][:3]
        per_vertex = None if vertex_colors is None or vertex_colors[i] is None else np.asarray(vertex_colors[i])
        if per_vertex is not None:
            if per_vertex.shape != (len(v), 3):
                raise ValueError(f"{path}: colours of shape {per_vertex.shape} for a mesh of {len(v)} vertices")
            rgb = [1.0, 1.0, 1.0]
        material = PBRMaterial(baseColorFactor=[*rgb, 1.0], metallicFactor=0.0, roughnessFactor=0.8, doubleSided=True)
        visual = TextureVisuals(material=material)
        if per_vertex is not None:
            rgba = np.concatenate([np.clip(per_vertex, 0.0, 1.0), np.ones((len(v), 1))], axis=1)
            visual.vertex_attributes["color"] = np.round(rgba * 255.0).astype(np.uint8)
        mesh = _trimesh(v @ GLTF_FROM_CAMERA.T, f)
        mesh.visual = visual
        scene.add_geometry(mesh, node_name=_name(names, i), geom_name=_name(names, i))
    return atomic_write_bytes(Path(path), trimesh.exchange.gltf.export_glb(scene, include_normals=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_results_json(path: str | os.PathLike, results: Sequence[Any], info: dict | None = None,
                       with_vertices: bool = False) -> Path:
    """One JSON file for one image: ``info`` (image name, size, notes ...) and ``people``: each result's
    :meth:`~i2lmesh.inference.predictor.PersonResult.to_dict`. No people -> ``"people": []`` plus a message."""
    path = Path(path)
    doc = dict(_jsonable(info or {}))
    doc["units"] = {"2d": "pixels of the original image", "3d": "camera metres (x right, y down, z forward)",
                    "uncertainty": "millimetres, 1 sigma"}
    doc["num_people"] = len(results)
    doc["people"] = [r.to_dict(with_vertices=with_vertices) for r in results]
    if not results:
        doc.setdefault("message", "no person found")
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False))  # strict JSON: never NaN/Infinity
    return path


def write_results_npz(path: str | os.PathLike, results: Sequence[Any]) -> Path:
    """All arrays of the results, stacked per field (P people): vertices_m (P,V,3), joints_m (P,J,3),
    joints_2d_px (P,J,2), K (P,3,3), boxes, root depths, uncertainties, scores, and faces (F,3)."""
    path = Path(path)
    fields = ("vertices_m", "joints_m", "joints_2d_px", "K", "box_xywh", "box_processed_xywh",
              "vertex_uncertainty_mm", "vertex_uncertainty_xyz_mm", "joint_uncertainty_mm",
              "joint_uncertainty_xyz_mm")
    arrays = {name: np.stack([np.asarray(getattr(r, name)) for r in results]) for name in fields} if results else {}
    if results:
        arrays["faces"] = np.asarray(results[0].faces)
        arrays["root_depth_m"] = np.array([r.root_depth_m for r in results])
        arrays["score"] = np.array([r.score for r in results])
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


__all__ = ["write_obj", "write_ply", "write_glb", "write_results_json", "write_results_npz", "GLTF_FROM_CAMERA",
           "CAMERA_FRAME_NOTE"]
