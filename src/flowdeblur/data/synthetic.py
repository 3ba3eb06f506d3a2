"""Synthetic dynamic scenes: physically based blurry frames with ground-truth optical flow.

A scene is a textured background plus up to ``max_layers`` foreground objects (soft-edged
opaque shapes cut from other textures) stacked front to back. The camera follows a smooth
random homography trajectory (pan, rotation, zoom, perspective, shake) and every object a
smooth random affine one (translation, rotation, scale, shake) on top of it. Time is measured
in frame intervals; frame ``k``'s exposure is centred on ``t = k`` and lasts ``duty`` intervals.

How a blurry frame is made (batched over samples, no loop over them):

1. Every layer is a texture seen through a 3x3 map ``M_l(t)`` from layer coordinates to image
   pixels: ``M_0 = C(t)`` for the background, ``M_l = C(t) A_l(t)`` for objects. Object shapes
   are analytic (a super-ellipse with a wobbling radius); their alpha ramps over
   ``edge_softness`` pixels across the outline.
2. The exposure is cut into S sub-frames so that nothing moves more than
   ``max_subframe_step`` (1 pixel) between two of them (no ghosting). S follows from the exact
   trajectories of probe points; the exposures of a batch are sorted by their need and
   rendered in up to ``subframe_groups`` groups, each with the largest S of the group.
3. Each sub-frame samples all layers of all exposures of a group from one texture atlas (one
   ``grid_sample`` in the torch renderer), composites them with ``over`` in linear light, and
   the sub-frames are averaged (light adds linearly; textures were linearised once with
   ``srgb ** gamma``). ``render_triton`` (CUDA) and ``render_cpu`` (numba) compute the same in
   one fused pass; the tests hold them to the torch version.
4. The camera response ``x ** (1 / gamma)`` is re-applied, Gaussian noise added and the result
   quantised to 8 bits. Sharp frames are single sub-frames at the middle of the exposure,
   with the same response and quantisation but no noise.

The flow is computed analytically from the maps: pixel ``p`` of frame 0 belongs to the topmost
layer ``l`` whose alpha there is >= 1/2, and moves to ``p' = M_l(1) M_l(0)^-1 p``. It is marked
valid where ``p`` lies well inside that layer (away from soft edges), ``p'`` is inside the
image and no layer in front of ``l`` covers ``p'`` in frame 1 (occlusion).

Randomness: every scene parameter comes from a counter-based hash of (seed, sample index,
draw number), so sample ``i`` of the stream is the same whatever the batch size, and a batch is
the same on every run (same device and renderer). Sensor noise comes from a per-batch torch
generator on the device. Nothing in ``sample`` waits for the GPU: scene parameters and maps
are computed on the host in float64 and sent in one pinned, asynchronous copy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .textures import SOURCES, linear_atlas, texture_bank

CAMERA_MOTIONS = ("pan", "rotation", "zoom", "perspective", "shake")
OBJECT_MOTIONS = ("translation", "rotation", "scale", "shake")


@dataclass
class SceneConfig:
    """What the scene generator draws from. Ranges are ``(low, high)``, drawn uniformly.

    Motion magnitudes are image-space speeds in pixels per frame interval at the largest; a
    sample's magnitude is ``max * U(motion_range)``, shared among the enabled motion kinds.
    """

    size: tuple[int, int] = (256, 256)  # H, W of the output
    max_layers: int = 4  # foreground layers (min_layers..max_layers)
    max_camera_motion: float = 24.0  # pixels per frame interval at the largest
    max_object_motion: float = 24.0
    duty_cycle: tuple[float, float] = (0.25, 1.0)  # exposure / frame interval
    noise_std: tuple[float, float] = (0.0, 0.01)  # in [0,1] units, after gamma
    gamma: float = 2.2
    quantize: bool = True
    still_probability: float = 0.05  # some samples with no motion at all
    three_frames: bool = False
    # --- beyond the required fields ---
    min_layers: int = 0
    textures: str = "mixed"  # texture bank: mixed, photos, dead_leaves, smooth
    motion_range: tuple[float, float] = (0.0, 1.0)  # fraction of the max motion
    camera_motions: tuple[str, ...] = CAMERA_MOTIONS
    object_motions: tuple[str, ...] = OBJECT_MOTIONS
    acceleration: float = 0.3  # speed may change by up to this fraction per frame interval
    shake_frequency: tuple[float, float] = (0.3, 2.0)  # cycles per frame interval
    texture_scale: tuple[float, float] = (0.6, 1.25)  # texture pixels per image pixel
    texture_rotation: float = 180.0  # degrees, at most, either way
    object_radius: tuple[float, float] = (0.08, 0.3)  # fraction of min(H, W)
    edge_softness: tuple[float, float] = (0.7, 1.5)  # width of the alpha ramp, pixels
    tint_gray: bool = True  # colour the grayscale photographs
    max_subframe_step: float = 1.0  # pixels between consecutive sub-frames, at most
    max_subframes: int = 160
    subframe_groups: int = 4  # exposures are rendered in up to this many sub-frame counts
    renderer: str = "auto"  # auto (fused: Triton on CUDA, numba on CPU), torch, triton, numba
    chunk_points: int = 0  # torch renderer: layer samples per chunk; 0: 2**22 CPU, 2**25 GPU

    def __post_init__(self) -> None:
        def pair(name: str) -> tuple[float, float]:
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise UserError(
                    f"SceneConfig.{name} must be a (low, high) pair, got {value!r}") from None
            if not lo <= hi:
                raise UserError(f"SceneConfig.{name} must have low <= high, got {value!r}")
            setattr(self, name, (lo, hi))
            return lo, hi

        try:
            h, w = (int(v) for v in self.size)
        except (TypeError, ValueError):
            raise UserError(
                f"SceneConfig.size must be (height, width), got {self.size!r}") from None
        if h < 2 or w < 2:
            raise UserError(f"SceneConfig.size must be at least 2x2, got {self.size!r}")
        self.size = (h, w)
        for name in ("duty_cycle", "noise_std", "motion_range", "shake_frequency",
                     "texture_scale", "object_radius", "edge_softness"):
            pair(name)
        if not (0 < self.duty_cycle[0] and self.duty_cycle[1] <= 1):
            raise UserError(f"SceneConfig.duty_cycle must lie in (0, 1], got {self.duty_cycle}")
        if self.noise_std[0] < 0 or self.motion_range[0] < 0 or self.texture_scale[0] <= 0:
            raise UserError("SceneConfig noise_std, motion_range and texture_scale must be >= 0")
        if self.object_radius[0] <= 0 or self.edge_softness[0] <= 0:
            raise UserError("SceneConfig object_radius and edge_softness must be positive")
        if not 0 <= self.min_layers <= self.max_layers:
            raise UserError(
                f"SceneConfig needs 0 <= min_layers <= max_layers, got {self.min_layers} "
                f"and {self.max_layers}"
            )
        if self.max_camera_motion < 0 or self.max_object_motion < 0:
            raise UserError("SceneConfig max_camera_motion and max_object_motion must be >= 0")
        if not 0 <= self.still_probability <= 1:
            raise UserError(f"SceneConfig.still_probability must be in [0, 1], got "
                            f"{self.still_probability}")
        if self.gamma <= 0:
            raise UserError(f"SceneConfig.gamma must be positive, got {self.gamma}")
        if self.textures not in SOURCES:
            raise UserError(f"SceneConfig.textures must be one of {SOURCES}, got "
                            f"{self.textures!r}")
        self.camera_motions = tuple(self.camera_motions)
        self.object_motions = tuple(self.object_motions)
        for kinds, known, name in ((self.camera_motions, CAMERA_MOTIONS, "camera_motions"),
                                   (self.object_motions, OBJECT_MOTIONS, "object_motions")):
            bad = [k for k in kinds if k not in known]
            if bad:
                raise UserError(f"SceneConfig.{name}: unknown kind(s) {bad}; known: {known}")
        if self.renderer not in ("auto", "torch", "triton", "numba"):
            raise UserError(f"SceneConfig.renderer must be auto, torch, triton or numba, got "
                            f"{self.renderer!r}")
        if self.max_subframe_step <= 0 or self.max_subframes < 1 or self.subframe_groups < 1:
            raise UserError("SceneConfig needs max_subframe_step > 0, max_subframes >= 1 and "
                            "subframe_groups >= 1")


# ---------------------------------------------------------------------------------------------
# Counter-based randomness: uniform numbers from a hash of (seed, sample index, draw number).
# ---------------------------------------------------------------------------------------------

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit hash (uint64 arithmetic wraps)."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _hash_seed(*parts: int) -> int:
    """Hash integers to one non-negative 63-bit int (a seed for torch generators)."""
    # One-element arrays: NumPy wraps array arithmetic silently but warns on scalars.
    h = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    for p in parts:
        h = _mix64(h ^ _mix64(np.array([p % (1 << 64)], dtype=np.uint64) + _GOLDEN))
    return int(h[0]) >> 1


class _Draws:
    """Per-sample random streams. Every call consumes the same number of draws whatever the
    values, so the k-th draw of sample i is fixed by (seed, i, k) alone."""

    def __init__(self, seed: int, indices: np.ndarray):
        base = np.array([_hash_seed(seed, 0x5CE4E)], dtype=np.uint64)
        self._keys = _mix64(base ^ _mix64(indices.astype(np.uint64) * _GOLDEN + _U64(1)))
        self._next = 0

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        cols = np.arange(self._next, self._next + count, dtype=np.uint64)
        self._next += count
        bits = _mix64(self._keys[:, None] ^ _mix64(cols * _GOLDEN + _U64(7))[None, :])
        u = (bits >> _U64(11)).astype(np.float64) * 2.0**-53
        return (low + (high - low) * u).reshape((len(self._keys), *shape))

    def pair(self, bounds: tuple[float, float], *shape: int) -> np.ndarray:
        return self.uniform(*shape, low=bounds[0], high=bounds[1])

    def log_uniform(self, bounds: tuple[float, float], *shape: int) -> np.ndarray:
        return np.exp(self.pair((math.log(bounds[0]), math.log(bounds[1])), *shape))

    def sign(self, *shape: int) -> np.ndarray:
        return np.where(self.uniform(*shape) < 0.5, -1.0, 1.0)

    def integers(self, low: int, high: int, *shape: int) -> np.ndarray:
        """Integers in [low, high] inclusive."""
        u = self.uniform(*shape)
        return np.minimum(low + np.floor(u * (high - low + 1)), high).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Scene parameters (NumPy, float64, on the host: small, and it lets the sub-frame count be
# chosen without waiting on the GPU).
# ---------------------------------------------------------------------------------------------

_SHAKE_TERMS = 2  # sinusoids per shaken degree of freedom
# Object shape parameters, last axis of _Scenes.shape: E (4: layer units -> unit shape frame),
# super-ellipse exponent and its inverse, harmonic order, amplitude and phase, distance scale
# (pixels per unit of r - rho), edge softness, alpha slope (scale / softness), alpha offset
# (0.5, or very negative for an unused slot), enabled (0 / 1), and the squared radius in layer
# units beyond which alpha is surely 0 (fused renderers skip the shape there).
_SHAPE_PARAMS = 15
_E0, _EXP, _INV_EXP, _ORDER, _AMP, _PHASE, _DIST, _SOFT, _SLOPE, _OFFSET, _ON, _CULL2 = (
    0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)


@dataclass
class _Trajectory:
    """Smooth 1-D motions of D degrees of freedom, zero at ``t_ref``:
    ``x(t) = v s + a s^2 / 2 + sum_k amp_k (sin(2 pi f_k s + phase_k) - sin(phase_k))``,
    ``s = t - t_ref``. Arrays have shape (..., D) and (..., D, K)."""

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


@dataclass
class _Scenes:
    """Everything random about N scenes. L = max_layers object slots (unused ones disabled)."""

    height: int
    width: int
    t_ref: float
    still: np.ndarray  # (N,) bool
    duty: np.ndarray  # (N,)
    noise: np.ndarray  # (N,)
    n_layers: np.ndarray  # (N,) int
    camera: _Trajectory  # D = 6: tx, ty, rotation, log zoom, perspective x, y
    objects: _Trajectory  # (N, L, ...), D = 4: tx, ty, rotation, log scale
    centres: np.ndarray  # (N, L, 2) object centres at t_ref, pixels
    probe_radius: np.ndarray  # (N, L) radius bounding each shape, layer units
    shape: np.ndarray  # (N, L, _SHAPE_PARAMS)
    tex_affine: np.ndarray  # (N, L + 1, 3, 3) layer coordinates -> tile pixels
    tile: np.ndarray  # (N, L + 1) texture index
    tint: np.ndarray  # (N, L + 1, 3) multiplies the linear colour

    def take(self, idx: np.ndarray) -> _Scenes:
        """The scenes at ``idx`` (repeats allowed)."""

        def pick(x):
            if isinstance(x, np.ndarray):
                return x[idx]
            if isinstance(x, _Trajectory):
                return _Trajectory(*(getattr(x, f.name)[idx] for f in dataclasses.fields(x)))
            return x

        return _Scenes(*(pick(getattr(self, f.name)) for f in dataclasses.fields(self)))


def _budget(draws: _Draws, kinds: tuple[str, ...], enabled: tuple[str, ...], *shape: int
            ) -> np.ndarray:
    """Random shares of a motion budget among the enabled kinds: (N, *shape, len(kinds)),
    summing to 1 (Dirichlet(1, ..., 1)) or to 0 when no kind is enabled."""
    e = -np.log(np.maximum(draws.uniform(*shape, len(kinds)), 1e-300))
    e = e * np.array([k in enabled for k in kinds], dtype=np.float64)
    total = e.sum(-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def _shake(draws: _Draws, speed: np.ndarray, freq_range: tuple[float, float]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sinusoids for each degree of freedom whose peak speeds add up to ``speed`` (N, ..., D).
    Returns amp, freq, phase of shape (N, ..., D, K)."""
    shape = speed.shape[1:]
    freq = draws.pair(freq_range, *shape, _SHAKE_TERMS)
    phase = draws.uniform(*shape, _SHAKE_TERMS, high=2 * math.pi)
    share = draws.uniform(*shape, _SHAKE_TERMS, low=0.2, high=1.0)
    share = share / share.sum(-1, keepdims=True)
    amp = speed[..., None] * share / (2 * math.pi * freq) * draws.sign(*shape, _SHAKE_TERMS)
    return amp, freq, phase


