"""references/real_clips.py, large-motion definition: the pure measures (exposure intervals,
blur length, moving mask, duty and source rules, noise estimate, masked PSNR) and the recorded
definition itself. No Debian package is needed."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "references"


@pytest.fixture(scope="module")
def rc():
    # The scripts import each other by name, with references/ first on sys.path as when run.
    if str(REFERENCES) not in sys.path:
        sys.path.insert(0, str(REFERENCES))
    return importlib.import_module("real_clips")


def _clip(name, split, stride, span, video="v.avi", package="p"):
    return {"name": name, "split": split, "stride": stride, "span": span, "video": video,
            "package": package}


def test_exposure_intervals_cover_the_window_by_share(rc):
    assert rc.exposure_intervals(10, 2) == [(9, 1.0), (10, 1.0)]
    assert rc.exposure_intervals(10, 3) == [(8, 0.5), (9, 1.0), (10, 1.0), (11, 0.5)]
    assert rc.exposure_intervals(5, 1) == [(4, 0.5), (5, 0.5)]
    assert sum(s for _, s in rc.exposure_intervals(7, 5)) == pytest.approx(5)


def test_blur_length_is_the_shared_sum_of_flow_lengths(rc):
    flow = np.zeros((4, 6, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 4.0  # 5 px per frame interval
    still = np.zeros_like(flow)
    length = rc.blur_length([flow, flow, still], [0.5, 1.0, 1.0])
    assert length.shape == (4, 6)
    assert np.allclose(length, 7.5)


def test_box_mean_keeps_constants_and_spreads_an_impulse(rc):
    assert np.allclose(rc.box_mean(np.full((2, 9, 9), 3.0), 5), 3.0)
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 25.0
    out = rc.box_mean(impulse, 5)
    assert np.allclose(out[2:7, 2:7], 1.0) and out.sum() == pytest.approx(25.0)


def test_box_mean_matches_opencv_reflect_101(rc):
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(0).random((17, 23))
    want = cv2.blur(x, (5, 5), borderType=cv2.BORDER_REFLECT_101)
    assert np.allclose(rc.box_mean(x, 5), want)


def test_moving_mask_thresholds_the_local_mean_difference(rc):
    sharp = np.full((1, 16, 16, 3), 100, np.uint8)
    assert not rc.moving_mask(sharp, sharp).any()
    assert not rc.moving_mask(sharp + 3, sharp).any()  # 3/255 everywhere: below 4/255
    assert rc.moving_mask(sharp + 5, sharp).all()
    speck = sharp.copy()
    speck[0, 8, 8] = 150  # 50/255 on one pixel is 2/255 over the 5x5 window: not moving
    assert not rc.moving_mask(speck, sharp).any()
    block = sharp.copy()
    block[0, 4:12, 4:12] = 120
    mask = rc.moving_mask(block, sharp)
    assert mask[0, 8, 8] and not mask[0, 0, 0] and mask.shape == (1, 16, 16)


def test_duty_rules(rc):
    clips = [_clip("a", "dev", 4, 2), _clip("b", "dev", 3, 3), _clip("c", "dev", 2, 2),
             _clip("d", "test", 4, 2), _clip("e", "test", 2, 1), _clip("f", "test", 3, 3)]
    assert rc.duty(clips[0]) == 0.5
    problems = rc.check_duty(clips, 0.75)
    assert problems == ["test: median duty 0.500 < 0.75"]
    assert rc.check_duty([_clip("x", "dev", 2, 3)], 0.75)[0] == "x: span 3 > stride 2"


def test_a_source_goes_to_one_split(rc):
    ok = [_clip("a", "dev", 2, 2, "one.avi"), _clip("b", "dev", 2, 2, "one.avi"),
          _clip("c", "test", 2, 2, "two.avi")]
    assert rc.check_sources(ok) == []
    bad = ok + [_clip("d", "test", 2, 2, "one.avi")]
    assert rc.check_sources(bad) == ["one.avi is in ['dev', 'test']"]


def test_noise_sigma_finds_gaussian_noise_on_flat_and_sloped_frames(rc):
    rng = np.random.default_rng(1)
    ramp = np.linspace(40, 200, 96)[None, None, :, None] * np.ones((3, 96, 96, 3))
    assert rc.noise_sigma(np.round(ramp).astype(np.uint8)) < 0.3
    for sigma in (1.0, 3.0):
        noisy = np.clip(np.round(ramp + rng.normal(0, sigma, ramp.shape)), 0, 255)
        assert rc.noise_sigma(noisy.astype(np.uint8)) == pytest.approx(sigma, rel=0.1)


def test_add_noise_is_seeded(rc):
    frames = np.full((2, 32, 32, 3), 128, np.uint8)
    a, b = rc.add_noise(frames, 2.0, 7), rc.add_noise(frames, 2.0, 7)
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert np.std(a.astype(float)) == pytest.approx(2.0, rel=0.1)
    assert rc.noise_seed("clip") == rc.noise_seed("clip") != rc.noise_seed("other")


def test_h264_round_trip_keeps_shape_and_is_repeatable(rc):
    # A disc moving over a noisy ramp, 240x320: content on which x264 with PyAV's default
    # thread count gave a different result on most runs.
    yy, xx = np.mgrid[0:240, 0:320]
    rng = np.random.default_rng(0)
    frames = []
    for i in range(10):
        disc = (xx - 40 - 20 * i) ** 2 + (yy - 120) ** 2 < 400
        grey = np.where(disc, 200.0, 60 + 0.3 * xx + 0.2 * yy)
        frames.append(grey[..., None] * np.array([1.0, 0.9, 0.8]) + rng.normal(0, 1, (240, 320, 3)))
    frames = np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)
    outputs = [rc.h264_round_trip(frames, 23, "medium", 25) for _ in range(4)]
    assert outputs[0].shape == frames.shape and outputs[0].dtype == np.uint8
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])
    assert np.abs(outputs[0].astype(int) - frames).mean() < 4


def test_masked_psnr_counts_only_the_masked_pixels(rc):
    target = torch.zeros(2, 3, 4, 4)
    output = target.clone()
    output[:, :, 0, 0] = 0.1  # MSE 0.01 on the masked pixel: 20 dB
    output[:, :, 3, 3] = 0.9  # outside the mask: ignored
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    assert rc.masked_psnr(output, target, mask) == pytest.approx(20.0)
    mask[1] = False  # a frame without moving pixels is left out
    assert rc.masked_psnr(output, target, mask) == pytest.approx(20.0)
    assert math.isnan(rc.masked_psnr(output, target, torch.zeros(2, 4, 4, dtype=torch.bool)))


def test_split_means_average_every_metric_and_the_noisy_rows(rc):
    def row(p):
        scores = {m: {"psnr": p, "ssim": 0.5} for m in rc.METHODS}
        return {**scores, "noisy": {m: {"psnr": p - 1, "ssim": 0.4} for m in rc.METHODS}}
    clips = [_clip("a", "dev", 2, 2), _clip("b", "dev", 2, 2)]
    means = rc.split_means({"a": row(30.0), "b": row(32.0)}, clips)
    assert means["dev"]["flowdeblur"] == {"psnr": 31.0, "ssim": 0.5}
    assert means["dev"]["noisy"]["blurry"]["psnr"] == 30.0 and "test" not in means


def test_the_recorded_motion_definition_keeps_its_rules(rc):
    definition = json.loads(rc.DEFINITIONS["motion"].read_text())
    rc.check_definition(definition)  # duty and one split per source
    measures = definition["measures"]
    lo, hi = measures["blur_p90_px"]
    for split in ("dev", "test"):
        clips = [c for c in definition["clips"] if c["split"] == split]
        assert len(clips) >= 4
        assert np.median([c["measured"]["duty"] for c in clips]) >= measures["median_duty_min"]
    for clip in definition["clips"]:
        assert rc.check_measured(clip, clip["measured"], measures) == []
        assert clip["measured"]["duty"] == pytest.approx(rc.duty(clip), abs=1e-4)
        package = definition["packages"][clip["package"]]
        assert package["deb_sha256"] and clip["video"] in package["files"]
    # The small-motion definition has no "measures" and passes the same check unchanged.
    rc.check_definition(json.loads(rc.DEFINITIONS["small"].read_text()))
