"""Accuracy of the flow network: end-point error (EPE) against ground-truth flow.

The network's finest flow, ``flows[0]``, lives at 1/4 of the padded input size, in pixels of
that scale. :func:`predict_flow` brings it to the input's resolution the way the inference
code does (bilinear x4, values x4, crop the padding away), and :func:`flow_epe` scores it:
the mean Euclidean distance to the ground truth over the valid pixels of all samples (pixels
pooled, so every valid pixel weighs the same). Beside it the EPE of the trivial predictor
"no motion" (zero flow) is reported, which is the mean ground-truth flow magnitude: a flow
network is only useful where it beats that baseline clearly.

Two test sets:

* :func:`synthetic_epe`: the held-out synthetic set of :mod:`flowdeblur.evaluation.heldout`
  (a seed that training never uses, rendered on the CPU so that it is the same everywhere).
* :func:`motorcycle_epe`: the real Middlebury 2014 "motorcycle" stereo pair that ships with
  scikit-image. A rectified stereo pair is a two-frame "video" whose motion is purely
  horizontal: ``left(p) ~ right(p - d(p))`` for the left image's disparity ``d >= 0``, so in
  this project's backward-warp convention (``left ~ warp(right, flow)``) the flow left->right
  is ``(-d, 0)``. Pixels without ground truth are marked ``inf`` by scikit-image (its
  docstring says NaN; both are treated as invalid). The images are area-downscaled by
  ``scale`` (the disparity divided by it), because the flow network was trained on motions of
  at most a few tens of pixels and the pair holds disparities up to 60 px.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from ..data.synthetic import SceneConfig
from ..errors import UserError
from ..models import full_resolution_flow, stack_frames
from .heldout import HELDOUT_SEED, heldout_synthetic_batches

__all__ = [
    "flow_epe",
    "format_flow_table",
    "motorcycle_epe",
    "motorcycle_pair",
    "predict_flow",
    "synthetic_epe",
]


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def predict_flow(
    model: torch.nn.Module,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's finest flow t -> next at the input's resolution, in pixels.

    Runs only the flow network (``model.flownet``; the deblurring U-Net plays no part in the
    flow). Frames as the model takes them: (N, 3, H, W) in [0, 1]; ``frame_prev`` only for the
    'bidirectional' variant, ``frame_next`` not for 'single_frame'. Returns (N, 2, H, W)
    float32: ``flows[0]`` (N, F, Hp/4, Wp/4) upsampled bilinearly x4, multiplied by 4 and
    cropped to (H, W) (:func:`flowdeblur.models.full_resolution_flow`). Call under
    ``torch.no_grad()`` unless gradients are wanted.
    """
    flownet = getattr(model, "flownet", None)
    if flownet is None:
        variant = getattr(model, "variant", type(model).__name__)
        raise UserError(f"variant {variant!r} has no flow network, so it has no flow to score")
    in_frames = model.in_frames
    frames = [frame_t, frame_next, frame_prev][:in_frames]
    if any(f is None for f in frames):
        raise ValueError(f"a model reading {in_frames} frames needs frame_t, frame_next"
                         + (" and frame_prev" if in_frames == 3 else ""))
    stacked = stack_frames(frames)  # (N, 3 * in_frames, Hp, Wp)
    flows, _ = flownet(stacked)
    quarter = (stacked.shape[-2] // 4, stacked.shape[-1] // 4)
    if tuple(flows[0].shape[-2:]) != quarter:
        raise ValueError(f"the finest flow {tuple(flows[0].shape)} is not at 1/4 of the padded "
                         f"input {tuple(stacked.shape)}")
    return full_resolution_flow(flows[0], tuple(frame_t.shape[-2:]))


def flow_epe(model: torch.nn.Module, samples: Iterable[dict[str, torch.Tensor]]) -> dict:
    """Mean end-point error of the model's finest flow, and of zero flow, on valid pixels.

    Args:
        model: a :class:`~flowdeblur.models.FlowDeblurNet` with a flow network (or anything
            with ``in_frames`` and a ``flownet`` returning ``(flows, gates)`` like
            :class:`~flowdeblur.models.FlowNet`). Put in eval mode while scoring, then back.
        samples: batches (dicts) with ``frame_t``, ``frame_next`` (N, 3, H, W) in [0, 1], ground
            truth ``flow`` (N, 2, H, W) in pixels (frame 0 -> frame 1, warp convention),
            optionally ``valid`` (N, 1, H, W) (> 0.5: scored) and ``frame_prev`` (needed by
            'bidirectional'). Non-finite ground truth counts as invalid.
    Returns:
        ``{"epe": float, "zero_epe": float, "valid_pixels": int, "samples": int}``: EPE in
        pixels averaged over all valid pixels of all samples; ``zero_epe`` the same for a
        predictor that always says "no motion" (the mean ground-truth magnitude).
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    err_sum = zero_sum = 0.0
    count = n_samples = 0
    try:
        with torch.no_grad():
            for batch in samples:
                gt = batch["flow"].to(device, torch.float32)
                valid = torch.isfinite(gt).all(dim=1, keepdim=True)
                if batch.get("valid") is not None:
                    valid &= batch["valid"].to(device) > 0.5
                gt = torch.where(valid, gt, torch.zeros_like(gt))
                frames = [batch.get(k) for k in ("frame_t", "frame_next", "frame_prev")]
                frames = [f.to(device, torch.float32) if f is not None else None for f in frames]
                pred = predict_flow(model, *frames)
                if pred.shape != gt.shape:
                    raise ValueError(f"predicted flow {tuple(pred.shape)} vs ground truth "
                                     f"{tuple(gt.shape)}")
                m = valid.float()
                err_sum += float(((pred - gt).norm(dim=1, keepdim=True) * m).sum())
                zero_sum += float((gt.norm(dim=1, keepdim=True) * m).sum())
                count += int(m.sum())
                n_samples += gt.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise UserError("no valid ground-truth flow pixel to score")
    return {"epe": err_sum / count, "zero_epe": zero_sum / count, "valid_pixels": count,
            "samples": n_samples}


def synthetic_epe(
    model: torch.nn.Module,
    *,
    samples: int = 64,
    size: int = 256,
    seed: int = HELDOUT_SEED,
    scene_config: SceneConfig | None = None,
    batch: int = 8,
) -> dict:
    """:func:`flow_epe` on held-out synthetic scenes
    (:func:`~flowdeblur.evaluation.heldout.heldout_synthetic_batches`).

    Returns flow_epe's dict plus ``size`` and ``seed``.
    """
    data = heldout_synthetic_batches(scene_config, samples=samples, size=size, seed=seed,
                                     batch=batch, three_frames=model.in_frames == 3)
    return {**flow_epe(model, data), "size": size, "seed": seed}


def motorcycle_pair(*, scale: int = 4) -> dict[str, torch.Tensor]:
    """The Middlebury motorcycle stereo pair (scikit-image) as a flow test sample.

    The images (500 x 741) are cropped to multiples of ``scale`` and area-averaged by it; the
    disparity likewise, divided by ``scale``; a downscaled pixel is valid only if all of its
    ``scale x scale`` source pixels have ground truth. Returns a batch of one:
    ``frame_t`` = left, ``frame_next`` = right (1, 3, h, w) in [0, 1]; ``flow`` (1, 2, h, w) =
    (-disparity, 0), the left -> right flow in the warp convention
    (``left ~ warp(right, flow)``); ``valid`` (1, 1, h, w) in {0, 1}.
    """
    if not isinstance(scale, int) or scale < 1:
        raise UserError(f"scale must be a positive integer, got {scale!r}")
    left, right, disp = skimage_data.stereo_motorcycle()
    h = left.shape[0] // scale * scale
    w = left.shape[1] // scale * scale
    if h < 1 or w < 1:
        raise UserError(f"scale {scale} leaves nothing of the {left.shape[:2]} image")

    def image(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a[:h, :w]).permute(2, 0, 1)[None].float() / 255.0

    d = disp[:h, :w].astype(np.float64)
    ok = np.isfinite(d)  # scikit-image marks missing ground truth with inf
    d_t = torch.from_numpy(np.where(ok, d, 0.0))[None, None]
    ok_t = torch.from_numpy(ok.astype(np.float64))[None, None]
    valid = F.avg_pool2d(ok_t, scale) > 1.0 - 1e-9
    disparity = F.avg_pool2d(d_t, scale) / scale  # mean over the block; pixels of the new scale
    flow = torch.cat([-disparity, torch.zeros_like(disparity)], dim=1)
    return {
        "frame_t": F.avg_pool2d(image(left), scale),
        "frame_next": F.avg_pool2d(image(right), scale),
        "flow": torch.where(valid, flow, torch.zeros_like(flow)).float(),
        "valid": valid.float(),
    }


def motorcycle_epe(model: torch.nn.Module, *, scale: int = 4) -> dict:
    """:func:`flow_epe` on the motorcycle stereo pair downscaled by ``scale``.

    Only two-frame flow networks apply (the pair has no third frame): 'bidirectional' gets the
    left image as its previous frame too, which makes its t->t-1 flow trivially zero and
    leaves the scored t->t+1 flow as meaningful as its training allows. Returns flow_epe's dict
    plus ``scale`` and ``size`` (h, w).
    """
    pair = motorcycle_pair(scale=scale)
    if getattr(model, "in_frames", 2) == 3:
        pair = {**pair, "frame_prev": pair["frame_t"]}
    return {**flow_epe(model, [pair]), "scale": scale, "size": list(pair["frame_t"].shape[-2:])}


def format_flow_table(rows: dict[str, dict]) -> str:
    """Markdown table of EPE results: ``{test set name: flow_epe dict}`` -> one row each."""
    lines = ["| test set | samples | valid pixels | EPE model (px) | EPE zero flow (px) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['samples']} | {r['valid_pixels']} | {r['epe']:.3f} | "
                     f"{r['zero_epe']:.3f} |")
    return "\n".join(lines)
