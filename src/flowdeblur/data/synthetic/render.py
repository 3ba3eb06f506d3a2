"""From drawn scenes to frames: the renderer's choice, the host-side plan, the device work.

The host computes every map in float64 and sends them in one upload (pinned and asynchronous
on CUDA, so building a batch never waits for the GPU's queued work). The device renders the
blurry exposures (grouped by sub-frame count), the sharp frames (one sub-frame at each
exposure's middle), applies the camera response, noise and 8-bit quantisation, and computes
the flows. The linear-light renderer is the fused Triton kernel on CUDA or the numba one on
the CPU when ``SceneConfig.renderer`` is "auto", else the one it names ("torch": the
reference in ``compositing``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import UserError
from ..textures import linear_atlas, texture_bank
from .compositing import camera_response, quantize, render_linear
from .config import SceneConfig
from .draw import Scenes
from .flow import flow_and_valid
from .geometry import layer_matrices, render_rows
from .render_cpu import render_linear as render_linear_numba
from .subframes import group_by_need, needed_subframes


@dataclass(frozen=True)
class FusedRenderer:
    """A one-pass replacement for the torch renderer (same arguments, same results)."""

    name: str  # "numba" or "triton"
    render_linear: Callable[..., torch.Tensor]  # as compositing.render_linear, no chunking
    flow_and_valid: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None  # as flow's


def fused_renderer(choice: str, device: torch.device) -> FusedRenderer | None:
    """The renderer that replaces the torch one for ``SceneConfig.renderer`` = ``choice`` on
    ``device``, or None for the torch one.

    "auto" falls back to torch quietly where no fused renderer runs; naming one that cannot
    run is a UserError.
    """
    if choice == "torch":
        return None
    strict = choice != "auto"
    if choice == "auto":
        choice = "triton" if device.type == "cuda" else "numba"
    if choice == "numba":
        if device.type == "cpu":
            return FusedRenderer("numba", render_linear_numba, None)
    elif importlib.util.find_spec("triton") is None:  # triton is an optional dependency
        if strict:
            raise UserError(f"SceneConfig.renderer={choice!r} needs the {choice} package "
                            f"(pip install {choice})")
        return None
    else:
        # Imported on first use: triton is optional, and defining the kernels takes ~1 s.
        from .render_triton import flow_and_valid as flow_triton
        from .render_triton import is_available
        from .render_triton import render_linear as render_triton

        if is_available(device):
            return FusedRenderer("triton", render_triton, flow_triton)
    if strict:
        raise UserError(f"SceneConfig.renderer={choice!r} cannot run on {device}")
    return None


class _Upload:
    """Host arrays gathered into one buffer and sent to the device in one copy: pinned and
    asynchronous on CUDA (a plain copy from pageable memory would wait for the GPU)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> int:
        """Queue ``x`` (as float32); returns its slot, an index into :meth:`send`'s list."""
        self._parts.append(np.ascontiguousarray(x, dtype=np.float32))
        return len(self._parts) - 1

    def send(self, device: torch.device) -> list[torch.Tensor]:
        flat = torch.from_numpy(np.concatenate([p.reshape(-1) for p in self._parts]))
        if device.type == "cuda":
            flat = flat.pin_memory().to(device, non_blocking=True)
        elif device.type != "cpu":
            flat = flat.to(device)
        out, start = [], 0
        for p in self._parts:
            out.append(flat[start : start + p.size].view(p.shape))
            start += p.size
        return out


@dataclass
class _ExposureSlots:
    """Upload slots of what rendering a set of exposures needs (``render_linear``'s args)."""

    rows: int
    tile: int
    tint: int
    shape: int


@dataclass
class _FlowSlots:
    """Upload slots of one flow's maps (``flow_and_valid``'s args)."""

    inv_a: int
    a_to_b: int
    inv_b: int


@dataclass
class _GroupSlots:
    """Upload slots of one group of blurry exposures rendered with one sub-frame count."""

    units: int  # their indices into the flattened (N * F) exposures
    exposures: _ExposureSlots


@dataclass
class _Plan:
    """Everything the device side needs, as slots of one upload."""

    groups: list[_GroupSlots]
    sharp: _ExposureSlots
    flows: list[_FlowSlots]
    shape: int
    noise: int
    subframes: int  # the most sub-frames any exposure uses


@dataclass
class Rendered:
    """Frames of N scenes at F times, and the flows asked for."""

    blur: torch.Tensor  # (N, F, 3, H, W) in [0, 1]
    sharp: torch.Tensor  # (N, F, 3, H, W) in [0, 1]
    flows: list[torch.Tensor]  # per pair (a, b): (N, 2, H, W), frame a -> frame b
    valids: list[torch.Tensor]  # per pair: (N, 1, H, W) in {0, 1}
    subframes: int  # the most sub-frames any exposure used


