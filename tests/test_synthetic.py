"""Synthetic scenes: physics of the blur, ground-truth flow, determinism, textures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes, make_clip
from flowdeblur.data.synthetic.draw import draw_scenes
from flowdeblur.data.synthetic.geometry import layer_matrices
from flowdeblur.data.synthetic.hashing import Draws
from flowdeblur.data.synthetic.subframes import needed_subframes
from flowdeblur.data.textures import EXCLUDED_FILES, PHOTO_FILES, skimage_data_dir, texture_bank
from flowdeblur.errors import UserError
from flowdeblur.ops import warp


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.bool().expand_as(a)
    mse = ((a - b)[m] ** 2).mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def smooth_config(**kw) -> SceneConfig:
    base = dict(size=(64, 64), textures="smooth", max_layers=3, max_camera_motion=10.0,
                max_object_motion=10.0, still_probability=0.0, noise_std=(0.0, 0.0))
    base.update(kw)
    return SceneConfig(**base)


def test_batch_shapes_ranges_and_quantisation():
    cfg = SceneConfig(size=(40, 56), max_layers=2, three_frames=True, max_camera_motion=10.0,
                      max_object_motion=10.0)
    b = SyntheticScenes(cfg, seed=5).sample(2)
    for k in ("frame_t", "frame_next", "frame_prev", "sharp_t", "sharp_next", "sharp_prev"):
        assert b[k].shape == (2, 3, 40, 56) and b[k].dtype == torch.float32
        assert float(b[k].min()) >= 0 and float(b[k].max()) <= 1
        codes = b[k] * 255
        torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    for k in ("flow", "flow_prev"):
        assert b[k].shape == (2, 2, 40, 56)
    for k in ("valid", "valid_prev"):
        assert b[k].shape == (2, 1, 40, 56)
        assert set(torch.unique(b[k]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("quantize", [False, True])
def test_zero_motion_blur_equals_sharp(quantize):
    cfg = SceneConfig(size=(48, 40), still_probability=1.0, noise_std=(0.0, 0.0),
                      quantize=quantize, max_layers=3, min_layers=1)
    gen = SyntheticScenes(cfg, seed=1)
    b = gen.sample(3)
    assert gen.last_subframes == 1
    torch.testing.assert_close(b["frame_t"], b["sharp_t"], atol=1e-6, rtol=0)
    torch.testing.assert_close(b["frame_next"], b["sharp_next"], atol=1e-6, rtol=0)
    torch.testing.assert_close(b["sharp_t"], b["sharp_next"], atol=1e-6, rtol=0)
    assert float(b["flow"].abs().max()) < 1e-3
    # Objects are there (the check is not vacuous): the frame is not one texture.
    assert float(b["valid"].mean()) < 1.0


def test_constant_translation_is_a_box_filter_along_the_motion():
    """A pure pan at constant speed v with duty cycle 1: frame_t = the sharp frame averaged
    along the segment [-v/2, v/2], in linear light."""
    cfg = smooth_config(size=(56, 56), max_layers=0, camera_motions=("pan",),
                        acceleration=0.0, duty_cycle=(1.0, 1.0), motion_range=(1.0, 1.0),
                        max_camera_motion=7.0, quantize=False)
    b = SyntheticScenes(cfg, seed=2).sample(2)
    gamma = cfg.gamma
    for i in range(2):
        flow = b["flow"][i : i + 1]
        v = flow[0, :, 0, 0]
        torch.testing.assert_close(flow, v.view(1, 2, 1, 1).expand_as(flow))  # a pure pan
        assert 6.9 < float(v.norm()) < 7.1
        lin = b["sharp_t"][i : i + 1] ** gamma
        taus = (torch.arange(64) + 0.5) / 64 - 0.5

        def box(direction: torch.Tensor, lin=lin, taus=taus) -> torch.Tensor:
            # The scene at time tau shows sharp_t moved by v tau: I_tau(p) = I_0(p - v tau).
            acc = sum(warp(lin, (-direction * t).view(1, 2, 1, 1).expand(1, 2, 56, 56))
                      for t in taus)
            return (acc / len(taus)) ** (1 / gamma)

        m = 6  # pixels whose whole blur path stays inside the image
        inner = (slice(None), slice(None), slice(m, -m), slice(m, -m))
        blur = b["frame_t"][i : i + 1][inner]
        err = (box(v)[inner] - blur).abs()
        assert float(err.max()) < 0.01, float(err.max())
        # The check discriminates: no blur, or blur across the motion, is far off.
        across = torch.stack([-v[1], v[0]])
        assert float((b["sharp_t"][i : i + 1][inner] - blur).abs().mean()) > 5 * float(err.mean())
        assert float((box(across)[inner] - blur).abs().mean()) > 5 * float(err.mean())


@pytest.mark.parametrize("three", [False, True])
def test_warping_sharp1_by_flow_reproduces_sharp0(three):
    cfg = smooth_config(three_frames=three)
    b = SyntheticScenes(cfg, seed=11).sample(3)
    pairs = [("sharp_next", "flow", "valid")] + ([("sharp_prev", "flow_prev", "valid_prev")]
                                              if three else [])
    for other, fk, vk in pairs:
        warped = warp(b[other], b[fk])
        for i in range(3):
            valid = b[vk][i : i + 1]
            assert float(valid.mean()) > 0.3
            good = masked_psnr(warped[i : i + 1], b["sharp_t"][i : i + 1], valid)
            assert good >= 40
            # ...and the flow matters: without it the frames differ much more.
            if float(b[fk][i].norm(dim=0).mean()) > 1.5:
                assert masked_psnr(b[other][i : i + 1], b["sharp_t"][i : i + 1], valid) < good - 8


def test_valid_mask_excludes_occlusions():
    """Pixels the flow sends out of the image, or under another layer, are invalid, and
    warping is wrong there more often than on valid pixels."""
    cfg = smooth_config(size=(64, 64), max_layers=4, min_layers=3, max_object_motion=14.0)
    b = SyntheticScenes(cfg, seed=4).sample(3)
    h, w = 64, 64
    xs = torch.arange(w).view(1, 1, w) + b["flow"][:, 0]
    ys = torch.arange(h).view(1, h, 1) + b["flow"][:, 1]
    outside = (xs < 0) | (xs > w - 1) | (ys < 0) | (ys > h - 1)
    assert not bool((b["valid"][:, 0].bool() & outside).any())
    err = (warp(b["sharp_next"], b["flow"]) - b["sharp_t"]).abs().amax(1, keepdim=True)
    bad = err > 0.05
    valid = b["valid"].bool()
    assert float(bad[valid].float().mean()) < 0.002
    assert float(bad[~valid & ~outside[:, None]].float().mean()) > 0.02


def test_subframes_keep_every_step_within_a_pixel():
    """Consecutive sub-frames never move a visible point by more than max_subframe_step."""
    cfg = SceneConfig(size=(64, 80), max_camera_motion=24.0, max_object_motion=24.0)
    draws = Draws(3, np.arange(12))
    sc = draw_scenes(draws, cfg, t_ref=0.0, span=1.0)
    frames = np.array([0.0, 1.0])
    need = needed_subframes(sc, frames, cfg)  # (N, F)
    assert need.max() > 5  # some real motion
    ys, xs = np.mgrid[0:64:4, 0:80:4]
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 0)  # (3, P)
    for fi, f in enumerate(frames):
        for n in range(12):
            s = need[n, fi]
            frac = (np.arange(s) + 0.5) / s - 0.5
            times = (f + sc.duty[n] * frac)[None]
            one = sc.take(np.array([n]))
            mats = layer_matrices(one, times)[0]  # (L+1, S, 3, 3)
            mid = np.linalg.inv(layer_matrices(one, np.array([[f]]))[0][:, 0])  # (L+1,3,3)
            for layer in range(1 + int(sc.n_layers[n])):
                layer_pts = mid[layer] @ pts  # points seen at the frame's mid-exposure
                img = mats[layer] @ layer_pts  # (S, 3, P)
                img = img[:, :2] / img[:, 2:]
                steps = np.linalg.norm(np.diff(img, axis=0), axis=1)
                if layer > 0:  # only points on the object matter
                    u = layer_pts[:2] / layer_pts[2:]
                    inside = np.linalg.norm(u, axis=0) <= sc.probe_radius[n, layer - 1]
                    steps = steps[:, inside]
                if steps.size:
                    assert steps.max() <= cfg.max_subframe_step + 1e-6, (n, layer, steps.max())


def test_same_seed_same_batch_and_resume():
    cfg = SceneConfig(size=(32, 32), max_layers=2, max_camera_motion=8.0, max_object_motion=8.0)
    a, b = SyntheticScenes(cfg, seed=7), SyntheticScenes(cfg, seed=7)
    for _ in range(2):
        x, y = a.sample(2), b.sample(2)
        for k in x:
            assert torch.equal(x[k], y[k]), k
    state = a.state_dict()
    nxt = a.sample(2)
    c = SyntheticScenes(cfg, seed=0)
    c.load_state_dict(state)
    resumed = c.sample(2)
    for k in nxt:
        assert torch.equal(nxt[k], resumed[k]), k
    other = SyntheticScenes(cfg, seed=8).sample(2)
    assert not torch.equal(other["sharp_t"], SyntheticScenes(cfg, seed=7).sample(2)["sharp_t"])


def test_scenes_do_not_depend_on_batch_split():
    """Sample i is drawn from (seed, i) alone: sharp frames and flow match however the stream
    is cut into batches (blur may differ slightly: sub-frame counts follow the batch)."""
    cfg = SceneConfig(size=(32, 32), max_layers=3, max_camera_motion=8.0, max_object_motion=8.0)
    whole = SyntheticScenes(cfg, seed=3).sample(4)
    split = SyntheticScenes(cfg, seed=3)
    parts = [split.sample(1), split.sample(3)]
    for k in ("sharp_t", "sharp_next", "flow", "valid"):
        torch.testing.assert_close(torch.cat([p[k] for p in parts]), whole[k], atol=1e-5, rtol=0)


def test_motion_magnitudes_span_still_to_large():
    cfg = SceneConfig(size=(32, 32), still_probability=0.2)
    sc = draw_scenes(Draws(0, np.arange(400)), cfg, t_ref=0.0, span=1.0)
    need = needed_subframes(sc, np.array([0.0, 1.0]), cfg).max(1)
    assert 0.1 < float(sc.still.mean()) < 0.3
    assert (need[sc.still] == 1).all()
    assert need.max() >= 20  # large blur happens
    duty = sc.duty
    assert duty.min() >= 0.25 and duty.max() <= 1.0 and duty.max() - duty.min() > 0.5


def test_make_clip_is_one_consistent_scene():
    clip = make_clip(4, (64, 64), seed=3)
    assert clip["blur"].shape == (4, 3, 64, 64) and clip["sharp"].shape == (4, 3, 64, 64)
    assert clip["flow"].shape == (3, 2, 64, 64) and clip["valid"].shape == (3, 1, 64, 64)
    for t in range(3):
        warped = warp(clip["sharp"][t + 1 : t + 2], clip["flow"][t : t + 1])
        valid = clip["valid"][t : t + 1]
        assert float(valid.mean()) > 0.3
        assert masked_psnr(warped, clip["sharp"][t : t + 1], valid) > 33
        assert float(clip["flow"][t].norm(dim=0).mean()) > 1.0  # 'moderate': it moves
    again = make_clip(4, (64, 64), seed=3)
    assert torch.equal(again["blur"], clip["blur"])


def test_textures_are_the_offline_photos_and_dead_leaves():
    folder = skimage_data_dir()
    for name in PHOTO_FILES:
        assert (folder / name).is_file(), name  # ships in the wheel: no download
    bank = texture_bank("mixed")
    assert not set(bank.names) & set(EXCLUDED_FILES)
    assert sum(n.startswith("dead_leaves") for n in bank.names) >= 8
    assert sum(n in PHOTO_FILES for n in bank.names) == len(PHOTO_FILES)
    assert bank.atlas.shape[0] == 3 and 0 <= float(bank.atlas.min()) <= float(bank.atlas.max()) <= 1
    assert texture_bank("mixed") is bank  # cached
    # Each tile really holds its texture (origins and sizes address the atlas correctly).
    i = bank.names.index("camera.png")
    (x0, y0), (w, h) = bank.origins[i].int().tolist(), bank.sizes[i].int().tolist()
    tile = bank.atlas[:, y0 : y0 + h, x0 : x0 + w]
    assert tile.shape[1:] == (512, 512) and bool(bank.gray[i])
    torch.testing.assert_close(tile[0], tile[1])


@pytest.mark.parametrize("bad", [
    dict(size=(1, 10)), dict(duty_cycle=(0.0, 1.0)), dict(duty_cycle=(0.5, 0.2)),
    dict(textures="nope"), dict(camera_motions=("pan", "warp")), dict(min_layers=5),
    dict(noise_std=(-1, 0)), dict(still_probability=2.0),
])
def test_bad_config_is_a_user_error(bad):
    with pytest.raises(UserError):
        SceneConfig(**bad)


_COMPARE_RENDERERS = textwrap.dedent("""
    import sys
    import torch
    from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
    fast = sys.argv[1]
    cases = [dict(size=(24, 20), textures="smooth", three_frames=True),
             dict(size=(24, 20), textures="mixed"),
             # small objects in a larger frame: whole pixel blocks skip (cull) a layer
             dict(size=(40, 72), textures="mixed", object_radius=(0.08, 0.12))]
    for case in cases:
        kw = dict(max_layers=3, min_layers=2, noise_std=(0, 0), quantize=False,
                  max_camera_motion=6.0, max_object_motion=6.0, **case)
        ref = SyntheticScenes(SceneConfig(renderer="torch", **kw), seed=4).sample(2)
        out = SyntheticScenes(SceneConfig(renderer=fast, **kw), seed=4).sample(2)
        for k in ref:
            if k.startswith("valid"):  # a bit may flip right at a threshold, no more
                assert float((ref[k] != out[k]).float().mean()) < 2e-3, (case, k)
                continue
            diff = (ref[k] - out[k]).abs()
            if k.startswith("flow"):  # the owner layer may differ right at alpha = 1/2
                both = (ref["valid" + k[4:]] * out["valid" + k[4:]]).bool()
                diff = diff[both.expand_as(diff)]
            assert float(diff.max()) < 1e-3, (case, k, float(diff.max()))
        assert float((ref["frame_t"] - ref["sharp_t"]).abs().max()) > 0.05  # it did blur
    print("ok")
