"""Which files and folders flowdeblur wrote, so that ``--overwrite`` replaces only those.

An output carries a record of its writer, and only an output with that record may be
replaced; a file without one is the user's, whatever its name:

- a video: the container tag ``comment`` = :data:`OUTPUT_TAG` (MP4, MOV, MKV, WebM, AVI and
  the other containers whose muxer stores a comment; GIF stores none);
- a PNG: a ``tEXt`` chunk ``Software`` = :data:`OUTPUT_TAG`; a JPEG: a comment segment holding
  it. TIFF, BMP and WebP outputs carry no record, so they are never replaced;
- a folder: the marker file :data:`MARKER`, a JSON object that lists the files written in it.
  A folder is ours only while it holds exactly the marker and those files: a file the user
  added to it, or a subfolder, makes it the user's again.

The record may carry a provenance (:func:`record_text`): a JSON object after the tag, or
under ``provenance`` in a folder's marker, saying what made the output (flowdeblur's version,
the input's size and digest, the weights' digest, the options that change the pixels), so that
``--resume`` can tell an output that is complete and current from one to redo. One record
serves both: ownership is its tag, resume compares its provenance (:func:`read_provenance`).

The records are read by parsing the file's structure (container metadata, PNG chunks, JPEG
segments), never by running anything in it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import av

from .atomic import PathLike

#: The text that marks a file as an output of ``flowdeblur deblur``.
OUTPUT_TAG = "written by flowdeblur deblur"

#: The file that marks a folder as an output of ``flowdeblur deblur`` and lists its files.
MARKER = ".flowdeblur-output.json"

#: Extensions whose files can carry :data:`OUTPUT_TAG` when written as one image.
TAGGED_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEYWORD = b"Software"
#: Bytes read at most while looking for a record: a record sits near the start of a file.
_SCAN_LIMIT = 1 << 20


# ----------------------------------------------------------------------------- records


def record_text(provenance: dict | None = None) -> str:
    """The text of an output's record: :data:`OUTPUT_TAG`, then the ``provenance`` (a JSON
    object, ASCII only, keys sorted) if given."""
    if provenance is None:
        return OUTPUT_TAG
    return f"{OUTPUT_TAG} {json.dumps(provenance, sort_keys=True, separators=(',', ':'))}"


def parse_record(text: str | bytes | None) -> tuple[bool, dict | None]:
    """(whether ``text`` is a record of ours, its provenance or None) for the text
    :func:`record_text` makes; a tag followed by anything but a JSON object is not ours."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if text == OUTPUT_TAG:
        return True, None
    if text is None or not text.startswith(OUTPUT_TAG + " {"):
        return False, None
    try:
        provenance = json.loads(text[len(OUTPUT_TAG) + 1:])
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(provenance, dict):
        return False, None
    return True, provenance


# ----------------------------------------------------------------------------- files


def tag_image_file(path: PathLike, provenance: dict | None = None) -> bool:
    """Add the record (:func:`record_text`) to the PNG or JPEG file at ``path`` (rewritten in
    place: call it on a temporary file before it is published). Returns False for other
    formats."""
    path = Path(path)
    data = path.read_bytes()
    text = record_text(provenance).encode("latin-1")
    if data.startswith(_PNG_SIGNATURE):
        tagged = _png_with_text(data, _PNG_KEYWORD, text)
    elif data.startswith(b"\xff\xd8"):
        tagged = _jpeg_with_comment(data, text)
    else:
        return False
    path.write_bytes(tagged)
    return True


