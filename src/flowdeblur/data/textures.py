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

Any source can be joined by folders of the user's own photographs (``photo_dirs``, e.g.
``SceneConfig(photo_dirs=("~/photos",))``). Each photograph is downscaled like the bundled ones
and cut into square tiles, and only tiles that are sharp throughout are kept: an out-of-focus
background used as a "sharp" target would teach the network to keep blur.

Banks are built once per process and cached in memory (``texture_bank``), and their linear-light
device copies once per (device, gamma) (``linear_atlas``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import UserError
from ..media.images import is_image_path

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

#: User photographs are cut into tiles of this size (after downscaling to TILE_SIZE) ...
PHOTO_TILE = 256
#: ... judged in blocks of this size: a tile is kept when at least 3 of its 4 blocks have a
#: mean absolute Laplacian of the luma (on [0, 1] values) of at least SHARPNESS_MIN. Calibrated
#: on wallpaper and close-up photographs: skies, flat walls and bokeh fall below it, foliage,
#: stone, text, and sharp edges over soft backgrounds lie above.
SHARPNESS_BLOCK = 128
SHARPNESS_MIN = 0.012
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


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
    folder = skimage_data_dir()
    tiles, gray, names = [], [], []
    for name in PHOTO_FILES:
        path = folder / name
        if not path.is_file():  # a trimmed wheel: use what is there
            continue
        # Pillow directly (what skimage.io.imread reads these files with): the same arrays,
        # without importing skimage.io's plugin machinery into every `import flowdeblur`.
        with Image.open(path) as f:
            img = np.asarray(f)
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


def block_sharpness(tile: torch.Tensor, block: int = SHARPNESS_BLOCK) -> torch.Tensor:
    """Mean absolute Laplacian of the luma of each ``block`` x ``block`` cell of a (3, h, w)
    sRGB tile -> (h // block, w // block)."""
    luma = (0.299 * tile[0] + 0.587 * tile[1] + 0.114 * tile[2])[None, None]
    lap = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), _LAPLACIAN).abs()
    return F.avg_pool2d(lap, block)[0, 0]


def sharp_tiles(photo: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """Cut a (3, h, w) photograph into PHOTO_TILE squares; keep the sharp ones (see
    SHARPNESS_MIN) as (row, column, tile)."""
    per = PHOTO_TILE // SHARPNESS_BLOCK
    sharp = block_sharpness(photo) >= SHARPNESS_MIN
    kept = []
    for i in range(photo.shape[1] // PHOTO_TILE):
        for j in range(photo.shape[2] // PHOTO_TILE):
            cells = sharp[i * per:(i + 1) * per, j * per:(j + 1) * per]
            if cells.sum() >= cells.numel() - 1:
                y, x = i * PHOTO_TILE, j * PHOTO_TILE
                kept.append((i, j, photo[:, y:y + PHOTO_TILE, x:x + PHOTO_TILE].contiguous()))
    return kept


def _read_photo(path: Path) -> np.ndarray:
    """(H, W, 3) float32 sRGB in [0, 1] from any image Pillow reads (grey replicated)."""
    with Image.open(path) as f:
        img = np.asarray(f.convert("RGB"))
    return img.astype(np.float32) / 255.0


def load_photo_dirs(dirs: tuple[str, ...], size: int = TILE_SIZE
                    ) -> tuple[list[torch.Tensor], list[bool], list[str]]:
    """Sharp tiles of every photograph in ``dirs`` (not recursive), as (tiles, gray, names).

    Raises UserError for a folder that does not exist, holds no image, or yields no sharp tile.
    """
    tiles, names = [], []
    for folder in dirs:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise UserError(f"photo folder {folder!r} does not exist")
        files = sorted(f for f in path.iterdir() if f.is_file() and is_image_path(f))
        if not files:
            raise UserError(f"photo folder {folder!r} holds no images")
        before = len(tiles)
        for file in files:
            for i, j, tile in sharp_tiles(_photo_tile(_read_photo(file), size)):
                tiles.append(tile)
                names.append(f"{file.name}[{i},{j}]")
        if len(tiles) == before:
            raise UserError(f"no sharp {PHOTO_TILE}x{PHOTO_TILE} region in the photographs of "
                            f"{folder!r}")
    return tiles, [False] * len(tiles), names


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


# Compiled on first call; the machine code is cached on disk beside the module.
_paint_leaves = numba.njit(cache=True, nogil=True)(_paint_leaves_py)


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
    _paint_leaves(out, covered, cx, cy, r, col, grad)
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
def texture_bank(source: str = "mixed", photo_dirs: tuple[str, ...] = ()) -> TextureBank:
    """The texture bank for ``source`` (one of ``SOURCES``) plus the sharp tiles of the
    photographs in ``photo_dirs``, built once and cached.

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
    if photo_dirs:
        t, g, n = load_photo_dirs(tuple(photo_dirs))
        tiles += t
        gray += g
        names += n
    return _pack(tiles, gray, names)


_LINEAR_CACHE: dict[tuple[str, tuple[str, ...], str, float], torch.Tensor] = {}


def linear_atlas(source: str, device: torch.device | str, gamma: float,
                 photo_dirs: tuple[str, ...] = ()) -> torch.Tensor:
    """The bank's atlas in linear light (``srgb ** gamma``) on ``device``: (1, 3, Ha, Wa) float32.

    Cached per (source, device, gamma): rendering in linear light makes both the compositing of
    soft edges and the averaging over the exposure physically right.
    """
    device = torch.device(device)
    key = (source, tuple(photo_dirs), str(device), float(gamma))
    atlas = _LINEAR_CACHE.get(key)
    if atlas is None:
        bank = texture_bank(source, tuple(photo_dirs))
        atlas = bank.atlas.to(device).pow(gamma)[None].contiguous()
        _LINEAR_CACHE[key] = atlas
    return atlas
