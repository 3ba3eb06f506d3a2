"""Test-time adaptation: fine-tune a private copy of the weights on the user's own blurry clip
with the self-supervised reblurring loss, then deblur the clip with that copy
(``flowdeblur deblur --adapt STEPS``).

What a step minimises. One triple (t-1, t, t+1) of the clip, drawn uniformly from the triples
that span no scene cut (:func:`flowdeblur.training.unlabelled.uncut_triples`), is cropped at a
uniform position to ``crop`` x ``crop`` pixels (the frame's side where it is smaller) and run
through the network as deblurring pairs frames: (t, t+1), and t-1 too for 'bidirectional'. The
output is reblurred over the exposure along the flows of a frozen copy of the starting flow
network and compared with the blurry frame t (:mod:`flowdeblur.training.reblur`: ``reblur``,
``charbonnier``, ``FrozenFlow``). Beside it, so that the weights cannot drift toward whatever
reblurs well (the identity, for one), Eq. 14 on ``synthetic_batch`` fresh synthetic scenes of
the shipped recipe (``configs/cpu_shipped.yaml``'s scenes, 128 x 128 by default;
:func:`flowdeblur.training.objective.compute_loss`)::

    loss = synthetic_weight * (128^2 / scene area) * Eq14(synthetic)
           + REBLUR_WEIGHT * (128^2 / crop area) * reblur

:data:`REBLUR_WEIGHT` is the training recipe's reblur arm (``reblur.weight`` 0.003 beside
Eq. 14 on 128 x 128 crops, both "sum"-reduced); the area factors keep each term's size per
pixel that of the recipe at any crop or scene size (one 256 x 256 triple is the pixels of the
arm's four 128 x 128 triples).

Duty. The exposure of real footage is unknown: each step's duty is drawn from ``U(duty)``,
default U(0.5, 1.0), as the training's reblurring loss draws it (never estimated).

Optimiser and precision. Adam with the training's betas and weight decay at a constant
``lr`` (no warm-up or decay: runs are short), on every parameter; the forward passes run in
fp32, or under bf16 autocast with ``precision="bf16"`` (the weights, their gradients and Adam
stay fp32, as ``cpu_amp`` trains).

Determinism. Every draw (triple, crop, duty) comes from one CPU generator seeded by ``seed``,
and the synthetic scenes from the data engine's counter-based stream of the same seed: on one
machine with one thread, the same clip, steps and seed give the same weights bit for bit; with
several threads the convolutions' gradients are summed in an order that varies in the last
bits (measured: 2e-9 apart after two steps).

Cost. Per step one forward and backward pass over the crop and over the synthetic batch, and
one flow-network pass over the triple: the crop bounds time and memory, whatever the frame
size. A video is read once, up to :data:`MAX_TRIPLES` triples evenly spaced over it, held as
8-bit RGB (:func:`read_clip`: 96 frames at most, 265 MB at 720p, 600 MB at 1080p).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import NamedTuple

import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource
from ..models import FlowDeblurNet
from ..runtime import Runtime
from .batches import TrainingBatches
from .config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from .objective import compute_loss
from .reblur import DUTY_KEY, FrozenFlow, ReblurConfig, ReblurTerms, reblur_terms
from .rng import rank_seed
from .setup import build_optimizer
from .unlabelled import uncut_triples

#: The reblurring term's weight beside Eq. 14: ``reblur.weight`` of the training recipe's reblur
#: arm (references/recipe_arms.py), set there on crops of :data:`RECIPE_SIDE` pixels.
REBLUR_WEIGHT = 0.003
#: The side of the recipe's square crops (references/configs/cpu_recipe.yaml ``data.crop_size``),
#: the area at which :data:`REBLUR_WEIGHT` holds.
RECIPE_SIDE = 128
#: The default crop side: the paper's training crops.
DEFAULT_CROP = 256
#: The default learning rate: the peak of the recipe that continues the shipped weights on the
#: CPU (references/configs/cpu_recipe.yaml ``optim.lr``), a rate at which they fine-tune
#: without diverging; small beside the 4e-4 they were trained at, since adaptation should move
#: them only as far as one clip warrants.
DEFAULT_LR = 1.5e-4
#: The default duty range, drawn uniformly per step: the training's ``reblur.duty_range``.
DEFAULT_DUTY = ReblurConfig().duty_range
#: Most triples :func:`read_clip` keeps of a video, evenly spaced.
MAX_TRIPLES = 32
#: Synthetic scenes of Eq. 14 per step.
SYNTHETIC_BATCH = 2
#: The scenes of the synthetic anchor: ``data.synthetic`` of configs/cpu_shipped.yaml (the
#: shipped weights' recipe), rendered at :data:`RECIPE_SIDE`.
ANCHOR_SCENES = {"max_camera_motion": 40.0, "max_object_motion": 40.0,
                 "motion_range": [0.2, 1.0], "texture_scale": [1.0, 2.0]}
#: Sub-exposure samples of each reblurred frame: the training's ``reblur.samples``.
SAMPLES = ReblurConfig().samples


# ----------------------------------------------------------------------------- the clip


class Clip(NamedTuple):
    """Frames of a clip and the triples to adapt on."""

    #: (3, H, W) frames, float in [0, 1] or uint8, in order.
    frames: list[torch.Tensor]
    #: Indices t into ``frames`` of the triples (t-1, t, t+1), consecutive frames of the clip.
    centres: list[int]


def as_uint8(frame: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) frame as uint8: float frames in [0, 1] are rounded."""
    if frame.dtype == torch.uint8:
        return frame
    return frame.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)


