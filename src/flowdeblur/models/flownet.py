"""Table I (top): the FlowNetS-style network that estimates flow and the RNN gates."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv, deconv


class FlowNet(nn.Module):
    """Encoder-decoder that reads stacked frames and returns five flows and three gate maps.

    Args:
        in_frames: frames stacked on channels (2 in the paper; 1 for 'single frame',
            3 for 'bidirectional').
        flows_per_scale: 1, or 2 for 'bidirectional' (t->t+1 then t->t-1 on channels).

    Shapes for an input (N, 3*in_frames, H, W), H and W multiples of 64, F = 2*flows_per_scale:
        flows: [flow2 (N, F, H/4, W/4), flow3 (H/8), flow4 (H/16), flow5 (H/32), flow6 (H/64)],
            each in pixels of its own resolution.
        gates: [rnnw1 (N, 96, H/2, W/2), rnnw2 (N, 192, H/4, W/4), rnnw3 (N, 384, H/8, W/8)],
            in (-1, 1).
    """

    def __init__(self, *, in_frames: int = 2, flows_per_scale: int = 1) -> None:
        super().__init__()
        f = 2 * flows_per_scale
        self.in_frames = in_frames
        self.flows_per_scale = flows_per_scale
        # Encoder: every conv is followed by LeakyReLU(0.1).
        self.conv1 = conv(3 * in_frames, 24, 7, 2, act=True)  # 1/2
        self.conv2 = conv(24, 48, 5, 2, act=True)  # 1/4
        self.conv3 = conv(48, 96, 5, 2, act=True)  # 1/8
        self.conv3_1 = conv(96, 96, 3, act=True)
        self.conv4 = conv(96, 192, 3, 2, act=True)  # 1/16
        self.conv4_1 = conv(192, 192, 3, act=True)
        self.conv5 = conv(192, 192, 3, 2, act=True)  # 1/32
        self.conv5_1 = conv(192, 192, 3, act=True)
        self.conv6 = conv(192, 384, 3, 2, act=True)  # 1/64
        self.conv6_1 = conv(384, 384, 3, act=True)
        # Decoder: at each scale, a flow (plain 3x3 conv), its learned 2x upsampling, and a
        # deconv of the features; the next scale concatenates skip + deconv + upsampled flow.
        self.flow6 = conv(384, f, 3, act=False)
        self.up6to5 = deconv(f, f, act=False)
        self.deconv6 = deconv(384, 192, act=True)
        c5 = 192 + 192 + f  # 386
        self.flow5 = conv(c5, f, 3, act=False)
        self.up5to4 = deconv(f, f, act=False)
        self.deconv5 = deconv(c5, 96, act=True)
        c4 = 192 + 96 + f  # 290
        self.flow4 = conv(c4, f, 3, act=False)
        self.up4to3 = deconv(f, f, act=False)
        self.deconv4 = deconv(c4, 48, act=True)
        c3 = 96 + 48 + f  # 146
        self.flow3 = conv(c3, f, 3, act=False)
        self.up3to2 = deconv(f, f, act=False)
        self.deconv3 = deconv(c3, 24, act=True)
        c2 = 48 + 24 + f  # 74
        self.flow2 = conv(c2, f, 3, act=False)
        self.up2to1 = deconv(f, f, act=False)
        self.deconv2 = deconv(c2, 12, act=True)
        c1 = 24 + 12 + f  # 38
        # RNN-weight heads: 3x3 conv + tanh, one block of C gates per direction (Sec. III-B).
        self.rnnw1 = conv(c1, 4 * 24, 3, act=False)
        self.rnnw2 = conv(c2, 4 * 48, 3, act=False)
        self.rnnw3 = conv(c3, 4 * 96, 3, act=False)

    def forward(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        c1 = self.conv1(frames)
        c2 = self.conv2(c1)
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        c6 = self.conv6_1(self.conv6(c5))

        flow6 = self.flow6(c6)
        cat5 = torch.cat([c5, self.deconv6(c6), self.up6to5(flow6)], dim=1)
        flow5 = self.flow5(cat5)
        cat4 = torch.cat([c4, self.deconv5(cat5), self.up5to4(flow5)], dim=1)
        flow4 = self.flow4(cat4)
        cat3 = torch.cat([c3, self.deconv4(cat4), self.up4to3(flow4)], dim=1)
        flow3 = self.flow3(cat3)
        cat2 = torch.cat([c2, self.deconv3(cat3), self.up3to2(flow3)], dim=1)
        flow2 = self.flow2(cat2)
        cat1 = torch.cat([c1, self.deconv2(cat2), self.up2to1(flow2)], dim=1)

        gates = [torch.tanh(self.rnnw1(cat1)), torch.tanh(self.rnnw2(cat2)),
                 torch.tanh(self.rnnw3(cat3))]
        return [flow2, flow3, flow4, flow5, flow6], gates
