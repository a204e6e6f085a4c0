"""The web page (``i2lmesh app``, docs/app.md): the page's handlers without a browser (bad files, limits, temporary
files, videos, colours), then the real page in headless Chromium: a photo and a bad file uploaded, the overlay, the
3D view, the joints and the downloads shown, and a screenshot saved.

The browser test drives Debian's ``chromium`` with its ``chromium-driver`` through selenium (nothing downloads a
browser); ``.ci/run`` installs both. It skips, saying why, only where Gradio, selenium, chromium or chromedriver is
missing. Set ``I2LMESH_APP_SCREENSHOT=PATH`` to also save the screenshot there (docs/images/app.png was made so)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import trimesh

from i2lmesh import save_network
from i2lmesh.app.core import JOINT_COLUMNS, MeshService, uncertainty_colors
from tiny_net import tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(tiny_net(), path)
    return path


@pytest.fixture(scope="module")
def body_photo(tmp_path_factory) -> Path:
    """A rendered Anny body (256 px) that the keypoint detector finds."""
    from PIL import Image

    from i2lmesh.data.synth import SynthConfig, SynthRenderer

    sample = SynthRenderer(SynthConfig(kind="body", num=1, seed=7, size=256)).render_chunk(0)[0]
    path = tmp_path_factory.mktemp("photos") / "person.png"
    Image.fromarray(sample.image).save(path)
    return path


@pytest.fixture(scope="module")
def service(checkpoint, tmp_path_factory):
    svc = MeshService([checkpoint], max_upload_mb=1.0, keep_runs=2,
                      workdir=tmp_path_factory.mktemp("work"))
    yield svc
    svc.close()


def _bad_files(folder: Path) -> dict[str, Path]:
    files = {"garbage.png": b"this is not a png", "empty.jpg": b"", "notes.txt": b"hello",
             "big.png": b"\x89PNG" + bytes(2 * 1024 * 1024)}
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


# ----------------------------------------------------------------------------------------------------------------
# Without a browser


def test_a_bad_file_gives_one_line_and_the_others_complete(service, body_photo, tmp_path):
    bad = _bad_files(tmp_path)
    result = service.process([body_photo, *bad.values()], "body", "network")
    assert len(result.lines) == 5 and all("\n" not in line for line in result.lines)
    assert result.lines[0].startswith("✓ person.png: 1 body (network")
    reasons = dict(zip(bad, result.lines[1:]))
    assert reasons["garbage.png"] == "✗ garbage.png: not an image or an unsupported format"
    assert reasons["empty.jpg"] == "✗ empty.jpg: empty file"
    assert reasons["notes.txt"].startswith("✗ notes.txt: not a photo or video by its name")
    assert reasons["big.png"] == "✗ big.png: file too large (2.0 MB; the limit is 1 MB)"
    assert str(tmp_path) not in result.status  # upload folders mean nothing on the page
    assert result.failures == 4 and len(result.items) == 1
    item = result.items[0]
    assert item.people == 1 and item.overlay.is_file() and item.mesh is not None
    assert len(item.joints) == 5 and all(len(row) == len(JOINT_COLUMNS) for row in item.joints)
    assert all(isinstance(row[-1], float) for row in item.joints)  # the network's joint uncertainty
    assert sorted(p.suffix for p in result.downloads) == [".glb", ".json", ".mtl", ".obj"]
    # The OBJ download has the person as its own named object (and material), as the JSON names it.
    obj = next(p for p in result.downloads if p.suffix == ".obj")
    json_names = [p["mesh_name"] for p in json.loads(next(p for p in result.downloads
                                                          if p.suffix == ".json").read_text())["people"]]
    assert list(trimesh.load(obj, process=False, force="scene").geometry) == json_names == ["person_0"]
    # The 3D view's GLB as trimesh (and so a glTF viewer) reads it: the mesh coloured by its uncertainty.
    person = next(iter(trimesh.load(item.mesh, process=False, force="scene").geometry.values()))
    colours = person.visual.vertex_attributes["color"]
    assert person.vertices.shape == (40, 3) and colours.shape == (40, 4) and np.ptp(colours[:, :3]) > 0
    doc = json.loads(next(p for p in result.downloads if p.suffix == ".json").read_text())
    assert doc["num_people"] == 1 and doc["input"] == "person.png"


def test_methods_offered_and_an_unknown_method_is_one_line(service, body_photo):
    assert service.methods("body") == ["network", "network+fit", "fit"] and service.default_method("body") == "network"
    assert service.methods("hand") == ["fit"]  # no hand checkpoint: fitting only
    result = service.process([body_photo], "hand", "network")
    assert len(result.lines) == 1 and result.lines[0].startswith("Cannot run network for a hand: method 'network' is")


def test_old_runs_and_the_work_folder_are_deleted(checkpoint, body_photo, tmp_path):
    svc = MeshService([checkpoint], keep_runs=2)
    try:
        folders = [svc.process([body_photo], "body", "network").folder for _ in range(3)]
        assert not folders[0].exists() and folders[1].is_dir() and folders[2].is_dir()
        assert svc.run_folders() == folders[1:]
        assert svc.process([], "body", "network").status.startswith("Nothing to do")
    finally:
        svc.close()
    assert not svc.workdir.exists()


def test_video_frames_are_sampled_with_progress(service, body_photo, tmp_path):
    from PIL import Image

    from i2lmesh.inference.video import VideoWriter

    rgb = np.asarray(Image.open(body_photo))
    with VideoWriter(tmp_path / "clip.mp4", 10.0) as writer:
        for shift in range(0, 28, 4):  # 7 frames
            writer.write(np.roll(rgb, shift, axis=1))
    svc = MeshService([service.checkpoints["body"]], max_video_frames=3, workdir=tmp_path / "work")
    seen: list[float] = []
    result = svc.process([tmp_path / "clip.mp4"], "body", "network", progress=lambda f, text: seen.append(f))
    assert result.lines == [result.lines[0]] and result.lines[0].startswith("✓ clip.mp4: 3 frames, 1 frame in 3")
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 4
    assert {p.name for p in result.downloads} >= {"clip_overlay.mp4", "clip_frames.json"}
    doc = json.loads((result.folder / "clip_frames.json").read_text())
    assert [f["frame"] for f in doc["frames"]] == [0, 3, 6] and doc["frame_stride"] == 3
    assert [item.name for item in result.items][:1] == ["clip.mp4 frame 0"]


def test_uncertainty_colours():
    colours = uncertainty_colors(np.array([0.0, 50.0, 100.0, 400.0, np.nan, -3.0]))
    assert colours.shape == (6, 3) and colours.dtype == np.float32
    assert colours[0, 2] > colours[0, 0] and colours[2, 0] > colours[2, 2]  # blue at 0 mm, red at 100 mm
    np.testing.assert_allclose(colours[3], colours[2]) and np.testing.assert_allclose(colours[5], colours[0])
    np.testing.assert_allclose(colours[4], colours[2])


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    from i2lmesh.cli import main

    assert main(["app", "--checkpoint", str(tmp_path / "missing.pt"), "--no-warmup"]) == 2
    assert main(["app", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.pt" in err[0] and "--port" in err[1]


def test_page_layout_and_upload_limit(service):
    from i2lmesh.app.page import build_page, gradio_problem

    if gradio_problem():
        pytest.skip(f"page test skipped: {gradio_problem()}")
    page = build_page(service)
    ids = {c.get("props", {}).get("elem_id") for c in page.config["components"]}
    assert {"inputs", "run", "status", "overlay", "overlays", "mesh-view", "joints", "downloads"} <= ids
    methods = next(c for c in page.config["components"] if c.get("props", {}).get("elem_id") == "method")
    assert [choice[1] for choice in methods["props"]["choices"]] == service.methods("body")
    assert service.max_upload_bytes == 1024 * 1024  # what serve() gives Gradio's max_file_size


# ----------------------------------------------------------------------------------------------------------------
# The page in a real browser


def _browser_problem() -> str | None:
    from i2lmesh.app.page import gradio_problem

    problem = gradio_problem()
    if problem:
        return problem
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'selenium is not installed (pip install -e ".[test]")'
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: install Debian's {package} (apt-get install chromium chromium-driver; " \
                   ".ci/run does)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_page(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"i2lmesh app exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the page did not answer within {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, as root, offline: no sandbox, no background connections; WebGL through SwiftShader (no GPU).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--window-size=1400,1250"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(condition, timeout_s: float, what: str, driver):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    driver.save_screenshot("/tmp/i2lmesh_app_failure.png")
    pytest.fail(f"the page did not show {what} within {timeout_s:.0f} s (screenshot /tmp/i2lmesh_app_failure.png)")


@pytest.mark.slow
def test_page_in_headless_chromium(body_photo, checkpoint, tmp_path):
    problem = _browser_problem()
    if problem:
        pytest.skip(f"browser test skipped: {problem}")
    from selenium.webdriver.common.by import By

    from i2lmesh import Predictor

    fitting = hasattr(Predictor, "for_fitting")
    # The default page: fitting, no checkpoint (the network path is tested above without a browser).
    args = [] if fitting else ["--checkpoint", str(checkpoint)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    env.pop("GRADIO_TEMP_DIR", None)
    log = tmp_path / "server.log"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"not really a jpeg" * 10)
    with open(log, "wb") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "i2lmesh.cli", "app", *args, "--port", str(port),
                                   "--threads", "1"], stdout=log_file, stderr=subprocess.STDOUT, env=env)
    driver = None
    try:
        _wait_for_page(url, server, log)
        driver = _chrome()
        driver.get(url)
        upload = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#inputs input[type=file]"), 60,
                       "the upload field", driver)[0]
        upload.send_keys(f"{body_photo}\n{bad}")
        _wait(lambda: len(driver.execute_script("return Array.from(document.querySelectorAll('#inputs a'))"
                                                ".filter(a => a.href.includes('/gradio_api/file='))")) == 2,
              60, "both files uploaded", driver)
        driver.find_element(By.ID, "run").click()
        status = _wait(lambda: (t := driver.find_element(By.ID, "status").text) and "✓" in t and t, 120,
                       "a result line", driver)
        lines = status.strip().splitlines()
        assert lines[0].startswith("✓ person.png: 1 body (" + ("fit" if fitting else "network"))
        assert lines[1].startswith("✗ broken.jpg: ") and len(lines) == 2

        # The overlay: an <img> served by the page, loaded.
        overlay = _wait(lambda: driver.execute_script(
            "const i = document.querySelector('#overlay img');"
            "return i && i.complete && i.naturalWidth > 0 ? i.src : null;"), 30, "the overlay picture", driver)
        assert "/gradio_api/file=" in overlay
        # The 3D view: a WebGL canvas that shows something other than its background colour.
        canvas = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#mesh-view canvas"), 30, "the 3D view",
                       driver)[0]
        assert canvas.size["width"] > 100 and canvas.size["height"] > 100

        def mesh_drawn():
            from io import BytesIO

            from PIL import Image

            pixels = np.asarray(Image.open(BytesIO(canvas.screenshot_as_png)).convert("RGB"), np.float64)
            background = pixels[2, 2]
            return np.mean(np.abs(pixels - background).sum(-1) > 30) > 0.01  # > 1% of the view is the mesh
        _wait(mesh_drawn, 30, "a mesh in the 3D view", driver)
        method = "fit" if fitting else "network"
        table = _wait(lambda: driver.execute_script("return document.getElementById('joints').textContent"), 10,
                      "the joints table", driver)
        assert table.count(method) >= 5  # one row per joint, the method in each
        links = driver.execute_script("return Array.from(document.querySelectorAll('#downloads a')).map(a => a.href)")
        assert {link.rsplit("/", 1)[-1] for link in links} == {"person.obj", "person.mtl", "person.glb", "person.json"}
        driver.save_screenshot(str(tmp_path / "app.png"))
        if os.environ.get("I2LMESH_APP_SCREENSHOT"):
            driver.save_screenshot(os.environ["I2LMESH_APP_SCREENSHOT"])
        assert (tmp_path / "app.png").stat().st_size > 10_000
        with urllib.request.urlopen(url, timeout=5) as response:  # still serving after the bad file
            assert response.status == 200
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0, log.read_text()[-2000:]
    # Stopped: every temporary file it made (uploads, results, Gradio's cache) is gone.
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("i2lmesh-app-")], log.read_text()[-2000:]
