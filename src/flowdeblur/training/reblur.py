"""The self-supervised reblurring loss on real blurry video without ground truth (after Chen
et al., "Reblur2Deblur", CVPR 2018, adapted to FlowDeblurNet), trained beside Eq. 14.

Blur model. A blurry frame is the average, over its exposure, of the sharp scene moving along
its motion, in linear light. With the exposure centred on frame t, lasting the fraction ``d``
(duty) of a frame interval, and ``L`` the sRGB decoding (``data.blur_synthesis``)::

    B_t = L^-1( 1/d * integral over s in [-d/2, d/2] of L(S_{t+s}) ds )

Motion. Flows follow docs/DESIGN.md: ``warp(img, flow)(p) = img(p + flow(p))`` and
``frame_t ~ warp(frame_next, flow)``. So ``F+`` (t -> t+1) says the point seen at p in frame t
is at ``p + F+(p)`` in frame t+1, and ``F-`` (t -> t-1) where it is in frame t-1. With
constant velocity between t-1 and t+1, at time t+s that point is at ``p + s F+(p)`` (s > 0) or
``p + |s| F-(p)`` (s < 0), and (taking the flow at the target pixel, as backward warping does)
the scene at time t+s is the sharp frame t warped back along it::

    S_{t+s} ~ warp(S_t, -s F+)      s > 0
    S_{t+s} ~ warp(S_t, -|s| F-)    s < 0

Check: content moving right by v pixels per frame has ``frame_{t+1}(x) = frame_t(x - v)``,
hence ``F+ = +v``, and ``warp(S_t, -s F+)(x) = S_t(x - s v)``: the content moved right by s v.

Reblurring. The integral becomes the mean over K midpoint samples ``s_k = d u_k`` with
``u_k = (k + 1/2) / K - 1/2`` (k = 0 .. K-1; for odd K the middle sample is frame t itself)::

    R(D_t) = L^-1( 1/K sum_k warp(L(D_t), -s_k F_k) ),   F_k = F+ if s_k > 0 else F-

applied to the network's output ``D_t``. A pixel counts only where every sample's warp stays
inside the frame (:func:`reblur`'s mask). The warps are bilinear: a sample shifted by a
fraction of a pixel is also low-passed a little, so ``R`` blurs fine texture that moves less
than a pixel slightly more than the exposure it models.

Flows. ``F+`` and ``F-`` come from a frozen copy of the flow network as the run starts
(:class:`FrozenFlow`, no gradient through it), run on the blurry pairs as deblurring pairs them:
(t, t+1) and (t, t-1), or the 'bidirectional' triple at once; their finest scale is brought
to full resolution (``models.full_resolution_flow``). No triple spans a scene cut
(:mod:`flowdeblur.training.unlabelled` leaves those out).

Duty. Never estimated: each unlabelled triple's ``d`` is drawn from ``U(reblur.duty_range)``
(a setting, default U(0.5, 1.0)) when the triple is drawn (:mod:`flowdeblur.training.unlabelled`).

Loss. Charbonnier ``sqrt((R(D_t) - B_t)^2 + eps^2)`` (eps = ``losses.CHARBONNIER_EPS``; robust
to where the constant-velocity model and the flows fail: occlusions, flow errors) against
the blurry input ``B_t``, over the masked pixels, reduced as ``loss_reduction`` reduces Eq. 14
("sum": summed per sample, batch-averaged; "mean": the mean over masked pixel-channels); the
step minimises ``Eq. 14 + reblur.weight * loss``. The same error of the identity
(``R(B_t)`` against ``B_t``: the output = input) is logged beside it: a model that collapses
toward its input shows a loss near the identity's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from ..data.blur_synthesis import srgb_to_linear
from ..errors import UserError
from ..models import VARIANTS, FlowDeblurOutput, full_resolution_flow, stack_frames
from ..ops import warp
from .losses import CHARBONNIER_EPS

if TYPE_CHECKING:
    from .config import TrainConfig

#: Unlabelled triples in a batch: (N, 3, H, W) sRGB frames t, t+1 and t-1 of real video.
UNLABELLED_KEYS = ("unlabelled_t", "unlabelled_next", "unlabelled_prev")
#: (N,) duty of each triple.
DUTY_KEY = "unlabelled_duty"
#: Added by :meth:`FrozenFlow.add_flows`: (N, 2, H, W) flows t -> t+1 and t -> t-1.
FLOW_KEYS = ("unlabelled_flow_next", "unlabelled_flow_prev")


@dataclass
class ReblurConfig:
    """The reblurring loss on ``data.unlabelled_videos`` (this module)."""

    #: Its weight beside Eq. 14 (0: off).
    weight: float = 0.0
    #: Unlabelled triples (t-1, t, t+1) per step (global, split over the processes).
    batch_size: int = 4
    #: Sub-exposure samples K averaged per reblurred frame.
    samples: int = 17
    #: Each triple's duty (exposure / frame interval), drawn uniformly from this range.
    duty_range: tuple[float, float] = (0.5, 1.0)


def check_reblur_config(config: TrainConfig) -> None:
    """UserError for bad ``reblur`` settings, or for what the loss needs and lacks: joint
    training of a model whose flow network reads two frames or more, start weights (its flows
    come from a frozen copy of them) and unlabelled videos, listed only when the loss is on."""
    r = config.reblur
    if not (math.isfinite(r.weight) and r.weight >= 0):
        raise UserError(f"reblur.weight must be a finite number >= 0; got {r.weight!r}")
    for key, value in (("batch_size", r.batch_size), ("samples", r.samples)):
        if value < 1:
            raise UserError(f"reblur.{key} must be >= 1; got {value!r}")
    lo, hi = r.duty_range
    if not 0 < lo <= hi <= 1:
        raise UserError(f"reblur.duty_range must be 0 < low <= high <= 1; got {[lo, hi]}")
    videos = config.data.unlabelled_videos
    if r.weight == 0:
        if videos:
            raise UserError("data.unlabelled_videos is set but reblur.weight is 0: the videos "
                            "would not be read; set reblur.weight > 0 or remove them")
        return
    if not videos:
        raise UserError("reblur.weight > 0 needs data.unlabelled_videos (real blurry videos)")
    if config.stage != "joint":
        raise UserError("the reblurring loss (reblur.weight > 0) trains the deblurring network: "
                        "it needs stage=joint")
    if VARIANTS[config.model.variant].in_frames < 2:
        raise UserError(f"the reblurring loss takes its flows from a flow network of two frames "
                        f"or more; model.variant={config.model.variant} has none")
    if not config.model.init_weights:
        raise UserError("the reblurring loss takes its flows from a frozen copy of the start "
                        "weights' flow network: set model.init_weights (e.g. shipped)")


# ---------------------------------------------------------------------------- the operator


def subexposure_offsets(samples: int) -> torch.Tensor:
    """(K,) float64 ``u_k = (k + 1/2) / K - 1/2``: midpoints of K equal parts of [-1/2, 1/2]."""
    return (torch.arange(samples, dtype=torch.float64) + 0.5) / samples - 0.5


def encode_srgb(linear: torch.Tensor) -> torch.Tensor:
    """``data.blur_synthesis.linear_to_srgb``, the same values, with a finite gradient.

    There the power branch is evaluated at every pixel, at 0 too, where its derivative is
    infinite; ``torch.where`` multiplies that by 0 for the other branch's pixels and gives NaN.
    Holding the power's argument at the branch threshold keeps it finite.
    """
    knee = 0.0031308
    return torch.where(linear <= knee, linear * 12.92,
                       1.055 * linear.clamp(min=knee) ** (1 / 2.4) - 0.055)


def reblur(image: torch.Tensor, flow_next: torch.Tensor, flow_prev: torch.Tensor,
           duty: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``R(image)`` of the module docstring and its mask.

    Args:
        image: (N, 3, H, W) sRGB (the sharp estimate D_t).
        flow_next, flow_prev: (N, 2, H, W) flows t -> t+1 and t -> t-1 in pixels.
        duty: (N,) exposure / frame interval.
        samples: K, the sub-exposure samples.
    Returns:
        reblurred (N, 3, H, W) float32 sRGB, and (N, 1, H, W) float32 1 where every sample's
        warp lies inside the frame, else 0.
    """
    n, c, h, w = image.shape
    u = subexposure_offsets(samples).to(device=image.device, dtype=torch.float32)
    s = (u[:, None] * duty.float()[None, :])[..., None, None, None]  # (K, N, 1, 1, 1)
    # -s F+ after t, -|s| F- = s F- before it; the middle sample (s = 0) is frame t itself.
    flows = torch.where(s > 0, -s * flow_next.float()[None], s * flow_prev.float()[None])
    linear = srgb_to_linear(image.float())
    stacked = linear[None].expand(samples, n, c, h, w).reshape(samples * n, c, h, w)
    warped, inside = warp(stacked, flows.reshape(samples * n, 2, h, w), return_mask=True)
    mean = warped.view(samples, n, c, h, w).mean(0)
    return encode_srgb(mean), inside.view(samples, n, 1, h, w).amin(0)


