"""ONNX export of the network and an ONNX Runtime runner that returns the same outputs as the PyTorch network.

The graph takes ``images`` (B, 3, S, S), RGB in [0, 1] (the checkpoint's mean/std is inside the graph, as in
PyTorch), and returns, all in heatmap bins: ``joints_hm`` (B,J,3), ``vertices_hm`` (B,V,3), ``joints_spread``
(B,J,3), ``vertices_spread`` (B,V,3), ``mesh_joints_hm`` (B,J,3), plus ``param_rotations`` (B,R,3,3) and
``param_shape`` (B,S) when the network has a parameter regressor. The model config, the topology, the faces and
the joint regressor J travel in the file's metadata (``i2lmesh.*`` keys), so :class:`OnnxNetwork` needs nothing but
the file. Joints in camera space are J x the decoded camera-space mesh (``inference.decode``, paper Eq. 7), not the
graph's ``mesh_joints_hm`` (J x the mesh in bins, which the training losses and the parameter regressor use):
:class:`OnnxNetwork` gives J as ``joint_regressor`` for that.

Needs the optional extra ``pip install i2lmesh[onnx]`` (onnx, onnxruntime). A paper-scale body network is a
~570 MB file (the weights, fp32).
"""
from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..nets.fast import fold_batchnorm
from ..nets.i2l import I2LMeshNet, I2LOutput

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("joints_hm", "vertices_hm", "joints_spread", "vertices_spread", "mesh_joints_hm")
PARAM_OUTPUT_NAMES = ("param_rotations", "param_shape")
META_PREFIX = "i2lmesh."
DEFAULT_OPSET = 17  # the TorchScript exporter's tested opset here; the dynamo exporter picks its own (>= 18)


class OnnxExportError(RuntimeError):
    """The network could not be exported or the ONNX packages are missing; the message says which and why."""


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxExportError(f"{module} is not installed: pip install i2lmesh[onnx]") from None


class _TupleOutputs(nn.Module):
    """The network with its outputs as a flat tuple in ``OUTPUT_NAMES`` order (what ONNX export needs)."""

    def __init__(self, net: I2LMeshNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(images)
        names = OUTPUT_NAMES + (PARAM_OUTPUT_NAMES if out.param_rotations is not None else ())
        return tuple(getattr(out, name) for name in names)


def _encode_array(array: torch.Tensor) -> str:
    """A float32 array as JSON {"shape", "float32_le_base64"}: exact and ~4x smaller than a JSON list of numbers."""
    values = array.detach().cpu().to(torch.float32).contiguous().numpy().astype("<f4")
    return json.dumps({"shape": list(values.shape), "float32_le_base64": base64.b64encode(values.tobytes()).decode()})


def _decode_array(text: str) -> torch.Tensor:
    """The inverse of :func:`_encode_array` (float32 tensor)."""
    entry = json.loads(text)
    values = np.frombuffer(base64.b64decode(entry["float32_le_base64"]), dtype="<f4")
    return torch.from_numpy(values.reshape(entry["shape"]).astype(np.float32))


def _export_torchscript(module: nn.Module, example: torch.Tensor, path: Path, names: list[str], dynamic: bool,
                        opset: int | None) -> None:
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic else None
    with warnings.catch_warnings():  # deprecation and tracer notices: the parity test is what counts
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset or DEFAULT_OPSET,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=axes, do_constant_folding=True)


def _export_dynamo(module: nn.Module, example: torch.Tensor, path: Path, names: list[str], dynamic: bool,
                   opset: int | None) -> None:
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=names, dynamic_shapes=shapes,
                                    optimize=True)
    program.save(str(path))


EXPORTERS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


