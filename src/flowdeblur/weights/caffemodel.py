"""Reading a binary Caffe model (``.caffemodel``, a ``NetParameter`` protobuf) in bounded memory.

The file is never read whole. Its top-level fields are walked with protobuf's varint decoder;
each layer's description (its fields other than the parameter blobs: a few hundred bytes in a
real file) is parsed with the message classes declared below; a blob's shape is parsed when the
blob is asked for, and its values only after that, once the caller has checked the shape.
Limits on the file's size, the number of layers, fields and blobs, and the size of a layer's
description and of a blob's shape keep what a crafted file can make us allocate to a few tens
of MB: protobuf parsing turns a 3-byte empty layer into a message object of about a hundred
bytes, so parsing a file whole grows memory by tens of bytes per file byte. The authors'
release (the file these limits are sized for) is 33 MB with 104 layers of a few blobs each.

The schema is a subset of caffe.proto (BVLC Caffe, as extended in the authors' repositories):
only the messages and fields read here, declared in Python at run time (no ``protoc``). Field
numbers are those of caffe.proto; every other field of a real file is kept by protobuf as an
unknown field and ignored.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from google.protobuf.internal import decoder, wire_format

from ..errors import UserError
from . import short_repr

#: Largest file read (the release's caffemodel is 33 MB); bigger files are refused unread.
MAX_BYTES = 256 * 2**20
#: Most layers a file may hold (the release's training snapshot: about 100).
MAX_LAYERS = 1000
#: Most fields one layer, one blob, or the file outside its layers may hold (a real layer
#: has about 15, a blob 2 to 5: its values are one packed field).
MAX_FIELDS = 256
#: Most blobs one layer may hold (a convolution has 2, a GateRecurrent layer 3).
MAX_BLOBS = 8
#: Most bytes of a layer's fields other than its blobs (about 150 in the release).
MAX_DESCRIPTION_BYTES = 4096
#: Most bytes of a blob's shape (a 4-D shape takes about 10) and most axes (Caffe's limit).
MAX_SHAPE_BYTES, MAX_AXES = 1024, 32
#: Most values one blob may declare (Caffe counts them in an int).
MAX_VALUES = 2**31 - 1

_OPTIONAL, _REPEATED = 1, 3
_TYPES = {"double": 1, "float": 2, "int64": 3, "int32": 5, "bool": 8, "string": 9,
          "message": 11, "uint32": 13}
_PACKAGE = "flowdeblur_caffe_subset"
_LAYER_FIELD, _V1_LAYER_FIELD, _BLOB_FIELD = 100, 2, 7  # NetParameter.layer, .layers; .blobs
_BLOB_SHAPE, _BLOB_DATA, _BLOB_DOUBLE_DATA = 7, 5, 8
_BLOB_LEGACY_DIMS = (1, 2, 3, 4)  # num, channels, height, width
_LENGTH = wire_format.WIRETYPE_LENGTH_DELIMITED

#: message -> [(field, number, type, label, default or message name)]. LayerParameter leaves
#: out ``blobs`` (7): they are located by the walk and parsed one at a time as BlobProto.
_MESSAGES: dict[str, list[tuple]] = {
    "BlobShape": [("dim", 1, "int64", _REPEATED, None)],
    "BlobProto": [
        ("shape", 7, "message", _OPTIONAL, "BlobShape"),
        ("data", 5, "float", _REPEATED, None),
        ("double_data", 8, "double", _REPEATED, None),
        # Legacy 4-D dimensions, written by Caffe versions before BlobShape existed.
        ("num", 1, "int32", _OPTIONAL, None),
        ("channels", 2, "int32", _OPTIONAL, None),
        ("height", 3, "int32", _OPTIONAL, None),
        ("width", 4, "int32", _OPTIONAL, None),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, "uint32", _OPTIONAL, None),
        ("bias_term", 2, "bool", _OPTIONAL, "true"),
        ("pad", 3, "uint32", _REPEATED, None),
        ("kernel_size", 4, "uint32", _REPEATED, None),
        ("group", 5, "uint32", _OPTIONAL, "1"),
        ("stride", 6, "uint32", _REPEATED, None),
        ("pad_h", 9, "uint32", _OPTIONAL, None),
        ("pad_w", 10, "uint32", _OPTIONAL, None),
        ("kernel_h", 11, "uint32", _OPTIONAL, None),
        ("kernel_w", 12, "uint32", _OPTIONAL, None),
        ("stride_h", 13, "uint32", _OPTIONAL, None),
        ("stride_w", 14, "uint32", _OPTIONAL, None),
        ("dilation", 18, "uint32", _REPEATED, None),
    ],
    "ReLUParameter": [("negative_slope", 1, "float", _OPTIONAL, "0")],
    "SliceParameter": [
        ("slice_dim", 1, "uint32", _OPTIONAL, "1"),
        ("slice_point", 2, "uint32", _REPEATED, None),
        ("axis", 3, "int32", _OPTIONAL, "1"),
    ],
    "ConcatParameter": [
        ("concat_dim", 1, "uint32", _OPTIONAL, "1"),
        ("axis", 2, "int32", _OPTIONAL, "1"),
    ],
    "GateRecurrentParameter": [
        ("num_output", 1, "uint32", _OPTIONAL, None),
        ("use_bias", 2, "bool", _OPTIONAL, "true"),
        ("use_wx", 3, "bool", _OPTIONAL, "true"),
        ("use_wh", 4, "bool", _OPTIONAL, "true"),
        ("horizontal", 16, "bool", _OPTIONAL, "true"),
        ("reverse", 17, "bool", _OPTIONAL, "false"),
        # An enum in caffe.proto (LINEAR = 0, SIGMOID, RELU, TANH); same varint on the wire.
        ("active", 18, "int32", _OPTIONAL, "0"),
        ("restrict_g", 21, "float", _OPTIONAL, "1"),
    ],
    "LayerParameter": [
        ("name", 1, "string", _OPTIONAL, None),
        ("type", 2, "string", _OPTIONAL, None),
        ("bottom", 3, "string", _REPEATED, None),
        ("top", 4, "string", _REPEATED, None),
        ("concat_param", 104, "message", _OPTIONAL, "ConcatParameter"),
        ("convolution_param", 106, "message", _OPTIONAL, "ConvolutionParameter"),
        ("relu_param", 123, "message", _OPTIONAL, "ReLUParameter"),
        ("slice_param", 126, "message", _OPTIONAL, "SliceParameter"),
        ("gaterecurrent_param", 1017, "message", _OPTIONAL, "GateRecurrentParameter"),
    ],
}


@functools.lru_cache(maxsize=1)
def _message_classes() -> dict[str, type]:
    """The message classes of the subset above by name (built once, in a private pool)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="flowdeblur_caffe_subset.proto", package=_PACKAGE, syntax="proto2"
    )
    for name, fields in _MESSAGES.items():
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, extra in fields:
            f = m.field.add(name=field_name, number=number, type=_TYPES[kind], label=label)
            if kind == "message":
                f.type_name = f".{_PACKAGE}.{extra}"
            elif extra is not None:
                f.default_value = extra
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    classes = {}
    for name in _MESSAGES:
        descriptor = pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")
        if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
            classes[name] = message_factory.GetMessageClass(descriptor)
        else:  # pragma: no cover
            classes[name] = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return classes


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{size:,} bytes"


