"""Shared test fixtures and the ``gpu`` marker.

Tests that need CUDA carry ``@pytest.mark.gpu`` and nothing else (no alias, no wrapper): the
hook below skips them on machines without CUDA, so ``pytest -m gpu`` selects every GPU test
there is.

Where shared test code lives:

* a fixture (what pytest passes to a test by its parameter name) that more than one file uses
  is defined here, and only here;
* a plain function, class or constant that more than one file calls is in ``tests/helpers.py``,
  imported by name (``from helpers import smooth_frames``);
* a test file imports neither another test file nor this conftest.

``tests/test_layout.py`` checks the last rule and the one spelling of the gpu marker.

Test files are named after what they test: ``test_<module>.py`` for a module
(``test_warp.py``: ``ops/warp.py``), with its package in front where the module's name alone
says little or the file covers several modules of one package (``test_media_video.py``:
``media/video_reader.py`` and ``media/video_writer.py``; ``test_training_checkpoint.py``);
``test_cli_<command>.py`` for what a command does beyond its modules; ``test_<script>.py`` for
a script of ``references/``; a behaviour that spans modules is named after the behaviour
(``test_output_ownership.py``, ``test_video_fidelity.py``, ``test_layout.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The package is imported inside the fixtures, so that a file that uses none of them (the
# layout checks, a child pytest of one file) does not import it here.


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """A weights file of the full network with random (seed 0) weights; do not change it."""
    from flowdeblur.models import FlowDeblurNet
    from flowdeblur.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(FlowDeblurNet("full"), path)
    return path


@pytest.fixture
def frames_dir(tmp_path) -> Path:
    """A folder of four 64x48 PNG frames of smooth_frames, shot_000.png ... shot_003.png."""
    from helpers import smooth_frames

    from flowdeblur.media import write_image

    folder = tmp_path / "frames"
    for i, frame in enumerate(smooth_frames(4)):
        write_image(folder / f"shot_{i:03d}.png", frame)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny tensors: with the 2 cores shared, OpenMP threads
    mostly wait on each other. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
