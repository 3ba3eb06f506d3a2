"""The held-out synthetic set, its seeds, the unsharp-masking baseline and scores of weights on it.

The held-out scenes come from the synthetic engine with a seed that training never uses
(:data:`HELDOUT_SEED`; training streams use small seeds and each scene is a hash of
(seed, index)), rendered on the CPU so that the set is the same on every machine. Weights are
chosen on another seed (:data:`VALIDATION_SEED`), never on the reported set.

Unsharp masking, the classical baseline, is tuned for PSNR on the first scenes of a training
stream (seed 0, 128x128, the training config's scene settings), i.e. on training data, never
on held-out scenes (:func:`tune_unsharp_on_training_scenes`). :func:`heldout_scores` scores the
blurry input, that baseline and each model on the set with outputs quantised to 8 bits, like a
written file.

Scene settings are the ``data.synthetic`` mapping of a training config (overrides of
:class:`~flowdeblur.data.synthetic.SceneConfig`); None means the engine's defaults.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

import torch

from ..data.synthetic import SceneConfig, SyntheticScenes
from ..errors import UserError
from ..inference.deblur import deblur_image_pair
from ..runtime import Runtime
from .baselines import tune_unsharp_mask, unsharp_mask
from .metrics import psnr, quantize_8bit, ssim

__all__ = [
    "HELDOUT_SEED",
    "VALIDATION_SEED",
    "format_heldout_table",
    "heldout_scores",
    "heldout_synthetic_batches",
    "score_methods",
    "scene_config",
    "tune_unsharp_on_training_scenes",
]

#: Seed of every held-out synthetic set: reported, never chosen on.
HELDOUT_SEED = 1_000_003
#: Seed of synthetic validation sets, for choosing among weights (a training step, a recipe):
#: the held-out set above is reported and never chosen on.
VALIDATION_SEED = 2_000_003

#: Side of the training scenes that unsharp masking is tuned on.
TUNING_SIZE = 128


def scene_config(settings: Mapping | None, size: int) -> SceneConfig:
    """A SceneConfig of ``size`` x ``size`` scenes from a config's ``data.synthetic`` settings."""
    return SceneConfig(**{**(settings or {}), "size": (size, size)})


