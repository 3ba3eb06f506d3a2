"""Table I (bottom): the deblurring U-Net whose encoder runs spatially variant RNNs."""

from __future__ import annotations

import torch
from torch import nn

from .layers import SpatialRNN, conv, deconv


class DeblurNet(nn.Module):
    """U-Net that deblurs frame t, guided by gates from the flow network.

    Args:
        rnn_mode: ``"rnn"`` (paper), ``"identity"`` (Table IV 'w/o RNNs') or ``"concat"``
            (Table IV 'concat gates'); see :class:`SpatialRNN`.
        rnn_position: ``"encoder"`` (paper: after d_conv1..3) or ``"decoder"`` (after
            d_conv3_2, d_deconv3_1 and d_deconv2_1).
        rnn_backend: backend name passed to :func:`flowdeblur.ops.spatial_rnn`.

    Shapes: image (N, 3, H, W) with H, W multiples of 8; gates
    [(N, 96, H/2, W/2), (N, 192, H/4, W/4), (N, 384, H/8, W/8)] or None for 'identity'.
    Returns (N, 3, H, W). The encoder has no activation so that the RNN inputs stay dense
    (Sec. III-B); the decoder uses LeakyReLU(0.1) except the final d_conv0.
    """

    def __init__(
        self, *, rnn_mode: str = "rnn", rnn_position: str = "encoder", rnn_backend: str = "auto"
    ) -> None:
        super().__init__()
        if rnn_position not in ("encoder", "decoder"):
            raise ValueError(f"rnn_position must be 'encoder' or 'decoder', got {rnn_position!r}")
        self.rnn_position = rnn_position
        in_enc = rnn_position == "encoder"
        self.d_rnn1 = SpatialRNN(24, mode=rnn_mode, backend=rnn_backend)  # 1/2
        self.d_rnn2 = SpatialRNN(48, mode=rnn_mode, backend=rnn_backend)  # 1/4
        self.d_rnn3 = SpatialRNN(96, mode=rnn_mode, backend=rnn_backend)  # 1/8
        # Channels of the three encoder outputs (which are also the skip connections).
        e1 = self.d_rnn1.out_channels if in_enc else 24
        e2 = self.d_rnn2.out_channels if in_enc else 48
        e3 = self.d_rnn3.out_channels if in_enc else 96
        # Channels after the decoder-side RNN layers (unchanged when they are in the encoder).
        r3 = 96 if in_enc else self.d_rnn3.out_channels
        r2 = 48 if in_enc else self.d_rnn2.out_channels
        r1 = 24 if in_enc else self.d_rnn1.out_channels

        self.d_conv1 = conv(3, 24, 5, 2, act=False)
        self.d_conv2 = conv(e1, 48, 5, 2, act=False)
        self.d_conv3 = conv(e2, 96, 5, 2, act=False)
        self.d_conv3_2 = conv(e3, 96, 5, act=True)
        self.d_conv3_3 = conv(r3, 48, 5, act=True)
        self.d_deconv3 = deconv(48 + e3, 48, act=True)
        self.d_deconv3_1 = conv(48, 48, 5, act=True)
        self.d_deconv2 = deconv(r2 + e2, 24, act=True)
        self.d_deconv2_1 = conv(24, 24, 5, act=True)
        self.d_deconv1 = deconv(r1 + e1, 12, act=True)
        self.d_deconv1_1 = conv(12, 12, 5, act=True)
        # No global residual: the last conv sees the decoder output and the blurry frame.
        self.d_conv0 = conv(12 + 3, 3, 5, act=False)

    def forward(self, image: torch.Tensor, gates: list[torch.Tensor] | None) -> torch.Tensor:
        g1, g2, g3 = gates if gates is not None else (None, None, None)
        enc = self.rnn_position == "encoder"
        e1 = self.d_conv1(image)  # (N, 24, H/2, W/2)
        if enc:
            e1 = self.d_rnn1(e1, g1)  # (N, 96, H/2, W/2)
        e2 = self.d_conv2(e1)  # (N, 48, H/4, W/4)
        if enc:
            e2 = self.d_rnn2(e2, g2)  # (N, 192, H/4, W/4)
        e3 = self.d_conv3(e2)  # (N, 96, H/8, W/8)
        if enc:
            e3 = self.d_rnn3(e3, g3)  # (N, 384, H/8, W/8)

        y = self.d_conv3_2(e3)  # (N, 96, H/8, W/8)
        if not enc:
            y = self.d_rnn3(y, g3)
        y = self.d_conv3_3(y)  # (N, 48, H/8, W/8)
        y = self.d_deconv3_1(self.d_deconv3(torch.cat([y, e3], dim=1)))  # (N, 48, H/4, W/4)
        if not enc:
            y = self.d_rnn2(y, g2)
        y = self.d_deconv2_1(self.d_deconv2(torch.cat([y, e2], dim=1)))  # (N, 24, H/2, W/2)
        if not enc:
            y = self.d_rnn1(y, g1)
        y = self.d_deconv1_1(self.d_deconv1(torch.cat([y, e1], dim=1)))  # (N, 12, H, W)
        return self.d_conv0(torch.cat([y, image], dim=1))  # (N, 3, H, W)

    @torch.no_grad()
    def init_output_as_identity(self, feature_scale: float = 0.1) -> None:
        """Start d_conv0 as "output = blurry frame t": its taps on the image channels become
        the identity (centre tap 1, others 0) and its taps on the decoder features are scaled
        by ``feature_scale``. Not the paper's Xavier init: a short-budget option that lets
        training start from the input's quality instead of from noise (the architecture has
        no global residual, so otherwise it must first learn to copy the frame).
        """
        weight = self.d_conv0.weight  # (3, 12 + 3, 5, 5)
        weight[:, :12] *= feature_scale
        weight[:, 12:] = 0
        centre = weight.shape[-1] // 2
        for c in range(3):
            weight[c, 12 + c, centre, centre] = 1.0
        self.d_conv0.bias.zero_()