def _draw_scenes(draws: _Draws, cfg: SceneConfig, t_ref: float, span: float) -> _Scenes:
    """Draw N scenes. ``span``: half the time range the frames cover (acceleration is scaled
    by it so long clips do not run away)."""
    n = len(draws._keys)
    h, w = cfg.size
    nl = cfg.max_layers
    bank = texture_bank(cfg.textures)
    corner = 0.5 * math.hypot(h, w)  # distance from the centre to a corner
    side = min(h, w)

    still = draws.uniform() < cfg.still_probability  # (N,)
    duty = draws.pair(cfg.duty_cycle)
    noise = draws.pair(cfg.noise_std)
    n_layers = draws.integers(cfg.min_layers, cfg.max_layers)
    moving = (~still).astype(np.float64)
    m_cam = cfg.max_camera_motion * draws.pair(cfg.motion_range) * moving  # (N,)
    m_obj = cfg.max_object_motion * draws.pair(cfg.motion_range, nl) * moving[:, None]

    # --- camera: shares of the speed budget, then each kind's rate so that its image-space
    # speed (at the corners for rotation / zoom / perspective) equals its share.
    share = _budget(draws, CAMERA_MOTIONS, cfg.camera_motions) * m_cam[:, None]  # (N, 5)
    pan_dir = draws.uniform(high=2 * math.pi)
    vel = np.zeros((n, 6))
    vel[:, 0] = share[:, 0] * np.cos(pan_dir)
    vel[:, 1] = share[:, 0] * np.sin(pan_dir)
    vel[:, 2] = share[:, 1] / corner * draws.sign()
    vel[:, 3] = share[:, 2] / corner * draws.sign()
    persp_dir = draws.uniform(high=2 * math.pi)
    vel[:, 4] = share[:, 3] / corner**2 * np.cos(persp_dir)
    vel[:, 5] = share[:, 3] / corner**2 * np.sin(persp_dir)
    acc = vel * draws.uniform(6, low=-1.0, high=1.0) * cfg.acceleration / span
    shake_split = draws.uniform(3, low=0.1, high=1.0)
    shake_split = shake_split / shake_split.sum(1, keepdims=True)
    shake_speed = np.zeros((n, 6))
    shake_speed[:, :3] = share[:, 4:5] * shake_split
    shake_speed[:, 2] /= corner  # rotation shake: its corner speed is its share
    amp, freq, phase = _shake(draws, shake_speed, cfg.shake_frequency)
    camera = _Trajectory(vel, acc, amp, freq, phase)

    # --- objects
    radius = side * draws.pair(cfg.object_radius, nl)  # (N, L) major semi-axis
    aspect = draws.uniform(nl, low=0.5, high=1.0)
    orient = draws.uniform(nl, high=math.pi)
    exponent = 2.0 + 4.0 * draws.uniform(nl) ** 2  # mostly round, sometimes boxy
    order = draws.integers(2, 5, nl).astype(np.float64)  # lobes of the outline's wobble
    amp = draws.uniform(nl, high=0.3) / order
    harm_phase = draws.uniform(nl, high=2 * math.pi)
    soft = draws.pair(cfg.edge_softness, nl)
    centres = np.stack([draws.uniform(nl, low=0.1, high=0.9) * (w - 1),
                        draws.uniform(nl, low=0.1, high=0.9) * (h - 1)], axis=-1)
    # The shape's distance function is scaled to be 1-Lipschitz (see _signed_distance), so
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
    shape = np.concatenate(
        [e] + [x[..., None] for x in (exponent, 1.0 / exponent, order, amp, harm_phase, r_eff,
                                      soft, r_eff / soft, offset, enabled, cull**2)], axis=-1)

    oshare = _budget(draws, OBJECT_MOTIONS, cfg.object_motions, nl) * m_obj[..., None]  # (N,L,4)
    odir = draws.uniform(nl, high=2 * math.pi)
    ovel = np.zeros((n, nl, 4))
    ovel[..., 0] = oshare[..., 0] * np.cos(odir)
    ovel[..., 1] = oshare[..., 0] * np.sin(odir)
    ovel[..., 2] = oshare[..., 1] / probe_radius * draws.sign(nl)
    ovel[..., 3] = oshare[..., 2] / probe_radius * draws.sign(nl)
    oacc = ovel * draws.uniform(nl, 4, low=-1.0, high=1.0) * cfg.acceleration / span
    osplit = draws.uniform(nl, 3, low=0.1, high=1.0)
    osplit = osplit / osplit.sum(-1, keepdims=True)
    oshake = np.zeros((n, nl, 4))
    oshake[..., :3] = oshare[..., 3:4] * osplit
    oshake[..., 2] /= probe_radius
    oamp, ofreq, ophase = _shake(draws, oshake, cfg.shake_frequency)
    objects = _Trajectory(ovel, oacc, oamp, ofreq, ophase)

    # --- textures: which tile, and where / how big / which way up it lies in the layer
    k = len(bank)
    tile = draws.integers(0, k - 1, nl + 1)
    sizes = bank.sizes.numpy()[tile]  # (N, L+1, 2)
    tex_scale = draws.log_uniform(cfg.texture_scale, nl + 1)
    tex_angle = np.deg2rad(cfg.texture_rotation) * draws.uniform(nl + 1, low=-1.0, high=1.0)
    tex_flip = draws.sign(nl + 1)
    tex_pos = draws.uniform(nl + 1, 2)
    ca, sa = np.cos(tex_angle) * tex_scale, np.sin(tex_angle) * tex_scale
    tex_affine = np.zeros((n, nl + 1, 3, 3))
    tex_affine[..., 0, 0], tex_affine[..., 0, 1] = ca * tex_flip, -sa
    tex_affine[..., 1, 0], tex_affine[..., 1, 1] = sa * tex_flip, ca
    tex_affine[..., 2, 2] = 1.0
    # Place each layer's footprint (the view for the background, the bounding circle for an
    # object) inside its tile where it fits, so mirrored texture shows only where it must.
    half = np.zeros((n, nl + 1, 2))
    half[:, 0] = [(w - 1) / 2, (h - 1) / 2]
    half[:, 1:] = probe_radius[..., None]
    extent = np.abs(tex_affine[..., :2, :2]) @ half[..., None]  # (N, L+1, 2, 1)
    extent = np.minimum(extent[..., 0], (sizes - 1) / 2)
    tex_point = extent + tex_pos * (sizes - 1 - 2 * extent)
    # The background's layer coordinates are image pixels at t_ref; centre them on tex_point.
    origin = np.zeros((n, nl + 1, 2))
    origin[:, 0] = [(w - 1) / 2, (h - 1) / 2]
    tex_affine[..., :2, 2] = tex_point - np.einsum("nlij,nlj->nli", tex_affine[..., :2, :2],
                                                   origin)

    gray = bank.gray.numpy()[tile]  # (N, L+1)
    hue = draws.uniform(nl + 1, 3)
    sat = draws.uniform(nl + 1, 1, low=0.0, high=0.6)
    tint_gray = (1 - sat) + sat * hue / np.maximum(hue.max(-1, keepdims=True), 1e-6)
    tint_colour = draws.uniform(nl + 1, 3, low=0.85, high=1.0)
    gain = draws.uniform(nl + 1, 1, low=0.6, high=1.0)
    use_tint = (gray & cfg.tint_gray)[..., None]
    tint = np.where(use_tint, tint_gray, tint_colour) * gain

    return _Scenes(h, w, t_ref, still, duty, noise, n_layers, camera, objects, centres,
                   probe_radius, shape, tex_affine, tile, tint)


