"""Video speed and stability of ``i2lmesh demo VIDEO --method fit`` (``VideoPredictor`` over ``Predictor.for_fitting``):
two pipelines run on the same frames, alternately frame by frame in one process (so both see the same machine
load); prints one JSON object.

    python benchmarks/bench_video_fit.py [VIDEO] [--frames 60] [--start 0] [--old-config JSON] [--out FILE]

Pipelines: "new" is the library's default (``VideoPredictor(predictor, fps)``: people followed by the landmark model
between full detections, warm fits as ``KeypointFitter``'s defaults); "old" runs the full detector on every frame
(``follow=False``) and the warm-fit settings given by ``--old-config`` (FitConfig overrides as JSON; default
``{"warm_iters": 5, "warm_shape": true, "relative_tolerance": 0}``, the settings before the video speed-ups).
Both use the same tracker.

Per pipeline (medians over frames with at least one person unless said otherwise):
- ``ms_per_person_{wall,cpu}``: the frame's time (detection, fits, everything in ``VideoPredictor.__call__``)
  divided by its number of people; CPU time is the process's (``time.process_time``: mediapipe's threads included),
  torch on one thread. ``ms_per_frame_*`` likewise per frame; ``*_mean`` are totals over all frames / people.
- ``residual_px``: each person's median keypoint reprojection residual (original px), median over people and frames;
  p90 too.
- ``keypoint_offset_px`` (new only): for each followed person, the median distance between the keypoints the fit
  used and those of the full detector on the same frame (the "old" pipeline's, person matched by box IoU >= 0.5);
  median, p90, and the share of people further than 5 % of their box's larger side ("drift").
- ``jitter_2d_px`` / ``jitter_3d_mm``: per track and three consecutive frames, the mean over joints of the
  second difference |x(t+1) - 2 x(t) + x(t-1)| of the fitted mesh's projected joints (px) and of its root-relative
  3D joints (mm); median and p90 over all such triples (walking people have a small true second difference).
- ``tracks``: distinct track ids, ``detections``: how many frames ran the full detector (both tile levels) / the
  detector only around lost people (searches between the periodic detections) / only followed people.

VIDEO defaults to ``../shared/photos/vtest.avi`` (OpenCV's pedestrian sample; 768x576, 10 fps).
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "photos" / "vtest.avi"
OLD_CONFIG = {"warm_iters": 5, "warm_shape": True, "relative_tolerance": 0.0}


def stats(values, digits: int = 1) -> dict:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if values.size == 0:
        return {"median": None, "p90": None, "n": 0}
    return {"median": round(float(np.median(values)), digits), "p90": round(float(np.percentile(values, 90)), digits),
            "n": int(values.size)}


def jitter(history: dict[int, dict[int, np.ndarray]]) -> list[float]:
    """Per track and frame triple (t-1, t, t+1) all present: mean over points of |x(t+1) - 2 x(t) + x(t-1)|."""
    out = []
    for frames in history.values():
        for t in frames:
            if t - 1 in frames and t + 1 in frames:
                out.append(float(np.linalg.norm(frames[t + 1] - 2 * frames[t] + frames[t - 1], axis=-1).mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--start", type=int, default=0, help="frames skipped first")
    parser.add_argument("--old-config", default=json.dumps(OLD_CONFIG))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from i2lmesh.fitting import FitConfig
    from i2lmesh.inference.detect import box_iou
    from i2lmesh.inference.predictor import Predictor
    from i2lmesh.inference.tracking import VideoPredictor
    from i2lmesh.inference.video import VideoReader

    with VideoReader(args.video, max_frames=args.start + args.frames) as reader:
        fps = reader.fps
        frames = [rgb for index, _, rgb in reader if index >= args.start]
    pipelines = {
        "old": VideoPredictor(Predictor.for_fitting("body", fit_config=FitConfig(**json.loads(args.old_config))),
                              fps, follow=False),
        "new": VideoPredictor(Predictor.for_fitting("body"), fps),
    }
    # warm-up: models loaded, priors built (not timed)
    for video in pipelines.values():
        video.predictor.predict(frames[0])
    rows = {name: [] for name in pipelines}
    joints2d = {name: {} for name in pipelines}
    joints3d = {name: {} for name in pipelines}
    for index, rgb in enumerate(frames):
        people_of = {}
        for name, video in pipelines.items():
            wall, cpu = time.perf_counter(), time.process_time()
            people = video(rgb)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            people_of[name] = people
            rows[name].append({"people": len(people), "wall": wall, "cpu": cpu, "detection": video.last_detection,
                               "residual": [p.fit["median_residual_px"] for p in people],
                               "warm": [p.fit["warm_start"] for p in people],
                               "evaluations": [p.fit["evaluations"] for p in people]})
            for p in people:
                joints2d[name].setdefault(p.track_id, {})[index] = p.joints_2d_px.astype(np.float64)
                rel = p.joints_m.astype(np.float64) - p.joints_m[p.root_index].astype(np.float64)
                joints3d[name].setdefault(p.track_id, {})[index] = rel * 1000.0
        # the new pipeline's keypoints against the full detector's on this frame (the old pipeline's)
        offsets = []
        reference = [p for p in people_of["old"] if p.keypoints_2d_px is not None]
        for p in people_of["new"]:
            if not reference or p.keypoints_2d_px is None:
                continue
            ious = box_iou(np.stack([r.box_xywh for r in reference]), p.box_xywh[None])[:, 0]
            best = int(np.argmax(ious))
            if ious[best] < 0.5:
                continue
            ref = reference[best]
            distance = float(np.median(np.linalg.norm(p.keypoints_2d_px - ref.keypoints_2d_px, axis=1)))
            offsets.append((distance, distance / max(p.box_xywh[2:])))
        rows["new"][-1]["offsets"] = offsets

    report = {"video": os.path.basename(args.video), "frames": len(frames), "start": args.start, "fps": fps,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "load_average": [round(v, 2) for v in os.getloadavg()]},
              "old_config": json.loads(args.old_config)}
    for name, video in pipelines.items():
        frame_rows = rows[name]
        with_people = [r for r in frame_rows if r["people"]]
        total_people = sum(r["people"] for r in frame_rows)
        entry = {
            "ms_per_person_wall": stats([1000 * r["wall"] / r["people"] for r in with_people]),
            "ms_per_person_cpu": stats([1000 * r["cpu"] / r["people"] for r in with_people]),
            "ms_per_person_wall_mean": round(1000 * sum(r["wall"] for r in frame_rows) / max(total_people, 1), 1),
            "ms_per_person_cpu_mean": round(1000 * sum(r["cpu"] for r in frame_rows) / max(total_people, 1), 1),
            "ms_per_frame_wall": stats([1000 * r["wall"] for r in frame_rows]),
            "ms_per_frame_cpu": stats([1000 * r["cpu"] for r in frame_rows]),
            "people_per_frame_mean": round(total_people / len(frame_rows), 2),
            "frames_without_people": sum(1 for r in frame_rows if not r["people"]),
            "residual_px": stats([v for r in frame_rows for v in r["residual"]], 2),
            "evaluations_warm": stats([e for r in frame_rows for e, w in zip(r["evaluations"], r["warm"]) if w]),
            "cold_fits_after_first_frame": sum(1 for r in frame_rows[1:] for w in r["warm"] if not w),
            "jitter_2d_px": stats(jitter(joints2d[name]), 2),
            "jitter_3d_mm": stats(jitter(joints3d[name]), 1),
            "tracks": len(joints2d[name]),
            "detections": {kind: sum(1 for r in frame_rows if r["detection"] == kind)
                           for kind in ("full", "local", "followed")},
        }
        if name == "new":
            offsets = [o for r in frame_rows for o in r.get("offsets", [])]
            entry["keypoint_offset_px"] = {**stats([o[0] for o in offsets]),
                                           "drift_share": round(float(np.mean([o[1] > 0.05 for o in offsets])), 3)
                                           if offsets else None}
        report[name] = entry
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
