"""Inference: frame pairing, streaming, batching, tiling, precision, devices."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from helpers import psnr
from torch import nn

from flowdeblur.errors import UserError
from flowdeblur.inference import (
    check_tiling,
    deblur_frames,
    deblur_image_pair,
    deblur_tiled,
    default_tile_overlap,
)
from flowdeblur.models import FlowDeblurNet, FlowDeblurOutput
from flowdeblur.runtime import Runtime


class PairRecorder(nn.Module):
    """Stands in for FlowDeblurNet: records which frames it was given, by their pixel value
    (frame i is filled with i / 100), and returns frame t unchanged."""

    def __init__(self, in_frames: int = 2) -> None:
        super().__init__()
        self.in_frames = in_frames
        self.variant = {1: "single_frame", 2: "full", 3: "bidirectional"}[in_frames]
        self.flownet = nn.Identity()
        self.calls: list[list[tuple]] = []

    def forward(self, frame_t, frame_next=None, frame_prev=None) -> FlowDeblurOutput:
        def ids(x):
            return None if x is None else [round(float(v) * 100) for v in x[:, 0, 0, 0]]

        t, n, p = ids(frame_t), ids(frame_next), ids(frame_prev)
        self.calls.append(
            [(t[i], n[i] if n else None, p[i] if p else None) for i in range(len(t))]
        )
        n_, _, h, w = frame_t.shape
        flow = torch.zeros(n_, 2, -(-h // 64) * 16, -(-w // 64) * 16)
        return FlowDeblurOutput(image=frame_t.clone(), flows=[flow], gates=[])

    @property
    def pairs(self) -> list[tuple]:
        return [p for call in self.calls for p in call]


def numbered_frames(count: int, h: int = 8, w: int = 8):
    for i in range(count):
        yield torch.full((3, h, w), i / 100)


@pytest.fixture(scope="module")
def model() -> FlowDeblurNet:
    torch.manual_seed(0)
    return FlowDeblurNet("full").eval()


@pytest.fixture
def smooth_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random picture and a shifted copy: natural-ish content for the network."""
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 3, 12, 16, generator=g)
    big = torch.nn.functional.interpolate(coarse, size=(110, 160), mode="bicubic").clamp(0, 1)
    return big[0, :, :100, :150].contiguous(), big[0, :, 3:103, 5:155].contiguous()


# ------------------------------------------------------------------------------ pairing


def test_each_frame_is_paired_with_the_next_and_the_last_with_its_predecessor():
    rec = PairRecorder()
    outputs = list(deblur_frames(rec, numbered_frames(5), device="cpu"))
    assert len(outputs) == 5
    assert [(t, n) for t, n, _ in rec.pairs] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 3)]
    for i, out in enumerate(outputs):
        assert out.shape == (3, 8, 8)
        assert float(out[0, 0, 0]) == pytest.approx(i / 100)  # in order, nothing dropped


def test_a_single_frame_is_paired_with_itself_with_a_warning():
    rec = PairRecorder()
    with pytest.warns(UserWarning, match="single frame"):
        outputs = list(deblur_frames(rec, numbered_frames(1), device="cpu"))
    assert len(outputs) == 1
    assert rec.pairs == [(0, 0, None)]


def test_no_frames_give_no_output():
    assert list(deblur_frames(PairRecorder(), iter([]), device="cpu")) == []


def test_bidirectional_gets_both_neighbours_mirrored_at_the_ends():
    rec = PairRecorder(in_frames=3)
    list(deblur_frames(rec, numbered_frames(4), device="cpu"))
    assert rec.pairs == [(0, 1, 1), (1, 2, 0), (2, 3, 1), (3, 2, 2)]


def test_single_frame_variant_sees_frame_t_only():
    rec = PairRecorder(in_frames=1)
    list(deblur_frames(rec, numbered_frames(3), device="cpu"))
    assert rec.pairs == [(0, None, None), (1, None, None), (2, None, None)]


def test_batches_group_pairs_without_changing_them():
    rec = PairRecorder()
    list(deblur_frames(rec, numbered_frames(5), device="cpu", batch=2))
    assert [len(call) for call in rec.calls] == [2, 2, 1]
    assert [(t, n) for t, n, _ in rec.pairs] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 3)]


# ------------------------------------------------------------------------------ streaming


def test_streaming_holds_only_a_window_of_frames():
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield torch.full((3, 8, 8), (i % 100) / 100)

    batch = 3
    stream = deblur_frames(PairRecorder(), endless(), device="cpu", batch=batch)
    for produced, _ in enumerate(itertools.islice(stream, 20), start=1):
        # A lazy generator: never more than one batch and a frame of look-ahead in hand.
        assert pulled <= produced + batch + 1
    assert pulled < 30


def test_frames_of_different_sizes_are_a_user_error():
    frames = [torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), torch.zeros(3, 8, 6)]
    with pytest.raises(UserError, match="frame 2 is 6x8 but the first frame is 8x8"):
        list(deblur_frames(PairRecorder(), frames, device="cpu"))