class Renderer:
    """Renders the blurry and sharp frames of drawn scenes, and their flows."""

    def __init__(self, cfg: SceneConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.bank = texture_bank(cfg.textures, cfg.photo_dirs)
        self.atlas = linear_atlas(cfg.textures, device, cfg.gamma, cfg.photo_dirs)
        self.chunk = cfg.chunk_points or (1 << 25 if device.type == "cuda" else 1 << 22)
        self.fused = fused_renderer(cfg.renderer, device)

    def render(self, sc: Scenes, frames: np.ndarray, pairs: list[tuple[int, int]],
               noise_generator: torch.Generator | None) -> Rendered:
        """Blurry and sharp frames of the N scenes at ``frames`` (F,), and for each (a, b) in
        ``pairs`` the flow from frame a to frame b with its valid mask. Sensor noise is
        drawn from ``noise_generator`` (None: no noise)."""
        cfg = self.cfg
        dev = self.device
        n, nf = len(sc.duty), len(frames)
        h, w = cfg.size
        up = _Upload()
        plan = self._plan(up, sc, frames, pairs)
        sent = up.send(dev)

        blur = torch.empty(n * nf, 3, h, w, device=dev)
        for group in plan.groups:
            blur.index_copy_(0, sent[group.units].long(), self._linear(sent, group.exposures))
        sharp = self._linear(sent, plan.sharp)
        blur = camera_response(blur, cfg.gamma).view(n, nf, 3, h, w)
        sharp = camera_response(sharp, cfg.gamma).view(n, nf, 3, h, w)
        if noise_generator is not None and cfg.noise_std[1] > 0:
            noise = torch.randn(blur.shape, generator=noise_generator, device=dev)
            blur = (blur + noise * sent[plan.noise].view(n, 1, 1, 1, 1)).clamp(0.0, 1.0)
        if cfg.quantize:
            blur, sharp = quantize(blur), quantize(sharp)
        flow_fn = flow_and_valid
        if self.fused is not None and self.fused.flow_and_valid is not None:
            flow_fn = self.fused.flow_and_valid
        flows, valids = [], []
        for s in plan.flows:
            flow, valid = flow_fn(sent[s.inv_a], sent[s.a_to_b], sent[s.inv_b],
                                  sent[plan.shape], h, w)
            flows.append(flow)
            valids.append(valid)
        return Rendered(blur, sharp, flows, valids, plan.subframes)

    def _plan(self, up: _Upload, sc: Scenes, frames: np.ndarray, pairs: list[tuple[int, int]]
              ) -> _Plan:
        """Queue on ``up`` the maps of every exposure, sharp frame and flow (host side)."""
        cfg = self.cfg
        n, nf = len(sc.duty), len(frames)
        layers = 1 + int(sc.n_layers.max(initial=0))  # slots nobody in this batch uses: skip
        need = np.minimum(needed_subframes(sc, frames, cfg), cfg.max_subframes)  # (N, F)
        groups = []
        for group in group_by_need(need.reshape(-1), cfg.subframe_groups):
            idx_n, idx_f = np.divmod(group.units, nf)
            # Sub-frame times: midpoints of S equal parts of the exposure (S = 1: its middle).
            s = group.subframes
            frac = (np.arange(s) + 0.5) / s - 0.5
            times = frames[idx_f, None] + sc.duty[idx_n, None] * frac  # (G, S)
            groups.append(_GroupSlots(up.add(group.units),
                                      self._exposures(up, sc.take(idx_n), times, layers)))
        sharp = self._exposures(up, sc.take(np.repeat(np.arange(n), nf)),
                                np.tile(frames, n)[:, None], layers)
        mats = layer_matrices(sc, np.repeat(frames[None].astype(np.float64), n, 0))
        mats = mats[:, :layers]  # (N, L1, F, 3, 3) at the frames' middles
        flows = []
        for a, b in pairs:
            inv_a = np.linalg.inv(mats[:, :, a])
            flows.append(_FlowSlots(up.add(inv_a), up.add(mats[:, :, b] @ inv_a),
                                    up.add(np.linalg.inv(mats[:, :, b]))))
        return _Plan(groups, sharp, flows, shape=up.add(sc.shape[:, : layers - 1]),
                     noise=up.add(sc.noise), subframes=int(need.max()))

    def _exposures(self, up: _Upload, sc: Scenes, times: np.ndarray, layers: int
                   ) -> _ExposureSlots:
        """Queue what rendering the B scenes ``sc`` over ``times`` (B, S) needs."""
        rows = render_rows(sc, layer_matrices(sc, times))[:, :layers]  # (B, L1, S, 5, 3)
        tile = sc.tile[:, :layers]
        origin = self.bank.origins.numpy()[tile]
        last = self.bank.sizes.numpy()[tile] - 1.0
        return _ExposureSlots(up.add(rows), up.add(np.concatenate([origin, last], -1)),
                              up.add(sc.tint[:, :layers]), up.add(sc.shape[:, : layers - 1]))

    def _linear(self, sent: list[torch.Tensor], slots: _ExposureSlots) -> torch.Tensor:
        """(B, 3, H, W) linear-light exposures of the queued ``slots``."""
        args = (self.atlas, sent[slots.rows], sent[slots.tile], sent[slots.tint],
                sent[slots.shape], *self.cfg.size)
        if self.fused is not None:
            return self.fused.render_linear(*args)
        return render_linear(*args, self.chunk)
