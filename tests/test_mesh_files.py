"""Mesh files (export/meshes.py) read by trimesh, not by our own code; GLBs also checked against the glTF 2.0
specification (https://registry.khronos.org/glTF/specs/2.0/glTF-2.0.html, "GLB File Format Specification" and
"Accessors") by a reader written here from the spec."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh

from i2lmesh.export.meshes import (CAMERA_FRAME_NOTE, GLTF_FROM_CAMERA, person_names, write_glb, write_obj,
                                   write_ply, write_results_json)

FLOAT, UNSIGNED_BYTE, UNSIGNED_INT = 5126, 5121, 5125
COMPONENT = {FLOAT: ("<f4", 4), UNSIGNED_BYTE: ("u1", 1), UNSIGNED_INT: ("<u4", 4)}
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def _two_meshes():
    rng = np.random.default_rng(0)
    v1, v2 = rng.normal(size=(30, 3)), rng.normal(size=(12, 3))
    f1, f2 = rng.integers(0, 30, (50, 3)), rng.integers(0, 12, (20, 3))
    return (v1, f1), (v2, f2)


def _glb_chunks(path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a GLB, asserting the container rules of the spec."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(data))  # "glTF", version 2, the whole file
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0  # "JSON", padded to 4 bytes
    text = data[20:20 + json_length]
    assert text.rstrip(b" ").endswith(b"}")  # the JSON object, then only space padding (0x20)
    doc = json.loads(text)
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0  # "BIN\0", padded to 4 bytes
    assert 28 + json_length + bin_length == len(data)  # nothing after the BIN chunk
    binary = data[28 + json_length:]
    assert len(doc["buffers"]) == 1 and "uri" not in doc["buffers"][0]  # the GLB-stored buffer
    assert bin_length - 3 <= doc["buffers"][0]["byteLength"] <= bin_length
    return doc, binary


def _accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """Accessor ``index`` as an array (count, width), checking that it lies inside its buffer view, aligned."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype, size = COMPONENT[acc["componentType"]]
    width = WIDTH[acc["type"]]
    offset = acc.get("byteOffset", 0)
    assert offset % size == 0 and (view.get("byteOffset", 0) + offset) % size == 0
    assert offset + acc["count"] * width * size <= view["byteLength"]
    assert view.get("byteOffset", 0) + view["byteLength"] <= doc["buffers"][view["buffer"]]["byteLength"]
    start = view.get("byteOffset", 0) + offset
    return np.frombuffer(binary, dtype, acc["count"] * width, start).reshape(acc["count"], width)


