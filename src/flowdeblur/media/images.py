"""Image files <-> (3, H, W) float32 tensors in [0, 1], RGB; folders of frames in natural order.

Decoders by format: TIFF through tifffile (keeps 16-bit colour), 16-bit PNG through FFmpeg
(Pillow truncates 16-bit colour to 8 bits), everything else through Pillow. Writes are atomic
(:mod:`flowdeblur.media.atomic`). Every user mistake (missing file, corrupt data, unsupported
extension) raises :class:`~flowdeblur.errors.UserError` with one clear line.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import tifffile
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError
from .atomic import PathLike, atomic_file, make_parent_folder
from .pixels import quantize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: The extensions whose files can hold an alpha channel (:func:`write_image` ``alpha``).
ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp")

#: Pillow's save options per extension for 8-bit output.
_PILLOW_OPTIONS = {
    ".jpg": {"format": "JPEG", "quality": 95},
    ".jpeg": {"format": "JPEG", "quality": 95},
    ".png": {"format": "PNG"},
    ".bmp": {"format": "BMP"},
    ".webp": {"format": "WEBP", "lossless": True},
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image_path(path: PathLike) -> bool:
    """True if ``path`` has an image extension (case-insensitive); the file need not exist."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``frame2 < frame10``.

    ``re.split`` with a capturing group alternates text and digit runs, always starting with
    text, so equal positions of two keys always hold the same type and compare cleanly.
    """
    parts = re.split(r"(\d+)", name)
    key = tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))
    return key + (name,)  # tie-break ("01" vs "1", case) so the order is total and stable


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), in natural order
    (``frame2 < frame10``). Hidden files (names starting with ".", e.g. macOS ``._x.png``
    or this package's temporary files) are skipped. An empty list if there are none.

    Raises:
        UserError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    files = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_image(path: PathLike) -> torch.Tensor:
    """Read an image file into a (3, H, W) float32 tensor in [0, 1], RGB.

    - Grey images are replicated to three channels; an alpha channel is dropped (not
      composited): the colour samples are returned as stored.
    - 8-bit files are divided by 255; 16-bit PNG/TIFF by 65535 (16-bit colour PNGs are decoded
      with FFmpeg because Pillow truncates them); float TIFFs are clipped to [0, 1].
    - The EXIF orientation tag is applied (the image comes out upright as viewers show it).
    - A multi-page TIFF or animated image yields its first frame.

    Raises:
        UserError: missing file, a folder, or a file that is not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}")
    if not path.is_file():
        raise UserError(f"not an image file: {path}")
    arr = None
    if path.suffix.lower() in (".tif", ".tiff"):
        arr = _read_tiff(path)
    elif _png_bit_depth(path) == 16:
        arr = _read_ffmpeg(path)
    if arr is None:
        arr = _read_pillow(path)
    return _array_to_rgb_tensor(arr, path)


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (byte 24), or None if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE:
        return None
    return head[24]