def charbonnier(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                reduction: str) -> torch.Tensor:
    """Masked Charbonnier error of (N, C, H, W) images: "sum" over masked pixel-channels per
    sample, averaged over the batch, or "mean" over them."""
    err = ((estimate.float() - target.float()).square() + CHARBONNIER_EPS**2).sqrt() * mask
    if reduction == "sum":
        return err.sum() / estimate.shape[0]
    return err.sum() / (mask.sum() * estimate.shape[1]).clamp_min(1.0)


class ReblurTerms(NamedTuple):
    """The reblurring error of the output, and of the identity (no gradient)."""

    model: torch.Tensor
    identity: torch.Tensor


def reblur_terms(output: torch.Tensor, batch: dict[str, torch.Tensor], samples: int,
                 reduction: str) -> ReblurTerms:
    """The reblurring loss of ``output`` (N, 3, H, W), the deblurred unlabelled frames t, and
    the identity's, on the unlabelled part of ``batch`` (flows added by :class:`FrozenFlow`)."""
    target = batch["unlabelled_t"]
    flows = (batch["unlabelled_flow_next"], batch["unlabelled_flow_prev"], batch[DUTY_KEY])
    blurred, inside = reblur(output, *flows, samples)
    model = charbonnier(blurred, target, inside, reduction)
    with torch.no_grad():  # the same flows, so the same mask
        identity = charbonnier(reblur(target, *flows, samples)[0], target, inside, reduction)
    return ReblurTerms(model, identity)


