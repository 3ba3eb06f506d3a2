"""FlowDeblurNet: the flow network and the deblurring U-Net composed (paper Fig. 1).

Table IV's ablations are the ``variant`` argument. Parameter counts (with biases):

================ =========== ==================================================================
variant          parameters  change from the full model
================ =========== ==================================================================
full             8,281,696   Table I as written
no_rnn             725,280   no flow network; RNN layers are the identity (24/48/96 channels)
concat_gates     8,752,864   each RNN layer is ``cat([x, w])`` (5C channels)
single_frame     8,278,168   the flow network sees frame t only (conv1: 3 input channels)
bidirectional    8,327,388   flow net sees t, t+1, t-1 (9 ch), two flows per scale
decoder_rnn      7,282,912   RNNs after d_conv3_2, d_deconv3_1, d_deconv2_1; plain encoder
================ =========== ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .deblurnet import DeblurNet
from .flownet import FlowNet
from .layers import SpatialRNN, xavier_init

#: variant name -> (flow net frames or 0 for none, flows per scale, rnn mode, rnn position)
VARIANTS: dict[str, tuple[int, int, str, str]] = {
    "full": (2, 1, "rnn", "encoder"),
    "no_rnn": (0, 1, "identity", "encoder"),
    "concat_gates": (2, 1, "concat", "encoder"),
    "single_frame": (1, 1, "rnn", "encoder"),
    "bidirectional": (3, 2, "rnn", "encoder"),
    "decoder_rnn": (2, 1, "rnn", "decoder"),
}

#: The network downsamples six times (conv1..conv6), so inputs are padded to this multiple.
PAD_MULTIPLE = 64


@dataclass
class FlowDeblurOutput:
    """What :class:`FlowDeblurNet` returns.

    image: (N, 3, H, W) deblurred frame t, cropped back to the input size.
    flows: five (N, F, Hp/s, Wp/s) flows for s = 4, 8, 16, 32, 64 (finest first) at the PADDED
        size (Hp, Wp), in pixels of their own scale; F = 2, or 4 for 'bidirectional'
        (t->t+1 then t->t-1). Empty for 'no_rnn'.
    gates: the three gate maps rnnw1..3 (N, 4C, Hp/s, Wp/s), s = 2, 4, 8. Empty for 'no_rnn'.
    padded_size: (Hp, Wp).
    """

    image: torch.Tensor
    flows: list[torch.Tensor] = field(default_factory=list)
    gates: list[torch.Tensor] = field(default_factory=list)
    padded_size: tuple[int, int] = (0, 0)


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad the bottom and right of (N, C, H, W) up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class FlowDeblurNet(nn.Module):
    """Deep dynamic scene deblurring from optical flow (Zhang et al., TCSVT 2021).

    Args:
        variant: one of :data:`VARIANTS` (see the module docstring for what each changes).
        rnn_backend: backend for :func:`flowdeblur.ops.spatial_rnn` ("auto" picks the fastest).

    Call ``model(frame_t, frame_next)`` with (N, 3, H, W) floats in [0, 1], any H, W >= 1.
    'single_frame' needs only ``frame_t``; 'bidirectional' also takes ``frame_prev``.
    """

    def __init__(self, variant: str = "full", *, rnn_backend: str = "auto") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
        self.variant = variant
        in_frames, flows_per_scale, rnn_mode, rnn_position = VARIANTS[variant]
        self.flownet = (
            FlowNet(in_frames=in_frames, flows_per_scale=flows_per_scale) if in_frames else None
        )
        self.deblurnet = DeblurNet(
            rnn_mode=rnn_mode, rnn_position=rnn_position, rnn_backend=rnn_backend
        )
        xavier_init(self)

    @property
    def config(self) -> dict:
        """Constructor arguments that define the architecture (saved with the weights)."""
        return {"variant": self.variant}

    @property
    def in_frames(self) -> int:
        return VARIANTS[self.variant][0]

    def set_rnn_backend(self, backend: str) -> None:
        """Switch every RNN layer to ``backend`` (any name accepted by ``spatial_rnn``)."""
        for m in self.modules():
            if isinstance(m, SpatialRNN):
                m.backend = backend

    def forward(
        self,
        frame_t: torch.Tensor,
        frame_next: torch.Tensor | None = None,
        frame_prev: torch.Tensor | None = None,
    ) -> FlowDeblurOutput:
        _check_frame("frame_t", frame_t, None)
        n, _, h, w = frame_t.shape
        frames = [frame_t]
        if self.in_frames >= 2:
            if frame_next is None:
                raise ValueError(f"variant {self.variant!r} needs frame_next")
            _check_frame("frame_next", frame_next, frame_t)
            frames.append(frame_next)
        if self.in_frames == 3:
            if frame_prev is None:
                raise ValueError("variant 'bidirectional' needs frame_prev")
            _check_frame("frame_prev", frame_prev, frame_t)
            frames.append(frame_prev)

        stacked = pad_to_multiple(torch.cat(frames, dim=1))  # (N, 3*frames, Hp, Wp)
        image = stacked[:, :3]
        flows: list[torch.Tensor] = []
        gates: list[torch.Tensor] = []
        if self.flownet is not None:
            flows, gates = self.flownet(stacked)
        out = self.deblurnet(image, gates if gates else None)
        return FlowDeblurOutput(
            image=out[:, :, :h, :w],
            flows=flows,
            gates=gates,
            padded_size=(stacked.shape[-2], stacked.shape[-1]),
        )


def _check_frame(name: str, x: torch.Tensor, like: torch.Tensor | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be an (N, 3, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have H, W >= 1, got {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but frame_t has {tuple(like.shape)}"
        )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, biases included."""
    return sum(p.numel() for p in model.parameters())
