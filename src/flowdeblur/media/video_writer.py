"""Encoding (3, H, W) float frames in [0, 1] into a video file (PyAV / FFmpeg), optionally with
the audio of another file, published atomically (:class:`~flowdeblur.media.atomic.PendingFile`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from ..errors import UserError
from .atomic import PathLike, PendingFile, make_parent_folder
from .pixels import quantize
from .video_reader import open_container

# Pixel formats chosen when the caller gives none: the common lossy one for H.264, and exact
# RGB for the two lossless paths (FFV1 in .mkv; libx264rgb with crf=0).
_DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p", "libx264rgb": "rgb24",
                    "ffv1": "bgr0"}
#: swscale flags for RGB -> YUV: accurate rounding (its default path is biased).
RGB_TO_YUV = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
_CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")


def _choose_pix_fmt(codec: str, pix_fmt: str | None) -> str:
    """The pixel format to store: ``pix_fmt``, checked against the encoder, or its default."""
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
    return pix_fmt


def _subsampling_multiple(pix_fmt: str) -> tuple[int, int]:
    """(rows, cols) the frame size must be a multiple of, from the chroma subsampling."""
    fmt = av.VideoFormat(pix_fmt, 4, 4)
    min_h = min(c.height for c in fmt.components)
    min_w = min(c.width for c in fmt.components)
    return 4 // max(min_h, 1), 4 // max(min_w, 1)


class _AudioTrack:
    """The first audio stream of a source file, written into an output container in step with
    its video: packets are copied when the container can hold the codec, else re-encoded to
    the container's default audio codec."""

    def __init__(self, source: av.container.InputContainer, packets: Iterator[av.Packet]):
        self._source = source
        self._packets: Iterator[av.Packet] | None = packets
        self._pending: av.Packet | None = None

    @classmethod
    def attach(cls, source: Path, out: av.container.OutputContainer) -> _AudioTrack | None:
        """Add ``source``'s audio stream to ``out``; None when there is none to add (a silent
        source, or a container that holds no audio: then with a warning)."""
        if not source.is_file():
            raise UserError(f"audio source not found: {source}")
        container = open_container(source)
        try:
            if not container.streams.audio:
                container.close()
                return None  # nothing to copy: a silent source is not an error
            in_stream = container.streams.audio[0]
            if in_stream.codec_context.name in out.supported_codecs:
                out_stream = out.add_stream_from_template(in_stream)
                return cls(container, _copied_packets(container, in_stream, out_stream))
            target = out.default_audio_codec
            if not target or target == "none":
                warnings.warn(
                    f"{Path(out.name).suffix} files cannot hold audio; the audio of {source} "
                    "is dropped",
                    stacklevel=3,  # the caller of VideoWriter(...)
                )
                container.close()
                return None
            out_stream = out.add_stream(target, rate=in_stream.codec_context.sample_rate)
            out_stream.layout = in_stream.codec_context.layout
            return cls(container, _transcoded_packets(container, in_stream, out_stream))
        except BaseException:
            container.close()
            raise

    def mux_until(
        self, out: av.container.OutputContainer, seconds: float, *, final: bool = False
    ) -> None:
        """Mux the audio packets that start by ``seconds``, so audio and video interleave in
        the file as players expect. ``final``: ``seconds`` is the end of the video; packets
        starting at or after it are dropped, so a shortened video gets matching audio."""
        while self._packets is not None:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    self._packets = None
                    return
            p = self._pending
            t = p.pts if p.pts is not None else p.dts
            start = float(t * p.time_base) if t is not None else None
            if start is not None and (start >= seconds if final else start > seconds):
                if final:
                    self._packets = self._pending = None
                return
            out.mux(p)
            self._pending = None

    def close(self) -> None:
        self._packets = self._pending = None
        self._source.close()


def _copied_packets(container, in_stream, out_stream) -> Iterator[av.Packet]:
    for packet in container.demux(in_stream):
        if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        packet.stream = out_stream
        yield packet


