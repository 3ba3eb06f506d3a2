"""Decoding video files (PyAV / FFmpeg) into (3, H, W) float32 RGB frames in [0, 1], one frame
in memory at a time, with the stream's frame rate, timestamps and display rotation.

Every user mistake (missing file, not a video, no decodable frame) raises
:class:`~flowdeblur.errors.UserError` with one clear line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from ..errors import UserError
from .atomic import PathLike
from .pixels import to_tensor, yuv_to_rgb

# GIF counts as a video: the frames of an animated GIF are what a user means by its content.
VIDEO_EXTENSIONS = (
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif",
    ".ts", ".mts", ".m2ts", ".3gp", ".ogv",
)


def is_video_path(path: PathLike) -> bool:
    """True if ``path`` has a video extension (case-insensitive); the file need not exist."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def rotate_for_display(frame: torch.Tensor, rotation: int) -> torch.Tensor:
    """Rotate decoded frame(s) (..., H, W) the way a player does for ``VideoInfo.rotation``.

    ``rotation`` is counter-clockwise degrees; only multiples of 90 are supported.
    """
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    # torch.rot90 with k > 0 turns from the first towards the second dim: counter-clockwise.
    return torch.rot90(frame, k=(rotation // 90) % 4, dims=(-2, -1))


def rotate_flow_for_display(flow: torch.Tensor, rotation: int) -> torch.Tensor:
    """Rotate flow field(s) (..., 2, H, W) (channel 0 = x right, 1 = y down, pixels) the way
    :func:`rotate_for_display` turns their frames: the field's layout and its vectors.

    A quarter turn counter-clockwise as displayed maps a vector (x, y) to (y, -x): what moved
    right on the stored frame moves up on the displayed one.
    """
    quarter_turns = (rotation // 90) % 4
    flow = rotate_for_display(flow, rotation)
    for _ in range(quarter_turns):
        flow = torch.stack((flow[..., 1, :, :], -flow[..., 0, :, :]), dim=-3)
    return flow



#: Names of FFmpeg's colour enum numbers, for messages and the benchmark table.
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
             8: "linear", 13: "srgb", 14: "bt2020-10", 15: "bt2020-12", 16: "pq", 18: "hlg"}
MATRICES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            9: "bt2020nc", 10: "bt2020c"}


@dataclass(frozen=True)
class ColourTags:
    """A stream's colour description, in FFmpeg's enum numbers (AVColorPrimaries,
    AVColorTransferCharacteristic, AVColorSpace, AVColorRange); 2 (0 for range) = unspecified."""

    primaries: int = 2
    transfer: int = 2
    matrix: int = 2
    range: int = 0

    @property
    def tagged(self) -> bool:
        """Whether the stream names any of its colour properties."""
        return (self.primaries, self.transfer, self.matrix, self.range) != (2, 2, 2, 0)

    @property
    def hdr(self) -> str | None:
        """"PQ" or "HLG" for an HDR transfer, else None."""
        return {16: "PQ", 18: "HLG"}.get(self.transfer)

    def describe(self) -> str:
        """E.g. 'bt709/bt709/bt709 limited': primaries/transfer/matrix and range."""
        def name(table: dict[int, str], value: int) -> str:
            return table.get(value, "unknown" if value in (0, 2) else str(value))

        rng = {1: "limited", 2: "full"}.get(self.range, "unknown")
        return (f"{name(PRIMARIES, self.primaries)}/{name(TRANSFERS, self.transfer)}/"
                f"{name(MATRICES, self.matrix)} {rng}")


def colour_of(frame: av.VideoFrame) -> ColourTags:
    """The colour tags a decoded frame carries."""
    return ColourTags(int(frame.color_primaries), int(frame.color_trc), int(frame.colorspace),
                      int(frame.color_range))


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
        duration: the stream's stated length in seconds (the container's when the stream
            states none), None when neither says.
        codec: the decoder's name (e.g. "hevc").
        pix_fmt: the decoded pixel format (e.g. "yuv420p10le").
        bits: bits per sample of the decoded frames (8, 10, 12, ...).
        colour: the first frame's :class:`ColourTags`.
        interlaced: the first frame is interlaced (two fields woven together).
    """

    fps: Fraction
    time_base: Fraction
    num_frames: int | None
    height: int
    width: int
    rotation: int
    has_audio: bool
    duration: Fraction | None = None
    codec: str = ""
    pix_fmt: str = ""
    bits: int = 8
    colour: ColourTags = ColourTags()
    interlaced: bool = False

    @property
    def expected_frames(self) -> int | None:
        """The stated frame count, else stated duration x average rate, else None."""
        if self.num_frames is not None:
            return self.num_frames
        if self.duration is None:
            return None
        return round(self.duration * self.fps)


#: A file whose frame count is only estimated (duration x rate) counts as cut short when fewer
#: than this share of the estimate decode: the estimate is off by a frame or two for VFR clips
#: and containers that round the duration.
ESTIMATE_SHARE = 0.95


def shortfall_warning(path: PathLike, info: VideoInfo, decoded: int) -> str | None:
    """The warning for a file that decoded fewer frames than it states, or None.

    A stated frame count is exact, so any shortfall warns; a count estimated from the stated
    duration warns below :data:`ESTIMATE_SHARE` of it.
    """
    if info.num_frames is not None:
        if decoded < info.num_frames:
            return (f"{path} declares {info.num_frames} frames but only {decoded} could be "
                    "decoded (the file is truncated or damaged); the output has those "
                    f"{decoded}")
        return None
    expected = info.expected_frames
    if expected is not None and decoded < ESTIMATE_SHARE * expected:
        return (f"{path} states a duration of {float(info.duration):.2f} s (about {expected} "
                f"frames at {float(info.fps):.3g} frames/s) but only {decoded} could be decoded "
                f"(the file is truncated or damaged); the output has those {decoded}")
    return None


class TimedFrame(NamedTuple):
    """A decoded frame and its presentation time."""

    image: torch.Tensor  #: (3, H, W) float32 RGB in [0, 1]
    pts: int | None  #: in the stream's ``time_base`` units; None if the stream gives none


def open_container(path: Path) -> av.container.InputContainer:
    """Open a media file for reading; UserError if it is missing or not a readable file."""
    if not path.exists():
        raise UserError(f"video not found: {path}")
    if not path.is_file():
        raise UserError(f"not a video file: {path}")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise UserError(f"cannot open video {path}: not a readable video file ({e})") from e


def count_video_packets(path: Path) -> int:
    """Number of non-empty packets of the first video stream (demuxed, not decoded)."""
    container = open_container(path)
    try:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size > 0)
    except av.error.FFmpegError as e:
        raise UserError(f"cannot read video {path}: {e}") from e
    finally:
        container.close()


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


#: FFmpeg's AVColorSpace tag of a frame -> the swscale matrix that decodes it. Untagged (2) and
#: anything else fall back to swscale's default, BT.601, as FFmpeg does.
SWSCALE_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020",
                  10: "BT2020"}
#: AVColorRange tags that name a range (0 = unspecified: the pixel format decides).
_RANGE_OF_TAG = {1: "MPEG", 2: "JPEG"}


#: swscale flags for 8-bit YUV -> RGB: its default fast path rounds down (RGB about 1.1/255
#: dark); accurate rounding with full chroma interpolation is within 0.02/255 on average.
#: Not for deeper output: swscale's full-chroma rgb48 path mixes up the channels (red
#: 200,30,30 of a 10-bit clip read as 199,0,87), and without it is 0.5/255 dark.
YUV_TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
#: swscale flags for other sources read at 16 bits (RGB, grey, packed YUV of hardware decoders).
TO_RGB48 = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


def _conversion(frame: av.VideoFrame) -> dict:
    """reformat() arguments that decode ``frame`` to rgb24 with the matrix and range its own
    colour tags name. The writer tags what it converts with (media/video_writer.py), so a
    video it writes reads back with the colours it was given."""
    if frame.format.name.startswith(("rgb", "bgr", "gbr", "gray", "pal")):
        return {}
    options = {"src_colorspace": SWSCALE_MATRICES.get(int(frame.colorspace), "ITU601"),
               "interpolation": YUV_TO_RGB}
    color_range = _RANGE_OF_TAG.get(int(frame.color_range))
    if color_range is not None:
        options["src_color_range"] = color_range
    return options


def is_planar_yuv(fmt: av.VideoFormat) -> bool:
    """Whether ``fmt`` is planar Y'CbCr (yuv420p10le, yuv444p12le, yuva420p10le, ...)."""
    return fmt.name.startswith("yuv") and fmt.is_planar and len(fmt.components) >= 3


