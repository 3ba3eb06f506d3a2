"""Building blocks shared by the flow network and the deblurring U-Net."""

from __future__ import annotations

import torch
from torch import nn

from ..ops import spatial_rnn

#: Negative slope of every "ReLU" in Table I.
LEAKY_SLOPE = 0.1


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, *, act: bool) -> nn.Module:
    """'Same'-padded convolution, optionally followed by LeakyReLU(0.1)."""
    layer = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
    return nn.Sequential(layer, nn.LeakyReLU(LEAKY_SLOPE, inplace=True)) if act else layer


def deconv(c_in: int, c_out: int, *, act: bool) -> nn.Module:
    """4x4 stride-2 transposed convolution: exactly doubles H and W."""
    layer = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    return nn.Sequential(layer, nn.LeakyReLU(LEAKY_SLOPE, inplace=True)) if act else layer


RNN_MODES = ("rnn", "identity", "concat")


class SpatialRNN(nn.Module):
    """The 'rnn' layer of Table I: four-direction spatially variant RNN (Eq. 13).

    ``mode="rnn"``: (N, C, H, W) features and (N, 4C, H, W) gates -> (N, 4C, H, W).
    ``mode="identity"`` (Table IV 'w/o RNNs'): returns the features, C channels.
    ``mode="concat"`` (Table IV 'concat gates'): ``cat([x, w])``, 5C channels.
    """

    def __init__(self, channels: int, *, mode: str = "rnn", backend: str = "auto") -> None:
        super().__init__()
        if mode not in RNN_MODES:
            raise ValueError(f"RNN mode must be one of {RNN_MODES}, got {mode!r}")
        self.channels = channels
        self.mode = mode
        self.backend = backend

    @property
    def out_channels(self) -> int:
        return {"rnn": 4, "identity": 1, "concat": 5}[self.mode] * self.channels

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "identity":
            return x
        if gates is None:
            raise ValueError(f"SpatialRNN(mode={self.mode!r}) needs gates")
        if self.mode == "concat":
            return torch.cat([x, gates.to(x.dtype)], dim=1)
        return spatial_rnn(x, gates, backend=self.backend)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, backend={self.backend!r}"


def xavier_init(module: nn.Module) -> None:
    """Xavier (Glorot) uniform weights, zero biases, as the paper initialises its layers."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
