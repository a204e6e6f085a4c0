"""``i2lmesh app``: the web page (docs/app.md). Photos, short videos or a webcam snapshot in; overlays, a 3D view
of the meshes, a joints table and OBJ/GLB/JSON files out. Needs the optional extra ``pip install "i2lmesh[app]"``.

Listens on 127.0.0.1 (this computer only) unless ``--host`` says otherwise. Stops on Ctrl-C or SIGTERM and then
deletes every temporary file it made (uploads included).

Exit codes: 0 stopped normally; 2 a usage error (Gradio missing, a checkpoint missing or of a repeated kind, the
port taken).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

from ..app.core import DEFAULT_MAX_FILES, DEFAULT_MAX_UPLOAD_MB, DEFAULT_MAX_VIDEO_FRAMES

HELP = "Start the web page: photos and videos in, 3D meshes, overlays and files out (needs the [app] extra)."

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="CKPT",
                        help="an i2lmesh checkpoint (.pt) for the methods network and network+fit; repeat for a "
                        "body and a hand network (default: none, the page offers fitting, which needs none)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                        "computer only; 0.0.0.0 lets the local network in)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--detector", choices=("auto", "hog", "mediapipe"), default="auto",
                        help="built-in detector (auto: mediapipe if installed, else HOG for bodies)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the network and the fit "
                        "(default: one per core; 1 is often faster on a machine busy with other work)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest file accepted, MB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES,
                        help=f"files per run (default {DEFAULT_MAX_FILES})")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_VIDEO_FRAMES,
                        help=f"video frames processed, sampled evenly over a longer video (default "
                        f"{DEFAULT_MAX_VIDEO_FRAMES})")
    parser.add_argument("--no-warmup", action="store_true", help="do not run the default method once on a "
                        "synthetic person at start (the first photo is then slower)")


def _warm_up(service) -> None:
    kind = service.kinds()[0]
    method = service.default_method(kind)
    try:
        log.info("app: warmed up (%s, %s) in %.1f s", kind, method, service.warm_up(kind, method))
    except Exception as exc:  # noqa: BLE001 - the page still serves; the first photo says what fails
        log.warning("app: warm-up failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def run(args: argparse.Namespace) -> int:
    from ..app.core import MeshService, ServiceError
    from ..app.page import gradio_problem, prepare_environment, serve
    from ..cli import UserError
    from ..inference.predictor import MAX_THREADS, BadInputError
    from ..nets.factory import CheckpointError

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {args.port}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise UserError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
    for name in ("max_upload_mb", "max_files", "max_frames"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    try:
        service = MeshService(args.checkpoint, device=args.device, detector=args.detector, threads=args.threads,
                              max_upload_mb=args.max_upload_mb, max_files=args.max_files,
                              max_video_frames=args.max_frames)
    except (ServiceError, CheckpointError, BadInputError) as exc:
        raise UserError(str(exc)) from None
    prepare_environment(service)  # before Gradio is first imported: its folders go into the service's
    problem = gradio_problem()
    if problem:
        service.close()
        raise UserError(problem)

    def stop(signum, frame):  # SIGTERM: stop like Ctrl-C, so that the temporary files are deleted
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server = None
    try:
        try:
            server = serve(service, host=args.host, port=args.port, quiet=True)
        except OSError as exc:
            raise UserError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); choose another "
                            "--port") from None
        methods = {kind: service.methods(kind) for kind in service.kinds()}
        log.info("app: serving %s (%s); Ctrl-C stops it", server.url,
                 "; ".join(f"{kind}: {', '.join(m)}" for kind, m in methods.items()))
        if not args.no_warmup:  # in the background: the page is up at once, a first photo waits for it
            threading.Thread(target=_warm_up, args=(service,), daemon=True, name="i2lmesh-app-warmup").start()

        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            log.info("app: stopping")
    finally:
        if server is not None:
            server.close()
        else:
            service.close()
    return 0
