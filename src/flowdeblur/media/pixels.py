"""Conversions between the package's images, (3, H, W) float32 in [0, 1], and the integer
(H, W, 3) arrays that image and video codecs read and write."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(array: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W, 3) integer array -> (3, H, W) float32 divided by ``scale``, contiguous."""
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
    return t.to(torch.float32).div_(scale)


def quantize(image: torch.Tensor, bits: int) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 (``bits=8``) or uint16 (``bits=16``) numpy
    array, rounded; values outside [0, 1] are clipped and NaN becomes 0.

    Raises:
        ValueError: ``image`` is not (3, H, W).
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    top = 255 if bits == 8 else 65535
    x = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0)
    x = x.clamp(0.0, 1.0).mul(top).round_()
    dtype = torch.uint8 if bits == 8 else torch.int32  # torch has no uint16 arithmetic on CPU
    arr = x.to(dtype).permute(1, 2, 0).contiguous().numpy()
    return arr if bits == 8 else arr.astype(np.uint16)
