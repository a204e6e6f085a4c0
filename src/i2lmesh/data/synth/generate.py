"""The synthetic dataset generator: random posed Anny bodies (or right hands) rendered over random backgrounds,
with exact ground truth, written in our on-disk format (``data/formats/i2lmesh.py``, docs/datasets.md).

Per sample (index i of a run with seed S):
1. the body model's sampler draws pose and shape for a chunk of :data:`CHUNK_SIZE` consecutive samples from a torch
   generator seeded by (S, kind, chunk); a numpy generator seeded by ``SeedSequence([S, kind, i])`` draws everything
   else of sample i, starting with the camera intrinsics and the root orientation (``scene``);
2. the body model poses the mesh with the root at the origin; ``scene.place_in_view`` picks the root translation
   (mostly in view, sometimes truncated at a border); vertices and joints are then exactly what
   ``model.forward(pose, shape, trans)`` returns for the recorded parameters;
3. per-vertex skin/clothing colours and a light (``appearance``) are rendered with the numba z-buffer
   (``render.render_mesh``), composited with a softened outline over a background (``backgrounds``), maybe partly
   hidden by occluders (``occluders``), given a little blur and sensor noise, and saved as JPEG.

Determinism: a sample depends only on (seed, kind, index, size, options): samples are made in fixed chunks of
:data:`CHUNK_SIZE` consecutive indices (one batched sampler call and body-model forward per chunk, always of the
full chunk, so a dataset of N samples is the first N of a larger one), every process runs torch with one thread, and
the chunks are spread over worker processes with the results gathered in index order. Same seed, same bytes,
whatever the number of workers.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from ...render import render_mesh
from ...render.common import project_points
from .appearance import body_parts, sample_lighting, sample_vertex_colors
from .backgrounds import BackgroundSource
from .occluders import sample_occluders
from .scene import SCENE_SETTINGS, place_in_view, sample_intrinsics, sample_root_rotation

log = logging.getLogger(__name__)

CHUNK_SIZE = 16  # samples per batched body-model forward; part of the definition of a dataset, do not vary
KIND_CODES = {"body": 0, "hand": 1}
IMAGE_DIR = "images"


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic dataset (same config, same bytes).

    kind: "body" (Anny body, SMPL_29 joints) or "hand" (right Anny hand, MANO_21 joints). num: samples.
    seed: non-negative integer. size: square image side, pixels. backgrounds: a folder of images, or None for
    procedural backgrounds. mesh: the body mesh ("reduced" 6,890 or "full" 13,718 vertices; ignored for hands).
    occluder_prob: share of samples with occluders (None: 0.25 body, 0.2 hand). jpeg_quality: 1-95.
    save_vertices: also store the camera-space vertices (``vertices_<V>.npy``; 83 kB per body sample).
    """

    kind: str = "body"
    num: int = 1000
    seed: int = 0
    size: int = 256
    backgrounds: str | None = None
    mesh: str = "reduced"
    occluder_prob: float | None = None
    jpeg_quality: int = 92
    save_vertices: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KIND_CODES:
            raise ValueError(f"kind should be 'body' or 'hand', got {self.kind!r}")
        if self.num < 0 or self.seed < 0 or self.size < 16:
            raise ValueError(f"need num >= 0, seed >= 0 and size >= 16, got num={self.num}, seed={self.seed}, "
                             f"size={self.size}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality should be in 1..95, got {self.jpeg_quality}")

    @property
    def occluders(self) -> float:
        return self.occluder_prob if self.occluder_prob is not None else (0.25 if self.kind == "body" else 0.2)


@dataclass
class SynthSample:
    """One generated sample, in memory.

    index; image (H, W, 3) uint8 as saved (before JPEG); jpeg: the file's bytes; body_mask (H, W) bool: the
    rendered silhouette before occluders; occluder_mask (H, W) bool or None; vertices_cam_m (V, 3) float32;
    record: the :class:`SampleRecord` written for it (image_path relative to the dataset folder).
    """

    index: int
    image: np.ndarray
    jpeg: bytes
    body_mask: np.ndarray
    occluder_mask: np.ndarray | None
    vertices_cam_m: np.ndarray
    record: object = field(repr=False)