# ---------------------------------------------------------------------------- the wire format


class _Corrupt(Exception):
    """The bytes are not a valid protobuf message (cut short, or not protobuf at all)."""


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    try:
        return decoder._DecodeVarint(buffer, pos)
    except (IndexError, message.DecodeError):
        raise _Corrupt from None


def _fields(file: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """The fields of the message at bytes [start, end) of ``file``, read one at a time:
    (number, wire type, start of the field, start of its value, end of its value).

    Only a field's tag and length are read; a caller that needs the value reads it.
    """
    pos = start
    while pos < end:
        file.seek(pos)
        head = file.read(min(20, end - pos))  # a tag and a varint: at most 10 bytes each
        tag, at = _varint(head, 0)
        number, wire = wire_format.UnpackTag(tag)
        if wire == wire_format.WIRETYPE_VARINT:
            value_start = pos + at
            value_end = pos + _varint(head, at)[1]
        elif wire == _LENGTH:
            length, after = _varint(head, at)
            value_start = pos + after
            value_end = value_start + length
        elif wire in (wire_format.WIRETYPE_FIXED32, wire_format.WIRETYPE_FIXED64):
            value_start = pos + at
            value_end = value_start + (4 if wire == wire_format.WIRETYPE_FIXED32 else 8)
        else:  # groups: deprecated, never written by Caffe; anything else is not protobuf
            raise _Corrupt
        if number == 0 or value_end > end:
            raise _Corrupt
        yield number, wire, pos, value_start, value_end
        pos = value_end


def _read(file: BinaryIO, start: int, end: int) -> bytes:
    file.seek(start)
    data = file.read(end - start)
    if len(data) != end - start:  # the file shrank while we read it
        raise _Corrupt
    return data


def _parse(kind: str, data: bytes):
    try:
        return _message_classes()[kind].FromString(data)
    except Exception:  # DecodeError, or the C implementation's RuntimeError
        raise _Corrupt from None


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class Blob:
    """One parameter blob of a layer: its shape, and where its values lie in the file."""

    source: CaffeModel
    layer: str  #: the layer's name
    index: int  #: its place among the layer's blobs
    dims: tuple[int, ...]  #: the saved shape (BlobShape, or the legacy num/channels/h/w)
    value_fields: tuple[tuple[int, int], ...]  #: [start, end) of its data/double_data fields

    @property
    def count(self) -> int:
        return math.prod(self.dims)

    def values(self) -> np.ndarray:
        """The blob's values as float32, in its shape. UserError if their number differs."""
        what = f"{self.source.path}: blob {self.index} of layer {short_repr(self.layer)}"
        # Refused before reading: at most 9 bytes a value (an unpacked double) plus the tags.
        size = sum(end - start for start, end in self.value_fields)
        if size > 9 * self.count + 16 * len(self.value_fields):
            raise UserError(f"{what} holds {_mb(size)} of values, more than its shape "
                            f"{self.dims} has room for")
        data = b"".join(self.source._bytes(start, end) for start, end in self.value_fields)
        blob = self.source._message("BlobProto", data)
        values = blob.data if len(blob.data) else blob.double_data
        if len(values) != self.count:
            raise UserError(f"{what} holds {len(values)} values for shape {self.dims}")
        return np.fromiter(values, np.float32, self.count).reshape(self.dims)


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer of the file: its description (the fields other than blobs) and its blobs."""

    source: CaffeModel
    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    params: Any  #: the LayerParameter message (``convolution_param``, ``relu_param``, ...)
    blob_spans: tuple[tuple[int, int], ...]  #: [start, end) of each blob's BlobProto

    @property
    def blob_count(self) -> int:
        return len(self.blob_spans)

    def blob(self, index: int) -> Blob:
        """Blob ``index``'s shape (checked: at most 32 axes, none negative, under 2**31 values)
        and where its values lie; UserError for a malformed one."""
        return self.source._blob(self, index)


@dataclass(eq=False)
class CaffeModel:
    """An open ``.caffemodel``: its layers, in file order. Blobs are read from the file on
    demand, so use it in a ``with`` block (or call :meth:`close`)."""

    path: Path
    file: BinaryIO
    layers: list[Layer] = field(default_factory=list)
    v1_layers: int = 0  #: pre-2015 "V1" layers (field ``layers``): only counted

    def __enter__(self) -> CaffeModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def _bytes(self, start: int, end: int) -> bytes:
        try:
            return _read(self.file, start, end)
        except _Corrupt:
            raise self._corrupt() from None

    def _message(self, kind: str, data: bytes):
        try:
            return _parse(kind, data)
        except _Corrupt:
            raise self._corrupt() from None

    def _corrupt(self) -> UserError:
        return UserError(f"{self.path} cannot be read as a Caffe model: the binary protobuf "
                         "is truncated or corrupt")

    def _blob(self, layer: Layer, index: int) -> Blob:
        start, end = layer.blob_spans[index]
        what = f"{self.path}: blob {index} of layer {short_repr(layer.name)}"
        dims_part, values, n = bytearray(), [], 0
        try:
            for number, _wire, field_start, _, value_end in _fields(self.file, start, end):
                n += 1
                if n > MAX_FIELDS:
                    raise UserError(f"{what} has more than {MAX_FIELDS} fields (values not "
                                    "packed?); not a file Caffe writes")
                if number in (_BLOB_DATA, _BLOB_DOUBLE_DATA):
                    values.append((field_start, value_end))
                elif number == _BLOB_SHAPE or number in _BLOB_LEGACY_DIMS:
                    if len(dims_part) + value_end - field_start > MAX_SHAPE_BYTES:
                        raise UserError(f"{what} has a shape of over {MAX_SHAPE_BYTES} bytes")
                    dims_part += _read(self.file, field_start, value_end)
            blob = _parse("BlobProto", bytes(dims_part))
        except _Corrupt:
            raise self._corrupt() from None
        if blob.HasField("shape"):
            dims = tuple(blob.shape.dim)
        else:  # legacy 4-D blob
            dims = (blob.num, blob.channels, blob.height, blob.width)
        if len(dims) > MAX_AXES:
            raise UserError(f"{what} has {len(dims)} axes; Caffe allows {MAX_AXES}")
        if any(d < 0 for d in dims):
            raise UserError(f"{what} has a negative dimension in its shape {short_repr(dims)}")
        if math.prod(dims) > MAX_VALUES:
            raise UserError(f"{what} has the shape {short_repr(dims)}: more values than a Caffe "
                            "blob can hold")
        return Blob(self, layer.name, index, dims, tuple(values))


def open_caffemodel(path: str | os.PathLike, *, max_bytes: int | None = None) -> CaffeModel:
    """Open a binary Caffe ``NetParameter`` and read its layers' descriptions.

    ``max_bytes``: the largest file accepted (default :data:`MAX_BYTES`).
    Raises:
        UserError: the file is missing, too large, not a caffemodel, corrupt, or beyond one of
            the limits above (the message says which).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"caffemodel not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a .caffemodel file")
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed by the CaffeModel returned)
        size = os.fstat(file.fileno()).st_size
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    model = CaffeModel(path, file)
    try:
        if size > limit:
            raise UserError(f"{path} is {_mb(size)}; caffemodels over {_mb(limit)} are refused "
                            "(the release's is 33 MB)")
        _refuse_other_formats(path, file.read(4096))
        _read_layers(model, size)
    except BaseException:
        model.close()
        raise
    return model