def read_clip(source: FrameSource, max_triples: int = MAX_TRIPLES) -> Clip:
    """Up to ``max_triples`` triples of ``source``, their middle frames evenly spaced over it,
    without those spanning a scene cut: the frames they need as uint8 (3, H, W), read in one
    pass that stops after the last one. UserError for a source under three frames or whose
    every triple spans a cut."""
    count = len(source)
    if count < 3:
        raise UserError(f"--adapt needs a clip of at least 3 frames (t-1, t, t+1); the input "
                        f"has {count}")
    k = min(max_triples, count - 2)
    middles = sorted({1 + round(i * (count - 3) / max(k - 1, 1)) for i in range(k)})
    needed = sorted({t + d for t in middles for d in (-1, 0, 1)})
    kept: dict[int, torch.Tensor] = {}
    for index, _, frame in source:
        if index in needed:
            kept[index] = as_uint8(frame)
        if index >= needed[-1]:
            break
    order = sorted(kept)
    at = {index: i for i, index in enumerate(order)}
    frames = [kept[i] for i in order]
    centres = [at[t] for t in middles if all(t + d in kept for d in (-1, 0, 1))
               and uncut_triples([kept[t - 1], kept[t], kept[t + 1]])]
    if not centres:
        raise UserError("--adapt: every frame triple of the input spans a scene cut")
    return Clip(frames, centres)


def clip_of_frames(frames: Sequence[torch.Tensor]) -> Clip:
    """Every triple of consecutive ``frames`` ((3, H, W) float in [0, 1] or uint8) that spans
    no scene cut; UserError for fewer than three frames or when none is left."""
    frames = list(frames)
    if len(frames) < 3:
        raise UserError(f"adaptation needs at least 3 frames (t-1, t, t+1); got {len(frames)}")
    centres = uncut_triples([as_uint8(f) for f in frames])
    if not centres:
        raise UserError("adaptation: every frame triple spans a scene cut")
    return Clip(frames, centres)


def _as_float(frame: torch.Tensor) -> torch.Tensor:
    return frame.float() / 255.0 if frame.dtype == torch.uint8 else frame.float()