""")


@pytest.mark.slow
def test_numba_renderer_matches_torch_renderer():
    pytest.importorskip("numba")
    r = subprocess.run([sys.executable, "-c", _COMPARE_RENDERERS, "numba"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


@pytest.mark.slow
def test_triton_renderer_matches_torch_renderer_in_interpreter():
    """The fused GPU kernel computes what the torch renderer does (run on the CPU by Triton's
    interpreter, in a child process: TRITON_INTERPRET is read when kernels are defined)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", _COMPARE_RENDERERS, "triton"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def assert_same_batch(ref: dict, out: dict, tol: float = 1e-3) -> None:
    """Two renderers' batches agree: images and flows within ``tol`` (flows where both call
    them valid: the owner layer may differ right at alpha = 1/2), masks but for a few bits."""
    for k in ref:
        a, b = ref[k].cpu(), out[k].cpu()
        if k.startswith("valid"):
            assert float((a != b).float().mean()) < 2e-3, k
            continue
        diff = (a - b).abs()
        if k.startswith("flow"):
            both = (ref["valid" + k[4:]].cpu() * out["valid" + k[4:]].cpu()).bool()
            diff = diff[both.expand_as(diff)]
        assert float(diff.max()) < tol, (k, float(diff.max()))


@pytest.mark.gpu
def test_gpu_renderers_agree_and_are_deterministic():
    kw = dict(size=(64, 64), max_layers=3, noise_std=(0.0, 0.0), quantize=False,
              three_frames=True)
    ref = SyntheticScenes(SceneConfig(renderer="torch", **kw), seed=9, device="cuda").sample(4)
    out = SyntheticScenes(SceneConfig(renderer="triton", **kw), seed=9, device="cuda").sample(4)
    assert_same_batch(ref, out)
    again = SyntheticScenes(SceneConfig(renderer="auto", **kw), seed=9, device="cuda").sample(4)
    for k in out:
        assert torch.equal(out[k], again[k]), k
    assert_same_batch(SyntheticScenes(SceneConfig(renderer="torch", **kw), seed=9).sample(4), out)