def _read_ffmpeg(path: Path) -> np.ndarray:
    """Decode one still image with FFmpeg into (H, W, 3) uint16."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb48le")
    except (av.error.FFmpegError, StopIteration, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}") from e


def _read_tiff(path: Path) -> np.ndarray | None:
    """First page of a grey or RGB TIFF via tifffile (keeps 16-bit colour). None for other
    photometric kinds (palette, CMYK, YCbCr) or when tifffile cannot decode the file (e.g. a
    compression that needs the optional imagecodecs package): Pillow handles those."""
    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK,
                                        tifffile.PHOTOMETRIC.RGB):
                return None
            arr = page.asarray()
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and arr.ndim == 3:
                arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
            return arr
    except Exception:  # noqa: BLE001 - any failure means "let Pillow try"
        return None


def _read_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            # Apply the EXIF orientation, so the frame is upright as every viewer shows it
            # (the written PNG carries no EXIF, so it would otherwise appear rotated).
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F", "1"):
                return np.array(im)
            if im.mode in ("LA", "La", "L"):
                return np.array(im.convert("L"))
            return np.array(im.convert("RGB"))  # P, RGBA, CMYK, YCbCr, ...: alpha dropped
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read image {path}: {e}") from e


def _array_to_rgb_tensor(arr: np.ndarray, path: Path) -> torch.Tensor:
    """Any (H, W) or (H, W, C) array -> (3, H, W) float32 in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise UserError(f"cannot read image {path}: unsupported array shape {arr.shape}")
    # Drop alpha: a frame's colours are its content; compositing onto a guessed background
    # would invent pixel values. 1 or 2 channels = grey (+ alpha), replicated to RGB.
    arr = arr[:, :, :3] if arr.shape[-1] >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16 or arr.dtype in (np.int32, np.uint32, np.int64):
        # Pillow's mode "I" holds 16-bit PNG/TIFF samples in int32: still a 16-bit scale.
        scale = 65535.0
    elif arr.dtype == np.bool_:
        scale = 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
        scale = 1.0
    else:
        raise UserError(f"cannot read image {path}: unsupported sample type {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32, copy=False))
    return t.permute(2, 0, 1).contiguous().div_(scale).clamp_(0.0, 1.0)


def read_alpha(path: PathLike) -> np.ndarray | None:
    """The alpha channel of an image file as stored, (H, W) uint8 or uint16, turned upright
    as :func:`read_image` turns the colours; None when the file has no alpha channel.

    The network deblurs colours only; the alpha of an input frame is passed through to its
    output unchanged (:func:`write_image` ``alpha``).
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return _tiff_alpha(path)
    if _png_bit_depth(path) == 16:
        try:
            with av.open(str(path)) as container:
                frame = next(container.decode(video=0))
                if "a" not in frame.format.name.replace("gray", ""):
                    return None
                return frame.to_ndarray(format="rgba64le")[..., 3].copy()
        except (av.error.FFmpegError, StopIteration, ValueError) as e:
            raise UserError(f"cannot read image {path}: {e}") from e
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            if "A" not in im.getbands():
                return None
            return np.array(im.getchannel("A"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read image {path}: {e}") from e


def _tiff_alpha(path: Path) -> np.ndarray | None:
    with tifffile.TiffFile(str(path)) as tif:
        page = tif.pages[0]
        if not page.extrasamples:
            return None
        arr = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        return np.ascontiguousarray(arr[..., -1])


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def check_image_bits(path: PathLike, bits: int) -> None:
    """UserError unless an image named ``path`` can be written with ``bits`` per channel
    (8 for every format; 16 for PNG and TIFF)."""
    if bits not in (8, 16):
        raise UserError(f"bits must be 8 or 16, got {bits}")
    suffix = Path(path).suffix.lower()
    if bits == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise UserError(f"16-bit output needs .png or .tif, not {suffix} ({path})")


def write_image(path: PathLike, image: torch.Tensor, *, bits: int = 8,
                alpha: np.ndarray | None = None) -> None:
    """Write a (3, H, W) image in [0, 1] (values outside are clipped, NaN -> 0).

    The format follows the extension: PNG (8 or 16 bit), TIFF (8 or 16 bit), JPEG (quality
    95, 8 bit), BMP and WebP (lossless, 8 bit). The file appears whole or not at all
    (:func:`~flowdeblur.media.atomic.atomic_file`). Missing parent folders are created.
    ``alpha``: an (H, W) uint8 or uint16 alpha channel to store beside the colours (as read by
    :func:`read_alpha`; rescaled only when its depth differs from ``bits``), for the
    :data:`ALPHA_EXTENSIONS`.

    Raises:
        UserError: unsupported extension, bits or alpha not available for it, or an OS error.
        ValueError: ``image`` is not (3, H, W), or ``alpha`` is not of its size.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise UserError(
            f"cannot write image {path}: unsupported extension {suffix or '(none)'} "
            f"(use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    check_image_bits(path, bits)
    arr = quantize(image, bits)
    if alpha is not None:
        arr = _with_alpha(arr, alpha, path)
    make_parent_folder(path)
    try:
        # The temporary keeps the extension, so nothing downstream guesses another format.
        with atomic_file(path, suffix=path.suffix) as tmp:
            _encode(tmp, arr, suffix)
    except OSError as e:
        raise UserError(f"cannot write image {path}: {e.strerror or e}") from e


def _with_alpha(arr: np.ndarray, alpha: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, 3) colour codes and an (H, W) alpha -> (H, W, 4) of the colours' dtype."""
    if path.suffix.lower() not in ALPHA_EXTENSIONS:
        raise UserError(f"cannot write an alpha channel to {path}: use one of "
                        f"{', '.join(ALPHA_EXTENSIONS)}")
    if alpha.shape != arr.shape[:2]:
        raise ValueError(f"alpha of shape {alpha.shape} for an image of {arr.shape[:2]}")
    if alpha.dtype != arr.dtype:  # 8 <-> 16 bits: 255 * 257 = 65535
        alpha = (alpha.astype(np.uint32) * 257 if arr.dtype == np.uint16
                 else (alpha.astype(np.uint32) + 128) // 257).astype(arr.dtype)
    return np.concatenate([arr, alpha[..., None]], axis=2)


def _encode(path: Path, arr: np.ndarray, suffix: str) -> None:
    """Write the (H, W, 3) or, with alpha, (H, W, 4) uint8 or uint16 ``arr`` to ``path`` in
    the format of ``suffix``."""
    if suffix in (".tif", ".tiff"):
        extra = {"extrasamples": ["unassalpha"]} if arr.shape[2] == 4 else {}
        tifffile.imwrite(str(path), arr, photometric="rgb", **extra)
    elif arr.dtype == np.uint16:
        path.write_bytes(_encode_png16(arr))
    else:
        Image.fromarray(arr).save(path, **_PILLOW_OPTIONS[suffix])


def _encode_png16(arr: np.ndarray) -> bytes:
    """(H, W, 3 or 4) uint16 -> bytes of a 16-bit RGB(A) PNG, via FFmpeg's PNG encoder (Pillow
    cannot write 16-bit colour)."""
    h, w, channels = arr.shape
    rgba = channels == 4
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "rgba64be" if rgba else "rgb48be"
    ctx.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr),
                                       format="rgba64le" if rgba else "rgb48le")
    frame.pts = 0
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)