def heldout_synthetic_batches(
    scene_config: SceneConfig | None = None,
    *,
    samples: int = 64,
    size: int = 256,
    seed: int = HELDOUT_SEED,
    batch: int = 8,
    three_frames: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """A fixed held-out synthetic set: ``samples`` scenes in batches of ``batch``, on the CPU.

    ``scene_config``: a :class:`~flowdeblur.data.synthetic.SceneConfig` (its size and
    three_frames are replaced), or None for the engine's defaults. Returns a list of dicts of
    (n, C, size, size) CPU tensors as :meth:`SyntheticScenes.sample` gives them (frame_t,
    frame_next, sharp_t, flow, valid, ...; with ``three_frames`` also frame_prev, flow_prev,
    so that one set serves two- and three-frame models alike).
    """
    if samples < 1 or batch < 1 or size < 2:
        raise UserError(f"held-out set needs samples >= 1, batch >= 1, size >= 2; got "
                        f"{samples}, {batch}, {size}")
    base = scene_config if scene_config is not None else SceneConfig()
    cfg = dataclasses.replace(base, size=(size, size), three_frames=three_frames)
    # Rendered on the CPU: the fused renderers differ by rounding, and the set should be the
    # same on every machine.
    scenes = SyntheticScenes(cfg, seed=seed, device="cpu")
    return [scenes.sample(min(batch, samples - start)) for start in range(0, samples, batch)]


def tune_unsharp_on_training_scenes(settings: Mapping | None,
                                    samples: int = 64) -> tuple[float, float, float]:
    """(sigma, amount, PSNR there) of unsharp masking tuned on training scenes.

    The scenes are the first ``samples`` (in batches of 8) of the training stream of a config
    with these scene settings: seed 0, :data:`TUNING_SIZE` pixels square.
    """
    scenes = SyntheticScenes(scene_config(settings, TUNING_SIZE), seed=0)
    pairs = []
    for _ in range(samples // 8):
        s = scenes.sample(8)
        pairs.append((s["frame_t"], s["sharp_t"]))
    return tune_unsharp_mask(pairs)


Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def score_methods(methods: Mapping[str, Method],
                  batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, dict]:
    """Mean PSNR / SSIM of each method's 8-bit output against ``sharp_t``, and its seconds.

    A method maps (frame_t, frame_next) (N, 3, H, W) to the deblurred frame_t. Returns
    ``{name: {"psnr", "ssim", "seconds"}}`` in the order of ``methods``.
    """
    batches = list(batches)
    rows = {}
    with torch.no_grad():
        for name, fn in methods.items():
            t0 = time.perf_counter()
            ps, ss = [], []
            for b in batches:
                out = quantize_8bit(fn(b["frame_t"], b["frame_next"]))
                ps.append(psnr(out, b["sharp_t"]))
                ss.append(ssim(out, b["sharp_t"]))
            rows[name] = {"psnr": torch.cat(ps).mean().item(),
                          "ssim": torch.cat(ss).mean().item(),
                          "seconds": time.perf_counter() - t0}
    return rows


def heldout_scores(
    models: Mapping[str, torch.nn.Module],
    *,
    settings: Mapping | None = None,
    samples: int = 64,
    size: int = 256,
    seed: int = HELDOUT_SEED,
    tune_samples: int = 64,
    ensemble: int = 1,
) -> dict:
    """Scores of the blurry input, tuned unsharp masking and each model on a held-out set.

    Args:
        models: ``{label: model}``; each is scored as ``flowdeblur (label)`` (with
            `` ensemble N`` appended when ``ensemble > 1``), in fp32 (a figure to report).
        settings: the scene settings (a training config's ``data.synthetic``) of both the
            held-out scenes and the training scenes unsharp masking is tuned on.
        samples, size, seed: the set: ``samples`` two-frame scenes of ``size`` pixels square;
            :data:`VALIDATION_SEED` gives a set to choose on.
        tune_samples: training scenes the unsharp mask is tuned on.
        ensemble: flowdeblur's self-ensemble size.
    Returns:
        ``{"samples", "size", "seed", "ensemble", "unsharp": {"sigma", "amount"}, "rows",
        "tuning_psnr"}``; rows as :func:`score_methods` gives them.
    """
    sigma, amount, tuning_psnr = tune_unsharp_on_training_scenes(settings, tune_samples)
    data = heldout_synthetic_batches(scene_config(settings, size), samples=samples, size=size,
                                     seed=seed, three_frames=False)
    runtime = Runtime.resolve(purpose="report")  # reported figures: fp32
    methods: dict[str, Method] = {
        "blurry input": lambda b0, b1: b0,
        f"unsharp mask (sigma {sigma}, amount {amount})":
            lambda b0, b1: unsharp_mask(b0, sigma, amount),
    }
    suffix = f" ensemble {ensemble}" if ensemble > 1 else ""
    for label, model in models.items():
        methods[f"flowdeblur ({label}){suffix}"] = (lambda b0, b1, m=model: deblur_image_pair(
            m, b0, b1, runtime=runtime, ensemble=ensemble).clamp(0, 1))
    return {"samples": samples, "size": size, "seed": seed, "ensemble": ensemble,
            "unsharp": {"sigma": sigma, "amount": amount},
            "rows": score_methods(methods, data), "tuning_psnr": tuning_psnr}


def format_heldout_table(rows: Mapping[str, dict]) -> str:
    """Markdown table of :func:`score_methods` rows: method, PSNR (dB), SSIM."""
    lines = ["| method | PSNR (dB) | SSIM |", "|---|---|---|"]
    lines += [f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} |" for name, r in rows.items()]
    return "\n".join(lines)
