"""How finely each exposure is cut in time, and how exposures are grouped for rendering.

An exposure is rendered as the average of S sub-frames; S is chosen so that nothing visible
moves more than ``max_subframe_step`` pixels between two of them (no ghosting). Exposures of a
batch need different S; they are sorted by need and rendered in a few groups, each with the
largest S of the group.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .config import SceneConfig
from .draw import Scenes
from .geometry import camera_matrices, layer_matrices
from .shapes import ON

_PROBE_TIMES = 25  # times per exposure at which the probe points are followed
_PROBE_POINTS = 12  # points per layer


def needed_subframes(sc: Scenes, frames: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """Sub-frames each exposure needs so that no visible point moves more than
    ``max_subframe_step`` between consecutive ones: (N, F) int for the F frame times
    ``frames``.

    Probe points follow their exact trajectories through each exposure: for the background,
    the corners and edge midpoints of the view (the displacement of an affine motion is
    largest at a corner); for an object, a 12-gon around the circle that bounds its outline
    (the disc lies inside it, so the largest displacement is at one of its vertices).
    Sub-frames are equally spaced in time, so the count follows the fastest stretch of the
    exposure (the longest chord between 25 probe times), not the average speed.
    """
    n, nf = len(sc.duty), len(frames)
    probes, k = _PROBE_TIMES, _PROBE_POINTS
    frac = np.linspace(-0.5, 0.5, probes)
    times = frames[None, :, None] + sc.duty[:, None, None] * frac  # (N, F, P)
    mats = layer_matrices(sc, times.reshape(n, -1))  # (N, L+1, F*P, 3, 3)
    mats = mats.reshape(mats.shape[:2] + (nf, probes, 3, 3))
    pts = np.concatenate([_background_probes(sc, frames, k)[:, None],
                          _object_probes(sc, nf, k)], axis=1)  # (N, L+1, F, 3, k)
    img = mats @ pts[:, :, :, None]  # (N, L+1, F, P, 3, k)
    img = img[..., :2, :] / img[..., 2:3, :]
    chord = np.sqrt((np.diff(img, axis=3) ** 2).sum(-2)).max(axis=(3, 4))  # (N, L+1, F)
    used = np.concatenate([np.ones((n, 1)), sc.shape[..., ON]], axis=1) > 0  # (N, L+1)
    chord = np.where(used[:, :, None], chord, 0.0).max(axis=1)  # (N, F)
    longest = chord * (probes - 1)  # distance covered at the fastest speed seen
    # 5% headroom for speed peaks between probe times.
    return np.maximum(1, np.ceil(longest * 1.05 / cfg.max_subframe_step - 1e-9)).astype(np.int64)


def _background_probes(sc: Scenes, frames: np.ndarray, k: int) -> np.ndarray:
    """The world points seen on the image border at each exposure's middle, homogeneous:
    (N, F, 3, k) (8 border points, padded to k with the corners again)."""
    n = len(sc.duty)
    h, w = sc.height, sc.width
    xs = [0, w - 1, 0, w - 1, (w - 1) / 2, (w - 1) / 2, 0, w - 1]
    ys = [0, 0, h - 1, h - 1, 0, h - 1, (h - 1) / 2, (h - 1) / 2]
    border = np.array([xs + xs[:4], ys + ys[:4], [1.0] * k])  # (3, k)
    mid = np.linalg.inv(camera_matrices(sc, np.repeat(frames[None], n, 0).astype(float)))
    return mid @ border


def _object_probes(sc: Scenes, nf: int, k: int) -> np.ndarray:
    """A k-gon whose inside contains each object's bounding circle, in layer coordinates,
    homogeneous: (N, L, F, 3, k) (the same for every frame)."""
    n, nl = sc.probe_radius.shape
    ang = np.linspace(0, 2 * math.pi, k, endpoint=False)
    circ = np.stack([np.cos(ang), np.sin(ang)]) / math.cos(math.pi / k)  # (2, k)
    obj = np.ones((n, nl, 1, 3, k))
    obj[:, :, 0, :2] = sc.probe_radius[:, :, None, None] * circ
    return np.broadcast_to(obj, (n, nl, nf, 3, k))


class ExposureGroup(NamedTuple):
    """Exposures rendered together with one sub-frame count."""

    units: np.ndarray  # indices into the flattened (N * F) exposures
    subframes: int


def group_by_need(need: np.ndarray, max_groups: int) -> list[ExposureGroup]:
    """Split exposures into at most ``max_groups`` groups rendered with one sub-frame count
    each (the largest need of the group), minimising the total number of sub-frames.

    A batch rendered with its largest need wastes work on its slow samples; sorting by need
    and cutting optimally (a small dynamic programme) typically saves a third.
    ``need``: (E,) sub-frames each exposure needs.
    """
    order = np.argsort(-need, kind="stable")
    v = need[order].astype(np.float64)
    m = len(v)
    groups = max(1, min(max_groups, m))
    best = np.full((groups + 1, m + 1), np.inf)
    cut = np.zeros((groups + 1, m + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for g in range(1, groups + 1):
        for j in range(1, m + 1):
            i = np.arange(j)
            cost = best[g - 1, :j] + (j - i) * v[:j]  # last group = sorted[i:j], costs v[i]
            k = int(np.argmin(cost))
            best[g, j], cut[g, j] = cost[k], k
    g = int(np.argmin(best[:, m]))
    out = []
    j = m
    while g > 0:
        i = cut[g, j]
        out.append(ExposureGroup(order[i:j], int(need[order[i]])))
        j, g = i, g - 1
    return out[::-1]