@torch.no_grad()
def export_onnx(net: I2LMeshNet, path: str | os.PathLike, batch_dynamic: bool = True, optimise: bool = True,
                opset: int | None = None, exporter: str = "auto", batch_size: int = 1) -> Path:
    """Write ``net`` as an ONNX file at ``path`` (atomically) and return the path.

    ``optimise``: fold every BatchNorm into the layer before it (nets/fast.py) first: fewer nodes, same function.
    ``batch_dynamic``: the batch axis is symbolic; otherwise fixed to ``batch_size``.
    ``exporter``: "torchscript" (``dynamo=False``: fast, ~10 s and opset 17 for the paper network), "dynamo"
    (torch.export based), or "auto" (TorchScript, then dynamo if it fails).
    """
    onnx = _require("onnx")
    if exporter not in ("auto", *EXPORTERS):
        raise ValueError(f"exporter must be 'auto', 'torchscript' or 'dynamo', got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fold_batchnorm(net) if optimise else copy.deepcopy(net).eval()
    model = _TupleOutputs(model.float().cpu()).eval()
    size = net.config.input_size
    example = torch.rand(batch_size if not batch_dynamic else max(batch_size, 2), 3, size, size)
    names = list(OUTPUT_NAMES + (PARAM_OUTPUT_NAMES if net.param_regressor is not None else ()))

    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        errors = []
        for name in order:
            try:
                EXPORTERS[name](model, example, tmp_path, names, batch_dynamic, opset)
                break
            except Exception as exc:  # an exporter that cannot handle an op: try the next one
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                errors.append(f"{name}: {first}")
                log.debug("ONNX export with %s failed: %s", name, exc)
        else:
            raise OnnxExportError(f"could not export the network to ONNX ({'; '.join(errors)})")
        proto = onnx.load(str(tmp_path))
        metadata = {"model_config": json.dumps(net.config.to_dict()),
                    "topology": json.dumps(getattr(net, "topology", {})),
                    "faces": json.dumps(net.faces.cpu().tolist()),
                    "joint_regressor": _encode_array(net.joint_regressor),
                    "exporter": name, "bn_folded": json.dumps(bool(optimise))}
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, value
        if sum(t.ByteSize() for t in proto.graph.initializer) > 1_900_000_000:  # protobuf's 2 GB limit
            onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
        else:
            onnx.save(proto, str(tmp_path))
            os.replace(tmp_path, path)
    return path


class OnnxNetwork:
    """An exported network run by ONNX Runtime (CPU), called like the PyTorch network.

    ``net(images)`` takes (B,3,S,S) RGB in [0, 1] (torch tensor or numpy array) and returns an
    :class:`~i2lmesh.nets.i2l.I2LOutput` of torch tensors. ``config``, ``topology``, ``faces`` and
    ``joint_regressor`` (J, V) float32 come from the file's metadata (``joint_regressor`` is None in files exported
    before it was stored there). ``num_threads``: intra-op threads (default: ONNX Runtime's choice, one per core).
    ``spin``: let idle worker threads busy-wait for the next call (ONNX Runtime's default). Off here: on a shared
    or small machine the spinning threads steal the cores from everything else (PyTorch, decoding, rendering).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None,
                 providers: list[str] | None = None, spin: bool = False) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{self.path}: not a usable ONNX file ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_PREFIX + "model_config" not in meta:
            raise ValueError(f"{self.path}: not an i2lmesh ONNX export (no {META_PREFIX}model_config metadata)")
        self.config = ModelConfig.from_dict(json.loads(meta[META_PREFIX + "model_config"]))
        self.topology = json.loads(meta.get(META_PREFIX + "topology", "{}"))
        self.faces = torch.tensor(json.loads(meta[META_PREFIX + "faces"]), dtype=torch.long)
        regressor = meta.get(META_PREFIX + "joint_regressor")
        self.joint_regressor = None if regressor is None else _decode_array(regressor)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: torch.Tensor | np.ndarray) -> I2LOutput:
        array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        size = self.config.input_size
        assert array.ndim == 4 and array.shape[1:] == (3, size, size), \
            f"images should be (B, 3, {size}, {size}) RGB in [0, 1], got {tuple(array.shape)}"
        results = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(array, dtype=np.float32)})
        out = {name: torch.from_numpy(value) for name, value in zip(self.output_names, results)}
        return I2LOutput(**{name: out.get(name) for name in OUTPUT_NAMES + PARAM_OUTPUT_NAMES})

    forward = __call__

    def eval(self) -> "OnnxNetwork":
        return self


__all__ = ["export_onnx", "OnnxNetwork", "OnnxExportError", "OUTPUT_NAMES", "INPUT_NAME"]
