"""Reading SMPL / MANO model files into plain numpy dicts, with or without chumpy installed.

The official files (SMPL 1.0 ``basicModel_*_lbs_10_207_0_v1.0.0.pkl``, SMPLify's neutral model,
``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) are Python-2 pickles. Some arrays in them are chumpy objects
(``chumpy.ch.Ch`` holding its array in ``x``; reordering nodes such as ``chumpy.reordering.Select``) and
``J_regressor`` is a ``scipy.sparse.csc_matrix``. Unpickling them normally needs chumpy, which no longer installs
on current Python/numpy. :class:`ModelFileUnpickler` instead maps every ``chumpy.*`` class to a stub that keeps
the pickled state and evaluates it to a numpy array, and every scipy sparse class to a stub rebuilt from its
``data``/``indices``/``indptr`` (so old and new scipy pickles read the same). Anything else a pickle asks for is
refused: a model file is data, never code.

``.npz`` files (e.g. the smplx-converted ones) hold the same keys as dense arrays.

:func:`write_synthetic_smpl_file` writes a random but structurally valid file in the official layout (same keys,
shapes, dtypes, a fake ``chumpy.ch.Ch`` for ``shapedirs``, sparse ``J_regressor``) so tests need no licensed data.
"""
from __future__ import annotations

import _compat_pickle
import copyreg
import importlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

# Sizes of the official models (vertices, kinematic joints, faces, pose-blend-shape basis = 9 * (joints - 1)).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "smpl": {"num_vertices": 6890, "num_joints": 24, "num_faces": 13776, "num_pose_basis": 207},
    "mano": {"num_vertices": 778, "num_joints": 16, "num_faces": 1538, "num_pose_basis": 135},
}

# Kinematic trees (parent of each joint; -1 for the root), as in the official ``kintree_table[0]``.
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# MANO joint order: wrist, index 1-3, middle 1-3, pinky 1-3, ring 1-3, thumb 1-3.
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "smpl": ("v_template", "f", "J_regressor", "weights", "posedirs", "shapedirs", "kintree_table"),
    "mano": ("v_template", "f", "J_regressor", "weights", "posedirs", "shapedirs", "kintree_table",
             "hands_components", "hands_mean"),
}

ModelKind = Literal["smpl", "mano"]


class ModelFileFormatError(ValueError):
    """The file was read but is not a usable SMPL/MANO model (bad pickle, refused class, missing key, bad shape)."""


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------

class _ChumpyStub:
    """Stand-in for any pickled chumpy node: keeps its state and evaluates it to a numpy array.

    chumpy pickles ``Ch.__getstate__()`` (the instance ``__dict__`` minus caches); a plain ``Ch`` holds its value in
    ``x``, reordering nodes hold their input in ``a`` plus the reordering terms.
    """

    chumpy_name = "Ch"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state)

    def to_numpy(self) -> np.ndarray:
        name, d = self.chumpy_name, self.__dict__
        if name == "Reshape":
            return _as_numpy(d["a"]).reshape(d["newshape"])
        if name == "Select":
            out = _as_numpy(d["a"]).ravel()[np.asarray(d["idxs"])].copy()
            return out.reshape(d["preferred_shape"]) if "preferred_shape" in d else out
        if name == "transpose":
            return np.ascontiguousarray(np.transpose(_as_numpy(d["a"]), d.get("axes")))
        if name == "Concatenate":
            return np.concatenate([_as_numpy(d[t]) for t in d["dterms"]], axis=d["axis"])
        if "x" in d:  # Ch and the few subclasses that only wrap a value
            return np.asarray(_as_numpy(d["x"]))
        raise ModelFileFormatError(f"holds a chumpy '{name}' node this reader cannot evaluate without chumpy")


class _SparseStub:
    """Stand-in for a pickled scipy sparse matrix (any scipy version); rebuilt from its stored arrays."""

    sparse_name = "csc_matrix"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state)

    def to_numpy(self) -> np.ndarray:
        import scipy.sparse as sp

        d, kind = self.__dict__, self.sparse_name[:3]
        shape = tuple(int(s) for s in d.get("_shape", d.get("shape")))
        if kind in ("csc", "csr"):
            cls = sp.csc_matrix if kind == "csc" else sp.csr_matrix
            matrix = cls((d["data"], d["indices"], d["indptr"]), shape=shape)
        elif kind == "coo":
            row, col = (d["row"], d["col"]) if "row" in d else d["coords"]
            matrix = sp.coo_matrix((d["data"], (row, col)), shape=shape)
        else:
            raise ModelFileFormatError(f"holds a scipy '{self.sparse_name}' this reader does not know")
        return np.asarray(matrix.toarray())