def sample_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The numpy generator of one sample: a function of (seed, kind, index) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), KIND_CODES[kind], int(index)])))


def chunk_torch_seed(seed: int, kind: str, chunk: int) -> int:
    """Seed of the torch generator that samples the poses and shapes of one chunk."""
    state = np.random.SeedSequence([int(seed), KIND_CODES[kind], int(chunk), 0x9E3779B9]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


_NOISE_BANKS: dict[int, np.ndarray] = {}


def sensor_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 unit Gaussian noise: a random window of a fixed bank (same in every process), ~10x
    cheaper than drawing fresh normals per image."""
    if size not in _NOISE_BANKS:
        _NOISE_BANKS[size] = np.random.default_rng(20200715).standard_normal((2 * size, 2 * size, 3), np.float32)
    oy, ox = rng.integers(size, size=2)
    return _NOISE_BANKS[size][oy:oy + size, ox:ox + size]


def image_name(index: int) -> str:
    return f"{IMAGE_DIR}/{index:08d}.jpg"


@contextlib.contextmanager
def single_threaded_torch():
    """Run torch with one intra-op thread (results must not depend on the thread count), then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SynthRenderer:
    """Makes samples for one config; holds the body model and its part labels (build one per process)."""

    def __init__(self, config: SynthConfig, model=None) -> None:
        from ...bodymodels import create_body_model

        self.config = config
        self.settings = SCENE_SETTINGS[config.kind]
        if model is None:
            model = create_body_model("anny", "body", mesh=config.mesh) if config.kind == "body" else \
                create_body_model("anny", "hand", side="right")
        self.model = model
        self.faces = model.faces.cpu().numpy()
        # The J x V joint regressor as sparse rows: numpy's multi-threaded BLAS is slow for a 29 x 6890 product
        # on a busy machine (and threads would compete with the other workers).
        regressor = model.joint_regressor.cpu().numpy().astype(np.float64)
        rows, cols = np.nonzero(regressor)
        self._reg_cols, self._reg_weights = cols, regressor[rows, cols]
        self._reg_starts = np.searchsorted(rows, np.arange(len(regressor)))
        assert np.all(np.diff(self._reg_starts) > 0), "every joint regressor row should have a non-zero weight."
        with torch.no_grad():
            rest = model(torch.zeros(1, model.num_bones, 3))
        self.parts = body_parts(rest.vertices_m[0].numpy(), rest.joints_m[0].numpy(), model.joint_names,
                                config.kind)
        self.backgrounds = BackgroundSource(config.backgrounds)
        self.size = config.size

    def _regress(self, vertices_m: np.ndarray) -> np.ndarray:
        """(J, 3) float64 joints = joint_regressor x vertices (V, 3), the model's regression."""
        weighted = self._reg_weights[:, None] * vertices_m[self._reg_cols]
        return np.add.reduceat(weighted, self._reg_starts, axis=0)

    def render_chunk(self, chunk: int, indices=None) -> list[SynthSample]:
        """Samples of chunk ``chunk`` (indices chunk*CHUNK_SIZE ...), restricted to ``indices`` < num."""
        cfg = self.config
        first = chunk * CHUNK_SIZE
        wanted = [i for i in range(first, first + CHUNK_SIZE) if i < cfg.num] if indices is None else list(indices)
        # Pose and shape for the whole chunk from one torch generator (the body-model sampler is batched);
        # everything else from each sample's own numpy generator. Always the full chunk: the batch must not vary.
        generator = torch.Generator().manual_seed(chunk_torch_seed(cfg.seed, cfg.kind, chunk))
        with single_threaded_torch():
            params = self.model.sample_params(CHUNK_SIZE, generator)
        pose = params["pose"].clone()
        rngs, intrinsics = [], []
        for k in range(CHUNK_SIZE):
            rng = sample_rng(cfg.seed, cfg.kind, first + k)
            intrinsics.append(sample_intrinsics(rng, self.size, self.settings))
            pose[k, 0] = torch.as_tensor(sample_root_rotation(rng, cfg.kind, self.settings), dtype=torch.float32)
            rngs.append(rng)
        with torch.no_grad(), single_threaded_torch():
            posed = self.model(pose, params["shape"]).vertices_m.numpy()
        pose, shape = pose.numpy(), params["shape"].numpy()
        out = []
        for index in wanted:
            k = index - first
            assert 0 <= k < CHUNK_SIZE, f"index {index} is not in chunk {chunk}."
            out.append(self._finish(index, rngs[k], pose[k], shape[k], intrinsics[k], posed[k]))
        return out

    def _finish(self, index: int, rng: np.random.Generator, pose: np.ndarray, shape: np.ndarray, K: np.ndarray,
                vertices_root_m: np.ndarray) -> SynthSample:
        from ..record import SampleRecord

        cfg, S = self.config, self.size
        placement = place_in_view(vertices_root_m.astype(np.float64), K, S, rng, self.settings)
        trans = placement.trans_m.astype(np.float32)
        vertices = vertices_root_m + trans  # float32, as model.forward adds trans
        joints = self._regress(vertices)
        joints_img = project_points(joints, K)

        albedo = sample_vertex_colors(rng, self.parts)
        light = sample_lighting(rng)
        albedo = np.clip(albedo * light.tint, 0.0, 1.0)
        render = render_mesh(vertices, self.faces, K, (S, S), vertex_colors=albedo, light_dir=light.light_dir,
                             ambient=light.ambient, backend="numba")
        image = self.backgrounds.sample(rng, (S, S))
        mask = render.mask
        # Soften the outline (a rendered edge is aliased, a photographed one is not): pixels of the silhouette
        # with background neighbours let some background through, in proportion to the 3x3 box mean of the mask.
        box_mean = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.BoxBlur(1)),
                              dtype=np.float32) * (1.0 / 255.0)
        alpha = np.where(mask, 0.4 + 0.6 * box_mean, 0.0)[..., None]
        image = image * (1.0 - alpha) + render.color * alpha
        ys, xs = np.nonzero(mask)
        bbox = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], np.float64) \
            if len(xs) else np.array([0.0, 0.0, 0.0, 0.0])
        occluder = sample_occluders(rng, (S, S), np.array([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]),
                                    cfg.occluders)
        occluder_mask = None
        if occluder is not None:
            colour, occluder_mask = occluder
            image[occluder_mask] = colour[occluder_mask]
        noise = rng.uniform(0.0, 0.025)
        image = image + noise * sensor_noise(rng, S)
        pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        blur = rng.uniform(0.3, 1.0) if rng.uniform() < 0.25 else 0.0
        picture = Image.fromarray(pixels)
        if blur > 0.0:
            picture = picture.filter(ImageFilter.BoxBlur(blur))  # ~10x cheaper than GaussianBlur at this radius
            pixels = np.asarray(picture)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=cfg.jpeg_quality)

        in_image = (joints_img[:, 0] >= -0.5) & (joints_img[:, 0] < S - 0.5) & (joints_img[:, 1] >= -0.5) & \
            (joints_img[:, 1] < S - 0.5)
        covered = float((mask & occluder_mask).sum() / max(mask.sum(), 1)) if occluder_mask is not None else 0.0
        record = SampleRecord(
            image_path=image_name(index), image_size=(S, S), bbox_xywh=bbox, K=K, kind=cfg.kind,
            joint_set=self.model.joint_set, joints_img_px=joints_img, joints_cam_m=joints,
            joints_valid=np.ones(len(joints)), has_3d=True, body_model=self.model.name,
            body_params={"pose": pose, "shape": shape, "trans": trans}, vertices_cam_m=vertices
            if cfg.save_vertices else None, fit_valid=True, root_depth_m=float(joints[self.model.root_index, 2]),
            vertex_flip_index=self.model.flip_index.numpy() if cfg.save_vertices and cfg.kind == "body" else None,
            sample_id=f"synth-{cfg.kind}-{cfg.seed}-{index:08d}", dataset="synthetic",
            extra={"truncated": placement.truncated, "occluded_fraction": round(covered, 4),
                   "joints_in_image": in_image.astype(int).tolist(), "mesh": cfg.mesh if cfg.kind == "body" else
                   "hand.R", "light_dir": [round(float(x), 6) for x in light.light_dir],
                   "ambient": round(light.ambient, 6)})
        return SynthSample(index=index, image=pixels, jpeg=buffer.getvalue(), body_mask=mask,
                           occluder_mask=occluder_mask, vertices_cam_m=vertices, record=record)


