"""Texture bank for the synthetic scenes: bundled photographs, dead leaves, smooth fields.

Every texture is a rectangular tile. The tiles of one bank are packed into a single atlas image
so that the renderers sample every layer of every scene from one tensor, whatever texture each
layer uses (no per-sample gather or copy; one ``grid_sample`` call in the torch renderer).

Sources:

- ``"photos"``: the natural photographs that ship inside the scikit-image wheel
  (``skimage/data/*.png|jpg``; nothing is downloaded). Left out on purpose: ``clock_motion.png``
  (already motion-blurred), the ``motorcycle_*`` stereo pair (kept for flow evaluation) and the
  synthetic graphics (chessboards, logo, phantom, colour wheel, horse silhouette). Grayscale
  photos are flagged so the renderer can tint them.
- ``"dead_leaves"``: procedural occlusion images of random discs with power-law radii, which train
  restoration networks nearly as well as natural images (Achddou et al., 2021).
- ``"mixed"``: photos and dead leaves together (the training default).
- ``"smooth"``: smooth random colour fields; interpolation barely changes them, so tests can
  compare warps at tight tolerances.

Banks are built once per process and cached in memory (``texture_bank``), and their linear-light
device copies once per (device, gamma) (``linear_atlas``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: Photographs bundled in the scikit-image wheel used as textures (all present offline).
PHOTO_FILES: tuple[str, ...] = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)

#: Bundled files deliberately not used for training, and why.
EXCLUDED_FILES: dict[str, str] = {
    "clock_motion.png": "already motion-blurred",
    "motorcycle_left.png": "stereo pair kept for flow evaluation",
    "motorcycle_right.png": "stereo pair kept for flow evaluation",
}

SOURCES = ("mixed", "photos", "dead_leaves", "smooth")

TILE_SIZE = 512
_GUTTER = 2  # pixels between tiles in the atlas, filled by edge replication
_NUM_DEAD_LEAVES = 16
_NUM_SMOOTH = 8


@dataclass(frozen=True)
class TextureBank:
    """sRGB textures packed into one atlas.

    Attributes:
        atlas: (3, Ha, Wa) float32 in [0, 1], sRGB, on the CPU.
        origins: (K, 2) float64, atlas pixel coordinates (x, y) of each tile's pixel (0, 0).
        sizes: (K, 2) float64, each tile's (width, height) in pixels.
        gray: (K,) bool, True for grayscale textures (the renderer tints those).
        names: K names, for inspection.
    """

    atlas: torch.Tensor
    origins: torch.Tensor
    sizes: torch.Tensor
    gray: torch.Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def skimage_data_dir() -> Path:
    """Folder of the images bundled in the installed scikit-image wheel."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _photo_tile(img: np.ndarray, max_short_side: int) -> torch.Tensor:
    """(H, W, 3) float in [0,1] -> (3, h, w): downscaled (antialiased) so that the short side
    is at most ``max_short_side``; smaller photos keep their size (no blurry upscaling)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    h, w = t.shape[1:]
    scale = max_short_side / min(h, w)
    if scale < 1.0:
        t = F.interpolate(t[None], size=(round(h * scale), round(w * scale)), mode="bilinear",
                          antialias=True, align_corners=False)[0]
    return t.clamp(0, 1).contiguous()


def load_photos(size: int = TILE_SIZE) -> tuple[list[torch.Tensor], list[bool], list[str]]:
    """The bundled photographs as (3, h, w) sRGB tiles (short side <= ``size``), with grayscale
    flags and names."""
    import skimage.io

    folder = skimage_data_dir()
    tiles, gray, names = [], [], []
    for name in PHOTO_FILES:
        path = folder / name
        if not path.is_file():  # a trimmed wheel: use what is there
            continue
        img = skimage.io.imread(path)
        img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        is_gray = img.ndim == 2
        if is_gray:
            img = np.repeat(img[..., None], 3, axis=2)
        tiles.append(_photo_tile(img[..., :3], size))
        gray.append(is_gray)
        names.append(name)
    if not tiles:
        raise RuntimeError(f"no bundled scikit-image photographs found in {folder}")
    return tiles, gray, names


def _paint_leaves_py(out, covered, cx, cy, r, col, grad):  # pragma: no cover - compiled below
    """Paint discs front to back into the uncovered pixels of ``out``; returns discs used.

    Front to back with a coverage mask gives the same picture as painting back to front, but
    can stop as soon as every pixel is covered.
    """
    h, w = covered.shape
    remaining = h * w
    for i in range(r.shape[0]):
        ri = r[i]
        x0 = max(int(math.floor(cx[i] - ri)), 0)
        x1 = min(int(math.ceil(cx[i] + ri)), w - 1)
        y0 = max(int(math.floor(cy[i] - ri)), 0)
        y1 = min(int(math.ceil(cy[i] + ri)), h - 1)
        r2 = ri * ri
        for y in range(y0, y1 + 1):
            dy = y - cy[i]
            for x in range(x0, x1 + 1):
                if covered[y, x]:
                    continue
                dx = x - cx[i]
                if dx * dx + dy * dy <= r2:
                    covered[y, x] = True
                    # A gentle linear shading gives every leaf some inner texture for flow.
                    shade = 1.0 + (grad[i, 0] * dx + grad[i, 1] * dy) / ri
                    for c in range(3):
                        out[y, x, c] = col[i, c] * shade
                    remaining -= 1
        if remaining == 0:
            return i + 1
    return r.shape[0]


@functools.lru_cache(maxsize=1)
def _leaf_painter():
    try:
        import numba

        return numba.njit(cache=True, nogil=True)(_paint_leaves_py)
    except Exception:  # numba missing or broken: the pure-Python loop still works, slowly
        return _paint_leaves_py


def dead_leaves(size: int, seed: int, *, r_min: float = 2.0, r_max: float | None = None,
                exponent: float = 3.0) -> np.ndarray:
    """One dead-leaves image: (size, size, 3) float32 sRGB in [0, 1].

    Discs with radii of density ``r^-exponent`` on [r_min, r_max] (scale invariant for 3),
    uniform centres, random colours with a slight shading, and a faint grain.
    """
    rng = np.random.default_rng(seed)
    r_max = size / 3 if r_max is None else r_max
    n = 120_000  # more than enough discs to cover the image (painting stops when covered)
    u = rng.random(n)
    k = 1.0 - exponent
    r = (r_min**k + u * (r_max**k - r_min**k)) ** (1.0 / k)  # inverse CDF of the power law
    margin = r_max / 2
    cx = rng.uniform(-margin, size + margin, n)
    cy = rng.uniform(-margin, size + margin, n)
    # Colours: random saturation and value, so greys, pastels and vivid leaves all occur.
    hue_rgb = rng.random((n, 3))
    sat = rng.random((n, 1)) ** 0.7
    val = rng.uniform(0.05, 1.0, (n, 1))
    col = val * ((1 - sat) + sat * hue_rgb)
    grad = rng.normal(0.0, 0.15, (n, 2))
    out = np.zeros((size, size, 3), np.float64)
    covered = np.zeros((size, size), np.bool_)
    _leaf_painter()(out, covered, cx, cy, r, col, grad)
    if not covered.all():
        out[~covered] = col.mean(0)
    out = out.astype(np.float32)
    # Soften the staircase edges a little (separable [0.2, 0.6, 0.2]) and add a fine grain.
    for axis in (0, 1):
        padded = np.concatenate([out.take([0], axis), out, out.take([-1], axis)], axis)
        lo, hi = padded.take(range(0, size), axis), padded.take(range(2, size + 2), axis)
        out = 0.6 * out + 0.2 * (lo + hi)
    out += rng.normal(0.0, 0.015, (size, size, 1)).astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def smooth_field(size: int, seed: int, *, sigma: float | None = None) -> np.ndarray:
    """A smooth random colour field: (size, size, 3) float32 sRGB in [0.1, 0.9].

    Gaussian-filtered white noise (in the Fourier domain, so periodic), stretched per channel.
    """
    rng = np.random.default_rng(seed)
    sigma = size / 24 if sigma is None else sigma
    noise = rng.normal(size=(3, size, size))
    f = np.fft.fftfreq(size)
    g = np.exp(-2 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(noise) * g).real
    lo = field.min(axis=(1, 2), keepdims=True)
    hi = field.max(axis=(1, 2), keepdims=True)
    field = 0.1 + 0.8 * (field - lo) / (hi - lo)
    return field.transpose(1, 2, 0).astype(np.float32)


def _pack(tiles: list[torch.Tensor], gray: list[bool], names: list[str]) -> TextureBank:
    """Shelf-pack tiles (tallest first) into one atlas with replicated-edge gutters."""
    order = sorted(range(len(tiles)), key=lambda i: -tiles[i].shape[1])
    area = sum((t.shape[1] + _GUTTER) * (t.shape[2] + _GUTTER) for t in tiles)
    widest = max(t.shape[2] for t in tiles) + _GUTTER
    row_width = max(widest, int(math.sqrt(area) * 1.1))
    places: dict[int, tuple[int, int]] = {}
    x = y = _GUTTER
    shelf = 0
    for i in order:
        h, w = tiles[i].shape[1:]
        if x + w + _GUTTER > row_width + _GUTTER:
            x, y, shelf = _GUTTER, y + shelf + _GUTTER, 0
        places[i] = (x, y)
        x += w + _GUTTER
        shelf = max(shelf, h)
    width = max(px + tiles[i].shape[2] for i, (px, _) in places.items()) + _GUTTER
    height = max(py + tiles[i].shape[1] for i, (_, py) in places.items()) + _GUTTER
    atlas = torch.zeros(3, height, width)
    origins = torch.zeros(len(tiles), 2, dtype=torch.float64)
    sizes = torch.zeros(len(tiles), 2, dtype=torch.float64)
    g = _GUTTER // 2
    for i, tile in enumerate(tiles):
        x0, y0 = places[i]
        h, w = tile.shape[1:]
        # Replicated edges in the gutter keep bilinear taps at a tile's border inside the tile.
        padded = F.pad(tile[None], (g, g, g, g), mode="replicate")[0]
        atlas[:, y0 - g : y0 + h + g, x0 - g : x0 + w + g] = padded
        origins[i] = torch.tensor([x0, y0], dtype=torch.float64)
        sizes[i] = torch.tensor([w, h], dtype=torch.float64)
    return TextureBank(atlas.contiguous(), origins, sizes, torch.tensor(gray), tuple(names))


@functools.cache
def texture_bank(source: str = "mixed") -> TextureBank:
    """The texture bank for ``source`` (one of ``SOURCES``), built once and cached.

    Returns a ``TextureBank`` whose atlas is (3, Ha, Wa) sRGB float32 on the CPU.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown texture source {source!r}; expected one of {SOURCES}")
    tiles: list[torch.Tensor] = []
    gray: list[bool] = []
    names: list[str] = []
    if source in ("photos", "mixed"):
        t, g, n = load_photos(TILE_SIZE)
        tiles += t
        gray += g
        names += n
    if source in ("dead_leaves", "mixed"):
        for i in range(_NUM_DEAD_LEAVES):
            img = dead_leaves(TILE_SIZE, seed=1000 + i)
            tiles.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
            gray.append(False)
            names.append(f"dead_leaves_{i}")
    if source == "smooth":
        size = 256  # smooth fields need no detail; a smaller atlas builds faster
        for i in range(_NUM_SMOOTH):
            img = smooth_field(size, seed=2000 + i)
            tiles.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
            gray.append(False)
            names.append(f"smooth_{i}")
    return _pack(tiles, gray, names)


_LINEAR_CACHE: dict[tuple[str, str, float], torch.Tensor] = {}


def linear_atlas(source: str, device: torch.device | str, gamma: float) -> torch.Tensor:
    """The bank's atlas in linear light (``srgb ** gamma``) on ``device``: (1, 3, Ha, Wa) float32.

    Cached per (source, device, gamma): rendering in linear light makes both the compositing of
    soft edges and the averaging over the exposure physically right.
    """
    device = torch.device(device)
    key = (source, str(device), float(gamma))
    atlas = _LINEAR_CACHE.get(key)
    if atlas is None:
        atlas = texture_bank(source).atlas.to(device).pow(gamma)[None].contiguous()
        _LINEAR_CACHE[key] = atlas
    return atlas
