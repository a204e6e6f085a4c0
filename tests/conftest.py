"""Shared fixtures. The Anny models are built once per session; if Anny's cache is missing (a fresh CI machine),
building it takes a few minutes, and the progress messages are shown live instead of being captured."""
from __future__ import annotations

import contextlib
import logging
import sys

import pytest
import torch


@contextlib.contextmanager
def _visible_build(request, key: str):
    """Show anny_cache's progress messages on the terminal while a missing cache is built."""
    from i2lmesh.bodymodels.anny_cache import is_built

    if is_built(key):
        yield
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    logger = logging.getLogger("i2lmesh.bodymodels.anny_cache")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)


@pytest.fixture(scope="session")
def anny_body(request):
    """AnnyBody on the reduced mesh (the default), built once per test session."""
    from i2lmesh.bodymodels.anny import AnnyBody

    with _visible_build(request, "body"):
        return AnnyBody(mesh="reduced")


@pytest.fixture(scope="session")
def anny_body_full(request, anny_body):
    from i2lmesh.bodymodels.anny import AnnyBody

    return AnnyBody(mesh="full")


@pytest.fixture(scope="session")
def anny_hand(request):
    """Right AnnyHand, built once per test session."""
    from i2lmesh.bodymodels.anny import AnnyHand

    with _visible_build(request, "hand"):
        return AnnyHand(side="right")


@pytest.fixture(scope="session")
def anny_hand_left(anny_hand):
    from i2lmesh.bodymodels.anny import AnnyHand

    return AnnyHand(side="left")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight other processes for the cores). Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
