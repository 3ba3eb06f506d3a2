"""What one training step minimises: the forward pass of a stage and its loss.

* stage "flow": the flow network alone, fed the blurry frames it sees in stage 2, against the
  synthetic ground-truth flow (multi-scale EPE; the t -> t-1 flows too for 'bidirectional').
* stage "joint": the whole FlowDeblurNet with Eq. 14 (warping terms + image MSE), plus, with
  ``reblur.weight`` > 0, the reblurring loss on the batch's unlabelled triples
  (:mod:`flowdeblur.training.reblur`), which go through the network in the same forward pass.

:func:`freeze_unreached` finds the parameters a stage's loss gives no gradient, which DDP
requires to be frozen.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ..models import VARIANTS, stack_frames
from .batches import IMAGE_KEYS
from .config import TrainConfig
from .losses import eq14_loss, multiscale_epe
from .reblur import DUTY_KEY, UNLABELLED_KEYS, first_samples, joined_inputs, reblur_terms


class StepLoss(NamedTuple):
    """The loss of one forward pass."""

    #: Scalar tensor to minimise.
    total: torch.Tensor
    #: Its named scalar parts, logged every step: {"epe"} (flow) or {"image", "flow"} (joint),
    #: and "reblur" and "reblur_identity" (unweighted) with the reblurring loss.
    parts: dict[str, torch.Tensor]
    #: What TensorBoard shows: "flows", "gates" (lists of tensors) and "image" (None in
    #: stage "flow", where the deblurring network does not run).
    visuals: dict[str, Any]


def compute_loss(net: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig) -> StepLoss:
    """One forward pass of ``net`` on ``batch`` and its loss.

    ``net`` is ``FlowDeblurNet.flownet`` in stage "flow" and the FlowDeblurNet in stage
    "joint" (either possibly wrapped in DistributedDataParallel).
    """
    in_frames = VARIANTS[config.model.variant].in_frames
    prev = batch.get("frame_prev") if in_frames == 3 else None
    if config.stage == "flow":
        frames = [batch["frame_t"], batch["frame_next"], prev][:in_frames]
        flows, gates = net(stack_frames(frames))  # (N, 3 * in_frames, Hp, Wp) in
        epe = multiscale_epe(flows, batch["flow"], batch.get("valid"))
        if in_frames == 3:  # channels 2:4 carry the t -> t-1 flow
            epe = epe + multiscale_epe(
                [f[:, 2:4] for f in flows], batch["flow_prev"], batch.get("valid_prev")
            )
        return StepLoss(epe, {"epe": epe}, {"flows": flows, "gates": gates, "image": None})
    reblur = bool(config.reblur.weight)
    n = batch["frame_t"].shape[0]
    if reblur:  # the unlabelled triples join the labelled samples in one forward pass
        out = net(*joined_inputs(batch, prev is not None))
    else:
        out = net(batch["frame_t"], batch["frame_next"], prev)
    labelled = first_samples(out, n) if reblur else out
    loss = eq14_loss(
        labelled, batch["frame_t"], batch["frame_next"], batch["sharp_t"], frame_prev=prev,
        flow_loss=config.flow_loss, reduction=config.loss_reduction,
        image_loss=config.image_loss,
    )
    total, parts = loss.total, {"image": loss.image, "flow": loss.flow}
    if reblur:
        terms = reblur_terms(out.image[n:], batch, config.reblur.samples, config.loss_reduction)
        total = total + config.reblur.weight * terms.model
        parts |= {"reblur": terms.model, "reblur_identity": terms.identity}
    return StepLoss(total, parts,
                    {"flows": labelled.flows, "gates": labelled.gates, "image": labelled.image})


def _probe_batch(device: torch.device, config: TrainConfig) -> dict[str, torch.Tensor]:
    """A tiny random batch (N=1, 64x64) with every key either stage reads (and, with the
    reblurring loss, one unlabelled triple with its flows)."""
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand((1, 3, 64, 64), generator=g) for k in IMAGE_KEYS}
    batch["flow"] = torch.randn((1, 2, 64, 64), generator=g)
    batch["flow_prev"] = torch.randn((1, 2, 64, 64), generator=g)
    if config.reblur.weight:
        batch |= {k: torch.rand((1, 3, 64, 64), generator=g) for k in UNLABELLED_KEYS}
        batch |= {"unlabelled_flow_next": torch.randn((1, 2, 64, 64), generator=g),
                  "unlabelled_flow_prev": torch.randn((1, 2, 64, 64), generator=g),
                  DUTY_KEY: torch.ones(1)}
    return {k: v.to(device) for k, v in batch.items()}


def freeze_unreached(net: nn.Module, config: TrainConfig, device: torch.device) -> list[str]:
    """Freeze the parameters this stage's loss gives no gradient (e.g. the gate heads under
    the EPE): DDP requires every trained parameter to receive one. Returns their names."""
    loss = compute_loss(net, _probe_batch(device, config), config).total
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    frozen = []
    for (name, p), g in zip(named, grads):
        if g is None:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen
