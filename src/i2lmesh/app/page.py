"""The web page (Gradio): photos, videos or a webcam snapshot in; overlays, a 3D view, joints and files out.

    service = MeshService(checkpoints={"body": "body.pt"})
    server = serve(service, host="127.0.0.1", port=7860)   # returns once the page answers
    ...
    server.close()                                          # stops the server, deletes the temporary files

The page's logic lives in :class:`~i2lmesh.app.core.MeshService`; this module only lays it out and wires it up.
Gradio is imported here only (the optional extra ``pip install "i2lmesh[app]"``); :func:`gradio_problem` says why it
cannot be used, without importing it twice.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .core import JOINT_COLUMNS, METHOD_LABELS, UNCERTAINTY_RED_MM, MeshService, RunResult

log = logging.getLogger(__name__)

TITLE = "i2lmesh: 3D body and hand meshes from photos"
INSTALL_HINT = 'pip install "i2lmesh[app]"'


def gradio_problem() -> str | None:
    """Why the page cannot be built here (Gradio missing or broken), or None."""
    try:
        import gradio  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the same thing to the user
        return f"the web page needs Gradio ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); " \
               f"install it with {INSTALL_HINT}"
    return None


def prepare_environment(service: MeshService) -> None:
    """Before Gradio is imported: its uploads and cache go into the service's work folder (deleted on close),
    and it sends no telemetry and makes no version check (the page works offline)."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(service.workdir / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _method_choices(service: MeshService, kind: str) -> list[tuple[str, str]]:
    return [(METHOD_LABELS.get(m, m), m) for m in service.methods(kind)]


def _table(rows: list[list[Any]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=JOINT_COLUMNS)


def build_page(service: MeshService):
    """The page as a ``gradio.Blocks`` (not yet launched). Element ids for scripts and tests: ``inputs`` (the file
    upload), ``run`` (the button), ``status`` (one line per input), ``overlay`` (the picture shown), ``overlays``
    (all pictures, when there are several), ``mesh-view`` (the 3D view), ``joints`` (the table), ``downloads``
    (the files)."""
    import gradio as gr

    kinds = service.kinds()
    first_kind = kinds[0]
    legend = (f"Colour: the network's per-vertex uncertainty (1 sigma), blue 0 mm to red {UNCERTAINTY_RED_MM:g} mm "
              "and more; fitted meshes (no heatmaps, no uncertainty) have one colour per person. Drag to turn, "
              "scroll to zoom.")
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(600, int(service.max_age_s))) as page:
        gr.Markdown(f"## {TITLE}\nUpload photos or a short video (or take a webcam snapshot), choose body or hand "
                    "and a method, and press **Make meshes**. Nothing leaves this computer.")
        runs = gr.State([])
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                files = gr.File(file_count="multiple", label=f"Photos or short videos (at most "
                                f"{service.max_upload_bytes / 2**20:g} MB each)", elem_id="inputs", height=180)
                with gr.Accordion("Webcam snapshot", open=False):
                    snapshot = gr.Image(sources=["webcam"], type="numpy", label="Webcam", elem_id="webcam")
                kind = gr.Radio(kinds, value=first_kind, label="What to find", elem_id="kind")
                method = gr.Radio(_method_choices(service, first_kind), value=service.default_method(first_kind),
                                  label="Method", elem_id="method")
                button = gr.Button("Make meshes", variant="primary", elem_id="run")
                status = gr.Markdown("Upload a photo or a video to start.", elem_id="status")
            with gr.Column(scale=2, min_width=400):
                overlay = gr.Image(label="Overlay (image | side view)", type="filepath", interactive=False,
                                   height=360, format="png", elem_id="overlay", buttons=["download", "fullscreen"])
                overlays = gr.Gallery(label="All pictures: click one to show it", columns=8, height=130,
                                      allow_preview=False, object_fit="contain", visible=False, elem_id="overlays",
                                      format="png")
                mesh = gr.Model3D(label="3D view", height=420, clear_color=(0.93, 0.94, 0.96, 1.0),
                                  elem_id="mesh-view")
                gr.Markdown(legend)
                joints = gr.Dataframe(value=_table([]), label="Joints (pixels of the original image; camera metres)",
                                      interactive=False, max_height=300, elem_id="joints")
                downloads = gr.File(label="Downloads (OBJ, GLB, JSON; MP4 for videos)", file_count="multiple",
                                    interactive=False, elem_id="downloads")

        def on_kind(chosen: str):
            return gr.Radio(choices=_method_choices(service, chosen), value=service.default_method(chosen))

        def on_run(uploaded, webcam, chosen_kind, chosen_method, progress=gr.Progress()):
            paths = [getattr(f, "name", f) for f in (uploaded or [])]
            result: RunResult = service.process(paths, chosen_kind, chosen_method, webcam,
                                                progress=lambda fraction, text: progress(fraction, desc=text))
            views = [(str(item.overlay), str(item.mesh) if item.mesh else None, item.joints)
                     for item in result.items]
            shown = views[result.first_mesh_index] if views else (None, None, [])
            thumbnails = gr.Gallery(value=[(str(item.overlay), item.name) for item in result.items],
                                    visible=len(result.items) > 1)
            return (result.status, shown[0], thumbnails, shown[1], _table(shown[2]),
                    [str(p) for p in result.downloads] or None, views)

        def on_select(views, event: gr.SelectData):
            index = event.index if isinstance(event.index, int) else 0
            if not views or index >= len(views):
                return gr.skip(), gr.skip(), gr.skip()
            picture, glb, rows = views[index]
            return picture, glb, _table(rows)

        on_select.__annotations__["event"] = gr.SelectData  # a real class: Gradio passes the event by its type

        kind.change(on_kind, kind, method, queue=False)
        button.click(on_run, [files, snapshot, kind, method],
                     [status, overlay, overlays, mesh, joints, downloads, runs], concurrency_limit=1)
        overlays.select(on_select, runs, [overlay, mesh, joints])
    return page


@dataclass
class Server:
    """A running page: ``url`` to open; :meth:`close` stops it and deletes the service's temporary files."""

    page: Any
    service: MeshService
    url: str

    def close(self) -> None:
        try:
            self.page.close()
        finally:
            self.service.close()


def serve(service: MeshService, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False) -> Server:
    """Build the page and start serving it in a background thread; returns once it answers. The upload limit is
    the service's ``max_upload_bytes`` (larger files are refused by the server before they are stored).
    Raises OSError when the port is taken."""
    prepare_environment(service)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests, one line each
    page = build_page(service)
    page.queue(default_concurrency_limit=1, max_size=32)
    _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=True, share=False,
                            show_error=False, quiet=quiet, max_file_size=service.max_upload_bytes, footer_links=[],
                            ssr_mode=False, mcp_server=False, enable_monitoring=False, run_history=False,
                            inbrowser=False)
    return Server(page, service, url)


__all__ = ["build_page", "serve", "Server", "gradio_problem", "prepare_environment", "TITLE"]
