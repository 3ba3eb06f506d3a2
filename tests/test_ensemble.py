"""The geometric self-ensemble (inference/ensemble.py) against plain references."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from flowdeblur.errors import UserError
from flowdeblur.inference import deblur_frames, deblur_image_pair, self_ensemble
from flowdeblur.inference.ensemble import ENSEMBLE_SIZES, SYMMETRIES
from flowdeblur.models import FlowDeblurNet, FlowDeblurOutput


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _compose(a, b):
    return lambda x: b(a(x))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 9, 4)])
def test_each_symmetry_is_undone_by_its_inverse_and_all_eight_differ(shape):
    x = _random(*shape)
    for sym in SYMMETRIES:
        y = sym.apply(x)
        assert y.shape[-2:] in (x.shape[-2:], x.shape[-2:][::-1])
        torch.testing.assert_close(sym.undo(y), x, rtol=0, atol=0)
    square = _random(1, 1, 6, 6, seed=1)
    images = [sym.apply(square) for sym in SYMMETRIES]
    for a, b in itertools.combinations(images, 2):
        assert not torch.equal(a, b)


@pytest.mark.parametrize("size", ENSEMBLE_SIZES)
def test_the_first_n_symmetries_are_closed_under_composition(size):
    # Averaging over a group: every composition of two members is again a member, so the
    # ensemble's output is itself symmetric under the group.
    x = _random(1, 1, 6, 6, seed=2)
    members = [sym.apply(x) for sym in SYMMETRIES[:size]]
    for a, b in itertools.product(SYMMETRIES[:size], repeat=2):
        y = _compose(a.apply, b.apply)(x)
        assert any(torch.equal(y, m) for m in members)


class Recorder(nn.Module):
    """A deliberately asymmetric stand-in for the network: adds a ramp along W and a different
    one along H to frame t, and records the frames it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.in_frames = 2
        self.flownet = nn.Identity()
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, frame_t, frame_next=None, frame_prev=None) -> FlowDeblurOutput:
        self.seen.append((frame_t.clone(), None if frame_next is None else frame_next.clone()))
        h, w = frame_t.shape[-2:]
        ramp = (0.01 * torch.arange(w) + 0.003 * torch.arange(h)[:, None]).to(frame_t)
        flow = torch.full((frame_t.shape[0], 2, -(-h // 64) * 16, -(-w // 64) * 16),
                          float(len(self.seen)))
        return FlowDeblurOutput(image=frame_t + ramp, flows=[flow], padded_size=(h, w))


@pytest.mark.parametrize("size", [2, 4, 8])
def test_ensemble_averages_the_mapped_back_outputs_of_the_copies(size):
    net = Recorder()
    a, b = _random(2, 3, 11, 6, seed=3), _random(2, 3, 11, 6, seed=4)
    out = self_ensemble(net, size)(a, b, None)
    expected = torch.stack([sym.undo(Recorder()(sym.apply(a)).image)
                            for sym in SYMMETRIES[:size]]).mean(0)
    torch.testing.assert_close(out.image, expected)
    assert len(net.seen) == size
    for (t, n), sym in zip(net.seen, SYMMETRIES, strict=False):
        torch.testing.assert_close(t, sym.apply(a), rtol=0, atol=0)
        torch.testing.assert_close(n, sym.apply(b), rtol=0, atol=0)  # both frames alike
    # The flow is the untransformed call's (the recorder numbers its calls), kept as it was.
    assert out.flows[0].eq(1.0).all() and out.padded_size == (11, 6)


def test_ensemble_of_one_is_the_forward_itself_and_bad_sizes_are_refused():
    net = Recorder()
    assert self_ensemble(net, 1) is net
    for bad in (0, 3, 16):
        with pytest.raises(UserError, match="^ensemble must be one of 1, 2, 4, 8"):
            self_ensemble(net, bad)


def test_outputs_of_a_reused_buffer_are_not_overwritten():
    # A CUDA-graph fast path returns the same output buffer on every call.
    buffer = torch.zeros(1, 3, 4, 4)

    def forward(frame_t, frame_next, frame_prev):
        buffer.copy_(frame_t)
        return FlowDeblurOutput(image=buffer, flows=[buffer[:, :2]], padded_size=(4, 4))

    x = _random(1, 3, 4, 4, seed=5)
    out = self_ensemble(forward, 4)(x, x, None)
    torch.testing.assert_close(out.image, x)
    torch.testing.assert_close(out.flows[0], x[:, :2])


@pytest.fixture(scope="module")
def model() -> FlowDeblurNet:
    torch.manual_seed(0)
    return FlowDeblurNet("full").eval()


def test_deblur_image_pair_and_frames_match_an_explicit_average(model):
    frames = [_random(3, 37, 53, seed=s) for s in range(3)]  # odd sizes: padded inside
    with torch.no_grad():
        def manual(t, n):
            outs = [sym.undo(model(sym.apply(t[None]), sym.apply(n[None])).image)
                    for sym in SYMMETRIES[:4]]
            return torch.stack(outs).mean(0)[0].clamp(0, 1)

        first = manual(frames[0], frames[1])
        last = manual(frames[2], frames[1])
    pair = deblur_image_pair(model, frames[0], frames[1], device="cpu", precision="fp32",
                             ensemble=4)
    torch.testing.assert_close(pair, first, atol=1e-5, rtol=0)
    streamed = list(deblur_frames(model, frames, device="cpu", precision="fp32",
                                  scene_cuts=False, ensemble=4))
    torch.testing.assert_close(streamed[0], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(streamed[2], last, atol=1e-5, rtol=0)
    plain = deblur_image_pair(model, frames[0], frames[1], device="cpu", precision="fp32")
    assert not torch.allclose(plain, pair, atol=1e-4)  # the copies did change the output


def test_tiled_ensemble_matches_whole_frame_ensemble(model):
    # Smooth frames, as tests/test_inference.py's tiling tests use: tiles then agree closely.
    coarse = _random(1, 3, 12, 16, seed=6)
    big = torch.nn.functional.interpolate(coarse, size=(110, 160), mode="bicubic").clamp(0, 1)
    a, b = big[0, :, :100, :150], big[0, :, 3:103, 5:155]
    whole = deblur_image_pair(model, a, b, device="cpu", precision="fp32", ensemble=8)
    tiled = deblur_image_pair(model, a, b, device="cpu", precision="fp32", ensemble=8, tile=64)
    assert whole.shape == tiled.shape == (3, 100, 150)
    mse = float((whole - tiled).double().square().mean())
    assert mse < 10 ** (-35 / 10)  # PSNR of the tiled output against the whole >= 35 dB