def test_integer_frames_are_refused_rather_than_misread():
    frames = [torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2
    with pytest.raises(ValueError, match="float"):
        list(deblur_frames(PairRecorder(), frames, device="cpu"))
    with pytest.raises(ValueError, match="float"):
        deblur_image_pair(PairRecorder(), frames[0], frames[1], device="cpu")


def test_batched_output_equals_one_at_a_time(model):
    g = torch.Generator().manual_seed(2)
    frames = [torch.rand(3, 40, 56, generator=g) for _ in range(4)]
    one = list(deblur_frames(model, frames, device="cpu", batch=1))
    three = list(deblur_frames(model, frames, device="cpu", batch=3))
    for a, b in zip(one, three, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=0)


def test_frames_match_the_network_called_directly(model):
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(3, 37, 53, generator=g) for _ in range(3)]  # odd sizes: padded inside
    # Unrelated noise frames are scene cuts to the detector; this checks the plain pairing.
    outputs = list(deblur_frames(model, frames, device="cpu", precision="fp32",
                                 scene_cuts=False))
    with torch.no_grad():
        last = model(frames[2][None], frames[1][None]).image[0].clamp(0, 1)
        first = model(frames[0][None], frames[1][None]).image[0].clamp(0, 1)
    torch.testing.assert_close(outputs[0], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs[2], last, atol=1e-5, rtol=0)
    assert outputs[2].dtype == torch.float32 and outputs[2].shape == (3, 37, 53)


def test_return_flow_gives_full_resolution_flow(model):
    frames = [torch.rand(3, 40, 56) for _ in range(2)]
    pairs = list(deblur_frames(model, frames, device="cpu", return_flow=True))
    assert len(pairs) == 2
    image, flow = pairs[0]
    assert image.shape == (3, 40, 56) and flow.shape == (2, 40, 56)
    assert torch.isfinite(flow).all()
    with pytest.raises(UserError, match="no flow network"):
        deblur_frames(FlowDeblurNet("no_rnn"), frames, device="cpu", return_flow=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_numpy_frames_come_back_as_numpy_of_their_dtype(model, dtype):
    g = torch.Generator().manual_seed(4)
    tensors = [torch.rand(3, 24, 40, generator=g) for _ in range(3)]
    top = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1)
    arrays = [(t.permute(1, 2, 0).numpy() * top).round().astype(dtype) if top > 1
              else t.permute(1, 2, 0).numpy().astype(dtype) for t in tensors]
    got = list(deblur_frames(model, arrays, device="cpu", precision="fp32", scene_cuts=False,
                             return_flow=True))
    ref = list(deblur_frames(model, [torch.from_numpy(a.astype(np.float64) / top).permute(
        2, 0, 1).float() for a in arrays], device="cpu", precision="fp32", scene_cuts=False,
        return_flow=True))
    for (image, flow), (ref_image, ref_flow) in zip(got, ref, strict=True):
        assert isinstance(image, np.ndarray) and image.dtype == dtype
        assert image.shape == (24, 40, 3) and flow.shape == (24, 40, 2)
        assert flow.dtype == np.float32
        back = torch.from_numpy(image.astype(np.float64) / top).permute(2, 0, 1)
        assert float((back - ref_image.double()).abs().max()) <= 0.5 / top + 1e-6
        np.testing.assert_allclose(flow, ref_flow.permute(1, 2, 0).numpy(), atol=1e-6)
    pair = deblur_image_pair(model, arrays[0], arrays[1], device="cpu", precision="fp32")
    assert isinstance(pair, np.ndarray) and pair.dtype == dtype and pair.shape == (24, 40, 3)
    assert np.abs(pair.astype(np.float64) - got[0][0].astype(np.float64)).max() <= 1


def test_the_api_keeps_no_gradient_graph(model):
    frames = [torch.rand(3, 24, 40, requires_grad=True) for _ in range(2)]
    assert not any(out.requires_grad for out in deblur_frames(model, frames, device="cpu"))
    assert not deblur_image_pair(model, frames[0], frames[1], device="cpu").requires_grad


# ------------------------------------------------------------------------------ one pair


def test_image_pair_accepts_single_and_batched_frames(model, smooth_pair):
    a, b = smooth_pair
    single = deblur_image_pair(model, a, b, device="cpu")
    batched = deblur_image_pair(model, a[None], b[None], device="cpu")
    assert single.shape == a.shape and batched.shape == (1, *a.shape)
    torch.testing.assert_close(single, batched[0])
    assert 0 <= float(single.min()) and float(single.max()) <= 1
    # Without a neighbour the frame is paired with itself.
    torch.testing.assert_close(
        deblur_image_pair(model, a, device="cpu"), deblur_image_pair(model, a, a, device="cpu")
    )


