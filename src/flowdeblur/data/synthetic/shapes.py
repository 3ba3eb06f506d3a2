"""The objects' outlines: how they are drawn, how their parameters are packed, and their
coverage (alpha) and distance functions.

An outline is a super-ellipse ``rho(v) = (|vx|^e + |vy|^e)^(1/e)``, ``v = E u`` for layer
coordinates ``u``, whose radius wobbles as ``r(phi) = 1 + a cos(k phi + phase)``; the shape is
where ``r(phi) - rho(v) > 0``. Its alpha ramps linearly over ``edge_softness`` pixels across
the outline.

The parameters of every object are packed on the last axis of one float array (indices
below) so that the torch renderer, the flow and the fused kernels (``render_cpu``,
``render_triton``, which index the same layout) read them from one upload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .config import SceneConfig
from .hashing import Draws

#: Length of the last axis of the packed parameters. In order: E (4: layer units -> unit
#: shape frame, row-major), super-ellipse exponent and its inverse, harmonic order, amplitude
#: and phase, distance scale (pixels per unit of r - rho), edge softness, alpha slope
#: (scale / softness), alpha offset (0.5, or very negative for an unused slot), enabled
#: (0 / 1), and the squared radius in layer units beyond which alpha is surely 0 (the fused
#: renderers skip the shape there).
SHAPE_PARAMS = 15
E0, EXP, INV_EXP, ORDER, AMP, PHASE, DIST, SOFT, SLOPE, OFFSET, ON, CULL2 = (
    0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)


@dataclass
class ObjectShapes:
    """The outlines of N scenes' L object slots (unused slots are disabled)."""

    centres: np.ndarray  # (N, L, 2) object centres at t_ref, pixels
    probe_radius: np.ndarray  # (N, L) radius of a circle bounding each outline, layer units
    params: np.ndarray  # (N, L, SHAPE_PARAMS), the packed layout above


def draw_shapes(draws: Draws, cfg: SceneConfig, n_layers: np.ndarray) -> ObjectShapes:
    """Outlines and positions of ``cfg.max_layers`` object slots per scene, the first
    ``n_layers`` (N,) of them enabled."""
    h, w = cfg.size
    nl = cfg.max_layers
    radius = min(h, w) * draws.pair(cfg.object_radius, nl)  # (N, L) major semi-axis
    aspect = draws.uniform(nl, low=0.5, high=1.0)
    orient = draws.uniform(nl, high=math.pi)
    exponent = 2.0 + 4.0 * draws.uniform(nl) ** 2  # mostly round, sometimes boxy
    order = draws.integers(2, 5, nl).astype(np.float64)  # lobes of the outline's wobble
    amp = draws.uniform(nl, high=0.3) / order
    harm_phase = draws.uniform(nl, high=2 * math.pi)
    soft = draws.pair(cfg.edge_softness, nl)
    centres = np.stack([draws.uniform(nl, low=0.1, high=0.9) * (w - 1),
                        draws.uniform(nl, low=0.1, high=0.9) * (h - 1)], axis=-1)
    # The shape's distance function is scaled to be 1-Lipschitz (see signed_distance), so
    # the alpha ramp is never steeper than ``soft`` and validity margins are conservative.
    r_eff = radius * aspect / (1.0 + order * amp)
    probe_radius = radius * (1.0 + amp) * math.sqrt(2.0)
    c, s = np.cos(orient), np.sin(orient)
    # E maps layer coordinates to the shape's unit frame: rotate by -orient, divide by axes.
    e = np.stack([c / radius, s / radius, -s / (radius * aspect), c / (radius * aspect)], -1)
    enabled = (np.arange(nl)[None, :] < n_layers[:, None]).astype(np.float64)
    offset = np.where(enabled > 0, 0.5, -1e6)
    # alpha > 0 needs rho < 1 + amp + soft / (2 r_eff), and rho >= |u| / (radius sqrt 2).
    cull = radius * math.sqrt(2.0) * (1.0 + amp + soft / (2.0 * r_eff)) + 1.0
    params = np.concatenate(
        [e] + [x[..., None] for x in (exponent, 1.0 / exponent, order, amp, harm_phase, r_eff,
                                      soft, r_eff / soft, offset, enabled, cull**2)], axis=-1)
    return ObjectShapes(centres, probe_radius, params)


def shape_value(ux: torch.Tensor, uy: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``r(phi) - rho(v)`` of the object outlines at layer coordinates (ux, uy): positive
    inside, zero on the outline. ``p``: packed parameters, last axis SHAPE_PARAMS,
    broadcastable against ux once that axis is indexed."""
    vx = torch.addcmul(p[..., E0 + 1] * uy, p[..., E0], ux)
    vy = torch.addcmul(p[..., E0 + 3] * uy, p[..., E0 + 2], ux)
    e = p[..., EXP]
    rho = (vx.abs().pow(e) + vy.abs().pow(e)).pow(p[..., INV_EXP])
    wobble = torch.cos(torch.addcmul(p[..., PHASE], p[..., ORDER], torch.atan2(vy, vx)))
    return torch.addcmul(1.0 - rho, p[..., AMP], wobble)


def signed_distance(ux: torch.Tensor, uy: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Signed distance-like value of the object outlines (positive inside, pixels at the
    shape's scale), 1-Lipschitz so ``|d| <=`` the true distance: the super-ellipse norm's
    gradient is at most 1 in the unit frame (e >= 2), E stretches by at most 1 / (R aspect),
    and the wobble adds at most ``k a``; the DIST parameter ``R aspect / (1 + k a)`` undoes
    all three."""
    return shape_value(ux, uy, p) * p[..., DIST]


def alpha_from_value(value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1] from :func:`shape_value`: a linear ramp ``softness`` pixels wide
    across the outline, zero for unused layer slots (their offset is very negative)."""
    return torch.addcmul(p[..., OFFSET], value, p[..., SLOPE]).clamp(0.0, 1.0)
