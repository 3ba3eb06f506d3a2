"""deblur_frames takes (3, H, W) float tensors and (H, W, 3) NumPy arrays alike, and gives
each back in the form it was given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowdeblur import FlowDeblurNet, deblur_frames


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FlowDeblurNet("full", rnn_backend="torch").eval()


def _frames() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    base = torch.rand(3, 40, 56, generator=g)
    return [base.roll(i, dims=-1) for i in range(3)]  # one scene panning: no scene cut


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float32"])
def test_numpy_frames_give_the_same_result_as_tensors(model, kind):
    frames = _frames()
    top = {"uint8": 255, "uint16": 65535, "float32": 1}[kind]
    arrays = [(f.permute(1, 2, 0).numpy() * top).round().astype(kind) if top > 1
              else f.permute(1, 2, 0).numpy().astype(kind) for f in frames]
    as_tensors = [torch.from_numpy(a.astype(np.float64) / top).permute(2, 0, 1).float()
                  for a in arrays]
    got = list(deblur_frames(model, arrays, device="cpu", precision="fp32"))
    want = list(deblur_frames(model, as_tensors, device="cpu", precision="fp32"))
    for a, b in zip(got, want, strict=True):
        # NumPy in, NumPy out of the input's dtype: the tensor result rounded to its codes.
        assert isinstance(a, np.ndarray) and a.dtype == np.dtype(kind) and a.shape == (40, 56, 3)
        back = torch.from_numpy(a.astype(np.float64) / top).permute(2, 0, 1).float()
        torch.testing.assert_close(back, b, rtol=0, atol=0.5 / top + 1e-6)


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.int64), [[0.5]],
                                 torch.zeros(3, 8, 8, dtype=torch.uint8)])
def test_other_frames_are_refused_naming_what_is_accepted(model, bad):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) NumPy array: uint8"):
        list(deblur_frames(model, [bad], device="cpu"))
