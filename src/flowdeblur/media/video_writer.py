"""Encoding (3, H, W) float frames in [0, 1] into a video file (PyAV / FFmpeg) at 8 to 16 bits
with the colour tags of the source, optionally with the other streams of a source file (audio,
subtitles, timecode), its metadata tags and chapters, published atomically
(:class:`~flowdeblur.media.atomic.PendingFile`).
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

from ..errors import OptionError, UserError
from .atomic import PathLike, PendingFile, make_parent_folder
from .ownership import OUTPUT_TAG
from .pixels import LUMA_WEIGHTS, quantize, rgb_to_yuv
from .video_reader import (
    SWSCALE_MATRICES,
    ColourTags,
    VideoInfo,
    chroma_shift,
    is_planar_yuv,
    open_container,
)

# Pixel formats chosen when the caller gives none: the common lossy one for H.264, and exact
# RGB for the two lossless paths (FFV1 in .mkv; libx264rgb with crf=0).
_DEFAULT_PIX_FMT = {"libx264": "yuv420p", "libx265": "yuv420p", "libx264rgb": "rgb24",
                    "ffv1": "bgr0"}
#: swscale flags for RGB -> YUV: accurate rounding (its default path is biased).
RGB_TO_YUV = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
_CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")
#: The colour a writer converts to and tags when told nothing: BT.709, limited range.
BT709 = ColourTags(primaries=1, transfer=1, matrix=1, range=1)
#: Tags that describe a file's old encoding rather than its content: the muxer and encoder
#: write their own (compared lower-case).
_TECHNICAL_TAGS = {"encoder", "duration", "rotate", "vendor_id", "major_brand", "minor_version",
                   "compatible_brands", "bps", "number_of_frames", "number_of_bytes",
                   "_statistics_tags", "_statistics_writing_app", "_statistics_writing_date_utc"}


def content_tags(tags: dict[str, str]) -> dict[str, str]:
    """``tags`` without those that describe the old file's encoding (:data:`_TECHNICAL_TAGS`)."""
    return {k: v for k, v in tags.items() if k.lower() not in _TECHNICAL_TAGS}


def stored_colour(colour: ColourTags | None, *, rgb: bool) -> ColourTags:
    """The colour tags a writer stores for frames decoded from a source tagged ``colour``.

    YUV output converts with the source's matrix and range, keeping its primaries and
    transfer (HDR PQ and HLG included); a source that names no YUV matrix (untagged, or RGB)
    is stored as BT.709 limited range, its primaries and transfer kept where it names them.
    RGB output stores matrix 0 (RGB) with the primaries and transfer.
    """
    if colour is None or not colour.tagged:
        colour = BT709
    if rgb:
        return ColourTags(colour.primaries, colour.transfer, 0, 2)
    if colour.matrix not in LUMA_WEIGHTS:  # untagged or RGB: its range is not a YUV range
        return ColourTags(colour.primaries if colour.primaries != 2 else 1,
                          colour.transfer if colour.transfer != 2 else 1, 1, 1)
    return ColourTags(colour.primaries, colour.transfer, colour.matrix,
                      colour.range if colour.range in (1, 2) else 1)


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


class _SideStreams:
    """The streams of a source file besides its video, written into an output container in
    step with its video: packets are copied where the container holds the codec; audio it
    cannot hold is re-encoded to the container's default audio codec; anything else is
    dropped with a warning naming it. A timecode track (tmcd) rides on the video stream's
    ``timecode`` tag, from which MOV and MP4 muxers write it anew."""

    def __init__(self, source: av.container.InputContainer, routes: dict):
        self._source = source
        self._packets: Iterator[av.Packet] | None = _side_packets(source, routes)
        self._pending: av.Packet | None = None

    @classmethod
    def attach(cls, source: Path, out: av.container.OutputContainer, *,
               audio_only: bool) -> _SideStreams | None:
        """Add ``source``'s audio streams (and with ``audio_only`` False its subtitle, data and
        attachment streams) to ``out``; None when none is added."""
        if not source.is_file():
            raise UserError(f"audio source not found: {source}")
        container = open_container(source)
        try:
            routes = {}
            for stream in container.streams:
                if stream.type == "video" or (audio_only and stream.type != "audio"):
                    continue
                route = _route(stream, container, out)
                if isinstance(route, str):
                    if route:
                        warnings.warn(f"{_describe_stream(stream)} of {source} is dropped: "
                                      f"{route}", UserWarning, stacklevel=4)
                    continue
                routes[stream.index] = route
            if not routes:
                container.close()
                return None
            return cls(container, routes)
        except BaseException:
            container.close()
            raise

    def mux_until(
        self, out: av.container.OutputContainer, seconds: float, *, final: bool = False
    ) -> None:
        """Mux the packets that start by ``seconds``, so the streams interleave in the file as
        players expect. ``final``: ``seconds`` is the end of the video; packets starting at or
        after it are dropped, so a shortened video gets matching audio and subtitles."""
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