def _camera_matrices(sc: _Scenes, times: np.ndarray) -> np.ndarray:
    """World (= image pixels at t_ref) -> image pixels at ``times`` (N, T): (N, T, 3, 3)."""
    d = sc.camera.values((times - sc.t_ref)[:, None, :])  # (N, 6, T)
    tx, ty, rot, logz, px, py = (d[:, i] for i in range(6))
    z = np.exp(logz)
    c, s = z * np.cos(rot), z * np.sin(rot)
    cx, cy = (sc.width - 1) / 2, (sc.height - 1) / 2
    # Centred coordinates: x -> [zR | t] [I 0; p^T 1] x, then back to pixels.
    core = np.zeros(times.shape + (3, 3))
    core[..., 0, 0], core[..., 0, 1] = c + tx * px, -s + tx * py
    core[..., 1, 0], core[..., 1, 1] = s + ty * px, c + ty * py
    core[..., 0, 2], core[..., 1, 2] = tx, ty
    core[..., 2, 0], core[..., 2, 1], core[..., 2, 2] = px, py, 1.0
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    back = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return back @ core @ to_centre


def _object_matrices(sc: _Scenes, times: np.ndarray) -> np.ndarray:
    """Object layer coordinates (origin at the object's centre) -> world: (N, L, T, 3, 3)."""
    d = sc.objects.values((times - sc.t_ref)[:, None, None, :])  # (N, L, 4, T)
    z = np.exp(d[:, :, 3])
    c, s = z * np.cos(d[:, :, 2]), z * np.sin(d[:, :, 2])
    a = np.zeros(c.shape + (3, 3))
    a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1] = c, -s, s, c
    a[..., 0, 2] = sc.centres[..., 0, None] + d[:, :, 0]
    a[..., 1, 2] = sc.centres[..., 1, None] + d[:, :, 1]
    a[..., 2, 2] = 1.0
    return a


