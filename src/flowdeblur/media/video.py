"""Reading and writing images and videos as (3, H, W) float32 tensors in [0, 1], RGB.

Images go through Pillow (TIFF through tifffile, 16-bit PNG through FFmpeg, see
:func:`read_image`); videos through PyAV (FFmpeg). Every writer writes to a hidden temporary
file beside the target and renames it into place, so an interrupted run never leaves a
half-written output under the real name. Every user mistake (missing file, corrupt data,
unsupported extension) raises :class:`~flowdeblur.errors.UserError` with one clear line.

Three layers, top to bottom: the image functions, the video reader/writer, and
:class:`FrameSource`, which lets the rest of the code treat a video, a folder of frames and a
list of frame files alike.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# GIF counts as a video: the frames of an animated GIF are what a user means by its content.
VIDEO_EXTENSIONS = (
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif",
    ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
)

PathLike = str | os.PathLike

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSource",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_image_path",
    "is_video_path",
    "list_images",
    "natural_key",
    "read_image",
    "rotate_for_display",
    "write_image",
]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def is_video_path(path: PathLike) -> bool:
    """True if ``path`` has a video extension (case-insensitive); the file need not exist."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


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


def _temp_sibling(path: Path) -> Path:
    """A hidden, unused name in ``path``'s folder that keeps its extension (FFmpeg and Pillow
    pick the format from it). Hidden, so :func:`list_images` never lists a half-written file."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _check_output_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {path.parent}: {e.strerror or e}") from e


def rotate_for_display(frame: torch.Tensor, rotation: int) -> torch.Tensor:
    """Rotate decoded frame(s) (..., H, W) the way a player does for ``VideoInfo.rotation``.

    ``rotation`` is counter-clockwise degrees; only multiples of 90 are supported.
    """
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    # torch.rot90 with k > 0 turns from the first towards the second dim: counter-clockwise.
    return torch.rot90(frame, k=(rotation // 90) % 4, dims=(-2, -1))


def _to_tensor(array: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W, 3) integer array -> (3, H, W) float32 in [0, 1], contiguous."""
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
    return t.to(torch.float32).div_(scale)


def _quantize(image: torch.Tensor, bits: int) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 or uint16 numpy array, rounded."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    top = 255 if bits == 8 else 65535
    x = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0)
    x = x.clamp(0.0, 1.0).mul(top).round_()
    dtype = torch.uint8 if bits == 8 else torch.int32  # torch has no uint16 arithmetic on CPU
    arr = x.to(dtype).permute(1, 2, 0).contiguous().numpy()
    return arr if bits == 8 else arr.astype(np.uint16)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR chunk (byte 24), or None if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24]


