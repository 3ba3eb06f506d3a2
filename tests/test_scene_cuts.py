"""Scene cuts in `deblur`: a frame whose paired neighbour is from another shot is re-paired."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import flowdeblur
from flowdeblur.data.synthetic import clip_config, make_clip
from flowdeblur.inference.scene_cuts import is_scene_cut

SIZE = (128, 192)


@pytest.fixture(scope="module")
def model():
    return flowdeblur.load_pretrained().eval()


def _clip(seed: int, frames: int, fast: bool = False) -> torch.Tensor:
    cfg = clip_config(SIZE)
    if fast:  # a fast pan: 19-24 px per frame, long exposures
        cfg = dataclasses.replace(cfg, max_camera_motion=24.0, max_object_motion=24.0,
                                  motion_range=(0.8, 1.0), camera_motions=("pan",),
                                  duty_cycle=(0.8, 1.0))
    return make_clip(frames, SIZE, seed=seed, config=cfg)["blur"]


def _pair(model, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return flowdeblur.deblur_image_pair(model, a, b, precision="fp32")


def test_the_frame_before_a_cut_is_paired_with_its_other_neighbour(model):
    shot_a, shot_b = _clip(3, 4), _clip(104, 4)
    frames = list(shot_a) + list(shot_b)
    out = list(flowdeblur.deblur_frames(model, frames, precision="fp32", batch=2))
    assert len(out) == 8
    # frame 3 (last of shot A) would be paired with frame 4 (first of shot B): it gets frame 2
    torch.testing.assert_close(out[3], _pair(model, frames[3], frames[2]))
    assert not torch.allclose(out[3], _pair(model, frames[3], frames[4]), atol=1e-3)
    for t in (0, 1, 2, 4, 5, 6):  # everywhere else: the usual pairing with t+1
        torch.testing.assert_close(out[t], _pair(model, frames[t], frames[t + 1]))
    torch.testing.assert_close(out[7], _pair(model, frames[7], frames[6]))


def test_scene_cuts_can_be_turned_off(model):
    frames = list(_clip(3, 2)) + list(_clip(104, 2))
    out = list(flowdeblur.deblur_frames(model, frames, precision="fp32", scene_cuts=False))
    torch.testing.assert_close(out[1], _pair(model, frames[1], frames[2]))


def test_a_one_frame_shot_is_paired_with_itself(model):
    frames = list(_clip(5, 2)) + [_clip(205, 1)[0]] + list(_clip(305, 2))
    out = list(flowdeblur.deblur_frames(model, frames, precision="fp32"))
    torch.testing.assert_close(out[2], _pair(model, frames[2], frames[2]))


@pytest.mark.slow
def test_no_frame_of_a_fast_pan_is_flagged(model):
    for seed in (7, 8, 9):
        clip = _clip(seed, 4, fast=True)
        with torch.no_grad():
            for t in range(3):
                out = model(clip[t:t + 1], clip[t + 1:t + 2])
                assert not is_scene_cut(clip[t:t + 1], clip[t + 1:t + 2], out.flows[0]).item()
    frames = list(clip)
    out = list(flowdeblur.deblur_frames(model, frames, precision="fp32"))
    for t in range(3):
        torch.testing.assert_close(out[t], _pair(model, frames[t], frames[t + 1]))