def _layer_matrices(sc: _Scenes, times: np.ndarray) -> np.ndarray:
    """Layer coordinates -> image pixels at ``times`` (N, T): (N, L + 1, T, 3, 3)."""
    cam = _camera_matrices(sc, times)  # (N, T, 3, 3)
    obj = _object_matrices(sc, times)  # (N, L, T, 3, 3)
    return np.concatenate([cam[:, None], cam[:, None] @ obj], axis=1)


def _needed_subframes(sc: _Scenes, frames: np.ndarray, cfg: SceneConfig) -> np.ndarray:
    """Sub-frames each exposure needs so that no visible point moves more than
    ``max_subframe_step`` between consecutive ones: (N, F) int.

    Probe points follow their exact trajectories through each exposure: for the background,
    the corners and edge midpoints of the view (the displacement of an affine motion is
    largest at a corner); for an object, a 12-gon around the circle that bounds its outline
    (the disc lies inside it, so the largest displacement is at one of its vertices).
    Sub-frames are equally spaced in time, so the count follows the fastest stretch of the
    exposure (the longest chord between 25 probe times), not the average speed.
    """
    n = len(sc.duty)
    probes, k = 25, 12
    frac = np.linspace(-0.5, 0.5, probes)
    times = frames[None, :, None] + sc.duty[:, None, None] * frac  # (N, F, P)
    nf = len(frames)
    mats = _layer_matrices(sc, times.reshape(n, -1))  # (N, L+1, F*P, 3, 3)
    mats = mats.reshape(mats.shape[:2] + (nf, probes, 3, 3))
    h, w = sc.height, sc.width
    # Background: the world points seen on the image border at the exposure's middle.
    xs, ys = [0, w - 1, 0, w - 1, (w - 1) / 2, (w - 1) / 2, 0, w - 1], [0, 0, h - 1, h - 1, 0,
                                                                        h - 1, (h - 1) / 2,
                                                                        (h - 1) / 2]
    border = np.array([xs + xs[:4], ys + ys[:4], [1.0] * k])  # (3, k), padded to k points
    mid = np.linalg.inv(_camera_matrices(sc, np.repeat(frames[None], n, 0).astype(float)))
    world = mid @ border  # (N, F, 3, k)
    # Objects: a k-gon whose inside contains the bounding circle.
    ang = np.linspace(0, 2 * math.pi, k, endpoint=False)
    circ = np.stack([np.cos(ang), np.sin(ang)]) / math.cos(math.pi / k)  # (2, k)
    nl = sc.probe_radius.shape[1]
    obj = np.ones((n, nl, 1, 3, k))
    obj[:, :, 0, :2] = sc.probe_radius[:, :, None, None] * circ
    pts = np.concatenate([world[:, None], np.broadcast_to(obj, (n, nl, nf, 3, k))], axis=1)
    img = mats @ pts[:, :, :, None]  # (N, L+1, F, P, 3, k)
    img = img[..., :2, :] / img[..., 2:3, :]
    chord = np.sqrt((np.diff(img, axis=3) ** 2).sum(-2)).max(axis=(3, 4))  # (N, L+1, F)
    used = np.concatenate([np.ones((n, 1)), sc.shape[..., _ON]], axis=1) > 0  # (N, L+1)
    chord = np.where(used[:, :, None], chord, 0.0).max(axis=1)  # (N, F)
    longest = chord * (probes - 1)  # distance covered at the fastest speed seen
    # 5% headroom for speed peaks between probe times.
    return np.maximum(1, np.ceil(longest * 1.05 / cfg.max_subframe_step - 1e-9)).astype(np.int64)


