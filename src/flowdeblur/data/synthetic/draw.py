"""Everything random about a batch of scenes, drawn on the host in float64.

Drawing on the host keeps the parameters small and lets the sub-frame count be chosen
without waiting on the GPU. The draws happen in a fixed order (exposure, camera, object
outlines, object motion, textures, tints) and every call consumes a fixed number of them per
sample, so sample i of a stream depends on (seed, i) alone (see ``hashing``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..textures import TextureBank, texture_bank
from .config import SceneConfig
from .hashing import Draws
from .shapes import draw_shapes
from .trajectories import Trajectory, draw_camera_motion, draw_object_motion


@dataclass
class Scenes:
    """Everything random about N scenes. L = max_layers object slots (unused ones disabled);
    layer 0 is the background, then the objects from back to front (a higher index covers a
    lower one)."""

    height: int
    width: int
    t_ref: float  # time at which motions are zero (world = image pixels then)
    still: np.ndarray  # (N,) bool
    duty: np.ndarray  # (N,) exposure / frame interval
    noise: np.ndarray  # (N,) sensor noise std, [0, 1] units after the camera response
    n_layers: np.ndarray  # (N,) int, enabled object slots
    camera: Trajectory  # D = 6: tx, ty, rotation, log zoom, perspective x, y
    objects: Trajectory  # (N, L, ...), D = 4: tx, ty, rotation, log scale
    centres: np.ndarray  # (N, L, 2) object centres at t_ref, pixels
    probe_radius: np.ndarray  # (N, L) radius bounding each shape, layer units
    shape: np.ndarray  # (N, L, shapes.SHAPE_PARAMS) packed outline parameters
    tex_affine: np.ndarray  # (N, L + 1, 3, 3) layer coordinates -> tile pixels
    tile: np.ndarray  # (N, L + 1) texture index
    tint: np.ndarray  # (N, L + 1, 3) multiplies the linear colour

    def take(self, idx: np.ndarray) -> Scenes:
        """The scenes at ``idx`` (repeats allowed)."""

        def pick(x):
            if isinstance(x, np.ndarray):
                return x[idx]
            if isinstance(x, Trajectory):
                return x.take(idx)
            return x

        return Scenes(*(pick(getattr(self, f.name)) for f in dataclasses.fields(self)))


def draw_scenes(draws: Draws, cfg: SceneConfig, t_ref: float, span: float) -> Scenes:
    """Draw ``draws.count`` scenes whose motions are referenced to time ``t_ref``.

    ``span``: half the time range the frames cover (acceleration is scaled by it so long
    clips do not run away).
    """
    h, w = cfg.size
    nl = cfg.max_layers
    bank = texture_bank(cfg.textures, cfg.photo_dirs)

    still = draws.uniform() < cfg.still_probability  # (N,)
    duty = draws.pair(cfg.duty_cycle)
    noise = draws.pair(cfg.noise_std)
    n_layers = draws.integers(cfg.min_layers, cfg.max_layers)
    moving = (~still).astype(np.float64)
    camera_speed = cfg.max_camera_motion * draws.pair(cfg.motion_range) * moving  # (N,)
    object_speed = cfg.max_object_motion * draws.pair(cfg.motion_range, nl) * moving[:, None]

    corner = 0.5 * math.hypot(h, w)  # distance from the centre to a corner
    camera = draw_camera_motion(draws, cfg, camera_speed, corner, span)
    shapes = draw_shapes(draws, cfg, n_layers)
    objects = draw_object_motion(draws, cfg, object_speed, shapes.probe_radius, span)

    tile = draws.integers(0, len(bank) - 1, nl + 1)  # (N, L+1)
    tex_affine = _draw_texture_affine(draws, cfg, bank.sizes.numpy()[tile], shapes.probe_radius)
    tint = _draw_tints(draws, cfg, bank, tile)
    return Scenes(h, w, t_ref, still, duty, noise, n_layers, camera, objects, shapes.centres,
                  shapes.probe_radius, shapes.params, tex_affine, tile, tint)


def _draw_texture_affine(draws: Draws, cfg: SceneConfig, sizes: np.ndarray,
                         probe_radius: np.ndarray) -> np.ndarray:
    """Where, how big and which way up each layer's texture lies: (N, L+1, 3, 3) maps from
    layer coordinates to the pixels of its tile. ``sizes``: (N, L+1, 2) tile width, height;
    ``probe_radius``: (N, L) the objects' bounding radii."""
    n, l1 = sizes.shape[:2]
    h, w = cfg.size
    tex_scale = draws.log_uniform(cfg.texture_scale, l1)
    tex_angle = np.deg2rad(cfg.texture_rotation) * draws.uniform(l1, low=-1.0, high=1.0)
    tex_flip = draws.sign(l1)
    tex_pos = draws.uniform(l1, 2)
    ca, sa = np.cos(tex_angle) * tex_scale, np.sin(tex_angle) * tex_scale
    tex_affine = np.zeros((n, l1, 3, 3))
    tex_affine[..., 0, 0], tex_affine[..., 0, 1] = ca * tex_flip, -sa
    tex_affine[..., 1, 0], tex_affine[..., 1, 1] = sa * tex_flip, ca
    tex_affine[..., 2, 2] = 1.0
    # Place each layer's footprint (the view for the background, the bounding circle for an
    # object) inside its tile where it fits, so mirrored texture shows only where it must.
    half = np.zeros((n, l1, 2))
    half[:, 0] = [(w - 1) / 2, (h - 1) / 2]
    half[:, 1:] = probe_radius[..., None]
    extent = np.abs(tex_affine[..., :2, :2]) @ half[..., None]  # (N, L+1, 2, 1)
    extent = np.minimum(extent[..., 0], (sizes - 1) / 2)
    tex_point = extent + tex_pos * (sizes - 1 - 2 * extent)
    # The background's layer coordinates are image pixels at t_ref; centre them on tex_point.
    origin = np.zeros((n, l1, 2))
    origin[:, 0] = [(w - 1) / 2, (h - 1) / 2]
    tex_affine[..., :2, 2] = tex_point - np.einsum("nlij,nlj->nli", tex_affine[..., :2, :2],
                                                   origin)
    return tex_affine


def _draw_tints(draws: Draws, cfg: SceneConfig, bank: TextureBank, tile: np.ndarray
                ) -> np.ndarray:
    """(N, L+1, 3) factors on each layer's linear colour: a random hue for grayscale photos
    (when ``cfg.tint_gray``), a slight colour cast otherwise, and a brightness gain."""
    l1 = tile.shape[1]
    gray = bank.gray.numpy()[tile]  # (N, L+1)
    hue = draws.uniform(l1, 3)
    sat = draws.uniform(l1, 1, low=0.0, high=0.6)
    tint_gray = (1 - sat) + sat * hue / np.maximum(hue.max(-1, keepdims=True), 1e-6)
    tint_colour = draws.uniform(l1, 3, low=0.85, high=1.0)
    gain = draws.uniform(l1, 1, low=0.6, high=1.0)
    use_tint = (gray & cfg.tint_gray)[..., None]
    return np.where(use_tint, tint_gray, tint_colour) * gain