# ------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("size", [(192, 224), (100, 150), (64, 64), (70, 300)])
@pytest.mark.parametrize("tile", [64, 100, 128])
def test_tiles_blend_to_exactly_the_input_for_an_identity_network(size, tile):
    # With an identity "network", any coverage gap or window that does not normalise to 1
    # would show; the blend must reproduce the frame to float rounding.
    frame = torch.rand(1, 3, *size)
    out = deblur_tiled(PairRecorder(), frame, frame.clone(), tile=tile)
    torch.testing.assert_close(out, frame, atol=1e-6, rtol=0)
    out0 = deblur_tiled(PairRecorder(), frame, frame.clone(), tile=tile, overlap=0)
    torch.testing.assert_close(out0, frame, atol=1e-6, rtol=0)


def test_tiles_see_the_same_region_of_both_frames():
    # Frame t is a ramp, frame t+1 the same ramp shifted: each tile pair must come from the
    # same window, so the recorded (t, next) crops differ by the shift everywhere.
    class CropCheck(PairRecorder):
        def forward(self, frame_t, frame_next=None, frame_prev=None):
            torch.testing.assert_close(frame_next, frame_t + 0.5)
            return super().forward(frame_t, frame_next, frame_prev)

    frame = torch.rand(1, 3, 150, 200) * 0.5
    deblur_tiled(CropCheck(), frame, frame + 0.5, tile=64)


def test_tiled_matches_untiled(model, smooth_pair):
    a, b = smooth_pair  # 100 x 150: neither side a multiple of the tile
    whole = deblur_image_pair(model, a, b, device="cpu")
    tiled = deblur_image_pair(model, a, b, device="cpu", tile=64)
    # Measured with the random-init network on such frames: ~55 dB (tile 64), ~72 dB (128).
    assert psnr(tiled, whole) >= 35
    # Without overlap the seams show (~25 dB): the blend is what makes tiles agree.
    seams = deblur_image_pair(model, a, b, device="cpu", tile=64, tile_overlap=0)
    assert psnr(seams, whole) < psnr(tiled, whole) - 10


def test_tiled_matches_untiled_with_long_memory_gates(smooth_pair):
    # A random-init network has small gates (|w| ~ 0.1), so its RNNs forget within a few
    # pixels. A trained one may carry state across the tile: force gates near tanh(2) = 0.96
    # and check that 256-pixel tiles with the default overlap still agree (measured: 43 dB on
    # 384 x 512; 128-pixel tiles give 34.5 dB there, so use large tiles on real data).
    torch.manual_seed(0)
    net = FlowDeblurNet("full").eval()
    for i in (1, 2, 3):
        getattr(net.flownet, f"rnnw{i}").bias.data.fill_(2.0)
    g = torch.Generator().manual_seed(4)
    coarse = torch.rand(1, 3, 10, 14, generator=g)
    a = torch.nn.functional.interpolate(coarse, size=(256, 384), mode="bicubic").clamp(0, 1)
    b = torch.roll(a, shifts=(2, 3), dims=(2, 3))
    whole = deblur_image_pair(net, a, b, device="cpu")
    tiled = deblur_image_pair(net, a, b, device="cpu", tile=256)
    assert psnr(tiled, whole) >= 35


def test_tiling_options_are_checked():
    assert check_tiling(None, None) is None
    assert check_tiling(256, None) == default_tile_overlap(256) == 64
    assert default_tile_overlap(1024) == 128
    with pytest.raises(UserError, match="at least 64"):
        check_tiling(32, None)
    with pytest.raises(UserError, match="half the tile"):
        check_tiling(128, 65)
    with pytest.raises(UserError, match="half the tile"):
        check_tiling(128, -1)


# ------------------------------------------------------------------------------ precision


def test_fp16_on_cpu_is_refused_and_unknown_precision_named():
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        Runtime.resolve("cpu", "fp16")
    with pytest.raises(UserError, match="'fp8'"):
        Runtime.resolve("cpu", "fp8")


def test_bf16_on_cpu_runs_and_returns_float32(model):
    g = torch.Generator().manual_seed(5)
    frames = [torch.rand(3, 32, 48, generator=g) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an RNN backend may say it falls back for bf16
        fp32 = list(deblur_frames(model, frames, device="cpu", precision="fp32"))
        bf16 = list(deblur_frames(model, frames, device="cpu", precision="bf16"))
    assert bf16[0].dtype == torch.float32
    assert psnr(bf16[0], fp32[0]) > 25  # bf16 keeps ~3 significant digits


def test_devices_are_resolved_or_refused():
    assert Runtime.resolve("cpu").device == torch.device("cpu")
    assert Runtime.resolve("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        Runtime.resolve("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            Runtime.resolve("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_matches_cpu(model, smooth_pair, precision):
    a, b = smooth_pair
    cpu = deblur_image_pair(model, a, b, device="cpu", precision="fp32")
    gpu = deblur_image_pair(model, a, b, device="cuda", precision=precision)
    model.to("cpu")
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    assert psnr(gpu, cpu) > (45 if precision == "fp32" else 25)