_STUB_CLASSES: dict[tuple[str, str], type] = {}


def _stub_class(base: type, attr: str, module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(f"{name}Stub", (base,), {attr: name, "__module__": __name__})
    return _STUB_CLASSES[key]


def _numpy_global(module: str, name: str) -> Any:
    """numpy's pickle helpers, found through numpy itself so that numpy 1 and 2 pickles both resolve."""
    if name == "_reconstruct":
        return np.ndarray.__reduce__(np.zeros(1))[0]
    if name == "scalar":
        return np.float64(0).__reduce__()[0]
    if name == "_frombuffer":  # protocol-5 pickles; private, in numpy._core (2.x) or numpy.core (1.x)
        numeric = importlib.import_module("numpy._core.numeric" if hasattr(np, "_core") else "numpy.core.numeric")
        return numeric._frombuffer
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module in ("numpy", "numpy.dtypes") and name.endswith("DType"):
        import numpy.dtypes as dtypes
        return getattr(dtypes, name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


_NUMPY_MODULES = {"numpy", "numpy.dtypes", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric"}
_SAFE_BUILTINS = {("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
                  ("builtins", "complex"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
                  ("_codecs", "encode")}


class ModelFileUnpickler(pickle.Unpickler):
    """Restricted unpickler for SMPL/MANO pickles: numpy arrays, chumpy stubs, scipy sparse stubs, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 names (copy_reg, __builtin__) -> Python 3, as the default fix_imports would do.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub_class(_ChumpyStub, "chumpy_name", module, name)
        if module.startswith("scipy.sparse"):
            return _stub_class(_SparseStub, "sparse_name", module, name)
        if module in _NUMPY_MODULES:
            return _numpy_global(module, name)
        if (module, name) in _SAFE_BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (model files hold only arrays)")


def _as_numpy(value: Any) -> Any:
    """chumpy / sparse stubs -> ndarray; numpy arrays and scalars pass through."""
    if isinstance(value, (_ChumpyStub, _SparseStub)):
        return value.to_numpy()
    return value


def _plain(value: Any) -> Any:
    """One pickled entry -> ndarray (numbers included), str, or a dict/list of those."""
    value = _as_numpy(value)
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, dict):
        return {k.decode("latin1") if isinstance(k, bytes) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, np.number, np.ndarray)):
        return np.asarray(value)
    return value


def load_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read an SMPL/MANO ``.pkl`` (official, chumpy or not) or ``.npz`` into ``{key: ndarray | str | dict}``.

    Sparse matrices come back dense; chumpy objects come back as their arrays. Raises FileNotFoundError if the file
    is missing and :class:`ModelFileFormatError` (one-line message, without the path) if it cannot be read.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"PK":  # zip archive: npz
        return _load_npz(raw)
    try:
        obj = ModelFileUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except ModelFileFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise ModelFileFormatError(f"not a readable model pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileFormatError(f"pickle holds a {type(obj).__name__}, expected a dict of model arrays")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): _plain(v) for k, v in obj.items()}


def _load_npz(raw: bytes) -> dict[str, Any]:
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
        out: dict[str, Any] = {}
        for key in archive.files:
            try:
                value = archive[key]
            except ValueError:  # an object entry (pickled); model arrays never are, so skip it
                continue
            out[key] = str(value) if value.dtype.kind == "U" and value.ndim == 0 else value
        return out
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileFormatError(f"not a readable npz archive ({type(exc).__name__}: {exc})") from None


def check_model_data(data: dict[str, Any], kind: ModelKind) -> None:
    """Check keys and shapes of a loaded model against the official ``kind`` layout; raise ModelFileFormatError."""
    sizes = MODEL_SIZES[kind]
    missing = [k for k in REQUIRED_KEYS[kind] if k not in data]
    if missing:
        raise ModelFileFormatError(f"missing {', '.join(missing)} (is this a {kind.upper()} model file?)")
    num_v, num_j = sizes["num_vertices"], sizes["num_joints"]
    expected = {
        "v_template": (num_v, 3), "J_regressor": (num_j, num_v), "weights": (num_v, num_j),
        "posedirs": (num_v, 3, sizes["num_pose_basis"]), "kintree_table": (2, num_j),
    }
    for key, shape in expected.items():
        got = np.shape(data[key])
        if got != shape:
            raise ModelFileFormatError(f"{key} has shape {got}, expected {shape} for {kind.upper()}")
    shapedirs, faces = np.shape(data["shapedirs"]), np.asarray(data["f"])
    if len(shapedirs) != 3 or shapedirs[:2] != (num_v, 3):
        raise ModelFileFormatError(f"shapedirs has shape {shapedirs}, expected ({num_v}, 3, num_betas)")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= num_v:
        raise ModelFileFormatError(f"f has shape {faces.shape} or indices outside 0..{num_v - 1}")
    if kind == "mano" and (np.shape(data["hands_mean"]) != (45,) or np.shape(data["hands_components"])[-1:] != (45,)):
        raise ModelFileFormatError("hands_mean must be (45,) and hands_components (N, 45)")


# ---------------------------------------------------------------------------------------------------------------
# Writing synthetic files in the official layout
# ---------------------------------------------------------------------------------------------------------------

class _ChumpyLike:
    """Pickles exactly as a chumpy object of the class named by ``pickle_global`` would (NEWOBJ + state dict)."""

    pickle_global: tuple[str, str] = ("chumpy.ch", "Ch")

    def __init__(self, **state: Any) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: int) -> tuple:
        return copyreg.__newobj__, (type(self),), self.state


class _FakeCh(_ChumpyLike):
    pickle_global = ("chumpy.ch", "Ch")


def fake_chumpy(module: str, name: str, **state: Any) -> _ChumpyLike:
    """A stand-in that pickles as ``module.name`` (e.g. "chumpy.reordering", "Select") with ``state`` as its dict."""
    cls = type(name, (_ChumpyLike,), {"pickle_global": (module, name)})
    return cls(**state)


def fake_ch(x: np.ndarray) -> _ChumpyLike:
    """A ``chumpy.ch.Ch`` wrapping ``x``, with the bookkeeping entries chumpy's ``__getstate__`` leaves in."""
    return _FakeCh(x=x, _dirty_vars=set(), _itr=None, _depends_on_deps={}, _make_dense=False, _make_sparse=False)


class _OfficialPickler(pickle._Pickler):  # the pure-Python pickler lets us spell a class's global name
    def save_global(self, obj: Any, name: str | None = None) -> None:
        spelled = obj.__dict__.get("pickle_global") if isinstance(obj, type) else None
        if spelled is None:
            return super().save_global(obj, name)
        module, qualname = spelled
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.memoize(obj)


def dump_official_pickle(obj: Any, path: str | os.PathLike) -> None:
    """Pickle ``obj`` with protocol 2 (as the official Python-2 files), writing chumpy stand-ins as chumpy classes."""
    with open(path, "wb") as fh:
        _OfficialPickler(fh, protocol=2).dump(obj)


def _random_simplex_rows(rng: np.random.Generator, rows: int, cols: int, per_row: int) -> np.ndarray:
    """(rows, cols) non-negative matrix with ``per_row`` non-zeros per row summing to 1."""
    out = np.zeros((rows, cols))
    idx = np.stack([rng.choice(cols, per_row, replace=False) for _ in range(rows)]) if rows <= 64 else \
        rng.integers(0, cols, size=(rows, per_row))
    vals = rng.random((rows, per_row)) + 0.1
    np.add.at(out, (np.arange(rows)[:, None], idx), vals)
    return out / out.sum(1, keepdims=True)


def synthetic_model_data(kind: ModelKind = "smpl", seed: int = 0) -> dict[str, Any]:
    """Random arrays with the official keys, shapes and dtypes (float64 arrays, uint32 faces, uint32 root parent).

    Geometry is a noisy blob of the right size (metres: ~1.7 m body, ~0.2 m hand), not a human; blend shapes and
    skinning weights are small and random but valid (weights and regressor rows non-negative, summing to 1).
    """
    sizes = MODEL_SIZES[kind]
    num_v, num_j, num_f, num_p = (sizes[k] for k in ("num_vertices", "num_joints", "num_faces", "num_pose_basis"))
    rng = np.random.default_rng(seed)
    extent = np.array([0.6, 1.7, 0.3]) if kind == "smpl" else np.array([0.2, 0.1, 0.05])
    v_template = (rng.random((num_v, 3)) - 0.5) * extent
    faces = _random_faces(rng, num_f, num_v)
    j_regressor = _random_simplex_rows(rng, num_j, num_v, per_row=8)
    weights = _random_simplex_rows(rng, num_v, num_j, per_row=3)
    parents = SMPL_PARENTS if kind == "smpl" else MANO_PARENTS
    kintree = np.stack([np.array(parents, dtype=np.int64), np.arange(num_j, dtype=np.int64)])
    kintree[0, 0] = 4294967295  # the official files store the root's parent as uint32 -1
    import scipy.sparse as sp

    data: dict[str, Any] = {
        "v_template": v_template,
        "f": faces.astype(np.uint32),
        "J_regressor": sp.csc_matrix(j_regressor),
        "weights": weights,
        "posedirs": rng.normal(0.0, 1e-3, (num_v, 3, num_p)),
        "shapedirs": fake_ch(rng.normal(0.0, 1e-2, (num_v, 3, 10))),
        "kintree_table": kintree,
        "J": j_regressor @ v_template,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    if kind == "smpl":
        data["J_regressor_prior"] = sp.csc_matrix(j_regressor)
        data["weights_prior"] = weights.copy()
        data["vert_sym_idxs"] = rng.permutation(num_v).astype(np.int64)
        data["pose_training_info"] = {"rand_seed": 0, "sample_size": 1.0, "version": "synthetic"}
    else:
        q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
        data["hands_components"] = q.T
        data["hands_mean"] = rng.normal(0.0, 0.2, 45)
        data["hands_coeffs"] = rng.normal(0.0, 0.5, (16, 45))
    return data


def _random_faces(rng: np.random.Generator, num_faces: int, num_vertices: int) -> np.ndarray:
    """(F, 3) triangles of three distinct vertices each; every vertex is used when F >= V."""
    first = np.concatenate([np.arange(num_vertices), rng.integers(0, num_vertices, max(0, num_faces - num_vertices))])
    first = rng.permutation(first)[:num_faces]
    offset_b = rng.integers(1, num_vertices, num_faces)
    offset_c = rng.integers(1, num_vertices - 1, num_faces)
    offset_c = offset_c + (offset_c >= offset_b)  # skip the second vertex's offset: three distinct vertices
    return np.stack([first, (first + offset_b) % num_vertices, (first + offset_c) % num_vertices], 1)


def write_synthetic_smpl_file(path: str | os.PathLike, kind: ModelKind = "smpl",
                              fmt: Literal["pkl", "npz"] = "pkl", seed: int = 0) -> Path:
    """Write a random-but-valid SMPL (6890 v, 24 j) or MANO (778 v, 16 j) model file in the official layout.

    ``fmt="pkl"`` writes a protocol-2 pickle like the official files, with ``shapedirs`` as a (fake) ``chumpy.ch.Ch``
    and ``J_regressor`` as a scipy csc matrix, so reading it exercises the chumpy-free stub path. ``fmt="npz"``
    writes the same keys as dense arrays (strings and dicts dropped). Deterministic in ``seed``; returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = synthetic_model_data(kind, seed)
    if fmt == "pkl":
        dump_official_pickle(data, path)
    elif fmt == "npz":
        dense = {k: (v.state["x"] if isinstance(v, _ChumpyLike) else v.toarray() if hasattr(v, "toarray") else v)
                 for k, v in data.items() if not isinstance(v, (str, dict))}
        with open(path, "wb") as fh:  # np.savez would append ".npz" to a path without it
            np.savez(fh, **dense)
    else:
        raise ValueError(f"fmt must be 'pkl' or 'npz', got {fmt!r}")
    return path