def _transcoded_packets(container, in_stream, out_stream) -> Iterator[av.Packet]:
    for frame in container.decode(in_stream):
        frame.pts = None  # let the encoder count samples; input pts may have gaps
        yield from out_stream.encode(frame)
    yield from out_stream.encode(None)


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
        self._out: av.container.OutputContainer | None = None
        self._file: PendingFile | None = None
        self._audio: _AudioTrack | None = None
        self._closed = False

        self.codec, self.pix_fmt = codec, _choose_pix_fmt(codec, pix_fmt)
        fmt = av.VideoFormat(self.pix_fmt)
        self._is_rgb = fmt.is_rgb
        self._bits = 16 if fmt.components[0].bits > 8 else 8
        mult_h, mult_w = _subsampling_multiple(self.pix_fmt)
        self.output_height = -(-self.height // mult_h) * mult_h
        self.output_width = -(-self.width // mult_w) * mult_w
        self.padded = (self.output_height, self.output_width) != (self.height, self.width)

        make_parent_folder(self.path)
        with self._abort_on_failure(av.error.FFmpegError, ValueError):
            # The temporary keeps the extension: FFmpeg picks the container from it.
            self._file = PendingFile(self.path, suffix=self.path.suffix)
            self._out = av.open(str(self._file.path), "w")
            self._video = self._add_video_stream(crf, rotation, options)
            if audio_from is not None:
                self._audio = _AudioTrack.attach(Path(audio_from), self._out)

    @contextlib.contextmanager
    def _abort_on_failure(self, *codec_errors: type[BaseException]) -> Iterator[None]:
        """Remove the partial file on any failure inside, raising codec and file-system
        errors as one-line UserErrors."""
        try:
            yield
        except UserError:
            self.abort()
            raise
        except codec_errors as e:
            self.abort()
            raise UserError(f"cannot write video {self.path}: {e}") from e
        except OSError as e:
            self.abort()
            raise UserError(f"cannot write video {self.path}: {e.strerror or e}") from e
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(
        self, crf: int, rotation: int, options: dict[str, str] | None
    ) -> av.video.stream.VideoStream:
        stream = self._out.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = self.output_width, self.output_height
        stream.pix_fmt = self.pix_fmt
        stream.codec_context.time_base = self.time_base
        opts = {"crf": str(int(crf))} if self.codec in _CRF_CODECS else {}
        opts.update(options or {})
        stream.options = opts
        if not self._is_rgb:
            cc = stream.codec_context
            # 1 = BT.709 / MPEG (limited) range in FFmpeg's enums; matches _to_av_frame.
            cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1
        if rotation % 360:
            stream.set_display_rotation(float(rotation))
        return stream

    # -- frames -------------------------------------------------------------------------------

    def _to_av_frame(self, image: torch.Tensor) -> av.VideoFrame:
        """(3, height, width) in [0, 1] -> a frame in the stored pixel format and size."""
        if tuple(image.shape) != (3, self.height, self.width):
            raise ValueError(
                f"VideoWriter({self.path.name}) expects frames (3, {self.height}, {self.width}),"
                f" got {tuple(image.shape)}"
            )
        arr = quantize(image, self._bits)
        if self.padded:
            pad = ((0, self.output_height - self.height), (0, self.output_width - self.width))
            arr = np.pad(arr, pad + ((0, 0),), mode="edge")
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24" if self._bits == 8 else "rgb48le")
        if self._is_rgb:
            return frame
        # Accurate rounding: swscale's default RGB -> YUV path is biased (docs/BENCHMARKS.md,
        # "Colour round trip"); the reader decodes with the same care.
        return frame.reformat(format=self.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG",
                              interpolation=RGB_TO_YUV)

    def write(self, frame: torch.Tensor, pts: int | None = None) -> None:
        """Encode one (3, H, W) frame in [0, 1]. ``pts`` is in ``time_base`` units and must
        increase; None continues one frame duration after the previous frame."""
        if self._closed or self._out is None:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        elif self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts must increase: got {pts} after {self._last_pts}")
        av_frame = self._to_av_frame(frame)
        av_frame.pts = int(pts)
        av_frame.time_base = self.time_base
        try:
            for packet in self._video.encode(av_frame):
                self._mux_video(packet)
        except av.error.FFmpegError as e:
            raise UserError(f"cannot encode video {self.path}: {e}") from e
        self._last_pts = int(pts)
        self.frames_written += 1

    def _mux_video(self, packet: av.Packet) -> None:
        if self._audio is not None and packet.dts is not None and packet.time_base is not None:
            self._audio.mux_until(self._out, float(packet.dts * packet.time_base))
        self._out.mux(packet)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, add the remaining audio, and rename the file into place."""
        if self._closed:
            return
        self._closed = True
        with self._abort_on_failure(av.error.FFmpegError):
            if self.frames_written == 0:
                raise UserError(f"no frames were written to {self.path}")
            for packet in self._video.encode(None):
                self._mux_video(packet)
            if self._audio is not None:
                # The video ends one frame duration after its last frame starts.
                end = (self._last_pts + self._step) * self.time_base
                self._audio.mux_until(self._out, float(end), final=True)
            self._out.close()
            self._out = None
            if self._audio is not None:
                self._audio.close()
                self._audio = None
            self._file.commit()

    def abort(self) -> None:
        """Drop everything: close quietly and delete the temporary file (nothing is published)."""
        self._closed = True
        for resource in (self._out, self._audio):
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                    pass
        self._out = self._audio = None
        if self._file is not None:
            self._file.discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