def crop_triple(clip: Clip, k: int, corner: tuple[int, int], size: tuple[int, int],
                device: torch.device) -> dict[str, torch.Tensor]:
    """Triple ``k`` of ``clip`` cropped at ``corner`` (y, x) to ``size`` (h, w): the
    unlabelled batch keys of :mod:`.reblur` as (1, 3, h, w) float32 in [0, 1]."""
    t = clip.centres[k]
    (y, x), (h, w) = corner, size
    picked = {"unlabelled_prev": t - 1, "unlabelled_t": t, "unlabelled_next": t + 1}
    return {key: _as_float(clip.frames[i][:, y: y + h, x: x + w])[None].to(device)
            for key, i in picked.items()}


# ----------------------------------------------------------------------------- adaptation


def _check(model: FlowDeblurNet, steps: int, crop: int, lr: float, duty: tuple[float, float],
           precision: str, synthetic: tuple[float, int, int]) -> None:
    if getattr(model, "flownet", None) is None or model.in_frames < 2:
        raise UserError(f"adaptation reblurs along the network's own flows; the "
                        f"'{getattr(model, 'variant', type(model).__name__)}' network has no "
                        "flow network of two frames or more")
    if steps < 0:
        raise OptionError("steps", f"{{option}} must be 0 or more, got {steps}")
    if crop < 64:
        raise OptionError("crop", f"{{option}} must be at least 64 pixels, got {crop}")
    if not lr > 0:
        raise OptionError("lr", f"{{option}} must be a number > 0, got {lr}")
    if not 0 < duty[0] <= duty[1] <= 1:
        raise OptionError("duty", f"{{option}} must be 0 < low <= high <= 1, got {list(duty)}")
    if precision not in ("fp32", "bf16"):
        raise OptionError("precision", f"adaptation runs in fp32 or bf16, not {precision}")
    weight, batch, side = synthetic
    if not weight >= 0 or batch < 1 or side < 64:
        raise UserError(f"adaptation needs synthetic_weight >= 0, synthetic_batch >= 1 and "
                        f"synthetic_side >= 64; got {weight}, {batch}, {side}")


def anchor_config(variant: str, batch_size: int, side: int, seed: int) -> TrainConfig:
    """The training config whose synthetic batches and Eq. 14 anchor the adaptation."""
    return TrainConfig(
        stage="joint", seed=seed, flow_loss=True, loss_reduction="sum", image_loss="mse",
        model=ModelConfig(variant=variant),
        data=DataConfig(source="synthetic", crop_size=side, batch_size=batch_size,
                        synthetic=dict(ANCHOR_SCENES), num_workers=0))


class _Draws:
    """The random triple, crop and duty of each step, from one generator."""

    def __init__(self, clip: Clip, crop: int, duty: tuple[float, float], seed: int) -> None:
        h, w = clip.frames[0].shape[-2:]
        self.clip, self.size, self.duty = clip, (min(crop, h), min(crop, w)), duty
        self.room = (h - self.size[0] + 1, w - self.size[1] + 1)
        self.generator = torch.Generator().manual_seed(rank_seed(seed, 0, 11))

    def next(self, device: torch.device) -> dict[str, torch.Tensor]:
        g = self.generator
        k = int(torch.randint(len(self.clip.centres), (1,), generator=g))
        corner = tuple(int(torch.randint(r, (1,), generator=g)) for r in self.room)
        lo, hi = self.duty
        duty = lo + (hi - lo) * torch.rand(1, generator=g, dtype=torch.float64)
        batch = crop_triple(self.clip, k, corner, self.size, device)
        batch[DUTY_KEY] = duty.float().to(device)
        return batch


