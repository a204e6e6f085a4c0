"""Mesh and result files: OBJ, PLY (binary), GLB (glTF 2.0 binary, written by hand), JSON and NPZ.

Coordinates: OBJ, PLY, JSON and NPZ keep the camera frame of the predictions (x right, y down, z forward, metres),
as the reference's demo writes its OBJ. GLB follows glTF's convention (y up, the viewer looking down -z), so its
vertices are the camera frame turned 180 degrees about x: (x, -y, -z); viewers then show the person upright and
facing them. Several meshes (people) go in one file: OBJ objects, one PLY with concatenated vertices, GLB nodes.
Every writer is atomic (:mod:`i2lmesh.export.atomic`): a crash never leaves a truncated file under the final name.
No dependency beyond numpy; small readers for the same files serve the tests and quick checks.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import atomic_write, atomic_write_text

Mesh = tuple[np.ndarray, np.ndarray]  # (vertices (V,3) metres, faces (F,3) int)

_GLB_MAGIC, _GLB_VERSION = 0x46546C67, 2  # b"glTF"
_CHUNK_JSON, _CHUNK_BIN = 0x4E4F534A, 0x004E4942  # b"JSON", b"BIN\0"
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
GLTF_FROM_CAMERA = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x


def _meshes(meshes: Mesh | Sequence[Mesh]) -> list[Mesh]:
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


def write_obj(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh], names: Sequence[str] | None = None) -> Path:
    """Wavefront OBJ: ``v x y z`` (metres, camera frame) and 1-based ``f a b c``; one ``o`` object per mesh."""
    path = Path(path)
    lines = ["# i2lmesh: camera frame (x right, y down, z forward), metres"]
    offset = 0
    for i, (v, f) in enumerate(_meshes(meshes)):
        lines.append(f"o {names[i] if names else f'person_{i}'}")
        lines.extend(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v)
        lines.extend(f"f {a} {b} {c}" for a, b, c in (f + 1 + offset))
        offset += len(v)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_obj(path: str | os.PathLike) -> Mesh:
    """Vertices and (0-based) triangles of an OBJ, all objects concatenated (``f a/b/c`` forms accepted)."""
    vertices, faces = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            vertices.append([float(p) for p in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    return np.asarray(vertices, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)


def write_ply(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh],
              vertex_values: dict[str, Sequence[np.ndarray]] | None = None) -> Path:
    """Binary little-endian PLY: float32 x, y, z (+ optional per-vertex float32 scalars such as
    ``{"uncertainty_mm": [u0, u1, ...]}``, one array per mesh), faces as uchar-count int32 lists."""
    path = Path(path)
    meshes = _meshes(meshes)
    vertices = np.concatenate([v for v, _ in meshes]) if meshes else np.zeros((0, 3))
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    faces = np.concatenate([f + offsets[i] for i, (_, f) in enumerate(meshes)]) if meshes else np.zeros((0, 3), int)
    extra = {k: np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays])
             for k, arrays in (vertex_values or {}).items()}
    for name, values in extra.items():
        assert len(values) == len(vertices), f"{name}: {len(values)} values for {len(vertices)} vertices."
    header = ["ply", "format binary_little_endian 1.0", "comment i2lmesh: camera frame (x right, y down, z "
              "forward), metres", f"element vertex {len(vertices)}", "property float x", "property float y",
              "property float z"]
    header += [f"property float {name}" for name in extra]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vdtype = np.dtype([(n, "<f4") for n in ("x", "y", "z", *extra)])
    vrec = np.empty(len(vertices), vdtype)
    for axis, n in enumerate(("x", "y", "z")):
        vrec[n] = vertices[:, axis]
    for n, values in extra.items():
        vrec[n] = values
    frec = np.empty(len(faces), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    frec["n"], frec["i"] = 3, faces
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vrec.tobytes())
        fh.write(frec.tobytes())
    return path


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Read a PLY written by :func:`write_ply`: (vertices, faces, {extra vertex property: values})."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and "binary_little_endian" in header[1], "not a binary little-endian PLY."
    props, counts, element = [], {}, None
    for line in header:
        parts = line.split()
        if parts[0] == "element":
            element = parts[1]
            counts[element] = int(parts[2])
        elif parts[0] == "property" and element == "vertex":
            props.append(parts[2])
    nv, nf = counts.get("vertex", 0), counts.get("face", 0)
    vrec = np.frombuffer(data, np.dtype([(n, "<f4") for n in props]), nv, end)
    frec = np.frombuffer(data, np.dtype([("n", "u1"), ("i", "<i4", (3,))]), nf, end + vrec.nbytes)
    assert np.all(frec["n"] == 3), "only triangle faces are supported."
    vertices = np.stack([vrec["x"], vrec["y"], vrec["z"]], 1).astype(np.float64)
    return vertices, frec["i"].astype(np.int64), {n: vrec[n].copy() for n in props if n not in ("x", "y", "z")}


def _pad4(blob: bytes, fill: bytes) -> bytes:
    return blob + fill * ((-len(blob)) % 4)


def write_glb(path: str | os.PathLike, meshes: Mesh | Sequence[Mesh], colors: Sequence[Sequence[float]] | None = None,
              names: Sequence[str] | None = None) -> Path:
    """glTF 2.0 binary: one node + mesh per (vertices, faces) pair, float32 positions with min/max, uint32 indices,
    a double-sided material per mesh (``colors``: RGB in [0, 1]). Vertices go to glTF's frame (x, -y, -z)."""
    path = Path(path)
    meshes = _meshes(meshes)
    gltf: dict[str, Any] = {"asset": {"version": "2.0", "generator": "i2lmesh"}, "scene": 0,
                            "scenes": [{"nodes": list(range(len(meshes)))}], "nodes": [], "meshes": [],
                            "materials": [], "accessors": [], "bufferViews": [], "buffers": []}
    blob = b""
    for i, (v, f) in enumerate(meshes):
        positions = (v @ GLTF_FROM_CAMERA.T).astype("<f4")
        indices = f.astype("<u4").reshape(-1)
        for array, target, kind, ctype in ((positions, _ARRAY_BUFFER, "VEC3", _FLOAT),
                                           (indices, _ELEMENT_ARRAY_BUFFER, "SCALAR", _UINT32)):
            raw = array.tobytes()
            gltf["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw),
                                        "target": target})
            accessor = {"bufferView": len(gltf["bufferViews"]) - 1, "componentType": ctype,
                        "count": int(len(array) if kind == "VEC3" else array.size), "type": kind}
            if kind == "VEC3":  # POSITION accessors must carry bounds
                accessor["min"] = positions.min(0).tolist() if len(positions) else [0.0] * 3
                accessor["max"] = positions.max(0).tolist() if len(positions) else [0.0] * 3
            gltf["accessors"].append(accessor)
            blob = _pad4(blob + raw, b"\0")
        rgb = list(colors[i]) if colors is not None else [0.65, 0.74, 0.86]
        gltf["materials"].append({"pbrMetallicRoughness": {"baseColorFactor": [*map(float, rgb[:3]), 1.0],
                                                           "metallicFactor": 0.0, "roughnessFactor": 0.8},
                                  "doubleSided": True})
        gltf["meshes"].append({"primitives": [{"attributes": {"POSITION": 2 * i}, "indices": 2 * i + 1,
                                               "material": i, "mode": 4}]})
        gltf["nodes"].append({"mesh": i, "name": names[i] if names else f"person_{i}"})
    gltf["buffers"].append({"byteLength": len(blob)})
    json_chunk = _pad4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(json_chunk) + (8 + len(blob) if blob else 0)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, total))
        fh.write(struct.pack("<II", len(json_chunk), _CHUNK_JSON) + json_chunk)
        if blob:
            fh.write(struct.pack("<II", len(blob), _CHUNK_BIN) + blob)
    return path


