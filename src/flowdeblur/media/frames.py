"""One input type for the whole package: a video file, a folder of images, or a list of image
files, read as one stream of (3, H, W) float32 frames in [0, 1]."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import UserError
from .atomic import PathLike
from .images import IMAGE_EXTENSIONS, is_image_path, list_images, read_image
from .video_reader import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoReader,
    count_video_packets,
    is_video_path,
    shortfall_warning,
)

#: Said when a video's frames are interlaced: the network takes each woven frame as one picture,
#: so the combing of moving edges looks like blur it cannot remove.
INTERLACED_WARNING = (
    "{path} is interlaced; its frames are deblurred as decoded (both fields woven together), "
    "which leaves combing on moving edges: deinterlace it first (e.g. ffmpeg -vf bwdif) for "
    "better results")


class SourceFrame(NamedTuple):
    """One frame of a :class:`FrameSource` with where it came from."""

    index: int  #: position in the stream, from 0
    name: str | None  #: the image's file name (outputs reuse it); None for a video frame
    image: torch.Tensor  #: (3, H, W) float32 RGB in [0, 1]
    pts: int | None  #: the video's pts in ``info.time_base`` units; None for images


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
    :meth:`iterate_with_pts` yields :class:`SourceFrame`, which adds the video pts.

    Raises (at construction):
        UserError: missing path, empty folder, unsupported extension, unreadable first frame,
            two list entries with the same file name (their outputs would collide).
        While iterating, UserError for an unreadable image or one whose size differs from the
        first frame's (naming the file).
    """

    def __init__(self, inputs: PathLike | Sequence[PathLike]):
        if isinstance(inputs, (str, os.PathLike)):
            items = [Path(inputs)]
        else:
            items = [Path(p) for p in inputs]
            if not items:
                raise UserError("no input given")
        self.info: VideoInfo | None = None
        self.names: list[str] | None = None
        self.paths: list[Path] | None = None
        self._num_frames: int | None = None

        first = items[0]
        if len(items) == 1 and first.is_dir():
            files = list_images(first)
            if not files:
                raise UserError(
                    f"no image files in folder {first} (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
            self._init_images(files)
        elif len(items) == 1 and is_video_path(first):
            self._init_video(first)
        else:
            for p in items:
                _check_listed_image(p)
            self._init_images(items)

    def _init_video(self, path: Path) -> None:
        self.kind = "video"
        self._path = path
        with VideoReader(path) as reader:
            self.info = reader.info
        self.height, self.width = self.info.height, self.info.width
        if self.info.interlaced:
            warnings.warn(INTERLACED_WARNING.format(path=path), UserWarning, stacklevel=3)

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
                self._num_frames = count_video_packets(self._path)
        return self._num_frames

    def iterate_with_pts(self, start: int = 0) -> Iterator[SourceFrame]:
        """Yield ``SourceFrame(index, name or None, image (3, H, W) float32, pts or None)``,
        from frame ``start`` (a video's earlier frames are decoded, not converted)."""
        if self.kind == "video":
            decoded = start
            with VideoReader(self._path) as reader:
                for timed in reader.iterate_with_pts(start):
                    yield SourceFrame(decoded, None, timed.image, timed.pts)
                    decoded += 1
            message = shortfall_warning(self._path, self.info, decoded)
            if message is not None:
                warnings.warn(message, UserWarning, stacklevel=2)
            return
        for i, (path, name) in enumerate(zip(self.paths, self.names, strict=True)):
            if i < start:
                continue
            frame = read_image(path)
            if (frame.shape[1], frame.shape[2]) != (self.height, self.width):
                raise UserError(
                    f"frame size mismatch: {path} is {frame.shape[2]}x{frame.shape[1]} but "
                    f"{self.paths[0].name} is {self.width}x{self.height} (all frames must match)"
                )
            yield SourceFrame(i, name, frame, None)

    def __iter__(self) -> Iterator[tuple[int, str | None, torch.Tensor]]:
        for frame in self.iterate_with_pts():
            yield frame.index, frame.name, frame.image

    @property
    def fps(self) -> Fraction | None:
        """The video's frame rate, None for images."""
        return self.info.fps if self.info is not None else None

    def __repr__(self) -> str:
        where = self._path if self.kind == "video" else f"{len(self.paths)} images"
        return f"FrameSource({self.kind}: {where}, {self.width}x{self.height})"


def _check_listed_image(path: Path) -> None:
    """UserError unless ``path``, an entry of a list of inputs, is an existing image file."""
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        raise UserError(f"expected image files in the list, got a folder: {path}")
    if is_video_path(path):
        raise UserError(f"a list of inputs must be image files, got the video {path}")
    if not is_image_path(path):
        raise UserError(
            f"unsupported input {path}: expected a video "
            f"({', '.join(VIDEO_EXTENSIONS)}), a folder of images, or images "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