# ---------------------------------------------------------------------------------------------- worker processes
_WORKER: dict = {}


def _init_worker(config: SynthConfig, out_dir: str) -> None:
    torch.set_num_threads(1)  # also keeps a forked OpenMP runtime from using the parent's thread pool
    _WORKER["renderer"] = SynthRenderer(config)
    _WORKER["out_dir"] = Path(out_dir)


def _save_chunk(renderer: SynthRenderer, chunk: int, out_dir: Path) -> list:
    """Render one chunk, write its images, return its records (image paths absolute)."""
    records = []
    for sample in renderer.render_chunk(chunk):
        path = out_dir / sample.record.image_path
        path.write_bytes(sample.jpeg)
        sample.record.image_path = str(path)
        records.append(sample.record)
    return records


def _worker_chunk(chunk: int) -> list:
    return _save_chunk(_WORKER["renderer"], chunk, _WORKER["out_dir"])


def generate(config: SynthConfig, out_dir: str | os.PathLike, workers: int = 1, progress: bool = True) -> Path:
    """Generate ``config.num`` samples into ``out_dir`` (images/ + annotations.json); returns the annotation path.

    workers: processes rendering chunks in parallel (1 = this process). The output does not depend on it.
    progress: show a tqdm progress bar on stderr.
    """
    from tqdm import tqdm

    from ..formats.i2lmesh import write_dataset

    out_dir = Path(out_dir).resolve()
    (out_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    num_chunks = math.ceil(config.num / CHUNK_SIZE)
    workers = max(1, min(int(workers), num_chunks or 1))
    # Fail here with a clear message rather than in every worker's initializer: check the background folder, and
    # build Anny's cache once, with progress, if this machine lacks it.
    BackgroundSource(config.backgrounds)
    if workers > 1:
        from ...bodymodels.anny_cache import is_built
        if not is_built(config.kind):
            log.info("synth: building Anny's %s cache once before starting %d workers", config.kind, workers)
            SynthRenderer(config)
    records: list = []
    bar = tqdm(total=config.num, unit="img", desc=f"synth {config.kind}", disable=not progress, file=sys.stderr)
    if workers == 1:
        renderer = SynthRenderer(config)
        for chunk in range(num_chunks):
            records += _save_chunk(renderer, chunk, out_dir)
            bar.update(CHUNK_SIZE if chunk < num_chunks - 1 else config.num - chunk * CHUNK_SIZE)
    else:
        # fork shares the parent's imports (fast start); the body model is built in each worker, never inherited.
        context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        # A process pool that raises (BrokenProcessPool) when a worker dies, rather than waiting for it forever.
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(config, str(out_dir))) as pool:
            for chunk_records in pool.map(_worker_chunk, range(num_chunks)):
                records += chunk_records
                bar.update(len(chunk_records))
    bar.close()
    info = {"generator": "i2lmesh synth", "config": asdict(config), "chunk_size": CHUNK_SIZE,
            "bbox_3d_size_m": SCENE_SETTINGS[config.kind].bbox_3d_size_m}
    json.dumps(info)  # fail early on anything not serialisable
    return write_dataset(records, out_dir, copy_images=False, info=info)


__all__ = ["SynthConfig", "SynthSample", "SynthRenderer", "generate", "sample_rng", "CHUNK_SIZE", "image_name"]
