"""Mesh and result files: OBJ (+ MTL), PLY (binary), GLB (glTF 2.0 binary), JSON and NPZ.

PLY and GLB are made by trimesh (``trimesh.exchange``: ``export_ply``, ``export_glb``); the OBJ text is written
here (a few lines of ``v``/``f``/``o``/``g``/``usemtl``, so that its layout is ours); trimesh reads all of them back
(``trimesh.load``). What is ours is the content: frames, names, colours, per-vertex values.

Coordinates: OBJ, PLY, JSON and NPZ keep the camera frame of the predictions (x right, y down, z forward, metres),
as the reference's demo writes its OBJ. GLB follows glTF's convention (y up, the viewer looking down -z), so its
vertices are the camera frame turned 180 degrees about x: (x, -y, -z); viewers then show the person upright and
facing them. Several meshes (people) go in one file, one object per person named ``person_i`` in the order of the
JSON's ``people`` (each has ``mesh_name``): OBJ objects/groups/materials ``person_i`` (:func:`write_obj`), GLB
nodes and meshes ``person_i``; a PLY has no objects, so its vertices are concatenated in that order. Per-vertex
values: PLY float32 vertex properties (the demo's ``uncertainty_mm``); GLB ``COLOR_0`` colours (the web page's
uncertainty colours, unsigned bytes, normalised).
Every writer is atomic (:mod:`i2lmesh.export.atomic`): a crash never leaves a truncated file under the final name.
trimesh is imported inside the writers (about 1 s), so writing only JSON does not load it.
"""
from __future__ import annotations

import io
import json
import os
import re
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


def person_names(count: int) -> list[str]:
    """The mesh names of ``count`` people: ``person_0``, ``person_1``, ... in the order of the results (the JSON's
    ``people`` list): OBJ objects, groups and materials, GLB nodes and meshes, and each JSON person's
    ``mesh_name``."""
    return [f"person_{i}" for i in range(count)]


def _obj_name(name: str) -> str:
    """An OBJ/MTL name: one word (``o``, ``g``, ``usemtl`` and ``newmtl`` end at the first space)."""
    name = re.sub(r"\s+", "_", str(name).strip())
    assert name, "an OBJ object needs a name."
    return name


def write_obj(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh], names: Sequence[str] | None = None,
              colors: Sequence[Sequence[float]] | None = None) -> Path:
    """Wavefront OBJ: ``v x y z`` (metres, camera frame, 6 decimals) and 1-based ``f a b c``, one object per mesh
    (``names``, default ``person_i``) that each reader keeps apart: the mesh's vertices and faces follow its own
    ``o NAME`` (objects: Blender, Maya, ``trimesh.load(path, split_objects=True)``) and ``g NAME`` (groups) lines.

    colors: RGB in [0, 1] per mesh. Given, the OBJ also says ``usemtl NAME`` per mesh and a material file
    ``STEM.mtl`` is written next to it first (``newmtl NAME`` with diffuse colour ``Kd``; ``mtllib`` in the OBJ):
    viewers colour each person as the overlay does, and readers that split an OBJ by material (trimesh's default
    ``trimesh.load``) also get one mesh per person. Both files are written atomically, the MTL before the OBJ.
    Raises AssertionError for malformed meshes (see :func:`_meshes`), ValueError for colours of the wrong count,
    OSError when a file cannot be written."""
    path = Path(path)
    meshes = _meshes(meshes)
    names = [_obj_name(n) for n in (names or person_names(len(meshes)))]
    assert len(names) == len(meshes), f"{len(names)} names for {len(meshes)} meshes."
    assert len(set(names)) == len(names), f"mesh names must differ, got {names}."
    if colors is not None and len(colors) != len(meshes):
        raise ValueError(f"{path}: {len(colors)} colours for {len(meshes)} meshes")
    header = [f"# {CAMERA_FRAME_NOTE}", f"# {len(meshes)} object(s): " + " ".join(names)]
    if colors is not None:
        mtl = path.with_suffix(".mtl")
        lines = [f"# {path.name}: one material per object"]
        for name, rgb in zip(names, colors):
            r, g, b = (min(max(float(c), 0.0), 1.0) for c in list(rgb)[:3])
            lines += ["", f"newmtl {name}", f"Kd {r:.4f} {g:.4f} {b:.4f}", "Ka 0 0 0", "Ks 0 0 0", "d 1", "illum 1"]
        atomic_write_text(mtl, "\n".join(lines) + "\n")
        header.append(f"mtllib {mtl.name}")
    out = io.StringIO()
    out.write("\n".join(header) + "\n")
    offset = 1  # OBJ indices are 1-based and count the vertices of the whole file
    for i, (v, f) in enumerate(meshes):
        out.write(f"\no {names[i]}\ng {names[i]}\n" + (f"usemtl {names[i]}\n" if colors is not None else ""))
        np.savetxt(out, v, fmt="v %.6f %.6f %.6f")
        np.savetxt(out, f + offset, fmt="f %d %d %d")
        offset += len(v)
    return atomic_write_text(path, out.getvalue())


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
    names = names or person_names(len(meshes))
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
        scene.add_geometry(mesh, node_name=names[i], geom_name=names[i])
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
                       with_vertices: bool = False, mesh_names: Sequence[str] | None = None) -> Path:
    """One JSON file for one image: ``info`` (image name, size, notes ...) and ``people``: each result's
    :meth:`~i2lmesh.inference.predictor.PersonResult.to_dict`. No people -> ``"people": []`` plus a message.
    mesh_names: the names of the people's objects in the mesh files written with this JSON (one per result, as
    given to :func:`write_obj` / :func:`write_glb`); each person gets ``"mesh_name"``."""
    path = Path(path)
    if mesh_names is not None and len(mesh_names) != len(results):
        raise ValueError(f"{path}: {len(mesh_names)} mesh names for {len(results)} people")
    doc = dict(_jsonable(info or {}))
    doc["units"] = {"2d": "pixels of the original image", "3d": "camera metres (x right, y down, z forward)",
                    "uncertainty": "millimetres, 1 sigma"}
    doc["num_people"] = len(results)
    doc["people"] = [r.to_dict(with_vertices=with_vertices) for r in results]
    for person, name in zip(doc["people"], mesh_names or ()):
        person["mesh_name"] = str(name)
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


__all__ = ["person_names", "write_obj", "write_ply", "write_glb", "write_results_json", "write_results_npz",
           "GLTF_FROM_CAMERA", "CAMERA_FRAME_NOTE"]