# ---------------------------------------------------------------------------- in training


class FrozenFlow:
    """A frozen copy of the flow network and the flows it gives the unlabelled triples.

    ``flownet``: a ``FlowNet`` reading ``in_frames`` frames (2 or 3); it is put in eval mode
    and its parameters stop requiring gradients.
    """

    def __init__(self, flownet: nn.Module, in_frames: int) -> None:
        self.flownet = flownet.eval().requires_grad_(False)
        self.in_frames = in_frames

    @torch.no_grad()
    def quarter_flows(self, t: torch.Tensor, nxt: torch.Tensor, prev: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(t -> t+1, t -> t-1) flows at the network's finest scale, (N, 2, Hp/4, Wp/4)."""
        if self.in_frames == 3:
            finest = self.flownet(stack_frames([t, nxt, prev]))[0][0]
            return finest[:, :2], finest[:, 2:4]
        # Both pairs in one call, each as deblurring pairs it: (t, t+1) and (t, t-1).
        finest = self.flownet(stack_frames([torch.cat([t, t]), torch.cat([nxt, prev])]))[0][0]
        return finest[: len(t), :2], finest[len(t):, :2]

    @torch.no_grad()
    def add_flows(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` with :data:`FLOW_KEYS` added for its unlabelled triples."""
        t, nxt, prev = (batch[k] for k in UNLABELLED_KEYS)
        q_next, q_prev = self.quarter_flows(t, nxt, prev)
        size = (t.shape[-2], t.shape[-1])
        return {**batch, "unlabelled_flow_next": full_resolution_flow(q_next, size),
                "unlabelled_flow_prev": full_resolution_flow(q_prev, size)}


def joined_inputs(batch: dict[str, torch.Tensor], three_frames: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The network's inputs (t, next, prev or None): the labelled frames, then the unlabelled
    ones, in one batch (one forward pass, as distributed training needs)."""
    t = torch.cat([batch["frame_t"], batch["unlabelled_t"]])
    nxt = torch.cat([batch["frame_next"], batch["unlabelled_next"]])
    prev = torch.cat([batch["frame_prev"], batch["unlabelled_prev"]]) if three_frames else None
    return t, nxt, prev


def first_samples(output: FlowDeblurOutput, n: int) -> FlowDeblurOutput:
    """The output of the first ``n`` samples of a batch."""
    return FlowDeblurOutput(image=output.image[:n], flows=[f[:n] for f in output.flows],
                            gates=[g[:n] for g in output.gates], padded_size=output.padded_size)