def _file_record(path: Path) -> tuple[bool, dict | None]:
    """:func:`parse_record` of the record a file carries; (False, None) for a file that
    cannot be read or parsed, or carries none."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SCAN_LIMIT)
    except OSError:
        return False, None
    if head.startswith(_PNG_SIGNATURE):
        return parse_record(_png_text(head, _PNG_KEYWORD))
    if head.startswith(b"\xff\xd8"):
        found = [parse_record(c) for c in _jpeg_comments(head)]
        return next((r for r in found if r[0]), (False, None))
    return parse_record(_video_comment(path))


def file_written_by_us(path: PathLike) -> bool:
    """Whether the file at ``path`` carries our record (see the module docstring).

    Any file that cannot be read or parsed counts as not ours.
    """
    return _file_record(Path(path))[0]


def read_provenance(path: PathLike) -> dict | None:
    """The provenance in the record of the output at ``path``: a file's tag, or a folder's
    marker while the folder holds exactly the files it lists. None when there is none, or the
    output is not wholly ours."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_dir():
        record = _folder_record(path)
        if record is None or foreign_entries(path) != [] or not all(
                (path / name).is_file() for name in record["files"]):
            return None
        provenance = record.get("provenance")
        return provenance if isinstance(provenance, dict) else None
    return _file_record(path)[1]


def _video_comment(path: Path) -> str | None:
    try:
        with av.open(str(path)) as container:
            tags = {k.lower(): v for k, v in container.metadata.items()}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    return tags.get("comment")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + \
        struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_chunks(data: bytes) -> Iterable[tuple[bytes, bytes, int]]:
    """(kind, body, end offset) of each whole chunk of PNG bytes ``data``."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return
        yield kind, data[pos + 8:pos + 8 + length], end
        if kind == b"IEND":
            return
        pos = end


def _png_with_text(data: bytes, keyword: bytes, text: bytes) -> bytes:
    """PNG bytes with a ``tEXt`` chunk inserted after IHDR (the first chunk)."""
    first = next(iter(_png_chunks(data)), None)
    if first is None or first[0] != b"IHDR":
        raise ValueError("not a PNG file: no IHDR chunk")
    after_ihdr = first[2]
    return data[:after_ihdr] + _png_chunk(b"tEXt", keyword + b"\0" + text) + data[after_ihdr:]


def _png_text(data: bytes, keyword: bytes) -> bytes | None:
    for kind, body, _ in _png_chunks(data):
        if kind == b"tEXt" and body.split(b"\0", 1)[0] == keyword:
            return body.split(b"\0", 1)[1] if b"\0" in body else b""
        if kind == b"IDAT":  # text chunks that matter come before the image data
            return None
    return None


def _jpeg_with_comment(data: bytes, text: bytes) -> bytes:
    """JPEG bytes with a COM segment right after the SOI marker."""
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]


def _jpeg_comments(data: bytes) -> list[bytes]:
    """The COM segments' contents before the first scan of JPEG bytes ``data``."""
    comments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: no more header segments
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xFE:
            comments.append(data[pos + 4:pos + 2 + length])
        pos += 2 + length
    return comments


# ----------------------------------------------------------------------------- folders


def write_folder_marker(folder: PathLike, files: Iterable[str],
                        provenance: dict | None = None) -> None:
    """Write :data:`MARKER` in ``folder`` (a temporary folder about to be published), listing
    ``files``, the names written in it, and the ``provenance`` if given."""
    record = {"written_by": "flowdeblur deblur", "files": sorted(files)}
    if provenance is not None:
        record["provenance"] = provenance
    (Path(folder) / MARKER).write_text(json.dumps(record, sort_keys=True) + "\n")


def _folder_record(folder: Path) -> dict | None:
    """The marker's JSON object when it has a list of file names, else None."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        listed = record["files"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        return None
    return record


def foreign_entries(folder: PathLike) -> list[str] | None:
    """The entries of ``folder`` that its :data:`MARKER` does not list (the marker itself
    aside): ``[]`` for a folder that is wholly an output of ours. None when the folder has no
    readable marker with a file list (then nothing in it is known to be ours)."""
    folder = Path(folder)
    record = _folder_record(folder)
    if record is None:
        return None
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    listed = set(record["files"])
    return sorted(e.name for e in entries if e.name != MARKER and (
        e.name not in listed or e.is_symlink() or not e.is_file()))