#: AVDISCARD_ALL: what demuxers mark a stream with that is theirs, not content.
_DISCARD_ALL = 48


def _describe_stream(stream) -> str:
    codec = stream.codec_context.name if stream.codec_context is not None else None
    codec = codec or stream.metadata.get("handler_name") or "unknown codec"
    return f"{stream.type} stream #{stream.index} ({codec})"


def _route(stream, source, out) -> tuple | str:
    """(output stream, re-encode?) for a source stream, or why it is left out ('' when it is
    kept another way, as a timecode track is)."""
    kind = Path(out.name).suffix or out.format.name
    codec = stream.codec_context.name if stream.codec_context is not None else None
    if stream.type == "audio":
        if codec in out.supported_codecs:
            return out.add_stream_from_template(stream), False
        target = out.default_audio_codec
        if not target or target == "none":
            return f"{kind} files cannot hold audio"
        out_stream = out.add_stream(target, rate=stream.codec_context.sample_rate)
        out_stream.layout = stream.codec_context.layout
        out_stream.metadata.update(content_tags(dict(stream.metadata)))
        return out_stream, True
    if stream.type == "subtitle" and codec in out.supported_codecs:
        return out.add_stream_from_template(stream), False
    if int(stream.discard) >= _DISCARD_ALL:
        return ""  # the demuxer's own, e.g. an MP4 chapter track: the chapters are copied
    if stream.type == "data" and stream.metadata.get("timecode") and any(
            v.metadata.get("timecode") for v in source.streams.video):
        return ""  # a tmcd track: the video's timecode tag carries it
    if stream.type == "attachment" and out.format.name.startswith("matroska"):
        return out.add_stream_from_template(stream), False
    return f"{kind} files cannot hold it"


def _side_packets(container, routes: dict) -> Iterator[av.Packet]:
    """The packets of the routed streams in file order, copied or re-encoded."""
    for packet in container.demux([container.streams[i] for i in routes]):
        out_stream, reencode = routes[packet.stream.index]
        if reencode:
            for frame in packet.decode():
                frame.pts = None  # let the encoder count samples; input pts may have gaps
                yield from out_stream.encode(frame)
            continue
        if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        packet.stream = out_stream
        yield packet
    for out_stream, reencode in routes.values():
        if reencode:
            yield from out_stream.encode(None)


def copy_tags_and_chapters(source: Path, out: av.container.OutputContainer,
                           video: av.video.stream.VideoStream) -> None:
    """Copy ``source``'s container tags, its video stream's tags (the timecode among them) and
    its chapters to ``out`` before anything is muxed."""
    with open_container(source) as container:
        out.metadata.update(content_tags(dict(container.metadata)))
        if container.streams.video:
            video.metadata.update(content_tags(dict(container.streams.video[0].metadata)))
        chapters = container.chapters()
    if chapters:
        out.set_chapters(chapters)


