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


@dataclass(frozen=True)
class VariantSpec:
    """What a Table IV variant changes in the architecture."""

    #: Frames the flow network reads (t, then t+1, then t-1); 0 = no flow network.
    in_frames: int
    #: Flows per scale: 1 (t -> t+1), or 2 for 'bidirectional' (t -> t+1, then t -> t-1).
    flows_per_scale: int
    #: How the encoder features meet the gates: "rnn" (Eq. 13), "identity", "concat".
    rnn_mode: str
    #: Where the three RNN layers sit: after the "encoder" convs or in the "decoder".
    rnn_position: str


VARIANTS: dict[str, VariantSpec] = {
    "full": VariantSpec(2, 1, "rnn", "encoder"),
    "no_rnn": VariantSpec(0, 1, "identity", "encoder"),
    "concat_gates": VariantSpec(2, 1, "concat", "encoder"),
    "single_frame": VariantSpec(1, 1, "rnn", "encoder"),
    "bidirectional": VariantSpec(3, 2, "rnn", "encoder"),
    "decoder_rnn": VariantSpec(2, 1, "rnn", "decoder"),
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


def padded_size(size: tuple[int, int], multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """The (Hp, Wp) that :func:`pad_to_multiple` pads an (H, W) input to."""
    h, w = size
    return h + (-h) % multiple, w + (-w) % multiple


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad the bottom and right of (N, C, H, W) up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """The flow network's input: (N, 3, H, W) frames [t, next(, prev)] -> (N, 3k, Hp, Wp),
    concatenated on channels and replicate-padded to multiples of :data:`PAD_MULTIPLE`."""
    return pad_to_multiple(torch.cat(frames, dim=1))


def full_resolution_flow(flow_quarter: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The finest flow at the input's resolution.

    flow_quarter: (N, F, Hp/4, Wp/4), pixels of the 1/4 scale (``FlowDeblurOutput.flows[0]``);
    its first two channels are the t -> next flow. Returns (N, 2, H, W) float32 in pixels,
    bilinearly upsampled x4 (values x4) and cropped to ``size`` = (H, W).
    """
    flow = flow_quarter[:, :2].float()
    flow = F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False) * 4.0
    return flow[:, :, : size[0], : size[1]]


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
        spec = VARIANTS[variant]
        self.flownet = (
            FlowNet(in_frames=spec.in_frames, flows_per_scale=spec.flows_per_scale)
            if spec.in_frames else None
        )
        self.deblurnet = DeblurNet(
            rnn_mode=spec.rnn_mode, rnn_position=spec.rnn_position, rnn_backend=rnn_backend
        )
        xavier_init(self)

    @property
    def config(self) -> dict:
        """Constructor arguments that define the architecture (saved with the weights)."""
        return {"variant": self.variant}

    @property
    def in_frames(self) -> int:
        return VARIANTS[self.variant].in_frames

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

        stacked = stack_frames(frames)  # (N, 3 * in_frames, Hp, Wp)
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
