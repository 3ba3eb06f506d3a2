"""Flow colour wheel (Middlebury), gate maps and side-by-side pictures."""

from __future__ import annotations

import math

import pytest
import torch

from flowdeblur.viz import color_wheel, flow_to_color, gates_to_image, side_by_side


def constant_flow(u: float, v: float, h: int = 4, w: int = 5) -> torch.Tensor:
    flow = torch.zeros(2, h, w)
    flow[0], flow[1] = u, v
    return flow


def test_color_wheel_segments_hit_the_primaries_at_their_starts():
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    # Segment starts: RY 0, YG 15, GC 21, CB 25, BM 36, MR 49 (15, 6, 4, 11, 13, 6 hues).
    expected = {
        0: (1, 0, 0),  # red
        15: (1, 1, 0),  # yellow
        21: (0, 1, 0),  # green
        25: (0, 1, 1),  # cyan
        36: (0, 0, 1),  # blue
        49: (1, 0, 1),  # magenta
    }
    for index, rgb in expected.items():
        torch.testing.assert_close(wheel[index], torch.tensor(rgb, dtype=torch.float32))
    # Inside a segment one channel ramps in floor(255 * i / n) steps: RY's G at i = 7 of 15.
    assert wheel[7, 1] == pytest.approx(math.floor(255 * 7 / 15) / 255)
    # ... and MR ramps blue down: i = 5 of 6.
    assert wheel[54, 2] == pytest.approx((255 - math.floor(255 * 5 / 6)) / 255)
    assert float(wheel.min()) >= 0 and float(wheel.max()) <= 1


def test_zero_flow_is_white_and_full_length_flow_is_the_pure_hue():
    white = flow_to_color(torch.zeros(2, 3, 3), max_flow=1.0)
    torch.testing.assert_close(white, torch.ones(3, 3, 3))
    wheel = color_wheel()
    # Flow to the left: atan2(-v, -u) = 0 -> position (0 + 1) / 2 * 54 = 27 (a cyan-blue hue).
    left = flow_to_color(constant_flow(-2.0, 0.0), max_flow=2.0)
    torch.testing.assert_close(left[:, 0, 0], wheel[27])
    # Flow to the right sits on the wheel's seam, which is red.
    right = flow_to_color(constant_flow(3.0, 0.0), max_flow=3.0)
    assert right[0, 0, 0] == pytest.approx(1.0)
    assert float(right[1:, 0, 0].max()) < 0.2
    # Down (y grows downwards): position 13.5 -> halfway between wheel[13] and wheel[14].
    down = flow_to_color(constant_flow(0.0, 1.0), max_flow=1.0)
    torch.testing.assert_close(down[:, 0, 0], (wheel[13] + wheel[14]) / 2)
    # Up: position 40.5, in blue-magenta.
    up = flow_to_color(constant_flow(0.0, -1.0), max_flow=1.0)
    torch.testing.assert_close(up[:, 0, 0], (wheel[40] + wheel[41]) / 2)


def test_saturation_grows_with_magnitude_and_out_of_range_is_darkened():
    wheel = color_wheel()
    half = flow_to_color(constant_flow(-1.0, 0.0), max_flow=2.0)[:, 0, 0]
    torch.testing.assert_close(half, 1 - 0.5 * (1 - wheel[27]))
    beyond = flow_to_color(constant_flow(-5.0, 0.0), max_flow=2.0)[:, 0, 0]
    torch.testing.assert_close(beyond, 0.75 * wheel[27])


def test_default_scale_is_each_images_own_maximum():
    flow = torch.zeros(2, 2, 8, 8)
    flow[0, 0, 0, 0] = -4.0  # image 0: its largest flow is 4 to the left
    flow[1, 0, 0, 0] = -40.0  # image 1: same direction, ten times longer
    flow[1, 0, 1, 1] = -20.0
    colors = flow_to_color(flow)
    assert colors.shape == (2, 3, 8, 8)
    wheel = color_wheel()
    torch.testing.assert_close(colors[0, :, 0, 0], wheel[27])  # fully saturated
    torch.testing.assert_close(colors[1, :, 0, 0], wheel[27])
    torch.testing.assert_close(colors[1, :, 1, 1], 1 - 0.5 * (1 - wheel[27]))
    torch.testing.assert_close(colors[:, :, 5, 5], torch.ones(2, 3))  # zero flow: white


def test_non_finite_flow_is_black_and_does_not_spoil_the_scale():
    flow = constant_flow(-1.0, 0.0)
    flow[0, 1, 1] = float("nan")
    flow[1, 2, 2] = float("inf")
    colors = flow_to_color(flow)
    torch.testing.assert_close(colors[:, 1, 1], torch.zeros(3))
    torch.testing.assert_close(colors[:, 2, 2], torch.zeros(3))
    torch.testing.assert_close(colors[:, 0, 0], color_wheel()[27])


def test_flow_to_color_rejects_bad_shapes_and_scales():
    with pytest.raises(ValueError, match="flow must be"):
        flow_to_color(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="max_flow"):
        flow_to_color(torch.zeros(2, 4, 4), max_flow=0.0)


def test_gates_to_image_puts_each_direction_in_its_panel():
    c, h, w = 3, 4, 6
    gates = torch.empty(2, 4 * c, h, w)
    values = (-1.0, -0.5, 0.5, 1.0)  # left->right, right->left, top->bottom, bottom->top
    for k, value in enumerate(values):
        gates[:, k * c : (k + 1) * c] = value
    picture = gates_to_image(gates)
    assert picture.shape == (2, 3, 2 * h, 2 * w)
    panels = {
        0: picture[:, :, :h, :w],
        1: picture[:, :, :h, w:],
        2: picture[:, :, h:, :w],
        3: picture[:, :, h:, w:],
    }
    for k, value in enumerate(values):
        torch.testing.assert_close(panels[k], torch.full_like(panels[k], (value + 1) / 2))
    assert gates_to_image(gates[0]).shape == (3, 2 * h, 2 * w)
    with pytest.raises(ValueError, match="4C"):
        gates_to_image(torch.zeros(1, 6, 4, 4))


def test_side_by_side_concatenates_along_the_width():
    a, b = torch.zeros(3, 4, 5), torch.ones(3, 4, 2)
    both = side_by_side(a, b)
    assert both.shape == (3, 4, 7)
    assert float(both[:, :, :5].max()) == 0 and float(both[:, :, 5:].min()) == 1
    assert side_by_side(a[None], b[None], a[None]).shape == (1, 3, 4, 12)
    with pytest.raises(ValueError, match="does not stack"):
        side_by_side(a, torch.zeros(3, 5, 5))