def _planar_frame(planes: tuple[np.ndarray, ...], pix_fmt: str) -> av.VideoFrame:
    """A frame of planar ``pix_fmt`` (little-endian when deeper than 8 bits) holding the code
    values ``planes`` (luma or G first)."""
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], pix_fmt)
    wide = frame.format.components[0].bits > 8
    for plane, values in zip(frame.planes, planes, strict=False):
        rows = np.zeros((plane.height, plane.line_size // (2 if wide else 1)),
                        np.dtype("<u2") if wide else np.uint8)
        rows[:, : plane.width] = values
        plane.update(rows.tobytes())
    return frame


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
        audio_from: a media file whose audio streams are copied (packets copied without
            re-encoding when the output container can hold the codec, else re-encoded to the
            container's default audio codec). Audio packets that start after the last video
            frame ends are left out, so a video cut short keeps matching audio.
        streams_from: a media file whose every stream besides the video is copied as
            ``audio_from`` copies audio (subtitles and attachments where the container holds
            their codec, a timecode track through the video's ``timecode`` tag, anything else
            dropped with a warning naming it), with its metadata tags and chapters.
        colour: the source's :class:`ColourTags`; YUV is converted with its matrix and range
            and the output tagged with them and its primaries and transfer
            (:func:`stored_colour`). None: BT.709, limited range.
        time_base: unit of the ``pts`` passed to :meth:`write`; default ``1 / fps``. Pass the
            source's ``VideoInfo.time_base`` together with its pts to keep its timestamps.
        options: extra encoder options (e.g. ``{"preset": "slow"}``).
        record: the ``comment`` tag marking the file as ours (``ownership.record_text``; a
            source's own comment is replaced by it).

    Subsampled pixel formats (yuv420p) need even sizes: an odd height or width is padded by
    replicating the last row/column; ``padded`` is then True and ``output_height`` /
    ``output_width`` give the stored size. For exact odd sizes and exact colours use a
    lossless path: ``codec="ffv1"`` (in .mkv) or ``codec="libx264rgb", crf=0``.
    Pixel formats deeper than 8 bits (yuv420p10le, gbrp12le, ...) and full-range YUV are
    written from the float frames directly: YUV by :func:`~flowdeblur.media.pixels.rgb_to_yuv`
    (swscale's high-bit-depth conversion is about 0.5/255 off, its full-range chroma half a
    code low); 8-bit limited-range YUV by swscale with accurate rounding.
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
        streams_from: PathLike | None = None,
        colour: ColourTags | None = None,
        time_base: Fraction | None = None,
        options: dict[str, str] | None = None,
        record: str = OUTPUT_TAG,
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
        self._audio: _SideStreams | None = None
        self._closed = False

        self.codec, self.pix_fmt = codec, _choose_pix_fmt(codec, pix_fmt)
        fmt = av.VideoFormat(self.pix_fmt)
        self._is_rgb = fmt.is_rgb
        self.bits = fmt.components[0].bits
        self.colour = stored_colour(colour, rgb=self._is_rgb)
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
            if streams_from is not None:
                copy_tags_and_chapters(Path(streams_from), self._out, self._video)
            # The record by which a later --overwrite or --resume knows this file as ours
            # (ownership.py); set after the copied tags, which may hold a comment of their own.
            self._out.metadata["comment"] = record
            if streams_from is not None or audio_from is not None:
                self._audio = _SideStreams.attach(Path(streams_from or audio_from), self._out,
                                                  audio_only=streams_from is None)

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
        cc = stream.codec_context
        cc.colorspace, cc.color_range = self.colour.matrix, self.colour.range
        cc.color_primaries, cc.color_trc = self.colour.primaries, self.colour.transfer
        if self.codec == "libx265":  # x265 prints its settings to stderr unless told not to
            opts["x265-params"] = ":".join(filter(None, ("log-level=error",
                                                         opts.get("x265-params"))))
            stream.options = opts
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
        if self.padded:
            pad = (0, self.output_width - self.width, 0, self.output_height - self.height)
            image = torch.nn.functional.pad(image[None].float(), pad, mode="replicate")[0]
        fmt = av.VideoFormat(self.pix_fmt)
        if is_planar_yuv(fmt) and (self.bits > 8 or self.colour.range == 2):
            planes = rgb_to_yuv(image, bits=self.bits, matrix=self.colour.matrix,
                                full_range=self.colour.range == 2, shift=chroma_shift(fmt))
            return _planar_frame(planes, self.pix_fmt)
        if self.bits > 8 and self.pix_fmt.startswith("gbrp"):
            r, g, b = np.moveaxis(quantize(image, self.bits), -1, 0)
            return _planar_frame((g, b, r), self.pix_fmt)
        arr = quantize(image, 8 if self.bits <= 8 else 16)
        frame = av.VideoFrame.from_ndarray(arr, format="rgb24" if self.bits <= 8 else "rgb48le")
        if self._is_rgb:
            return frame
        # Accurate rounding: swscale's default RGB -> YUV path is biased (docs/BENCHMARKS.md,
        # "Colour round trip"); the reader decodes with the same care.
        return frame.reformat(
            format=self.pix_fmt, dst_colorspace=SWSCALE_MATRICES[self.colour.matrix],
            dst_color_range="JPEG" if self.colour.range == 2 else "MPEG",
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


#: Depths of the planar RGB formats FFV1 stores losslessly.
_GBRP_DEPTHS = (9, 10, 12, 14, 16)


def _high_depth_yuv(info: VideoInfo, top: int) -> str:
    """yuv4xxpNNle keeping ``info``'s chroma subsampling (4:2:0 for a non-YUV source) and its
    depth, capped at ``top`` bits and rounded up to 10 or 12."""
    bits = 10 if info.bits <= 10 else 12
    bits = min(bits, top)
    sub = "420"
    for name in ("422", "444"):
        if info.pix_fmt.startswith(("yuv" + name, "yuva" + name)):
            sub = name
    return f"yuv{sub}p{bits}le"


#: Default rate control of video outputs, by what is stored (used when ``crf`` is None).
#: An 8-bit source goes to 10-bit 4:4:4 H.264 at crf 0: storing 10 bits removes the 8-bit
#: RGB -> YUV rounding, and it keeps over 90% of the PSNR gain a PNG output shows on both real
#: dev splits (8-bit 4:4:4 crf 6: 92% on the small-motion clips, 56% on the large-motion
#: ones) at 2.2-2.6 bits per pixel, a third of lossless RGB (references/rate_control.py;
#: docs/BENCHMARKS.md, "Video outputs"). 4:2:0 (``chroma`` "420", kept 8-bit so that every
#: player decodes it) and 10/12-bit sources use crf 6.
DEFAULT_CRF = {"444": 0, "420": 6, "deep": 6}
DEFAULT_CHROMA = "444"
CHROMA_CHOICES = ("444", "420")


def choose_encoding(path: PathLike, info: VideoInfo | None, *, crf: int | None,
                    lossless: bool,
                    codec: str | None = None,
                    chroma: str = DEFAULT_CHROMA) -> tuple[dict, list[str]]:
    """The :class:`VideoWriter` arguments (codec, pix_fmt, crf, colour) for deblurred frames
    of a source described by ``info`` (None: images, 8-bit sRGB), and notes for the user.

    An 8-bit source gives H.264 with full-resolution chroma at 10 bits (``chroma`` "444":
    yuv444p10le, High 4:4:4 Predictive profile) or, with "420", 8-bit yuv420p, which every
    player decodes but which blurs the colour edges the network restored and pads odd sizes
    (``lossless``: FFV1 RGB in .mkv, else libx264rgb). A
    deeper source keeps its depth: HEVC Main 10 / Main 12 (libx265, the source's chroma
    subsampling), or H.264 High 10 when ``codec`` is "h264" or the build lacks libx265;
    ``lossless``: FFV1 planar RGB of the source's depth in .mkv. The source's colour tags go
    along (:func:`stored_colour`). ``crf`` None: :data:`DEFAULT_CRF` of what is stored.
    """
    mkv = Path(path).suffix.lower() == ".mkv"
    colour = info.colour if info is not None else None
    bits = info.bits if info is not None else 8
    notes: list[str] = []
    if lossless:
        if bits > 8 and mkv:
            depth = next(d for d in _GBRP_DEPTHS if d >= min(bits, 16))
            return {"codec": "ffv1", "pix_fmt": f"gbrp{depth}le", "crf": 0,
                    "colour": colour}, notes
        if bits > 8:
            notes.append(f"the {bits}-bit input is stored losslessly at 8 bits "
                         "(libx264rgb); name a .mkv output to keep its depth (FFV1)")
        return {"codec": "ffv1" if mkv else "libx264rgb", "crf": 0, "colour": colour}, notes
    if chroma not in CHROMA_CHOICES:
        raise OptionError("chroma", f"{{option}} must be one of {', '.join(CHROMA_CHOICES)}, "
                          f"got {chroma!r}")
    if bits <= 8:
        pix_fmt = "yuv444p10le" if chroma == "444" else "yuv420p"
        return {"codec": "libx264", "pix_fmt": pix_fmt,
                "crf": DEFAULT_CRF[chroma] if crf is None else crf, "colour": colour}, notes
    if crf is None:
        crf = DEFAULT_CRF["deep"]
    if codec != "h264" and "libx265" in av.codecs_available:
        return {"codec": "libx265", "pix_fmt": _high_depth_yuv(info, 12), "crf": crf,
                "colour": colour}, notes
    pix_fmt = _high_depth_yuv(info, 10)
    if bits > 10:
        notes.append(f"the {bits}-bit input is stored at 10 bits (H.264 High 10 holds no "
                     "more)")
    return {"codec": "libx264", "pix_fmt": pix_fmt, "crf": crf, "colour": colour}, notes