def _decode_with_ffmpeg(path: Path) -> np.ndarray:
    """Decode one still image with FFmpeg into (H, W, 3) uint16. Used for 16-bit PNGs, which
    Pillow silently truncates to 8 bits when they have colour."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb48le")
    except (av.error.FFmpegError, StopIteration, ValueError) as e:
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


def _read_tiff(path: Path) -> np.ndarray | None:
    """First page of a grey or RGB TIFF via tifffile (keeps 16-bit colour). None for other
    photometric kinds (palette, CMYK, YCbCr) or when tifffile cannot decode the file (e.g. a
    compression that needs the optional imagecodecs package): Pillow handles those."""
    try:
        import tifffile

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
    from PIL import Image, ImageOps, UnidentifiedImageError

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
    suffix = path.suffix.lower()
    arr = None
    if suffix in (".tif", ".tiff"):
        arr = _read_tiff(path)
    elif _png_bit_depth(path) == 16:
        arr = _decode_with_ffmpeg(path)
    if arr is None:
        arr = _read_pillow(path)
    return _array_to_rgb_tensor(arr, path)


def _encode_png16(arr: np.ndarray) -> bytes:
    """(H, W, 3) uint16 -> bytes of a 16-bit RGB PNG, via FFmpeg's PNG encoder (Pillow cannot
    write 16-bit colour)."""
    import av

    h, w, _ = arr.shape
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "rgb48be"
    ctx.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb48le")
    frame.pts = 0
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def write_image(path: PathLike, image: torch.Tensor, *, bits: int = 8) -> None:
    """Write a (3, H, W) image in [0, 1] (values outside are clipped, NaN -> 0).

    The format follows the extension: PNG (8 or 16 bit), TIFF (8 or 16 bit), JPEG (quality
    95, 8 bit), BMP and WebP (lossless, 8 bit). The file is written to a hidden temporary name
    in the same folder and renamed into place, so readers never see half a file. Missing
    parent folders are created.

    Raises:
        UserError: unsupported extension, bits not available for it, or an OS error.
        ValueError: ``image`` is not (3, H, W).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise UserError(
            f"cannot write image {path}: unsupported extension {suffix or '(none)'} "
            f"(use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    if bits not in (8, 16):
        raise UserError(f"bits must be 8 or 16, got {bits}")
    if bits == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise UserError(f"16-bit output needs .png or .tif, not {suffix} ({path})")
    arr = _quantize(image, bits)
    _check_output_folder(path)
    tmp = _temp_sibling(path)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), arr, photometric="rgb")
        elif bits == 16:
            tmp.write_bytes(_encode_png16(arr))
        else:
            from PIL import Image

            options = {
                ".jpg": {"format": "JPEG", "quality": 95},
                ".jpeg": {"format": "JPEG", "quality": 95},
                ".png": {"format": "PNG"},
                ".bmp": {"format": "BMP"},
                ".webp": {"format": "WEBP", "lossless": True},
            }[suffix]
            Image.fromarray(arr).save(tmp, **options)
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise UserError(f"cannot write image {path}: {e.strerror or e}") from e
    except BaseException:
        _unlink_quietly(tmp)
        raise


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
# Video reading
# --------------------------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What a video stream says about itself.

    Attributes:
        fps: average frame rate (e.g. Fraction(30000, 1001)).
        time_base: unit of the frames' pts, in seconds.
        num_frames: frame count the container states, None when it does not say (e.g. MKV).
        height, width: decoded (coded, unrotated) frame size.
        rotation: counter-clockwise degrees, 0..359, by which a player turns the decoded
            frames for display (FFmpeg display-matrix convention, as ``VideoFrame.rotation``;
            phones filming upright usually give 270). See :func:`rotate_for_display`.
        has_audio: the file holds at least one audio stream.
    """

    fps: Fraction
    time_base: Fraction
    num_frames: int | None
    height: int
    width: int
    rotation: int
    has_audio: bool


def _open_video_container(path: Path):
    import av

    if not path.exists():
        raise UserError(f"video not found: {path}")
    if not path.is_file():
        raise UserError(f"not a video file: {path}")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise UserError(f"cannot open video {path}: not a readable video file ({e})") from e


def _stream_rotation(stream, frame) -> int:
    """Counter-clockwise display rotation from the decoded frame's display matrix, else from
    the legacy clockwise ``rotate`` tag that old FFmpeg versions exposed."""
    rotation = frame.rotation if frame is not None else 0
    if not rotation:
        tag = stream.metadata.get("rotate")
        if tag:
            try:
                rotation = -int(float(tag))
            except ValueError:
                rotation = 0
    return int(round(rotation)) % 360


def _frame_to_tensor(frame) -> torch.Tensor:
    """av.VideoFrame -> (3, H, W) float32 in [0, 1]; >8-bit sources keep their precision.
    The YUV -> RGB matrix and range come from the frame's own colour tags (BT.601 if untagged,
    FFmpeg's default)."""
    if frame.format.components[0].bits > 8:
        return _to_tensor(frame.to_ndarray(format="rgb48le"), 65535.0)
    return _to_tensor(frame.to_ndarray(format="rgb24"), 255.0)