def _forward_triple(net: FlowDeblurNet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The network's (1, 3, h, w) output for the triple's frame t, paired as deblurring pairs."""
    prev = batch["unlabelled_prev"] if net.in_frames == 3 else None
    return net(batch["unlabelled_t"], batch["unlabelled_next"], prev).image


def adapt_to_clip(
    model: FlowDeblurNet,
    frames: Sequence[torch.Tensor] | Clip,
    steps: int,
    *,
    crop: int = DEFAULT_CROP,
    lr: float = DEFAULT_LR,
    duty: tuple[float, float] = DEFAULT_DUTY,
    synthetic_weight: float = 1.0,
    synthetic_batch: int = SYNTHETIC_BATCH,
    synthetic_side: int = RECIPE_SIDE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = True,
    history: list[dict] | None = None,
) -> FlowDeblurNet:
    """A copy of ``model`` fine-tuned for ``steps`` steps on a blurry clip (module docstring);
    ``model`` itself is left as it is.

    Args:
        model: a FlowDeblurNet whose flow network reads two frames or more.
        frames: the clip's consecutive frames, each (3, H, W) float in [0, 1] or uint8 (every
            triple that spans no scene cut is drawn from), or a :class:`Clip`
            (:func:`read_clip` of a video).
        steps: optimiser steps (0: an unchanged copy).
        crop: side of the square crops of the triples (the frame's side where smaller).
        lr: Adam's constant learning rate.
        duty: (low, high) of each step's uniform duty draw (the exposure of real footage is
            unknown).
        synthetic_weight: weight of Eq. 14 on the synthetic scenes (0: none rendered).
        synthetic_batch, synthetic_side: synthetic scenes per step and their side.
        seed: seeds every draw.
        device: where it trains; the copy is returned there, in eval mode.
        precision: "fp32" or "bf16" (autocast).
        progress: a tqdm bar on stderr with the loss.
        history: if given, one dict per step is appended: "loss", "reblur" and
            "reblur_identity" (unweighted, per pixel-channel of the crop, the pixels whose
            warps leave it counted as 0), "eq14" (None without it).
    Returns:
        The adapted copy.
    """
    _check(model, steps, crop, lr, tuple(duty), precision,
           (synthetic_weight, synthetic_batch, synthetic_side))
    clip = frames if isinstance(frames, Clip) else clip_of_frames(frames)
    device = torch.device(device)
    runtime = Runtime(device=device, precision=precision, channels_last=False, mode="eager")
    net = copy.deepcopy(model).float().to(device).train().requires_grad_(True)
    frozen = FrozenFlow(copy.deepcopy(net.flownet), net.in_frames)
    config = anchor_config(net.variant, synthetic_batch, synthetic_side, seed)
    anchor = TrainingBatches(config, device=device, batch_size=synthetic_batch) \
        if synthetic_weight and steps else None
    synthetic_scale = synthetic_weight * RECIPE_SIDE**2 / synthetic_side**2
    draws = _Draws(clip, crop, tuple(duty), seed)
    h, w = draws.size
    scale = REBLUR_WEIGHT * RECIPE_SIDE**2 / (h * w)
    optimizer = build_optimizer(list(net.parameters()), OptimConfig(lr=lr), None)
    with tqdm(range(steps), desc="adapting", unit="step", disable=not progress,
              dynamic_ncols=True, leave=None) as bar:
        for _ in bar:
            optimizer.zero_grad(set_to_none=True)
            eq14 = None
            if anchor is not None:
                with runtime.autocast():
                    eq14 = compute_loss(net, anchor.next(), config).total
                (synthetic_scale * eq14).backward()  # freed before the triple's pass
            with runtime.autocast():
                batch = frozen.add_flows(draws.next(device))
                terms = reblur_terms(_forward_triple(net, batch), batch, SAMPLES, "sum")
            (scale * terms.model).backward()
            optimizer.step()
            step = _step_record(terms, eq14, synthetic_scale, scale, h * w)
            bar.set_postfix(loss=f"{step['loss']:.4g}", reblur=f"{step['reblur']:.4g}",
                            identity=f"{step['reblur_identity']:.4g}")
            if history is not None:
                history.append(step)
    return net.eval().requires_grad_(False)


def _step_record(terms: ReblurTerms, eq14: torch.Tensor | None, synthetic_scale: float,
                 scale: float, pixels: int) -> dict:
    """One step's losses: the total minimised; the reblurring errors per pixel-channel."""
    reblur, identity = terms.model.item(), terms.identity.item()
    synthetic = None if eq14 is None else eq14.item()
    total = scale * reblur + (synthetic_scale * synthetic if synthetic is not None else 0.0)
    return {"loss": total, "reblur": reblur / (3 * pixels),
            "reblur_identity": identity / (3 * pixels), "eq14": synthetic}