def _render_rows(sc: _Scenes, mats: np.ndarray) -> np.ndarray:
    """Per layer and time, the 5x3 map from homogeneous pixels to [u (2), q (2), w]:
    u = layer coordinates and q = tile pixels are (row / w). (N, L+1, T, 5, 3) float64."""
    inv = np.linalg.inv(mats)  # image -> layer coordinates
    tq = sc.tex_affine[:, :, None] @ inv  # image -> tile pixels (same denominator row)
    return np.concatenate([inv[..., :2, :], tq[..., :2, :], inv[..., 2:, :]], axis=-2)


# ---------------------------------------------------------------------------------------------
# Device side: rendering and flow (torch).
# ---------------------------------------------------------------------------------------------


def _shape_value(ux: torch.Tensor, uy: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``r(phi) - rho(v)`` of the object outlines at layer coordinates (ux, uy): positive
    inside, zero on the outline. ``p``: shape parameters, last axis _SHAPE_PARAMS, broadcastable
    against ux once that axis is indexed.

    The outline is a super-ellipse ``rho(v) = (|vx|^e + |vy|^e)^(1/e)``, ``v = E u``, whose
    radius wobbles as ``r(phi) = 1 + a cos(k phi + phase)``.
    """
    vx = torch.addcmul(p[..., _E0 + 1] * uy, p[..., _E0], ux)
    vy = torch.addcmul(p[..., _E0 + 3] * uy, p[..., _E0 + 2], ux)
    e = p[..., _EXP]
    rho = (vx.abs().pow(e) + vy.abs().pow(e)).pow(p[..., _INV_EXP])
    wobble = torch.cos(torch.addcmul(p[..., _PHASE], p[..., _ORDER], torch.atan2(vy, vx)))
    return torch.addcmul(1.0 - rho, p[..., _AMP], wobble)


def _signed_distance(ux: torch.Tensor, uy: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Signed distance-like value of the object outlines (positive inside, pixels at the
    shape's scale), 1-Lipschitz so ``|d| <=`` the true distance: the super-ellipse norm's
    gradient is at most 1 in the unit frame (e >= 2), E stretches by at most 1 / (R aspect),
    and the wobble adds at most ``k a``; ``_DIST = R aspect / (1 + k a)`` undoes all three."""
    return _shape_value(ux, uy, p) * p[..., _DIST]


def _alpha_from_value(value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Coverage in [0, 1]: a linear ramp ``softness`` pixels wide across the outline, zero for
    unused layer slots (their offset is very negative)."""
    return torch.addcmul(p[..., _OFFSET], value, p[..., _SLOPE]).clamp(0.0, 1.0)


def _composite_subframes(atlas: torch.Tensor, rows: torch.Tensor, pix_x: torch.Tensor,
                         pix_y: torch.Tensor, last: torch.Tensor, far_edge: torch.Tensor,
                         scale: torch.Tensor, tint: torch.Tensor, shape: torch.Tensor
                         ) -> torch.Tensor:
    """Sum over a chunk of sub-frames of the layers composited front over back, linear light.

    Args:
        atlas: (1, 3, Ha, Wa). rows: (nb, L1, Sc, 5, 3) pixel -> [u, q, w] maps.
        pix_x, pix_y: (HW,) pixel coordinates.
        last: (nb, L1, 1, 2, 1) tile size - 1 (x, y), pixels.
        far_edge: (nb, L1, 1, 2, 1) the tile's last pixel in grid_sample units.
        scale: (2, 1) atlas pixels -> grid units.
        tint: (3, nb, L1, 1, 1). shape: (nb, L1 - 1, 1, 1, _SHAPE_PARAMS).
    Returns:
        (3, nb, HW).
    """
    nb, l1, sc = rows.shape[:3]
    hw = pix_x.shape[0]
    # r = rows @ [x, y, 1]: two fused multiply-adds instead of a K=3 matmul.
    r = torch.addcmul(torch.addcmul(rows[..., 2:3], rows[..., 0:1], pix_x), rows[..., 1:2], pix_y)
    inv_w = 1.0 / r[..., 4:5, :]  # (nb, L1, Sc, 1, HW)
    # Mirror tile coordinates into the tile (reflection without repeating the edge pixel) so
    # layers extend smoothly beyond their texture, and map them to grid units in one go.
    t = torch.remainder(r[..., 2:4, :] * inv_w, 2.0 * last)  # (nb, L1, Sc, 2, HW)
    grid = torch.addcmul(far_edge, (t - last).abs(), scale, value=-1.0).transpose(-1, -2)
    # One sampling call for every layer of every exposure and sub-frame of the chunk.
    col = F.grid_sample(atlas, grid.reshape(1, -1, hw, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    col = col.view(3, nb, l1, sc, hw) * tint
    acc = col[:, :, 0]  # background, (3, nb, Sc, HW)
    if l1 > 1:
        u = r[:, 1:, :, 0:2] * inv_w[:, 1:]  # (nb, L1-1, Sc, 2, HW)
        alpha = _alpha_from_value(_shape_value(u[..., 0, :], u[..., 1, :], shape), shape)
        for layer in range(1, l1):
            acc = torch.lerp(acc, col[:, :, layer], alpha[:, layer - 1])  # layer over acc
    return acc.sum(2)


def _render_linear(atlas: torch.Tensor, rows: torch.Tensor, tile: torch.Tensor,
                   tint: torch.Tensor, shape: torch.Tensor, height: int, width: int,
                   chunk_points: int) -> torch.Tensor:
    """Average over S sub-frames of the composited layers, in linear light (torch version;
    ``render_triton.render_linear`` computes the same in one fused kernel).

    Works in chunks of about ``chunk_points`` layer samples to bound memory.

    Args:
        atlas: (1, 3, Ha, Wa) linear textures.
        rows: (B, L1, S, 5, 3) pixel -> [u, q, w] maps of B exposures.
        tile: (B, L1, 4) [origin x, origin y, width - 1, height - 1] of each layer's tile.
        tint: (B, L1, 3). shape: (B, L1 - 1, _SHAPE_PARAMS).
    Returns:
        (B, 3, H, W) float32.
    """
    b, l1, s = rows.shape[:3]
    hw = height * width
    dev = atlas.device
    ha, wa = atlas.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32),
                            torch.arange(width, device=dev, dtype=torch.float32), indexing="ij")
    pix_x, pix_y = xs.reshape(-1), ys.reshape(-1)
    # Atlas pixel -> grid_sample's [-1, 1] (align_corners=True: -1 and 1 are pixel centres).
    # Built from the atlas so no host -> device copy (and so no wait) happens here.
    scale = torch.stack([atlas.new_full((), 2.0 / (wa - 1)), atlas.new_full((), 2.0 / (ha - 1))])
    out = torch.empty(b, 3, hw, device=dev)
    per_exposure = l1 * hw
    b_step = max(1, min(b, chunk_points // per_exposure))
    for b0 in range(0, b, b_step):
        b1 = min(b, b0 + b_step)
        nb = b1 - b0
        s_step = max(1, chunk_points // (nb * per_exposure))
        last = tile[b0:b1, :, None, 2:4, None]
        far_edge = ((tile[b0:b1, :, 0:2] + tile[b0:b1, :, 2:4]) * scale - 1.0)[:, :, None, :, None]
        tint_c = tint[b0:b1].permute(2, 0, 1)[..., None, None]
        shape_c = shape[b0:b1, :, None, None, :]
        acc_sum = None
        for s0 in range(0, s, s_step):
            part = _composite_subframes(atlas, rows[b0:b1, :, s0 : s0 + s_step], pix_x, pix_y,
                                        last, far_edge, scale[:, None], tint_c, shape_c)
            acc_sum = part if acc_sum is None else acc_sum + part
        out[b0:b1] = (acc_sum / s).transpose(0, 1)
    return out.view(b, 3, height, width)


def _group_by_need(need: np.ndarray, max_groups: int) -> list[tuple[np.ndarray, int]]:
    """Split exposures into at most ``max_groups`` groups rendered with one sub-frame count
    each (the largest need of the group), minimising the total number of sub-frames.

    A batch rendered with its largest need wastes work on its slow samples; sorting by need
    and cutting optimally (a small dynamic programme) typically saves a third.
    Returns [(exposure indices, sub-frames)].
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
        out.append((order[i:j], int(need[order[i]])))
        j, g = i, g - 1
    return out[::-1]


def _flow_and_valid(inv_a: torch.Tensor, a_to_b: torch.Tensor, inv_b: torch.Tensor,
                    shape: torch.Tensor, height: int, width: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth flow from sharp frame a to sharp frame b, and where it holds.

    Args:
        inv_a, inv_b: (N, L1, 3, 3) image -> layer coordinates at the two frame times.
        a_to_b: (N, L1, 3, 3) image a -> image b if the point belongs to that layer.
        shape: (N, L1 - 1, _SHAPE_PARAMS).
    Returns:
        flow (N, 2, H, W) with ``frame_a(p) ~ frame_b(p + flow(p))``, valid (N, 1, H, W).
    """
    n, l1 = inv_a.shape[:2]
    dev = shape.device
    hw = height * width
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32),
                            torch.arange(width, device=dev, dtype=torch.float32), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(hw, device=dev)])  # (3, HW)

    def layer_coords(inv: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        r = torch.matmul(inv, pts)  # (N, L, 3, HW)
        return r[:, :, :2] / r[:, :, 2:3]

    sp = shape[:, :, None, :]  # (N, L1-1, 1, P)
    # Outside an object, or for a disabled slot, the distance counts as very negative.
    margin = sp[..., _SOFT] / 2 + 1.5  # soft ramp half-width plus the bilinear footprint

    def distances(u: torch.Tensor) -> torch.Tensor:
        d = _signed_distance(u[:, :, 0], u[:, :, 1], sp)
        return torch.where(sp[..., _ON] > 0, d, torch.full_like(d, -1e4))

    owner = torch.zeros(n, hw, dtype=torch.long, device=dev)
    if l1 > 1:
        d_a = distances(layer_coords(inv_a[:, 1:], pix))  # (N, L1-1, HW)
        alpha = (sp[..., _OFFSET] + d_a / sp[..., _SOFT]).clamp(0.0, 1.0)
        for layer in range(1, l1):
            owner = torch.where(alpha[:, layer - 1] >= 0.5, layer, owner)
    r = torch.matmul(a_to_b, pix)  # (N, L1, 3, HW)
    p_all = r[:, :, :2] / r[:, :, 2:3]
    p_b = torch.gather(p_all, 1, owner[:, None, None, :].expand(n, 1, 2, hw))[:, 0]  # (N,2,HW)
    flow = p_b - pix[:2]
    valid = ((p_b[:, 0] >= 0) & (p_b[:, 0] <= width - 1)
             & (p_b[:, 1] >= 0) & (p_b[:, 1] <= height - 1))
    if l1 > 1:
        hom_b = torch.cat([p_b, torch.ones(n, 1, hw, device=dev)], 1)[:, None]  # (N,1,3,HW)
        d_b = distances(layer_coords(inv_b[:, 1:], hom_b))  # (N, L1-1, HW)
        idx = torch.arange(1, l1, device=dev)[None, :, None]
        above = idx > owner[:, None]  # layers in front of the owner
        is_owner = idx == owner[:, None]
        clear = ((d_a <= -margin) & (d_b <= -margin)) | ~above
        inside = (d_a >= margin) | ~is_owner
        valid &= clear.all(1) & inside.all(1)
    return flow.view(n, 2, height, width), valid.view(n, 1, height, width).float()


def _camera_response(linear: torch.Tensor, gamma: float) -> torch.Tensor:
    return linear.clamp(0.0, 1.0).pow(1.0 / gamma)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


class _Upload:
    """Host arrays gathered into one buffer and sent to the device in one copy: pinned and
    asynchronous on CUDA, so building a batch never waits for the GPU's queued work (a
    plain copy from pageable memory would)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> int:
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


class _Renderer:
    """Renders the blurry and sharp frames of drawn scenes, and their flows."""

    def __init__(self, cfg: SceneConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.bank = texture_bank(cfg.textures)
        self.atlas = linear_atlas(cfg.textures, device, cfg.gamma)
        self.chunk = cfg.chunk_points or (1 << 25 if device.type == "cuda" else 1 << 22)
        self.fused = self._fused_renderer(cfg.renderer, device)

    @staticmethod
    def _fused_renderer(choice: str, device: torch.device):
        """The module whose ``render_linear`` replaces the torch renderer, or None."""
        if choice == "torch":
            return None
        if choice == "auto":
            choice = "triton" if device.type == "cuda" else "numba"
            strict = False
        else:
            strict = True
        try:
            if choice == "triton":
                from . import render_triton as module
            else:
                from . import render_cpu as module
        except ImportError:
            if strict:
                raise UserError(f"SceneConfig.renderer={choice!r} needs the {choice} package "
                                f"(pip install {choice})") from None
            return None
        ok = module.is_available(device) if choice == "triton" else device.type == "cpu"
        if not ok and strict:
            raise UserError(f"SceneConfig.renderer={choice!r} cannot run on {device}")
        return module if ok else None

    def _exposures(self, up: _Upload, sc: _Scenes, times: np.ndarray, layers: int) -> tuple:
        """Queue what rendering the B scenes ``sc`` over ``times`` (B, S) needs; returns the
        upload slots of rows, tile, tint, shape."""
        rows = _render_rows(sc, _layer_matrices(sc, times))[:, :layers]  # (B, L1, S, 5, 3)
        tile = sc.tile[:, :layers]
        origin = self.bank.origins.numpy()[tile]
        last = self.bank.sizes.numpy()[tile] - 1.0
        return (up.add(rows), up.add(np.concatenate([origin, last], -1)),
                up.add(sc.tint[:, :layers]), up.add(sc.shape[:, : layers - 1]))

    def _linear(self, sent: list[torch.Tensor], slots: tuple) -> torch.Tensor:
        rows, tile, tint, shape = (sent[i] for i in slots)
        h, w = self.cfg.size
        if self.fused is not None:
            return self.fused.render_linear(self.atlas, rows, tile, tint, shape, h, w)
        return _render_linear(self.atlas, rows, tile, tint, shape, h, w, self.chunk)

    def render(self, sc: _Scenes, frames: np.ndarray, pairs: list[tuple[int, int]],
               noise_generator: torch.Generator | None) -> dict:
        """Blurry and sharp frames of the N scenes at ``frames`` (F,), and for each (a, b) in
        ``pairs`` the flow from frame a to frame b with its valid mask.

        Returns blur, sharp: (N, F, 3, H, W); flows, valids: lists of (N, 2 | 1, H, W);
        subframes: the most sub-frames any exposure used.
        """
        cfg = self.cfg
        dev = self.device
        n, nf = len(sc.duty), len(frames)
        h, w = cfg.size
        layers = 1 + int(sc.n_layers.max(initial=0))  # slots nobody in this batch uses: skip
        need = np.minimum(_needed_subframes(sc, frames, cfg), cfg.max_subframes)  # (N, F)

        # Host side: everything the device needs, in one upload.
        up = _Upload()
        groups = []
        for units, s in _group_by_need(need.reshape(-1), cfg.subframe_groups):
            idx_n, idx_f = np.divmod(units, nf)
            # Sub-frame times: midpoints of S equal parts of the exposure (S = 1: its middle).
            frac = (np.arange(s) + 0.5) / s - 0.5
            times = frames[idx_f, None] + sc.duty[idx_n, None] * frac  # (G, S)
            groups.append((up.add(units), self._exposures(up, sc.take(idx_n), times, layers)))
        sharp_slots = self._exposures(up, sc.take(np.repeat(np.arange(n), nf)),
                                      np.tile(frames, n)[:, None], layers)
        mats = _layer_matrices(sc, np.repeat(frames[None].astype(np.float64), n, 0))
        mats = mats[:, :layers]  # (N, L1, F, 3, 3) at the frames' middles
        flow_slots = []
        for a, b in pairs:
            inv_a = np.linalg.inv(mats[:, :, a])
            flow_slots.append((up.add(inv_a), up.add(mats[:, :, b] @ inv_a),
                               up.add(np.linalg.inv(mats[:, :, b]))))
        shape_slot = up.add(sc.shape[:, : layers - 1])
        noise_slot = up.add(sc.noise)
        sent = up.send(dev)

        # Device side.
        blur = torch.empty(n * nf, 3, h, w, device=dev)
        for units_slot, slots in groups:
            blur.index_copy_(0, sent[units_slot].long(), self._linear(sent, slots))
        sharp = self._linear(sent, sharp_slots)
        blur = _camera_response(blur, cfg.gamma).view(n, nf, 3, h, w)
        sharp = _camera_response(sharp, cfg.gamma).view(n, nf, 3, h, w)
        if noise_generator is not None and cfg.noise_std[1] > 0:
            noise = torch.randn(blur.shape, generator=noise_generator, device=dev)
            blur = (blur + noise * sent[noise_slot].view(n, 1, 1, 1, 1)).clamp(0.0, 1.0)
        if cfg.quantize:
            blur, sharp = _quantize(blur), _quantize(sharp)
        flows, valids = [], []
        flow_fn = _flow_and_valid
        if self.fused is not None and hasattr(self.fused, "flow_and_valid"):
            flow_fn = self.fused.flow_and_valid
        for inv_a, a_to_b, inv_b in flow_slots:
            f, v = flow_fn(sent[inv_a], sent[a_to_b], sent[inv_b], sent[shape_slot], h, w)
            flows.append(f)
            valids.append(v)
        return {"blur": blur, "sharp": sharp, "flows": flows, "valids": valids,
                "subframes": int(need.max())}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class SyntheticScenes:
    """An endless, seeded stream of synthetic training batches.

    ``sample(n)`` returns frame_t, frame_next, sharp_t, sharp_next (n, 3, H, W) in [0, 1] (sRGB),
    flow
    (n, 2, H, W) with ``warp(sharp_next, flow) ~ sharp_t`` and valid (n, 1, H, W); with
    ``three_frames`` also frame_prev, sharp_prev, flow_prev (``warp(sharp_prev, flow_prev) ~
    sharp_t``) and valid_prev. Sample i of the stream depends only on (seed, i) (the sub-frame
    count and the sensor noise also depend on its batch).
    """

    def __init__(self, config: SceneConfig | None = None, *, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.config = config if config is not None else SceneConfig()
        self.seed = int(seed)
        self.device = torch.device(device)
        self._renderer = _Renderer(self.config, self.device)
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
        frames = np.array([-1.0, 0.0, 1.0] if cfg.three_frames else [0.0, 1.0])
        scenes = _draw_scenes(_Draws(self.seed, indices), cfg, t_ref=0.0, span=1.0)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(_hash_seed(self.seed, batch, 0xB10B))
        i0 = 1 if cfg.three_frames else 0
        pairs = [(i0, i0 + 1)] + ([(i0, 0)] if cfg.three_frames else [])
        out = self._renderer.render(scenes, frames, pairs, gen)
        result = {
            "frame_t": out["blur"][:, i0], "frame_next": out["blur"][:, i0 + 1],
            "sharp_t": out["sharp"][:, i0], "sharp_next": out["sharp"][:, i0 + 1],
            "flow": out["flows"][0], "valid": out["valids"][0],
        }
        if cfg.three_frames:
            result["frame_prev"], result["sharp_prev"] = out["blur"][:, 0], out["sharp"][:, 0]
            result["flow_prev"], result["valid_prev"] = out["flows"][1], out["valids"][1]
        self.last_subframes = out["subframes"]
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
    scenes = _draw_scenes(_Draws(int(seed), np.array([0])), cfg, t_ref=(num_frames - 1) / 2,
                          span=half)
    renderer = _Renderer(cfg, dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(_hash_seed(int(seed), 0xC11B))
    out = renderer.render(scenes, frames, [(t, t + 1) for t in range(num_frames - 1)], gen)
    flows, valids = out["flows"], out["valids"]
    h, w = cfg.size
    empty_f = torch.zeros(0, 2, h, w, device=dev)
    empty_v = torch.zeros(0, 1, h, w, device=dev)
    return {
        "blur": out["blur"][0].contiguous(),
        "sharp": out["sharp"][0].contiguous(),
        "flow": torch.cat(flows) if flows else empty_f,
        "valid": torch.cat(valids) if valids else empty_v,
    }
