"""Smooth random motions of the camera and of the objects (NumPy, float64, on the host).

A trajectory is a velocity, an acceleration and a few sinusoids ("shake") per degree of
freedom. Each sample has a motion budget (an image-space speed in pixels per frame interval);
it is split at random among the enabled motion kinds, and each kind's rate is chosen so that
its image-space speed equals its share: at the view's corners for the camera's rotation,
zoom and perspective, on the circle that bounds the object for an object's rotation and scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import CAMERA_MOTIONS, OBJECT_MOTIONS, SceneConfig
from .hashing import Draws

_SHAKE_TERMS = 2  # sinusoids per shaken degree of freedom


@dataclass
class Trajectory:
    """Smooth 1-D motions of D degrees of freedom, zero at ``t_ref``:
    ``x(t) = v s + a s^2 / 2 + sum_k amp_k (sin(2 pi f_k s + phase_k) - sin(phase_k))``,
    ``s = t - t_ref``. ``vel``, ``acc``: (..., D); ``amp``, ``freq``, ``phase``: (..., D, K)."""

    vel: np.ndarray
    acc: np.ndarray
    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray

    def values(self, s: np.ndarray) -> np.ndarray:
        """``s``: times relative to t_ref, broadcastable to (..., 1, T). Returns (..., D, T)."""
        x = self.vel[..., None] * s + 0.5 * self.acc[..., None] * s * s
        arg = 2 * math.pi * self.freq[..., None] * s[..., None, :] + self.phase[..., None]
        shake = self.amp[..., None] * (np.sin(arg) - np.sin(self.phase)[..., None])
        return x + shake.sum(-2)

    def take(self, idx: np.ndarray) -> Trajectory:
        """The trajectories of the samples ``idx`` (first axis; repeats allowed)."""
        return Trajectory(self.vel[idx], self.acc[idx], self.amp[idx], self.freq[idx],
                          self.phase[idx])


def motion_budget(draws: Draws, kinds: tuple[str, ...], enabled: tuple[str, ...], *shape: int
                  ) -> np.ndarray:
    """Random shares of a motion budget among the enabled kinds: (N, *shape, len(kinds)),
    summing to 1 (Dirichlet(1, ..., 1)) or to 0 when no kind is enabled."""
    e = -np.log(np.maximum(draws.uniform(*shape, len(kinds)), 1e-300))
    e = e * np.array([k in enabled for k in kinds], dtype=np.float64)
    total = e.sum(-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def _shaken(draws: Draws, vel: np.ndarray, shake_share: np.ndarray, rotation_radius,
            cfg: SceneConfig, span: float) -> Trajectory:
    """Complete a trajectory whose velocity ``vel`` (N, ..., D) is drawn: a random
    acceleration, and shake on x, y and rotation (the first three degrees of freedom) whose
    peak speeds add up to ``shake_share`` (N, ...) pixels per frame interval, the rotation's
    measured at ``rotation_radius`` pixels from its centre.

    The acceleration is scaled by 1 / ``span`` (half the time the frames cover) so that long
    clips do not run away.
    """
    shape = vel.shape[1:-1]
    acc = vel * draws.uniform(*shape, vel.shape[-1], low=-1.0, high=1.0) * cfg.acceleration / span
    split = draws.uniform(*shape, 3, low=0.1, high=1.0)
    split = split / split.sum(-1, keepdims=True)
    speed = np.zeros_like(vel)
    speed[..., :3] = shake_share[..., None] * split
    speed[..., 2] /= rotation_radius  # rotation shake: its speed at that radius is its share
    # Sinusoids per degree of freedom whose peak speeds add up to ``speed``.
    terms = (*shape, vel.shape[-1], _SHAKE_TERMS)
    freq = draws.pair(cfg.shake_frequency, *terms)
    phase = draws.uniform(*terms, high=2 * math.pi)
    share = draws.uniform(*terms, low=0.2, high=1.0)
    share = share / share.sum(-1, keepdims=True)
    amp = speed[..., None] * share / (2 * math.pi * freq) * draws.sign(*terms)
    return Trajectory(vel, acc, amp, freq, phase)


def draw_camera_motion(draws: Draws, cfg: SceneConfig, speed: np.ndarray, corner: float,
                       span: float) -> Trajectory:
    """The camera's trajectory, D = 6: tx, ty (pixels), rotation (radians), log zoom,
    perspective x, y (per pixel). ``speed``: (N,) the budget; ``corner``: the distance from
    the view's centre to a corner, pixels."""
    n = draws.count
    share = motion_budget(draws, CAMERA_MOTIONS, cfg.camera_motions) * speed[:, None]  # (N, 5)
    pan_dir = draws.uniform(high=2 * math.pi)
    vel = np.zeros((n, 6))
    vel[:, 0] = share[:, 0] * np.cos(pan_dir)
    vel[:, 1] = share[:, 0] * np.sin(pan_dir)
    vel[:, 2] = share[:, 1] / corner * draws.sign()
    vel[:, 3] = share[:, 2] / corner * draws.sign()
    persp_dir = draws.uniform(high=2 * math.pi)
    vel[:, 4] = share[:, 3] / corner**2 * np.cos(persp_dir)
    vel[:, 5] = share[:, 3] / corner**2 * np.sin(persp_dir)
    return _shaken(draws, vel, share[:, 4], corner, cfg, span)


def draw_object_motion(draws: Draws, cfg: SceneConfig, speed: np.ndarray,
                       radius: np.ndarray, span: float) -> Trajectory:
    """The objects' trajectories relative to the camera's world, (N, L, ...) with D = 4: tx,
    ty (pixels), rotation (radians), log scale. ``speed``: (N, L) the budgets; ``radius``:
    (N, L) the radius of the circle that bounds each object, pixels."""
    n, nl = speed.shape
    share = motion_budget(draws, OBJECT_MOTIONS, cfg.object_motions, nl) * speed[..., None]
    direction = draws.uniform(nl, high=2 * math.pi)
    vel = np.zeros((n, nl, 4))
    vel[..., 0] = share[..., 0] * np.cos(direction)
    vel[..., 1] = share[..., 0] * np.sin(direction)
    vel[..., 2] = share[..., 1] / radius * draws.sign(nl)
    vel[..., 3] = share[..., 2] / radius * draws.sign(nl)
    return _shaken(draws, vel, share[..., 3], radius, cfg, span)
