"""One video made of finished pieces, without re-encoding: :func:`join_videos`.

A long video deblurred in chunks (``flowdeblur.inference.chunks``) is written as pieces, each a
video of consecutive frames encoded with the same encoder and settings and stamped with the
source's timestamps. Joining copies their packets, in order, into one file, and adds what
:class:`~flowdeblur.media.VideoWriter` adds to a video written in one go: the other streams of
the source (audio, subtitles, timecode) interleaved with the video and cut where it ends, its
tags and chapters, the display rotation and the ``comment`` record. The file is published
atomically (:class:`~flowdeblur.media.atomic.PendingFile`).

Each piece starts with a key frame, so the joined stream decodes as the pieces do; a lossless
encoding therefore decodes to exactly the frames written, and a lossy one differs from a video
encoded in one go only where the encoder restarted (one key frame per piece).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av

from ..errors import UserError
from .atomic import PathLike, PendingFile, make_parent_folder
from .video_reader import open_container
from .video_writer import _SideStreams, copy_tags_and_chapters

__all__ = ["join_videos"]


def _open_pieces(pieces: Sequence[Path]) -> list[av.container.InputContainer]:
    opened = []
    try:
        for piece in pieces:
            container = open_container(piece)
            if not container.streams.video:
                raise UserError(f"no video stream in the piece {piece}")
            opened.append(container)
    except BaseException:
        for container in opened:
            container.close()
        raise
    return opened


def _check_same_encoding(pieces: Sequence[Path], containers: list) -> None:
    """UserError unless every piece's video has the first piece's codec, size, pixel format
    and codec headers (extradata): only then do their packets make one stream."""
    def describe(container) -> tuple:
        cc = container.streams.video[0].codec_context
        return cc.name, cc.width, cc.height, cc.format.name if cc.format else None, \
            bytes(cc.extradata or b"")

    first = describe(containers[0])
    for piece, container in zip(pieces[1:], containers[1:], strict=True):
        if describe(container) != first:
            raise UserError(f"the piece {piece} was encoded differently from {pieces[0]}; "
                            "they cannot be joined (remove the pieces to start again)")


def join_videos(pieces: Sequence[PathLike], path: PathLike, *, fps: Fraction | int | float,
                starts: Sequence[Fraction] | None = None, rotation: int = 0,
                streams_from: PathLike | None = None, record: str | None = None) -> int:
    """Join the video ``pieces`` (in order) into one video at ``path``; returns its frames.

    Args:
        pieces: videos of the same encoding whose timestamps (one time base) follow each other.
        fps: the nominal frame rate, by which the last frame's duration is known (other streams
            are cut where the video ends, as :class:`~flowdeblur.media.VideoWriter` cuts them).
        starts: the time in seconds of each piece's first frame. A container may store a
            video that does not start at 0 with its start rounded (an MP4 edit list counts in
            milliseconds); each piece's packets are shifted so that its first frame is at its
            start, in the time base of the container. None: the pieces' own times.
        rotation: counter-clockwise display rotation to record.
        streams_from: a media file whose other streams, tags and chapters are copied, as the
            ``streams_from`` argument of :class:`~flowdeblur.media.VideoWriter`.
        record: the ``comment`` tag (``ownership.record_text``).
    """
    pieces = [Path(p) for p in pieces]
    if not pieces:
        raise UserError(f"no pieces to join into {path}")
    path = Path(path)
    make_parent_folder(path)
    containers = _open_pieces(pieces)
    pending = out = side = None
    try:
        _check_same_encoding(pieces, containers)
        pending = PendingFile(path, suffix=path.suffix)
        out = av.open(str(pending.path), "w")
        video = out.add_stream_from_template(containers[0].streams.video[0])
        if rotation % 360:
            video.set_display_rotation(float(rotation))
        if streams_from is not None:
            copy_tags_and_chapters(Path(streams_from), out, video)
        if record is not None:
            out.metadata["comment"] = record
        if streams_from is not None:
            side = _SideStreams.attach(Path(streams_from), out, audio_only=False)
        frames, last_pts, time_base = _copy_video(containers, starts, out, video, side)
        if side is not None and last_pts is not None:
            step = max(1, round(1 / (Fraction(fps) * time_base)))
            side.mux_until(out, float((last_pts + step) * time_base), final=True)
        out.close()
        out = None
        pending.commit()
        return frames
    except av.error.FFmpegError as e:
        raise UserError(f"cannot write video {path}: {e}") from e
    except OSError as e:
        raise UserError(f"cannot write video {path}: {e.strerror or e}") from e
    finally:
        for resource in (out, side, *containers):
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # noqa: BLE001 - closing what failed or was finished
                    pass
        if pending is not None and pending.path.exists():
            pending.discard()


def _first_pts(container) -> int | None:
    """The smallest pts of the video packets of ``container`` (demuxed, not decoded)."""
    stream = container.streams.video[0]
    found = [p.pts for p in container.demux(stream) if p.size and p.pts is not None]
    container.seek(0)
    return min(found) if found else None


def _copy_video(containers: list, starts: Sequence[Fraction] | None, out, video,
                side) -> tuple[int, int | None, Fraction]:
    """Mux every video packet of ``containers`` into ``video``, the other streams interleaved;
    returns (frames, last pts, the time base of the pts)."""
    frames, last_pts, last_dts = 0, None, None
    time_base = Fraction(1, 1)
    for number, container in enumerate(containers):
        stream = container.streams.video[0]
        time_base = Fraction(stream.time_base)
        shift = 0
        if starts is not None:
            first = _first_pts(container)
            if first is not None:
                shift = round(Fraction(starts[number]) / time_base) - first
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is not None:
                packet.pts += shift
                last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
            dts = packet.dts + shift if packet.dts is not None else packet.pts
            if last_dts is not None and dts is not None and dts <= last_dts:
                # A piece's first packets may be decoded ahead of their display time; keep the
                # decoding times increasing across the join.
                dts = last_dts + 1
            packet.dts = last_dts = dts
            packet.stream = video
            if side is not None and dts is not None:
                side.mux_until(out, float(dts * time_base))
            out.mux(packet)
            frames += 1
    return frames, last_pts, time_base