class VideoReader:
    """Decode a video file frame by frame (streaming: one frame in memory at a time).

    Use as a context manager. Iterating yields (3, H, W) float32 RGB frames in [0, 1], as
    decoded (not rotated: apply :func:`rotate_for_display` with ``info.rotation`` to show
    them upright). :meth:`iterate_with_pts` also gives each frame's pts in ``info.time_base``
    units. Iterating again starts over from the first frame.

    The first frame is decoded when the reader opens, so a corrupt file fails here.

    Raises:
        UserError: missing file, not a video, no video stream, or no decodable frame.
    """

    def __init__(self, path: PathLike):
        import av

        self.path = Path(path)
        self._container = _open_video_container(self.path)
        try:
            if not self._container.streams.video:
                raise UserError(f"no video stream in {self.path}")
            stream = self._container.streams.video[0]
            first = self._start_decoding()
            if first is None:
                raise UserError(f"no decodable video frame in {self.path}")
            self._first = first
            fps = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.info = VideoInfo(
                fps=Fraction(fps) if fps else Fraction(30),  # unknown rate: say 30, as players do
                time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1),
                num_frames=int(stream.frames) if stream.frames else None,
                height=first.height,
                width=first.width,
                rotation=_stream_rotation(stream, first),
                has_audio=bool(self._container.streams.audio),
            )
        except av.error.FFmpegError as e:
            self.close()
            raise UserError(f"cannot decode video {self.path}: {e}") from e
        except BaseException:
            self.close()
            raise

    def _start_decoding(self):
        """(Re)start the decoder; return the first frame, or None if there is none."""
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the I/O bottleneck
        self._decoder = self._container.decode(stream)
        return self._next_frame()

    def _next_frame(self):
        import av

        try:
            return next(self._decoder)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise UserError(f"cannot decode video {self.path}: {e}") from e

    def _av_frames(self) -> Iterator:
        if self._container is None:
            raise ValueError(f"VideoReader for {self.path} is closed")
        if self._first is None:  # a later pass: reopen, seeking is unreliable across formats
            self._container.close()
            self._container = _open_video_container(self.path)
            self._first = self._start_decoding()
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            frame = self._next_frame()

    def iterate_with_pts(self) -> Iterator[tuple[torch.Tensor, int | None]]:
        """Yield (frame (3, H, W) float32, pts in ``info.time_base`` units or None)."""
        for frame in self._av_frames():
            yield _frame_to_tensor(frame), frame.pts

    def __iter__(self) -> Iterator[torch.Tensor]:
        for frame, _ in self.iterate_with_pts():
            yield frame

    def count_frames(self) -> int:
        """Frame count: the container's if it states one, else the number of non-empty video
        packets (demuxed, not decoded, so fast; equals the frame count for all common codecs)."""
        if self.info.num_frames is not None:
            return self.info.num_frames
        return _count_video_packets(self.path)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _count_video_packets(path: Path) -> int:
    import av

    container = _open_video_container(path)
    try:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)
    except av.error.FFmpegError as e:
        raise UserError(f"cannot read video {path}: {e}") from e
    finally:
        container.close()


# --------------------------------------------------------------------------------------------
# Video writing
# --------------------------------------------------------------------------------------------

# Pixel formats chosen when the caller gives none: the common lossy one for H.264, and exact
# RGB for the two lossless paths (FFV1 in .mkv; libx264rgb with crf=0).
_DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p", "libx264rgb": "rgb24",
                    "ffv1": "bgr0"}
_CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")


def _subsampling_multiple(pix_fmt: str) -> tuple[int, int]:
    """(rows, cols) the frame size must be a multiple of, from the chroma subsampling."""
    import av

    fmt = av.VideoFormat(pix_fmt, 4, 4)
    min_h = min(c.height for c in fmt.components)
    min_w = min(c.width for c in fmt.components)
    return 4 // max(min_h, 1), 4 // max(min_w, 1)