def read_glb(path: str | os.PathLike, camera_frame: bool = True) -> tuple[dict, list[Mesh]]:
    """Parse a GLB (checking header and chunk lengths): (the glTF JSON, [(vertices, faces)] per mesh). Vertices are
    turned back to the camera frame unless ``camera_frame`` is False."""
    data = Path(path).read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != 2 or length != len(data):
        raise ValueError(f"{path}: not a glTF 2.0 binary (magic {magic:#x}, version {version}, length {length} "
                         f"vs {len(data)} bytes)")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != _CHUNK_JSON or json_len % 4:
        raise ValueError(f"{path}: first chunk is not a 4-byte aligned JSON chunk")
    gltf = json.loads(data[20:20 + json_len])
    binary = b""
    if 20 + json_len < len(data):
        bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
        if bin_type != _CHUNK_BIN or 28 + json_len + bin_len != len(data):
            raise ValueError(f"{path}: malformed BIN chunk")
        binary = data[28 + json_len:28 + json_len + bin_len]

    def accessor(index: int) -> np.ndarray:
        acc = gltf["accessors"][index]
        view = gltf["bufferViews"][acc["bufferView"]]
        dtype = {_FLOAT: "<f4", _UINT32: "<u4"}[acc["componentType"]]
        width = {"VEC3": 3, "SCALAR": 1}[acc["type"]]
        arr = np.frombuffer(binary, dtype, acc["count"] * width, view.get("byteOffset", 0) + acc.get("byteOffset", 0))
        return arr.reshape(acc["count"], width) if width > 1 else arr

    meshes = []
    for mesh in gltf["meshes"]:
        prim = mesh["primitives"][0]
        v = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        f = accessor(prim["indices"]).astype(np.int64).reshape(-1, 3)
        meshes.append((v @ GLTF_FROM_CAMERA if camera_frame else v, f))
    return gltf, meshes


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


__all__ = ["write_obj", "read_obj", "write_ply", "read_ply", "write_glb", "read_glb", "write_results_json",
           "write_results_npz", "GLTF_FROM_CAMERA"]
