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
import torch
from av.video.reformatter import Interpolation

from ..errors import UserError
from .atomic import PathLike
from .pixels import to_tensor

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
_MATRIX_OF_TAG = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020",
                  10: "BT2020"}
#: AVColorRange tags that name a range (0 = unspecified: the pixel format decides).
_RANGE_OF_TAG = {1: "MPEG", 2: "JPEG"}


#: swscale flags for YUV -> RGB: its default fast path rounds down (RGB about 1.1/255 dark);
#: accurate rounding with full chroma interpolation is within 0.02/255 on average.
YUV_TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def _conversion(frame: av.VideoFrame) -> dict:
    """reformat() arguments that decode ``frame`` to RGB with the matrix and range its own
    colour tags name. The writer tags what it converts with (media/video_writer.py), so a
    video it writes reads back with the colours it was given."""
    if frame.format.name.startswith(("rgb", "bgr", "gbr", "gray", "pal")):
        return {}
    options = {"src_colorspace": _MATRIX_OF_TAG.get(int(frame.colorspace), "ITU601"),
               "interpolation": YUV_TO_RGB}
    color_range = _RANGE_OF_TAG.get(int(frame.color_range))
    if color_range is not None:
        options["src_color_range"] = color_range
    return options


def _frame_to_tensor(frame: av.VideoFrame) -> torch.Tensor:
    """av.VideoFrame -> (3, H, W) float32 in [0, 1]; >8-bit sources keep their precision.
    The YUV -> RGB matrix and range come from the frame's own colour tags (:func:`_conversion`)."""
    if frame.format.components[0].bits > 8:
        return to_tensor(frame.to_ndarray(format="rgb48le", **_conversion(frame)), 65535.0)
    return to_tensor(frame.to_ndarray(format="rgb24", **_conversion(frame)), 255.0)


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
        return VideoInfo(
            fps=Fraction(fps) if fps else Fraction(30),  # unknown rate: say 30, as players do
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1),
            num_frames=int(stream.frames) if stream.frames else None,
            height=first.height,
            width=first.width,
            rotation=_stream_rotation(stream, first),
            has_audio=bool(self._container.streams.audio),
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

    def iterate_with_pts(self) -> Iterator[TimedFrame]:
        """Yield ``TimedFrame(image (3, H, W) float32, pts in info.time_base units or None)``."""
        for frame in self._av_frames():
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