class VideoWriter:
    """Encode (3, H, W) frames in [0, 1] into a video file; use as a context manager.

    On a normal exit of the with-block the encoder is flushed, the audio of ``audio_from``
    (if any) is added, and the hidden temporary file is renamed to ``path``. If the block
    raises, the temporary file is deleted and nothing is left behind.

    Args:
        path: output file; the container follows the extension (.mp4, .mkv, ...).
        fps: nominal frame rate (Fraction, int or float, e.g. Fraction(30000, 1001)).
        width, height: frame size of the frames you will write.
        crf: quality for x264/x265/VP9/AV1 (0 = lossless for libx264rgb); ignored otherwise.
        codec: FFmpeg encoder name.
        pix_fmt: stored pixel format; None picks yuv420p for libx264, rgb24 for libx264rgb,
            bgr0 for ffv1, else the codec's first.
        rotation: counter-clockwise display rotation to record (``VideoInfo.rotation``); the
            pixels are stored as given and players rotate them.
        audio_from: a media file whose first audio stream is copied (packets copied without
            re-encoding when the output container can hold the codec, else re-encoded to the
            container's default audio codec). Audio packets that start after the last video
            frame ends are left out, so a video cut short keeps matching audio.
        time_base: unit of the ``pts`` passed to :meth:`write`; default ``1 / fps``. Pass the
            source's ``VideoInfo.time_base`` together with its pts to keep its timestamps.
        options: extra encoder options (e.g. ``{"preset": "slow"}``).

    Subsampled pixel formats (yuv420p) need even sizes: an odd height or width is padded by
    replicating the last row/column; ``padded`` is then True and ``output_height`` /
    ``output_width`` give the stored size. For exact odd sizes and exact colours use a
    lossless path: ``codec="ffv1"`` (in .mkv) or ``codec="libx264rgb", crf=0``.
    YUV output is converted with BT.709 limited range and tagged as such.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        fps: Fraction | int | float,
        width: int,
        height: int,
        crf: int = 18,
        codec: str = "libx264",
        pix_fmt: str | None = None,
        rotation: int = 0,
        audio_from: PathLike | None = None,
        time_base: Fraction | None = None,
        options: dict[str, str] | None = None,
    ):
        import av

        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise UserError(f"fps must be positive, got {fps}")
        if width < 1 or height < 1:
            raise UserError(f"video size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.time_base = Fraction(time_base) if time_base is not None else 1 / self.fps
        # Frames without a pts follow the previous one after one nominal frame duration.
        self._step = max(1, round(1 / (self.fps * self.time_base)))
        self.frames_written = 0
        self._last_pts: int | None = None
        self._out = None
        self._audio_in = None
        self._audio_packets: Iterator | None = None
        self._pending_audio = None
        self._closed = False

        try:
            encoder = av.Codec(codec, "w")
        except (av.codec.codec.UnknownCodecError, av.error.FFmpegError) as e:
            raise UserError(f"unknown video encoder {codec!r}") from e
        supported = [f.name for f in (encoder.video_formats or [])]
        if pix_fmt is None:
            pix_fmt = _DEFAULT_PIX_FMT.get(codec) or (supported[0] if supported else "yuv420p")
        if supported and pix_fmt not in supported:
            raise UserError(
                f"encoder {codec} cannot store pixel format {pix_fmt!r} "
                f"(it supports {', '.join(supported)})"
            )
        self.codec, self.pix_fmt = codec, pix_fmt
        fmt = av.VideoFormat(pix_fmt)
        self._is_rgb = fmt.is_rgb
        self._bits = 16 if fmt.components[0].bits > 8 else 8
        mult_h, mult_w = _subsampling_multiple(pix_fmt)
        self.output_height = -(-self.height // mult_h) * mult_h
        self.output_width = -(-self.width // mult_w) * mult_w
        self.padded = (self.output_height, self.output_width) != (self.height, self.width)

        _check_output_folder(self.path)
        self._tmp = _temp_sibling(self.path)
        try:
            self._out = av.open(str(self._tmp), "w")
            stream = self._out.add_stream(codec, rate=self.fps)
            stream.width, stream.height = self.output_width, self.output_height
            stream.pix_fmt = pix_fmt
            stream.codec_context.time_base = self.time_base
            opts = {"crf": str(int(crf))} if codec in _CRF_CODECS else {}
            opts.update(options or {})
            stream.options = opts
            if not self._is_rgb:
                cc = stream.codec_context
                # 1 = BT.709 / MPEG (limited) range in FFmpeg's enums; matches _encode_frame.
                cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1
            if rotation % 360:
                stream.set_display_rotation(float(rotation))
            self._video = stream
            if audio_from is not None:
                self._add_audio(Path(audio_from))
        except UserError:
            self._abort()
            raise
        except (av.error.FFmpegError, ValueError) as e:
            self._abort()
            raise UserError(f"cannot write video {self.path}: {e}") from e
        except BaseException:
            self._abort()
            raise

    # -- audio --------------------------------------------------------------------------------

    def _add_audio(self, source: Path) -> None:
        if not source.is_file():
            raise UserError(f"audio source not found: {source}")
        self._audio_in = _open_video_container(source)
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None  # nothing to copy: a silent source is not an error
            return
        in_stream = self._audio_in.streams.audio[0]
        name = in_stream.codec_context.name
        if name in self._out.supported_codecs:
            out_stream = self._out.add_stream_from_template(in_stream)
            self._audio_packets = self._copied_audio(in_stream, out_stream)
            return
        target = self._out.default_audio_codec
        if not target or target == "none":
            warnings.warn(
                f"{self.path.suffix} files cannot hold audio; the audio of {source} is dropped",
                stacklevel=3,
            )
            self._audio_in.close()
            self._audio_in = None
            return
        out_stream = self._out.add_stream(target, rate=in_stream.codec_context.sample_rate)
        out_stream.layout = in_stream.codec_context.layout
        self._audio_packets = self._transcoded_audio(in_stream, out_stream)

    def _copied_audio(self, in_stream, out_stream) -> Iterator:
        for packet in self._audio_in.demux(in_stream):
            if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            packet.stream = out_stream
            yield packet

    def _transcoded_audio(self, in_stream, out_stream) -> Iterator:
        for frame in self._audio_in.decode(in_stream):
            frame.pts = None  # let the encoder count samples; input pts may have gaps
            yield from out_stream.encode(frame)
        yield from out_stream.encode(None)

    def _mux_audio_until(self, seconds: float, *, final: bool = False) -> None:
        """Mux the audio packets that start by ``seconds``, so audio and video interleave in
        the file as players expect. ``final``: ``seconds`` is the end of the video; packets
        starting at or after it are dropped, so a shortened video gets matching audio."""
        while self._audio_packets is not None:
            if self._pending_audio is None:
                self._pending_audio = next(self._audio_packets, None)
                if self._pending_audio is None:
                    self._audio_packets = None
                    return
            p = self._pending_audio
            t = p.pts if p.pts is not None else p.dts
            start = float(t * p.time_base) if t is not None else None
            if start is not None and (start >= seconds if final else start > seconds):
                if final:
                    self._audio_packets = self._pending_audio = None
                return
            self._out.mux(p)
            self._pending_audio = None

    # -- video --------------------------------------------------------------------------------

    def _encode_frame(self, image: torch.Tensor):
        import av

        if tuple(image.shape) != (3, self.height, self.width):
            raise ValueError(
                f"VideoWriter({self.path.name}) expects frames (3, {self.height}, {self.width}),"
                f" got {tuple(image.shape)}"
            )
        arr = _quantize(image, self._bits)
        if self.padded:
            pad = ((0, self.output_height - self.height), (0, self.output_width - self.width))
            arr = np.pad(arr, pad + ((0, 0),), mode="edge")
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24" if self._bits == 8 else "rgb48le")
        if self._is_rgb:
            return frame
        return frame.reformat(format=self.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")

    def write(self, frame: torch.Tensor, pts: int | None = None) -> None:
        """Encode one (3, H, W) frame in [0, 1]. ``pts`` is in ``time_base`` units and must
        increase; None continues one frame duration after the previous frame."""
        import av

        if self._closed or self._out is None:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        elif self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts must increase: got {pts} after {self._last_pts}")
        av_frame = self._encode_frame(frame)
        av_frame.pts = int(pts)
        av_frame.time_base = self.time_base
        try:
            for packet in self._video.encode(av_frame):
                self._mux_video(packet)
        except av.error.FFmpegError as e:
            raise UserError(f"cannot encode video {self.path}: {e}") from e
        self._last_pts = int(pts)
        self.frames_written += 1

    def _mux_video(self, packet) -> None:
        if packet.dts is not None and packet.time_base is not None:
            self._mux_audio_until(float(packet.dts * packet.time_base))
        self._out.mux(packet)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, add the remaining audio, and rename the file into place."""
        import av

        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                raise UserError(f"no frames were written to {self.path}")
            for packet in self._video.encode(None):
                self._mux_video(packet)
            # The video ends one frame duration after its last frame starts.
            end = (self._last_pts + self._step) * self.time_base
            self._mux_audio_until(float(end), final=True)
            self._out.close()
            self._out = None
            self._close_audio_input()
            os.replace(self._tmp, self.path)
        except av.error.FFmpegError as e:
            self._abort()
            raise UserError(f"cannot write video {self.path}: {e}") from e
        except OSError as e:
            self._abort()
            raise UserError(f"cannot write video {self.path}: {e.strerror or e}") from e
        except BaseException:
            self._abort()
            raise

    def _close_audio_input(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _abort(self) -> None:
        """Drop everything: close quietly and delete the temporary file."""
        self._closed = True
        if self._out is not None:
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                pass
            self._out = None
        try:
            self._close_audio_input()
        except Exception:  # noqa: BLE001
            pass
        if getattr(self, "_tmp", None) is not None:
            _unlink_quietly(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


# --------------------------------------------------------------------------------------------
# One input type for the whole package
# --------------------------------------------------------------------------------------------


class FrameSource:
    """A video file, a folder of images, or a list of image files, read as one stream of
    frames.

    Attributes:
        kind: "video" or "images".
        names: file names of the image frames (outputs reuse them), None for a video.
        info: the video's :class:`VideoInfo`, None for images.
        height, width: frame size (decoded, unrotated; for images that of the first file).
        paths: the image files, None for a video.

    ``len()`` is the number of frames: for a video the count the container states, else the
    number of video packets (demuxed once, not decoded). Iterating yields
    ``(index, name_or_None, frame (3, H, W) float32)`` lazily, one frame in memory at a time;
    :meth:`iterate_with_pts` adds the video pts (None for images).

    Raises (at construction):
        UserError: missing path, empty folder, unsupported extension, unreadable first frame,
            two list entries with the same file name (their outputs would collide).
        While iterating, UserError for an unreadable image or one whose size differs from the
        first frame's (naming the file).
    """

    def __init__(self, inputs: PathLike | Sequence[PathLike]):
        if isinstance(inputs, (str, os.PathLike)):
            items = [Path(inputs)]
            single = True
        else:
            items = [Path(p) for p in inputs]
            single = len(items) == 1
            if not items:
                raise UserError("no input given")
        self.info: VideoInfo | None = None
        self.names: list[str] | None = None
        self.paths: list[Path] | None = None
        self._num_frames: int | None = None

        first = items[0]
        if single and first.is_dir():
            files = list_images(first)
            if not files:
                raise UserError(
                    f"no image files in folder {first} (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
            self._init_images(files)
        elif single and is_video_path(first):
            self.kind = "video"
            self._path = first
            with VideoReader(first) as reader:
                self.info = reader.info
            self.height, self.width = self.info.height, self.info.width
        else:
            for p in items:
                if not p.exists():
                    raise UserError(f"input not found: {p}")
                if p.is_dir():
                    raise UserError(f"expected image files in the list, got a folder: {p}")
                if is_video_path(p):
                    raise UserError(f"a list of inputs must be image files, got the video {p}")
                if not is_image_path(p):
                    raise UserError(
                        f"unsupported input {p}: expected a video "
                        f"({', '.join(VIDEO_EXTENSIONS)}), a folder of images, or images "
                        f"({', '.join(IMAGE_EXTENSIONS)})"
                    )
            self._init_images(items)

    def _init_images(self, files: list[Path]) -> None:
        seen: dict[str, Path] = {}
        for p in files:
            if p.name in seen:
                raise UserError(f"two inputs share the file name {p.name}: {seen[p.name]} and {p}")
            seen[p.name] = p
        self.kind = "images"
        self.paths = list(files)
        self.names = [p.name for p in files]
        first = read_image(files[0])  # fail early on a corrupt first frame, learn the size
        self.height, self.width = int(first.shape[1]), int(first.shape[2])

    def __len__(self) -> int:
        if self.kind == "images":
            return len(self.paths)
        if self._num_frames is None:
            if self.info.num_frames is not None:
                self._num_frames = self.info.num_frames
            else:
                self._num_frames = _count_video_packets(self._path)
        return self._num_frames

    def iterate_with_pts(self) -> Iterator[tuple[int, str | None, torch.Tensor, int | None]]:
        """Yield (index, name or None, frame (3, H, W) float32, pts or None)."""
        if self.kind == "video":
            with VideoReader(self._path) as reader:
                for i, (frame, pts) in enumerate(reader.iterate_with_pts()):
                    yield i, None, frame, pts
            return
        for i, (path, name) in enumerate(zip(self.paths, self.names, strict=True)):
            frame = read_image(path)
            if (frame.shape[1], frame.shape[2]) != (self.height, self.width):
                raise UserError(
                    f"frame size mismatch: {path} is {frame.shape[2]}x{frame.shape[1]} but "
                    f"{self.paths[0].name} is {self.width}x{self.height} (all frames must match)"
                )
            yield i, name, frame, None

    def __iter__(self) -> Iterator[tuple[int, str | None, torch.Tensor]]:
        for i, name, frame, _ in self.iterate_with_pts():
            yield i, name, frame

    @property
    def fps(self) -> Fraction | None:
        """The video's frame rate, None for images."""
        return self.info.fps if self.info is not None else None

    def __repr__(self) -> str:
        where = self._path if self.kind == "video" else f"{len(self.paths)} images"
        return f"FrameSource({self.kind}: {where}, {self.width}x{self.height})"

