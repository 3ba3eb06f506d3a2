"""Where deblurred frames go: a video, a folder of images or one image, all behind one interface.

Every :class:`Output` is written under a hidden temporary name beside its target (made by
:mod:`flowdeblur.media.atomic`) and appears under its real name only when published, so a
failure or an interrupt at any frame leaves nothing behind::

    with open_output(path, source, ...) as out:   # open()
        out.write(index, image, pts=pts)          # once per frame, in order
    # a clean exit publishes, an exception aborts

Every output carries a record of its writer (:mod:`flowdeblur.media.ownership`: a tag in a video
or a PNG/JPEG, a marker file listing a folder's files), so that ``--overwrite`` can tell a
previous output of ours, which it replaces whole, from anything else, which it never touches.
An input is never replaced, nor a folder that holds one.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import OptionError, UserError
from ..media import (
    ALPHA_EXTENSIONS,
    FrameSource,
    VideoWriter,
    choose_encoding,
    is_image_path,
    is_video_path,
    read_alpha,
    write_image,
)
from ..media.atomic import PendingFile, replace_path, temp_dir_beside
from ..media.ownership import (
    MARKER,
    TAGGED_IMAGE_EXTENSIONS,
    file_written_by_us,
    foreign_entries,
    record_text,
    tag_image_file,
    write_folder_marker,
)
from ..media.video_writer import DEFAULT_CHROMA

PathLike = str | os.PathLike

__all__ = ["MARKER", "Output", "check_destinations", "open_output"]


class Output:
    """An output being written: :meth:`open`, :meth:`write` each frame, then :meth:`publish`
    (or :meth:`abort` to leave nothing). As a context manager it opens on entry and publishes
    on a clean exit, aborts on an exception (and if publishing itself fails).

    kind: "video", "images" (a folder of PNGs) or "image" (one file).
    names: the file name of each frame's picture (for frames past the list: 000123.png).
    notes: caveats met while writing (e.g. a padded size), for the user.
    upright: whether :meth:`write` takes pictures turned for display (a rotated video's
        frames as a player shows them); False for a video that stores the frames as decoded
        and records the rotation for players.
    """

    kind = ""
    upright = True

    def __init__(self, path: PathLike, names: Sequence[str]) -> None:
        self.path = Path(path)
        self.names = list(names)
        self.notes: list[str] = []
        #: Whether a previous output of ours at :attr:`path` may be replaced (``--overwrite``).
        self.replace_ours = False
        #: How messages name :attr:`path` ("OUTPUT", "--save-flow folder").
        self.what = "OUTPUT"
        #: The input image of each frame, whose alpha channel (if any) the picture keeps;
        #: None when the frames carry no alpha to keep.
        self.alpha_paths: list[Path] | None = None
        #: What made this output, stored in its record for ``--resume``
        #: (:func:`~flowdeblur.media.ownership.record_text`); None: the bare tag.
        self.provenance: dict | None = None

    def open(self) -> None:
        """Create the temporary output beside :attr:`path`."""
        raise NotImplementedError

    def write(self, index: int, image: torch.Tensor, *, pts: int | None = None) -> None:
        """Write frame ``index``'s (3, H, W) image in [0, 1]; ``pts``: its source timestamp."""
        raise NotImplementedError

    def publish(self) -> None:
        """Put the finished output in place under :attr:`path`."""
        raise NotImplementedError

    def abort(self) -> None:
        """Remove the temporary output; :attr:`path` is left as it was."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else f"{index:06d}.png"

    def alpha(self, index: int) -> np.ndarray | None:
        """The alpha channel of input frame ``index``, to store unchanged beside its
        deblurred colours; None when it has none or this output keeps none."""
        if self.alpha_paths is None or index >= len(self.alpha_paths):
            return None
        return read_alpha(self.alpha_paths[index])

    def __enter__(self) -> Output:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            # Checked again at the end: another program may have written there meanwhile
            # (flowdeblur's own writers are kept out by the TargetLock held around the run).
            check_free(self.path, self.replace_ours, self.what, folder=self.kind == "images",
                       meanwhile=True)
            self.publish()
        except BaseException:
            self.abort()
            raise


class VideoOutput(Output):
    """A video keeping a video source's timestamps, depth, colour tags, other streams (audio,
    subtitles, timecode), metadata tags and chapters (:func:`~flowdeblur.media.choose_encoding`:
    H.264 10-bit 4:4:4 (or 8-bit 4:2:0) for 8-bit, HEVC Main 10/12 for deeper sources or
    H.264 High 10 with ``video_codec="h264"``, FFV1 or libx264rgb when ``lossless``); frames
    from images get ``fps`` (default 30).

    ``upright`` False: frames of ``source``'s size as decoded, the source's display rotation
    recorded for players. True: pictures of ``width`` x ``height`` already turned for display
    (e.g. input | output side by side, which only reads as such upright), no rotation recorded.
    """

    kind = "video"

    def __init__(self, path: PathLike, source: FrameSource, *, width: int, height: int,
                 upright: bool, crf: int | None, lossless: bool, fps: float | None,
                 audio_from: PathLike | None, video_codec: str | None = None,
                 chroma: str = DEFAULT_CHROMA) -> None:
        super().__init__(path, output_names(source, len(source)))
        self.upright = upright
        info = source.info
        self._codec, self._encoding_notes = choose_encoding(
            self.path, info, crf=crf, lossless=lossless, codec=video_codec, chroma=chroma)
        self._video = {
            "fps": info.fps if info is not None else (fps or 30),
            "width": width,
            "height": height,
            "rotation": info.rotation if info is not None and not upright else 0,
            "streams_from": audio_from if info is not None else None,
            "time_base": info.time_base if info is not None else None,
        }
        self._writer: VideoWriter | None = None
        self._last_pts: int | None = None
        self._keep_pts = True

    def open(self) -> None:
        self._writer = VideoWriter(self.path, **self._video, **self._codec,
                                   record=record_text(self.provenance))
        for note in self._encoding_notes:
            self.notes.append(note)
            warnings.warn(note, UserWarning, stacklevel=2)
        if self._writer.padded:
            self.notes.append(
                f"padded {self._writer.width}x{self._writer.height} to "
                f"{self._writer.output_width}x{self._writer.output_height} by one replicated "
                f"pixel ({self._writer.codec} {self._writer.pix_fmt} needs even sizes); "
                "--chroma 444 or --lossless keep the exact size"
            )
            warnings.warn(self.notes[-1], UserWarning, stacklevel=2)

    def write(self, index: int, image: torch.Tensor, *, pts: int | None = None) -> None:
        # Keep the source's timestamps; once one is missing or out of order, let the writer
        # space the remaining frames by the nominal frame duration.
        self._keep_pts = self._keep_pts and pts is not None and (
            self._last_pts is None or pts > self._last_pts)
        self._writer.write(image, pts=pts if self._keep_pts else None)
        self._last_pts = pts

    def publish(self) -> None:
        self._writer.close()  # flushes the encoder, adds the audio, renames into place

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


class FolderOutput(Output):
    """A folder of PNGs (``bits`` 8 or 16), one per frame, named by ``names``, with the
    :data:`MARKER` file; published whole in place of whatever ``path`` held (the checks before
    the work, :func:`check_destinations`, allow only an empty folder or an output of ours)."""

    kind = "images"

    def __init__(self, path: PathLike, names: Sequence[str], *, bits: int = 8) -> None:
        super().__init__(path, names)
        self.bits = bits
        self._tmp: Path | None = None
        self._written: list[str] = []

    def open(self) -> None:
        try:
            self._tmp = temp_dir_beside(self.path)
        except OSError as e:
            raise UserError(f"cannot write beside {self.path}: {e.strerror or e}") from None

    def write(self, index: int, image: torch.Tensor, *, pts: int | None = None) -> None:
        name = self.name(index)
        _write_picture(self._tmp / name, image, bits=self.bits, output=self.path,
                       alpha=self.alpha(index))
        self._written.append(name)

    def publish(self) -> None:
        try:
            write_folder_marker(self._tmp, self._written, self.provenance)
        except OSError as e:
            raise UserError(f"cannot write OUTPUT {self.path}: {e.strerror or e}") from None
        replace_path(self._tmp, self.path)

    def abort(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


class ImageOutput(Output):
    """One image file (format by extension) for a one-frame input."""

    kind = "image"

    def __init__(self, path: PathLike, *, bits: int = 8) -> None:
        super().__init__(path, [Path(path).name])
        self.bits = bits
        self._file: PendingFile | None = None

    def open(self) -> None:
        try:
            self._file = PendingFile(self.path, suffix=self.path.suffix)
        except OSError as e:
            raise UserError(f"cannot write beside {self.path}: {e.strerror or e}") from None

    def write(self, index: int, image: torch.Tensor, *, pts: int | None = None) -> None:
        _write_picture(self._file.path, image, bits=self.bits, output=self.path,
                       alpha=self.alpha(index))
        if self.path.suffix.lower() in TAGGED_IMAGE_EXTENSIONS:
            tag_image_file(self._file.path, self.provenance)

    def publish(self) -> None:
        if self.path.is_dir():
            raise UserError(f"OUTPUT {self.path} is a folder, not an image file")
        self._file.commit()

    def abort(self) -> None:
        if self._file is not None:
            self._file.discard()


def _write_picture(path: Path, image: torch.Tensor, *, bits: int, output: Path,
                   alpha: np.ndarray | None) -> None:
    """:func:`~flowdeblur.media.write_image` into a temporary output, its errors naming the
    output the user asked for rather than the hidden temporary."""
    try:
        write_image(path, image, bits=bits, alpha=alpha)
    except UserError as e:
        reason = getattr(e.__cause__, "strerror", None) or e
        raise UserError(f"cannot write OUTPUT {output}: {reason}") from e


def open_output(path: PathLike, source: FrameSource, *, audio_from: PathLike | None = None,
                crf: int | None = None, lossless: bool = False, fps: float | None = None,
                bits: int = 8, side_by_side: bool = False, overwrite: bool = False,
                video_codec: str | None = None, chroma: str = DEFAULT_CHROMA,
                provenance: dict | None = None) -> Output:
    """The :class:`Output` that ``path``'s name asks for: a video extension -> video, an image
    extension -> one image (UserError unless ``source`` has one frame), else a folder.

    ``side_by_side``: frames will be input | output, twice as wide, upright. ``overwrite``: a
    previous output of ours at ``path`` may be replaced on publishing (checked again then).
    ``video_codec``: "h264" stores a 10/12-bit video as H.264 High 10 instead of HEVC.
    ``chroma``: "444" or "420", the chroma of an 8-bit H.264 output (see
    :func:`~flowdeblur.media.choose_encoding`). ``provenance``: stored in the output's record.
    Nothing is written until the output is opened.
    """
    output = _output_for(Path(path), source, audio_from=audio_from, crf=crf, lossless=lossless,
                         fps=fps, bits=bits, side_by_side=side_by_side, video_codec=video_codec,
                         chroma=chroma)
    output.replace_ours = overwrite
    output.provenance = provenance
    _keep_alpha(output, source, side_by_side)
    return output


def _keep_alpha(output: Output, source: FrameSource, side_by_side: bool) -> None:
    """Let ``output`` pass the input images' alpha channels through (PNG folders, and single
    PNG, TIFF or WebP images), or warn once that the first input frame's alpha is dropped
    where the output cannot hold it (videos, JPEG and BMP, side-by-side pictures)."""
    if source.paths is None or read_alpha(source.paths[0]) is None:
        return
    holds = not side_by_side and (output.kind == "images" or (
        output.kind == "image" and output.path.suffix.lower() in ALPHA_EXTENSIONS))
    if holds:
        output.alpha_paths = list(source.paths)
        return
    where = "a side-by-side picture" if side_by_side else (
        "a video" if output.kind == "video" else f"a {output.path.suffix} file")
    warnings.warn(f"the input frames have an alpha channel, which {where} cannot hold: it is "
                  "dropped (PNG, TIFF and WebP outputs keep it)", UserWarning, stacklevel=3)


def _output_for(path: Path, source: FrameSource, *, audio_from: PathLike | None,
                crf: int | None, lossless: bool, fps: float | None, bits: int, side_by_side: bool,
                video_codec: str | None, chroma: str) -> Output:
    if is_video_path(path):
        if not side_by_side:  # the frames as decoded, rotated by the player
            return VideoOutput(path, source, width=source.width, height=source.height,
                               upright=False, crf=crf, lossless=lossless, fps=fps,
                               audio_from=audio_from, video_codec=video_codec, chroma=chroma)
        height, width = display_size(source)
        return VideoOutput(path, source, width=2 * width, height=height, upright=True, crf=crf,
                           lossless=lossless, fps=fps, audio_from=audio_from,
                           video_codec=video_codec, chroma=chroma)
    if not is_image_path(path):
        return FolderOutput(path, output_names(source, len(source)), bits=bits)
    if len(source) != 1:
        raise UserError(
            f"OUTPUT {path} names one image but the input has {len(source)} frames; give a "
            "folder or a video name (.mp4, .mkv, ...)"
        )
    return ImageOutput(path, bits=bits)


def output_kind(path: PathLike) -> str:
    """The :attr:`Output.kind` that ``path``'s name asks for (see :func:`open_output`)."""
    return "video" if is_video_path(path) else "image" if is_image_path(path) else "images"