def chroma_shift(fmt: av.VideoFormat) -> tuple[int, int]:
    """(across, down) log2 chroma subsampling of a planar format: (1, 1) for 4:2:0."""
    probe = av.VideoFormat(fmt.name, 64, 64).components[1]
    return (64 // probe.width).bit_length() - 1, (64 // probe.height).bit_length() - 1


def plane_array(frame: av.VideoFrame, index: int) -> np.ndarray:
    """Plane ``index`` of ``frame`` as a (height, width) uint8 or uint16 array (a copy)."""
    plane = frame.planes[index]
    wide = frame.format.components[0].bits > 8
    dtype = np.dtype(">u2" if frame.format.is_big_endian else "<u2") if wide else np.uint8
    rows = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
    return rows[:, : plane.width].astype(np.uint16 if wide else np.uint8)


def _frame_to_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """av.VideoFrame -> (3, H, W) float32 in [0, 1] with the YUV matrix and range its own tags
    name. Planar YUV deeper than 8 bits is converted in float32 (:func:`pixels.yuv_to_rgb`),
    keeping its precision; 8-bit by swscale (:func:`_conversion`)."""
    fmt = frame.format
    bits = fmt.components[0].bits
    if bits <= 8:
        return to_tensor(frame.to_ndarray(format="rgb24", **_conversion(frame)), 255.0)
    if fmt.name.startswith("gbrp"):  # planar G, B, R of any depth: exact without swscale
        g, b, r = (torch.from_numpy(plane_array(frame, i).astype(np.float32)) for i in range(3))
        return torch.stack((r, g, b)).div_(2**bits - 1)
    if not is_planar_yuv(fmt):
        return to_tensor(frame.to_ndarray(format="rgb48le", interpolation=TO_RGB48), 65535.0)
    planes = tuple(plane_array(frame, i) for i in range(3))
    return yuv_to_rgb(planes, bits=bits, matrix=int(frame.colorspace),
                      full_range=int(frame.color_range) == 2, shift=chroma_shift(fmt))


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
        self.path = Path(path)
        self._container = open_container(self.path)
        try:
            if not self._container.streams.video:
                raise UserError(f"no video stream in {self.path}")
            first = self._start_decoding()
            if first is None:
                raise UserError(f"no decodable video frame in {self.path}")
            self._first = first
            self.info = self._describe(first)
        except av.error.FFmpegError as e:
            self.close()
            raise UserError(f"cannot decode video {self.path}: {e}") from e
        except BaseException:
            self.close()
            raise

    def _describe(self, first: av.VideoFrame) -> VideoInfo:
        stream = self._container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        if stream.duration:
            duration = stream.duration * time_base
        elif self._container.duration:
            duration = Fraction(self._container.duration, av.time_base)
        else:
            duration = None
        return VideoInfo(
            fps=Fraction(fps) if fps else Fraction(30),  # unknown rate: say 30, as players do
            time_base=time_base,
            num_frames=int(stream.frames) if stream.frames else None,
            height=first.height,
            width=first.width,
            rotation=_stream_rotation(stream, first),
            has_audio=bool(self._container.streams.audio),
            duration=duration,
            codec=stream.codec_context.name,
            pix_fmt=first.format.name,
            bits=first.format.components[0].bits,
            colour=colour_of(first),
            interlaced=bool(first.interlaced_frame),
        )

    def _start_decoding(self) -> av.VideoFrame | None:
        """(Re)start the decoder; return the first frame, or None if there is none."""
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the I/O bottleneck
        self._decoder = self._container.decode(stream)
        return self._next_frame()

    def _next_frame(self) -> av.VideoFrame | None:
        try:
            return next(self._decoder)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise UserError(f"cannot decode video {self.path}: {e}") from e

    def _av_frames(self) -> Iterator[av.VideoFrame]:
        if self._container is None:
            raise ValueError(f"VideoReader for {self.path} is closed")
        if self._first is None:  # a later pass: reopen, seeking is unreliable across formats
            self._container.close()
            self._container = open_container(self.path)
            self._first = self._start_decoding()
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            frame = self._next_frame()

    def iterate_with_pts(self, start: int = 0) -> Iterator[TimedFrame]:
        """Yield ``TimedFrame(image (3, H, W) float32, pts in info.time_base units or None)``;
        from frame ``start`` (the frames before it are decoded, not converted)."""
        for index, frame in enumerate(self._av_frames()):
            if index >= start:
                yield TimedFrame(_frame_to_tensor(frame), frame.pts)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for timed in self.iterate_with_pts():
            yield timed.image

    def count_frames(self) -> int:
        """Frame count: the container's if it states one, else the number of non-empty video
        packets (demuxed, not decoded, so fast; equals the frame count for all common codecs)."""
        if self.info.num_frames is not None:
            return self.info.num_frames
        return count_video_packets(self.path)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