def _read_layers(model: CaffeModel, size: int) -> None:
    """Walk the file's top-level fields and read each layer's description into ``model``."""
    others = 0
    try:
        for number, wire, _, value_start, value_end in _fields(model.file, 0, size):
            if number == _LAYER_FIELD and wire == _LENGTH:
                model.layers.append(_read_layer(model, value_start, value_end))
            elif number == _V1_LAYER_FIELD and wire == _LENGTH:
                model.v1_layers += 1
            else:
                others += 1
            if len(model.layers) + model.v1_layers > MAX_LAYERS:
                raise UserError(f"{model.path} holds more than {MAX_LAYERS} layers; not a "
                                "caffemodel of the authors' release (about 100 layers)")
            if others > MAX_FIELDS:
                raise UserError(f"{model.path} holds more than {MAX_FIELDS} fields besides "
                                "its layers; not a file Caffe writes")
    except _Corrupt:
        raise model._corrupt() from None
    if not model.layers:
        detail = "old-style (V1) Caffe layers" if model.v1_layers else "no Caffe layers"
        raise UserError(f"{model.path} is not a caffemodel of the authors' release ({detail})")


def _read_layer(model: CaffeModel, start: int, end: int) -> Layer:
    """The layer at bytes [start, end): its description parsed, its blobs only located."""
    where = f"{model.path}: layer {len(model.layers) + 1}"
    description, blobs, n = bytearray(), [], 0
    for number, wire, field_start, value_start, value_end in _fields(model.file, start, end):
        n += 1
        if n > MAX_FIELDS:
            raise UserError(f"{where} has more than {MAX_FIELDS} fields; not a file Caffe writes")
        if number == _BLOB_FIELD and wire == _LENGTH:
            blobs.append((value_start, value_end))
            if len(blobs) > MAX_BLOBS:
                raise UserError(f"{where} has more than {MAX_BLOBS} blobs; no layer of the "
                                "release has more than 3")
            continue
        if len(description) + value_end - field_start > MAX_DESCRIPTION_BYTES:
            raise UserError(f"{where} has over {MAX_DESCRIPTION_BYTES} bytes of settings "
                            "besides its blobs; not a file Caffe writes")
        description += _read(model.file, field_start, value_end)
    params = _parse("LayerParameter", bytes(description))
    return Layer(model, params.name, params.type, tuple(params.bottom), tuple(params.top),
                 params, tuple(blobs))


def _refuse_other_formats(path: Path, head: bytes) -> None:
    """Name the usual wrong files (an HDF5 snapshot, a text prototxt, an empty file)."""
    if not head:
        raise UserError(f"{path} is empty, not a caffemodel")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        raise UserError(f"{path} is an HDF5 snapshot; import-release reads the binary .caffemodel")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        raise UserError(f"{path} is a text file (a .prototxt?), not a binary .caffemodel")