def display_rotation(source: FrameSource) -> int:
    """Counter-clockwise degrees a player turns ``source``'s frames by (0 for images)."""
    return source.info.rotation if source.info is not None else 0


def display_size(source: FrameSource) -> tuple[int, int]:
    """(height, width) of ``source``'s frames as displayed."""
    if display_rotation(source) % 180 == 90:
        return source.width, source.height
    return source.height, source.width


def output_names(source: FrameSource, count: int) -> list[str]:
    """PNG names for the outputs: the input's stem for image frames, a number for video."""
    if source.names is None:
        return [f"{i:06d}.png" for i in range(count)]
    stems = [Path(n).stem for n in source.names]
    if len(set(stems)) == len(stems):
        return [s + ".png" for s in stems]
    # 'a.jpg' and 'a.png' side by side: keep the full name so outputs do not collide.
    return [n + ".png" for n in source.names]


# ----------------------------------------------------------------------------- checks


def _resolved(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_path(output: PathLike, inputs: Sequence[PathLike], what: str = "OUTPUT") -> None:
    """UserError if writing ``output`` could touch an input: the same path, a path inside an
    input folder, a folder that holds input frames (the PNGs could replace them), or a folder
    an input lies in (replacing it would delete the input)."""
    out = _resolved(output)
    for given in inputs:
        src = _resolved(given)
        if out == src:
            raise UserError(f"{what} {output} is the input {given}; choose another name")
        if src.is_dir() and _is_within(out, src):
            raise UserError(
                f"{what} {output} is inside the input folder {given}; choose a path outside it"
            )
        if src.is_file() and out == src.parent:
            raise UserError(
                f"{what} {output} is the folder that holds the input {given}; its frames could "
                "be overwritten: choose another folder"
            )
        if _is_within(src, out):
            raise UserError(
                f"the input {given} lies inside {what} {output}, which the output would "
                "replace; move the input out or choose another name"
            )


def check_free(path: Path, overwrite: bool, what: str, *, folder: bool,
               meanwhile: bool = False) -> None:
    """UserError unless an output (a folder of pictures if ``folder``, else one file) may be
    written at ``path``: nothing there, an empty folder (folder outputs), or, with
    ``overwrite``, a previous output of ours of the same kind (a tagged file; a folder holding
    only what its marker lists). ``meanwhile``: the check made on publishing, after the work;
    the message then says that the place was written during the run."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        raise UserError(f"{what} {path} is a symbolic link; give the path it points to")
    if folder:
        _check_folder_free(path, what)
        if not any(path.iterdir()):
            return
    elif path.is_dir():
        raise UserError(f"{what} {path} is a folder; choose a file name")
    elif overwrite and not file_written_by_us(path):
        raise UserError(
            f"{what} {path} exists and is not an output of flowdeblur (it carries no "
            "flowdeblur tag), so it is never replaced; choose another name or remove it "
            "yourself")
    if meanwhile and not overwrite:
        raise UserError(f"{what} {path} was created by another program while deblurring; it "
                        "is left as it is and the result is not written")
    if not overwrite:
        raise OptionError("overwrite", f"{what} {path} already exists; pass {{option}} to replace "
                          "it", python="overwrite=True")


def _check_folder_free(path: Path, what: str) -> None:
    """UserError unless the folder ``path`` is empty or wholly a previous output of ours."""
    if not path.is_dir():
        raise UserError(f"{what} {path} is a file; a folder of pictures goes there (a "
                        "video or image output needs a name with its extension)")
    if not any(path.iterdir()):
        return
    foreign = foreign_entries(path)
    if foreign is None:
        raise UserError(f"{what} {path} is a folder that flowdeblur did not write (no "
                        f"{MARKER} listing its files); choose another name, or empty it "
                        "yourself")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise UserError(f"{what} {path} holds files flowdeblur did not write ({shown}); it "
                        "is never replaced: move them out or choose another name")


def check_destinations(output: Path, flow_dir: Path | None, inputs: Sequence[PathLike], *,
                       overwrite: bool) -> None:
    """All the checks on OUTPUT and the --save-flow folder, before anything is read."""
    check_output_path(output, inputs)
    if flow_dir is not None:
        check_output_path(flow_dir, inputs, what="--save-flow folder")
        if _resolved(flow_dir) == _resolved(output):
            raise UserError(f"--save-flow folder {flow_dir} is OUTPUT; choose another folder")
    check_free(output, overwrite, "OUTPUT",
               folder=not is_video_path(output) and not is_image_path(output))
    if flow_dir is not None:
        check_free(flow_dir, overwrite, "--save-flow folder", folder=True)
