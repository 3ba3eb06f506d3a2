"""The public faces of the engine: a seeded stream of training batches, and single clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ...errors import UserError
from .config import SceneConfig
from .draw import draw_scenes
from .hashing import Draws, hash_seed
from .render import Renderer

# Salts that keep the noise generators of batches and of clips apart from each other.
_BATCH_NOISE = 0xB10B
_CLIP_NOISE = 0xC11B


class SyntheticScenes:
    """An endless, seeded stream of synthetic training batches.

    ``sample(n)`` returns frame_t, frame_next, sharp_t, sharp_next (n, 3, H, W) in [0, 1]
    (sRGB), flow (n, 2, H, W) with ``warp(sharp_next, flow) ~ sharp_t`` and valid
    (n, 1, H, W); with ``three_frames`` also frame_prev, sharp_prev, flow_prev
    (``warp(sharp_prev, flow_prev) ~ sharp_t``) and valid_prev. Sample i of the stream depends
    only on (seed, i) (the sub-frame count and the sensor noise also depend on its batch).
    """

    def __init__(self, config: SceneConfig | None = None, *, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.config = config if config is not None else SceneConfig()
        self.seed = int(seed)
        self.device = torch.device(device)
        self._renderer = Renderer(self.config, self.device)
        self._samples_drawn = 0
        self._batches_drawn = 0
        self.last_subframes = 0  # sub-frames per exposure of the last batch, for inspection

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Next batch; keys frame_t, frame_next, sharp_t, sharp_next (N,3,H,W), flow (N,2,H,W),
        valid (N,1,H,W) (+ frame_prev, sharp_prev, flow_prev, valid_prev if three_frames).
        Deterministic: the k-th call after construction with a given seed returns the same
        batch on any run (same device)."""
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        cfg = self.config
        indices = np.arange(self._samples_drawn, self._samples_drawn + batch_size)
        batch = self._batches_drawn
        self._samples_drawn += batch_size
        self._batches_drawn += 1
        # Frame t is at time 0; frame_next at 1 and, with three frames, frame_prev at -1.
        frames = np.array([-1.0, 0.0, 1.0] if cfg.three_frames else [0.0, 1.0])
        t = 1 if cfg.three_frames else 0
        pairs = [(t, t + 1)] + ([(t, 0)] if cfg.three_frames else [])
        scenes = draw_scenes(Draws(self.seed, indices), cfg, t_ref=0.0, span=1.0)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(hash_seed(self.seed, batch, _BATCH_NOISE))
        out = self._renderer.render(scenes, frames, pairs, gen)
        result = {
            "frame_t": out.blur[:, t], "frame_next": out.blur[:, t + 1],
            "sharp_t": out.sharp[:, t], "sharp_next": out.sharp[:, t + 1],
            "flow": out.flows[0], "valid": out.valids[0],
        }
        if cfg.three_frames:
            result["frame_prev"], result["sharp_prev"] = out.blur[:, 0], out.sharp[:, 0]
            result["flow_prev"], result["valid_prev"] = out.flows[1], out.valids[1]
        self.last_subframes = out.subframes
        return {k: v.contiguous() for k, v in result.items()}

    def state_dict(self) -> dict:
        """Position in the stream, so training can resume it exactly."""
        return {"seed": self.seed, "samples_drawn": self._samples_drawn,
                "batches_drawn": self._batches_drawn, "config": dataclasses.asdict(self.config)}

    def load_state_dict(self, state: dict) -> None:
        """Resume the stream at ``state`` (from ``state_dict``); the config is not replaced."""
        self.seed = int(state["seed"])
        self._samples_drawn = int(state["samples_drawn"])
        self._batches_drawn = int(state["batches_drawn"])


def clip_config(size: tuple[int, int] = (256, 256)) -> SceneConfig:
    """The default for ``make_clip``: a photographic scene with moderate, steady motion (a few
    pixels of blur per frame, always some), one to three objects and light noise."""
    return SceneConfig(
        size=size, textures="photos", min_layers=1, max_layers=3, max_camera_motion=12.0,
        max_object_motion=12.0, motion_range=(0.6, 1.0), still_probability=0.0,
        duty_cycle=(0.6, 1.0), noise_std=(0.002, 0.004), texture_rotation=10.0,
        texture_scale=(0.5, 0.9),
        camera_motions=("pan", "rotation", "zoom", "shake"), acceleration=0.3,
    )


def make_clip(num_frames: int, size: tuple[int, int], *, seed: int = 0,
              config: SceneConfig | None = None, device="cpu") -> dict[str, torch.Tensor]:
    """One continuous clip of consecutive frames of a single scene: 'blur' (T,3,H,W), 'sharp'
    (T,3,H,W), 'flow' (T-1,2,H,W) frame t -> t+1 in the warp convention
    (``warp(sharp[t+1], flow[t]) ~ sharp[t]``), and 'valid' (T-1,1,H,W).

    ``config`` defaults to ``clip_config(size)``; its size is replaced by ``size``. Motion is
    referenced to the middle of the clip, so objects cross the view rather than leave it.
    """
    if num_frames < 1:
        raise UserError(f"a clip needs at least 1 frame, got {num_frames}")
    cfg = clip_config(size) if config is None else dataclasses.replace(config, size=size)
    dev = torch.device(device)
    frames = np.arange(num_frames, dtype=np.float64)
    half = max(1.0, (num_frames - 1) / 2)
    scenes = draw_scenes(Draws(int(seed), np.array([0])), cfg, t_ref=(num_frames - 1) / 2,
                         span=half)
    renderer = Renderer(cfg, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(hash_seed(int(seed), _CLIP_NOISE))
    out = renderer.render(scenes, frames, [(t, t + 1) for t in range(num_frames - 1)], gen)
    h, w = cfg.size
    return {
        "blur": out.blur[0].contiguous(),
        "sharp": out.sharp[0].contiguous(),
        "flow": torch.cat(out.flows) if out.flows else torch.zeros(0, 2, h, w, device=dev),
        "valid": torch.cat(out.valids) if out.valids else torch.zeros(0, 1, h, w, device=dev),
    }
