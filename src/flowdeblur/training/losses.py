"""Training losses: paper Eq. 14 (warping terms + image MSE) and the flow pre-training EPE."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..models.network import FlowDeblurOutput, pad_to_multiple
from ..ops import warp

#: How a squared-error term is reduced (see :func:`eq14_loss`); ``loss_reduction`` in the
#: training config takes one of these.
REDUCTIONS = ("sum", "mean")

#: The image term of Eq. 14: "mse" (the paper), or the robust "charbonnier"
#: (sqrt(d^2 + eps^2), eps = CHARBONNIER_EPS) and "l1", which restoration networks often train
#: with; ``image_loss`` in the training config takes one of these.
IMAGE_LOSSES = ("mse", "charbonnier", "l1")
CHARBONNIER_EPS = 1e-3


@dataclass
class Eq14Loss:
    """The parts of Eq. 14. ``total = image + sum(flow_terms)``; each is a scalar tensor."""

    total: torch.Tensor
    image: torch.Tensor
    flow_terms: list[torch.Tensor] = field(default_factory=list)

    @property
    def flow(self) -> torch.Tensor:
        return sum(self.flow_terms, torch.zeros_like(self.image))


def downsample_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-aligned antialiased downsampling by an integer factor (box filter).

    The network's flows live at exactly 1/4 .. 1/64 of the padded frame, so the factor is
    an integer and a box average over each s x s block is the antialiased, centre-aligned
    filter. Both frames of a pair and the ground-truth flow go through this same function, so
    every term compares signals filtered alike.
    """
    h, w = image.shape[-2:]
    if h % size[0] or w % size[1] or h // size[0] != w // size[1]:
        raise ValueError(f"cannot box-downsample {(h, w)} to {tuple(size)}: not one integer factor")
    factor = h // size[0]
    return image if factor == 1 else F.avg_pool2d(image, factor)