@torch.no_grad()
def reblur_error(model: FlowDeblurNet, frames: Sequence[torch.Tensor] | Clip, *,
                 flows_from: FlowDeblurNet | None = None, duty: float = 0.75,
                 device: str | torch.device = "cpu",
                 images: Sequence[torch.Tensor] | None = None) -> ReblurTerms:
    """The reblurring error (Charbonnier per masked pixel-channel) of ``model``'s outputs and of
    the identity's, averaged over the clip's whole triples at one ``duty``: what adaptation
    lowers, measured without a draw. The flows come from the flow network of ``flows_from``
    (default: ``model``'s own; the starting weights compare an adapted copy with them).
    ``images``: reblur these instead of the outputs, one (3, H, W) per frame of ``frames``
    (e.g. the sharp frames, to see whether the loss is least at the truth)."""
    clip = frames if isinstance(frames, Clip) else clip_of_frames(frames)
    device = torch.device(device)
    net = copy.deepcopy(model).float().to(device).eval()
    source = net if flows_from is None else copy.deepcopy(flows_from).float().to(device)
    frozen = FrozenFlow(source.flownet, net.in_frames)
    h, w = clip.frames[0].shape[-2:]
    errors = []
    for k in range(len(clip.centres)):
        batch = crop_triple(clip, k, (0, 0), (h, w), device)
        batch = frozen.add_flows({**batch, DUTY_KEY: torch.tensor([duty], device=device)})
        output = _forward_triple(net, batch) if images is None else \
            _as_float(images[clip.centres[k]])[None].to(device)
        errors.append(reblur_terms(output, batch, SAMPLES, "mean"))
    return ReblurTerms(*(sum(float(e[i]) for e in errors) / len(errors) for i in range(2)))


# ----------------------------------------------------------------------------- deblur_video


@dataclasses.dataclass
class ClipAdaptation:
    """``flowdeblur deblur --adapt``: what :func:`flowdeblur.inference.deblur_video` runs
    (``adapt=``) on its input before deblurring it, once ``--resume`` has found the output
    not current. ``record`` goes into the output's provenance."""

    steps: int
    crop: int = DEFAULT_CROP
    seed: int = 0
    progress: bool = True
    synthetic_batch: int = SYNTHETIC_BATCH
    synthetic_side: int = RECIPE_SIDE
    #: Seconds the last call took.
    seconds: float = 0.0

    @property
    def record(self) -> dict:
        """What the provenance records of the adaptation."""
        return {"steps": self.steps, "crop": self.crop, "seed": self.seed, "lr": DEFAULT_LR,
                "duty": list(DEFAULT_DUTY), "synthetic_batch": self.synthetic_batch,
                "synthetic_side": self.synthetic_side}

    def __call__(self, source: FrameSource, model: FlowDeblurNet,
                 runtime: Runtime) -> FlowDeblurNet:
        """The copy of ``model`` adapted to ``source`` on the runtime's device, in bf16 when it
        runs in bf16 and otherwise in fp32; says how long it took in one line."""
        start = time.perf_counter()
        clip = read_clip(source)
        precision = "bf16" if runtime.precision == "bf16" else "fp32"
        adapted = adapt_to_clip(model, clip, self.steps, crop=self.crop, seed=self.seed,
                                synthetic_batch=self.synthetic_batch,
                                synthetic_side=self.synthetic_side, device=runtime.device,
                                precision=precision, progress=self.progress)
        self.seconds = time.perf_counter() - start
        h, w = (min(self.crop, s) for s in clip.frames[0].shape[-2:])
        print(f"adapted the weights to the input in {self.seconds:.1f} s: {self.steps} steps "
              f"on {w}x{h} crops of {len(clip.centres)} frame triples ({precision}, seed "
              f"{self.seed})", flush=True)
        return adapted