def test_obj_has_one_object_per_mesh_that_trimesh_reads_apart(tmp_path):
    """Issue 16: several people in one OBJ are separate objects for readers, not one merged mesh."""
    (v1, f1), (v2, f2) = _two_meshes()
    path = write_obj(tmp_path / "m.obj", [(v1, f1), (v2, f2)], colors=[(1.0, 0.0, 0.0), (0.2, 0.4, 0.6)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mtl", "m.obj"]  # no temporary file left
    # trimesh's default reading splits by material: one mesh per person, named as the objects.
    scene = trimesh.load(path, process=False)
    assert isinstance(scene, trimesh.Scene) and sorted(scene.geometry) == ["person_0", "person_1"]
    for name, (v, f) in (("person_0", (v1, f1)), ("person_1", (v2, f2))):
        mesh = scene.geometry[name]
        assert len(mesh.vertices) == len(v)  # its own vertices only (a merged mesh would have 42)
        np.testing.assert_allclose(mesh.vertices, v, rtol=0, atol=5.01e-7)  # 6 decimals: at most 5e-7 m off
        np.testing.assert_array_equal(mesh.faces, f)
        assert np.allclose(mesh.visual.material.main_color[:3] / 255.0,
                           (1.0, 0.0, 0.0) if name == "person_0" else (0.2, 0.4, 0.6), atol=0.01)
    # Splitting by the "o" lines (what Blender's importer does by default) gives the same two meshes.
    objects = trimesh.load(path, process=False, split_objects=True)
    assert sorted((len(m.vertices), len(m.faces)) for m in objects.geometry.values()) == [(12, 20), (30, 50)]
    lines = path.read_text().splitlines()
    assert lines[0] == f"# {CAMERA_FRAME_NOTE}" and "mtllib m.mtl" in lines
    assert [line for line in lines if line[:2] in ("o ", "g ") or line.startswith("usemtl")] == \
        ["o person_0", "g person_0", "usemtl person_0", "o person_1", "g person_1", "usemtl person_1"]
    assert sum(line.startswith("v ") for line in lines) == 42 and sum(line.startswith("f ") for line in lines) == 70
    # Faces of the second object index the file's vertices after the first's 30 (OBJ indices are 1-based).
    assert lines[lines.index("usemtl person_1") + 13] == "f " + " ".join(str(i + 31) for i in f2[0])
    mtl = (tmp_path / "m.mtl").read_text().splitlines()
    assert mtl[mtl.index("newmtl person_1") + 1] == "Kd 0.2000 0.4000 0.6000"


def test_obj_without_colours_names_and_no_material_file(tmp_path):
    (v1, f1), (v2, f2) = _two_meshes()
    path = write_obj(tmp_path / "m.obj", [(v1, f1), (v2, f2)], names=["left one", "right"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.obj"]
    text = path.read_text()
    assert "mtllib" not in text and "usemtl" not in text
    objects = trimesh.load(path, process=False, split_objects=True)
    assert sorted(objects.geometry) == ["left_one", "right"]  # one word per name
    np.testing.assert_allclose(objects.geometry["left_one"].vertices, v1, rtol=0, atol=5.01e-7)
    np.testing.assert_allclose(objects.geometry["right"].vertices, v2, rtol=0, atol=5.01e-7)
    with pytest.raises(ValueError, match="1 colours for 2 meshes"):
        write_obj(tmp_path / "n.obj", [(v1, f1), (v2, f2)], colors=[(1.0, 1.0, 1.0)])
    with pytest.raises(AssertionError, match="mesh names must differ"):
        write_obj(tmp_path / "n.obj", [(v1, f1), (v2, f2)], names=["a", "a"])
    assert not (tmp_path / "n.obj").exists() and not (tmp_path / "n.mtl").exists()


def test_results_json_names_each_person_as_the_mesh_files(tmp_path):
    class Person:
        def __init__(self, i):
            self.i = i

        def to_dict(self, with_vertices=False):
            return {"score": self.i}

    path = write_results_json(tmp_path / "r.json", [Person(0), Person(1)], {"input": "x.png"},
                              mesh_names=person_names(2))
    doc = json.loads(path.read_text())
    assert [(p["score"], p["mesh_name"]) for p in doc["people"]] == [(0, "person_0"), (1, "person_1")]
    assert "mesh_name" not in json.loads(write_results_json(tmp_path / "s.json", [Person(0)]).read_text())["people"][0]
    with pytest.raises(ValueError, match="1 mesh names for 2 people"):
        write_results_json(tmp_path / "t.json", [Person(0), Person(1)], mesh_names=["person_0"])
    assert not (tmp_path / "t.json").exists()


def test_ply_read_by_trimesh_with_uncertainty_property(tmp_path):
    (v1, f1), (v2, f2) = _two_meshes()
    u1, u2 = np.linspace(0.0, 29.0, 30), np.full(12, 7.25)
    path = write_ply(tmp_path / "m.ply", [(v1, f1), (v2, f2)], {"uncertainty_mm": [u1, u2]})
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    mesh = trimesh.load(path, process=False)
    np.testing.assert_array_equal(mesh.vertices, np.concatenate([v1, v2]).astype(np.float32))
    np.testing.assert_array_equal(mesh.faces, np.concatenate([f1, f2 + 30]))
    vertex = mesh.metadata["_ply_raw"]["vertex"]["data"]
    assert vertex.dtype.names == ("x", "y", "z", "uncertainty_mm") and vertex["uncertainty_mm"].dtype == np.float32
    np.testing.assert_array_equal(vertex["uncertainty_mm"], np.concatenate([u1, u2]).astype(np.float32))
    with pytest.raises(AssertionError, match="uncertainty_mm: 30 values for 42 vertices"):
        write_ply(tmp_path / "bad.ply", [(v1, f1), (v2, f2)], {"uncertainty_mm": [u1]})


def test_glb_follows_the_gltf_spec_and_opens_in_trimesh(tmp_path):
    (v1, f1), (v2, f2) = _two_meshes()
    colours = np.linspace(0.0, 1.0, 90).reshape(30, 3)
    path = write_glb(tmp_path / "m.glb", [(v1, f1), (v2, f2)], colors=[(1.0, 0.0, 0.0), (0.0, 0.2, 1.0)],
                     vertex_colors=[colours, None])
    doc, binary = _glb_chunks(path)
    assert doc["asset"]["version"] == "2.0"
    assert [doc["nodes"][n]["name"] for n in doc["scenes"][doc.get("scene", 0)]["nodes"]] == ["person_0", "person_1"]
    for node, (v, f), rgba in zip(doc["scenes"][0]["nodes"], [(v1, f1), (v2, f2)], [[1, 1, 1, 1], [0, 0.2, 1, 1]]):
        node = doc["nodes"][node]
        assert "matrix" not in node and "rotation" not in node and "translation" not in node  # baked frame
        (primitive,) = doc["meshes"][node["mesh"]]["primitives"]
        assert primitive.get("mode", 4) == 4  # triangles
        position = doc["accessors"][primitive["attributes"]["POSITION"]]
        assert position["componentType"] == FLOAT and position["type"] == "VEC3"
        xyz = _accessor(doc, binary, primitive["attributes"]["POSITION"])
        # glTF's frame: (x, -y, -z) of the camera frame, float32; POSITION bounds are required and exact.
        np.testing.assert_array_equal(xyz, (v * [1.0, -1.0, -1.0]).astype(np.float32))
        np.testing.assert_array_equal(position["min"], xyz.min(0))
        np.testing.assert_array_equal(position["max"], xyz.max(0))
        assert doc["accessors"][primitive["indices"]]["componentType"] == UNSIGNED_INT
        np.testing.assert_array_equal(_accessor(doc, binary, primitive["indices"]).reshape(-1, 3), f)
        material = doc["materials"][primitive["material"]]
        assert material["doubleSided"] is True
        np.testing.assert_allclose(material["pbrMetallicRoughness"]["baseColorFactor"], rgba, atol=0.5 / 255)
    (first,) = doc["meshes"][doc["nodes"][0]["mesh"]]["primitives"]
    colour = doc["accessors"][first["attributes"]["COLOR_0"]]
    # COLOR_0: unsigned bytes must be normalised (spec, "Meshes" attribute table); 8-bit rounding of the colours.
    assert colour["componentType"] == UNSIGNED_BYTE and colour["normalized"] is True and colour["type"] == "VEC4"
    rgba8 = _accessor(doc, binary, first["attributes"]["COLOR_0"])
    np.testing.assert_array_equal(rgba8[:, :3], np.round(colours * 255))
    assert np.all(rgba8[:, 3] == 255)
    (second,) = doc["meshes"][doc["nodes"][1]["mesh"]]["primitives"]
    assert "COLOR_0" not in second["attributes"]

    scene = trimesh.load(path, process=False, force="scene")
    assert sorted(scene.geometry) == ["person_0", "person_1"]
    for name, (v, f) in (("person_0", (v1, f1)), ("person_1", (v2, f2))):
        mesh = scene.geometry[name]
        np.testing.assert_allclose(mesh.vertices @ GLTF_FROM_CAMERA, v, rtol=0, atol=1e-6)  # float32
        np.testing.assert_array_equal(mesh.faces, f)
    np.testing.assert_array_equal(scene.geometry["person_0"].visual.vertex_attributes["color"], rgba8)


def test_glb_refuses_colours_that_do_not_fit(tmp_path):
    (v1, f1), (v2, f2) = _two_meshes()
    with pytest.raises(ValueError, match=r"colours of shape \(3, 3\) for a mesh of 30 vertices"):
        write_glb(tmp_path / "m.glb", [(v1, f1), (v2, f2)], vertex_colors=[np.zeros((3, 3)), None])
    with pytest.raises(ValueError, match="1 colour arrays for 2 meshes"):
        write_glb(tmp_path / "m.glb", [(v1, f1), (v2, f2)], vertex_colors=[None])
    assert not list(tmp_path.iterdir())  # nothing written
