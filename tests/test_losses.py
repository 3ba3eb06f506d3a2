"""Eq. 14 and the flow pre-training loss."""

from __future__ import annotations

import pytest
import torch

from flowdeblur import FlowDeblurNet
from flowdeblur.models import FlowDeblurOutput
from flowdeblur.training.losses import downsample_to, eq14_loss, multiscale_epe, warping_loss


def _true_flows(dx: float, dy: float, n: int, hp: int, wp: int) -> list[torch.Tensor]:
    flows = []
    for s in (4, 8, 16, 32, 64):
        f = torch.zeros(n, 2, hp // s, wp // s)
        f[:, 0], f[:, 1] = dx / s, dy / s
        flows.append(f)
    return flows


@pytest.mark.parametrize("shift", [(64, 0), (0, -128), (64, 64)])
def test_flow_terms_vanish_for_the_true_flow_of_a_circular_shift(shift):
    dy, dx = shift
    # Structure at every scale: 64 px blocks (visible at 1/64) plus pixel noise.
    blocks = torch.nn.functional.interpolate(torch.rand(2, 3, 2, 3), scale_factor=64.0)
    frame_t = 0.8 * blocks + 0.2 * torch.rand(2, 3, 128, 192)
    # frame_next(p) = frame_t(p - shift)  =>  frame_t(p) = frame_next(p + shift)
    frame_next = torch.roll(frame_t, shifts=(dy, dx), dims=(2, 3))
    out = FlowDeblurOutput(image=frame_t.clone(), flows=_true_flows(dx, dy, 2, 128, 192))
    loss = eq14_loss(out, frame_t, frame_next, frame_t)
    assert len(loss.flow_terms) == 5
    for term in loss.flow_terms:
        assert term.item() < 1e-9
    # A wrong flow is penalised at every scale.
    # A wrong flow (off by 32 px: half a pixel even at 1/64) is penalised at every scale.
    wrong = FlowDeblurOutput(image=frame_t, flows=_true_flows(dx + 32, dy, 2, 128, 192))
    assert all(t.item() > 1e-4 for t in eq14_loss(wrong, frame_t, frame_next, frame_t).flow_terms)


def test_sum_reduction_is_per_sample_sum_averaged_over_batch():
    sharp = torch.zeros(2, 3, 4, 5)
    out = FlowDeblurOutput(image=torch.full((2, 3, 4, 5), 0.5))
    loss = eq14_loss(out, sharp, None, sharp)
    assert loss.image.item() == pytest.approx(3 * 4 * 5 * 0.25)
    assert loss.total.item() == pytest.approx(loss.image.item())
    mean = eq14_loss(out, sharp, None, sharp, reduction="mean")
    assert mean.image.item() == pytest.approx(0.25)


def test_flow_loss_switch_and_parts_add_up():
    torch.manual_seed(0)
    model = FlowDeblurNet(rnn_backend="torch")
    a, b, s = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    out = model(a, b)
    with_flow = eq14_loss(out, a, b, s)
    torch.testing.assert_close(with_flow.total, with_flow.image + sum(with_flow.flow_terms))
    without = eq14_loss(out, a, b, s, flow_loss=False)
    assert without.flow_terms == [] and without.total.item() == with_flow.image.item()
    with_flow.total.backward()
    assert model.flownet.flow6.weight.grad.abs().sum() > 0


def test_masked_pixels_do_not_count():
    frame = torch.rand(1, 3, 8, 8)
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 100.0  # every sample outside
    assert warping_loss(flow, frame, torch.rand(1, 3, 8, 8)).item() == 0.0


def test_downsample_is_block_average():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    torch.testing.assert_close(downsample_to(x, (2, 2)), expected)
    with pytest.raises(ValueError):
        downsample_to(x, (3, 3))


def test_multiscale_epe_zero_for_exact_flow_and_positive_otherwise():
    gt = torch.zeros(1, 2, 128, 128)
    gt[:, 0] = 8.0
    exact = _true_flows(8.0, 0.0, 1, 128, 128)
    assert multiscale_epe(exact, gt).item() == pytest.approx(0.0, abs=1e-7)
    off = [f + 1.0 for f in exact]
    expected = sum(w * 2**0.5 for w in (0.005, 0.01, 0.02, 0.08, 0.32))
    assert multiscale_epe(off, gt).item() == pytest.approx(expected, rel=1e-5)
