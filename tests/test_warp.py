"""Backward warping: out(p) = image(p + flow(p)), bilinear, centre-aligned pixel grid."""

from __future__ import annotations

import pytest
import torch

from flowdeblur.ops import warp


def test_zero_flow_is_identity():
    img = torch.rand(2, 3, 9, 13)
    out, mask = warp(img, torch.zeros(2, 2, 9, 13), return_mask=True)
    torch.testing.assert_close(out, img)
    assert mask.shape == (2, 1, 9, 13) and bool((mask == 1).all())


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (-1, 2)])
def test_integer_flow_is_a_shift(dx, dy):
    img = torch.rand(1, 3, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0], flow[:, 1] = dx, dy
    out, mask = warp(img, flow, return_mask=True)
    h, w = 10, 12
    for y in range(h):
        for x in range(w):
            sx, sy = x + dx, y + dy
            inside = 0 <= sx < w and 0 <= sy < h
            assert mask[0, 0, y, x] == float(inside)
            expected = img[0, :, sy, sx] if inside else torch.zeros(3)
            torch.testing.assert_close(out[0, :, y, x], expected)


def test_half_pixel_flow_is_bilinear():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 0] = 0.5
    out = warp(img, flow)
    torch.testing.assert_close(out[0, 0, :, :3], (img[0, 0, :, :3] + img[0, 0, :, 1:]) / 2)


def test_convention_frame_t_from_frame_next():
    """If frame_next is frame_t moved right by 3 px, the flow t->t+1 is +3 and warp undoes it."""
    frame_t = torch.rand(1, 3, 8, 16)
    frame_next = torch.roll(frame_t, shifts=3, dims=-1)
    flow = torch.zeros(1, 2, 8, 16)
    flow[:, 0] = 3.0
    out, mask = warp(frame_next, flow, return_mask=True)
    valid = mask.bool().expand_as(out)
    torch.testing.assert_close(out[valid], frame_t[valid])


def test_single_pixel_dimensions():
    img = torch.rand(1, 2, 1, 5)
    torch.testing.assert_close(warp(img, torch.zeros(1, 2, 1, 5)), img)
    flow = torch.zeros(1, 2, 1, 5)
    flow[:, 1] = 1.0  # points below the only row: outside
    out, mask = warp(img, flow, return_mask=True)
    assert bool((mask == 0).all()) and bool((out == 0).all())


def test_gradients_flow_to_image_and_flow():
    img = torch.rand(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    flow = (torch.rand(1, 2, 6, 7, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(warp, (img, flow))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError):
        warp(torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError):
        warp(torch.rand(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