def _squared_error(diff: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Squared L2 of (N, C, H, W) ``diff`` (masked): summed per sample then batch-averaged, or
    the mean over valid pixel-channels."""
    sq = diff.float().square()
    if mask is not None:
        sq = sq * mask
    if reduction == "sum":
        return sq.sum() / diff.shape[0]
    denom = (mask.sum() * diff.shape[1]) if mask is not None else torch.tensor(float(sq.numel()))
    return sq.sum() / denom.clamp_min(1.0)


def image_error(diff: torch.Tensor, kind: str, reduction: str) -> torch.Tensor:
    """The image term on (N, C, H, W) ``diff`` = output - sharp: per-pixel squared error
    ("mse"), Charbonnier or absolute error, reduced like :func:`_squared_error`."""
    if kind == "mse":
        return _squared_error(diff, None, reduction)
    d = diff.float()
    err = (d.square() + CHARBONNIER_EPS**2).sqrt() if kind == "charbonnier" else d.abs()
    return err.sum() / diff.shape[0] if reduction == "sum" else err.mean()


def warping_loss(
    flow: torch.Tensor, frame_t: torch.Tensor, frame_other: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """One Eq. 14 flow term: ``|| W(B2_s, F_s) - B1_s ||^2`` at the flow's own scale.

    Args:
        flow: (N, 2, h, w) flow at scale s, in pixels of that scale.
        frame_t, frame_other: (N, 3, H, W) padded frames with H/h = W/w = s.
    Samples of the warped frame that fall outside the image are masked out.
    """
    size = flow.shape[-2:]
    b1 = downsample_to(frame_t, size)
    b2 = downsample_to(frame_other, size)
    warped, mask = warp(b2.to(flow.dtype), flow, return_mask=True)
    return _squared_error(warped.float() - b1.float(), mask.float(), reduction)


def eq14_loss(
    output: FlowDeblurOutput,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    sharp_t: torch.Tensor,
    *,
    frame_prev: torch.Tensor | None = None,
    flow_loss: bool = True,
    reduction: str = "sum",
    image_loss: str = "mse",
) -> Eq14Loss:
    """Paper Eq. 14: warping terms at the 5 flow scales plus the image term.

    ``L = sum_n [ sum_s || W(B2_{n,s}, F_{n,s}) - B1_{n,s} ||^2 + || I^_n - I_n ||^2 ]``

    Reduction ``"sum"`` (the paper and the release): each term is a squared L2 norm summed
    over pixels and channels and averaged over the batch, so a term weighs by its pixel count
    (the full-resolution image term dominates the 1/4 .. 1/64 warping terms). Unlike Caffe's
    EuclideanLoss there is no factor 1/2. ``"mean"``: each term is the mean over its
    (valid) pixels and channels instead, a scale-free alternative.

    Args:
        output: the network output (its ``flows`` are at the padded size).
        frame_t, frame_next: (N, 3, H, W) blurry inputs, as given to the network.
        sharp_t: (N, 3, H, W) ground truth for frame t.
        frame_prev: for the 'bidirectional' variant, whose flows carry t->t-1 on channels 2:4.
        flow_loss: False gives Table IV's "w/o flow losses".
        image_loss: the image term, one of :data:`IMAGE_LOSSES` ("mse": Eq. 14 as written).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if image_loss not in IMAGE_LOSSES:
        raise ValueError(f"image_loss must be one of {IMAGE_LOSSES}, got {image_loss!r}")
    if output.image.shape != sharp_t.shape:
        raise ValueError(f"output {tuple(output.image.shape)} vs sharp {tuple(sharp_t.shape)}")
    image_term = image_error(output.image.float() - sharp_t.float(), image_loss, reduction)
    flow_terms: list[torch.Tensor] = []
    if flow_loss and output.flows:
        if frame_next is None:
            raise ValueError("the flow terms need frame_next")
        p_t = pad_to_multiple(frame_t)
        p_next = pad_to_multiple(frame_next)
        p_prev = pad_to_multiple(frame_prev) if frame_prev is not None else None
        for flow in output.flows:
            term = warping_loss(flow[:, :2], p_t, p_next, reduction)
            if flow.shape[1] == 4:
                if p_prev is None:
                    raise ValueError("bidirectional flows need frame_prev for their second term")
                term = term + warping_loss(flow[:, 2:4], p_t, p_prev, reduction)
            flow_terms.append(term)
    total = image_term + sum(flow_terms, torch.zeros_like(image_term))
    return Eq14Loss(total=total, image=image_term, flow_terms=flow_terms)


def multiscale_epe(
    flows: list[torch.Tensor],
    flow_gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    weights: tuple[float, ...] = (0.005, 0.01, 0.02, 0.08, 0.32),
) -> torch.Tensor:
    """Flow pre-training loss: weighted end-point error at every scale (FlowNet's recipe).

    Args:
        flows: predicted flows, finest first, at 1/4 .. 1/64 of ``flow_gt``'s (padded) size,
            each in pixels of its own scale; only channels 0:2 are used.
        flow_gt: (N, 2, H, W) ground truth in full-resolution pixels, H, W multiples of 64.
        valid: optional (N, 1, H, W) mask (1 where the ground truth is defined).
        weights: per-scale weights, finest first (FlowNet's 0.005 .. 0.32, finest first).
    Returns:
        scalar: sum over scales of weight * mean EPE over valid pixels.
    """
    total = flow_gt.new_zeros(())
    for flow, weight in zip(flows, weights):
        size = flow.shape[-2:]
        scale = flow_gt.shape[-1] // size[-1]
        gt = downsample_to(flow_gt, size) / scale  # pixels of this scale
        epe = (flow[:, :2].float() - gt.float()).norm(dim=1, keepdim=True)
        if valid is not None:
            m = (downsample_to(valid.float(), size) > 0.999).float()
            total = total + weight * (epe * m).sum() / m.sum().clamp_min(1.0)
        else:
            total = total + weight * epe.mean()
    return total
