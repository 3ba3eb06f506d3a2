"""The fused renderers of the synthetic scenes against their torch reference, on random scenes of
awkward sizes: ``data/synthetic/render_cpu.py`` (numba) and ``render_triton.py`` (Triton) against
``compositing.render_linear``, and the Triton flow kernel against ``flow.flow_and_valid``.

On CPU the Triton kernels run in Triton's interpreter. ``triton.jit`` reads ``TRITON_INTERPRET``
when the kernels are decorated, i.e. when ``flowdeblur.data.synthetic.render_triton`` is first
imported, so:

* ``TRITON_INTERPRET=1 pytest tests/test_synthetic_renderers.py`` runs the interpreter tests
  directly;
* a plain ``pytest tests/`` runs ``test_interpreter_suite_in_subprocess``, which re-runs this
  file's Triton tests in a child pytest with ``TRITON_INTERPRET=1`` (the parent skips the
  interpreter tests themselves, saying so).

The numba renderer runs in the parent process. Whole batches (every renderer through
``SyntheticScenes``, on the GPU too) are compared in ``tests/test_synthetic.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flowdeblur.data.synthetic import SceneConfig, compositing, render_cpu
from flowdeblur.data.synthetic.draw import draw_scenes
from flowdeblur.data.synthetic.flow import flow_and_valid
from flowdeblur.data.synthetic.geometry import layer_matrices, render_rows
from flowdeblur.data.synthetic.hashing import Draws
from flowdeblur.data.synthetic.render import fused_renderer
from flowdeblur.data.textures import linear_atlas, texture_bank
from flowdeblur.errors import UserError

if importlib.util.find_spec("triton") is not None:
    from flowdeblur.data.synthetic import render_triton

    INTERPRETED = render_triton._INTERPRETED
else:  # triton is optional: the numba tests still run
    render_triton = None
    INTERPRETED = False

needs_triton = pytest.mark.skipif(render_triton is None, reason="triton is not installed")
interpreter_only = pytest.mark.skipif(
    not INTERPRETED,
    reason="needs kernels built under TRITON_INTERPRET=1; run by "
    "test_interpreter_suite_in_subprocess",
)

# Largest allowed |kernel - reference| on linear values in [0, 1]. The kernels compute in
# another order and precision (bilinear taps by hand rather than grid_sample's normalised
# coordinates; numba in float64; exp2/log2 for the outline's norm in Triton): up to 5e-5
# measured on these cases, where a wrong tap, tint or layer order is off by 1e-2 or more.
TOL = 2e-4

# Awkward sizes: a single pixel; one row of 257 pixels (one 256-pixel block and a one-pixel
# tail); one column; 13x29 (two blocks, the second partial); exactly one block (16x16); a frame
# of small objects where whole blocks skip a layer. Layers: background only (no shape
# parameters at all), and slots some scenes leave unused. Sub-frames: one to five.
# (height, width, min_layers, max_layers, sub-frames, scenes, object radius)
CASES = [
    (1, 1, 0, 0, 1, 1, (0.15, 0.4)),
    (1, 257, 1, 2, 3, 2, (0.15, 0.4)),
    (19, 1, 2, 2, 2, 2, (0.15, 0.4)),
    (13, 29, 1, 3, 5, 3, (0.15, 0.4)),
    (16, 16, 3, 3, 1, 1, (0.3, 0.5)),
    (30, 44, 2, 3, 2, 1, (0.08, 0.12)),
]
IDS = [f"{c[0]}x{c[1]}-L{c[2]}..{c[3]}-S{c[4]}-N{c[5]}" for c in CASES]


def random_scenes(case, seed):
    """``render_linear``'s arguments for random scenes of ``case`` (as the engine builds them),
    and the maps of a flow from time 0 to time 1: (args, flow args)."""
    height, width, min_layers, max_layers, subframes, count, radius = case
    # The config's size sets the scale of the motions; 1-pixel frames are drawn as 2-pixel ones.
    cfg = SceneConfig(size=(max(height, 2), max(width, 2)), textures="mixed",
                      min_layers=min_layers, max_layers=max_layers, object_radius=radius,
                      max_camera_motion=8.0, max_object_motion=8.0, still_probability=0.0)
    sc = draw_scenes(Draws(seed, np.arange(count)), cfg, t_ref=0.0, span=1.0)
    frac = (np.arange(subframes) + 0.5) / subframes - 0.5
    times = sc.duty[:, None] * frac  # (N, S): the sub-frames of the exposure at t = 0
    bank = texture_bank(cfg.textures)
    tile = np.concatenate([bank.origins.numpy()[sc.tile], bank.sizes.numpy()[sc.tile] - 1.0], -1)

    def f32(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    shape = f32(sc.shape)
    rows = f32(render_rows(sc, layer_matrices(sc, times)))  # (N, L1, S, 5, 3)
    args = (linear_atlas(cfg.textures, "cpu", cfg.gamma), rows, f32(tile), f32(sc.tint), shape,
            height, width)
    mats = layer_matrices(sc, np.repeat([[0.0, 1.0]], count, 0))  # (N, L1, 2, 3, 3)
    inv_a = np.linalg.inv(mats[:, :, 0])
    flow_args = (f32(inv_a), f32(mats[:, :, 1] @ inv_a), f32(np.linalg.inv(mats[:, :, 1])), shape,
                 height, width)
    return args, flow_args


def assert_renders_like_reference(fn, args):
    want = compositing.render_linear(*args, chunk_points=1 << 16)
    got = fn(*args)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert not torch.isnan(got).any(), "NaN: an output element was never written"
    err = float((got - want).abs().max())
    assert err <= TOL, f"max |kernel - reference| = {err:.3g}"
    if args[1].shape[1] > 1 and args[-2] * args[-1] > 1:
        assert float(want.std()) > 0.01  # the scene is not flat: the comparison means something


# ---------------------------------------------------------------------------- numba


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_numba_renderer_matches_reference(case):
    args, _ = random_scenes(case, seed=sum(case[:6]))
    assert_renders_like_reference(render_cpu.render_linear, args)


def test_numba_renderer_follows_the_cache_rule(monkeypatch, tmp_path):
    """Built by the package's one numba rule (``ops.rnn_cpu``): cached on disk, and where no
    cache directory numba knows is writable, cached in a private temporary one instead of
    failing the import."""
    config = render_cpu.numba.core.config
    if not hasattr(config, "CACHE_LOCATOR_CLASSES"):
        pytest.skip("numba too old")
    assert render_cpu._render_rows._cache._cache_path  # a disk cache, not numba's NullCache
    # Only NUMBA_CACHE_DIR may be used, and it is unset: numba alone would raise on import.
    monkeypatch.setattr(config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        reloaded = importlib.reload(render_cpu)
        assert Path(reloaded._render_rows._cache._cache_path).is_relative_to(tmp_path)
    finally:
        monkeypatch.undo()
        importlib.reload(render_cpu)  # back to the kernel cached beside the module


def test_renderer_choice_on_cpu():
    cpu = torch.device("cpu")
    assert fused_renderer("torch", cpu) is None
    assert fused_renderer("auto", cpu).name == "numba"
    if render_triton is None:
        return
    if INTERPRETED:
        chosen = fused_renderer("triton", cpu)
        assert chosen.render_linear is render_triton.render_linear
        assert chosen.flow_and_valid is render_triton.flow_and_valid
        assert fused_renderer("auto", cpu).name == "numba"  # the interpreter is for tests only
    else:
        assert not render_triton.is_available("cpu")
        with pytest.raises(UserError, match="cannot run on cpu"):
            fused_renderer("triton", cpu)


# ---------------------------------------------------------------------------- interpreter


@interpreter_only
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_triton_renderer_matches_reference(case, monkeypatch):
    args, _ = random_scenes(case, seed=sum(case[:6]))
    real_empty = torch.empty

    def poisoned_empty(*a, **kw):  # an element no program writes stays NaN and fails
        return real_empty(*a, **kw).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    assert_renders_like_reference(render_triton.render_linear, args)


@interpreter_only
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_triton_flow_matches_reference(case):
    _, flow_args = random_scenes(case, seed=sum(case[:6]))
    flow, valid = render_triton.flow_and_valid(*flow_args)
    ref_flow, ref_valid = flow_and_valid(*flow_args)
    assert flow.shape == ref_flow.shape and valid.shape == ref_valid.shape
    # A pixel right at a threshold (alpha = 1/2: the owner layer; an edge margin) may go
    # either way; no more. The flow is compared everywhere, valid or not.
    allowed = max(1, valid.numel() // 500)
    flipped = int((valid != ref_valid).sum())
    assert flipped <= allowed, f"{flipped} valid bits differ"
    off = int(((flow - ref_flow).abs() > 1e-3).any(1).sum())
    assert off <= allowed, f"{off} flow vectors differ"


# ---------------------------------------------------------------------------- any process


@needs_triton
@pytest.mark.skipif(INTERPRETED, reason="already running under the interpreter")
def test_interpreter_suite_in_subprocess():
    """Runs this file's Triton tests in a child pytest with TRITON_INTERPRET=1."""
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
           "-k", "triton or choice"]
    child = subprocess.run(cmd, env={**os.environ, "TRITON_INTERPRET": "1"},
                           capture_output=True, text=True, timeout=900)
    # Every selected test passed, none skipped (as they would be were the variable not read).
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ""
    assert child.returncode == 0 and summary.startswith(f"{2 * len(CASES) + 1} passed,"), \
        child.stdout[-6000:] + child.stderr[-3000:]
