"""Import the authors' trained Caffe model into :class:`~flowdeblur.models.FlowDeblurNet`.

The authors published their network as a MatCaffe release (repository
``zhjwustc/tcsvt21_flow_deblur_matcaffe``; network
``matlab/exp/model/flownets_deblur_test.prototxt``, test scripts ``matlab/exp/test.m`` and
``testall.m``) with a trained ``.caffemodel``: a binary protobuf ``NetParameter``. This
module reads that file with the ``protobuf`` package (the few ``caffe.proto`` messages it needs
are declared below, in Python, at run time: no ``protoc``), checks that it holds the release's
network, and maps every parameter blob onto Table I's parameters. :func:`import_release`
writes the result as a flowdeblur weights file.

How the release's tensors become ours
-------------------------------------
MATLAB stores arrays column-major and MatCaffe hands them to Caffe as they lie in memory, so the
test scripts' ``H x W x C`` frames reach Caffe as ``N x C x W x H`` blobs: every Caffe feature map
is the TRANSPOSE of ours (Caffe's height axis is the image's x, its width axis the image's y).
Hence, for every convolution and deconvolution:

- the two spatial kernel axes are swapped (``weight.swapaxes(-1, -2)``);
- flow channels are swapped: Caffe's flow channel 0 moves along its width axis (the FlowWarp
  layer samples ``image[y + f1, x + f0]`` in blob coordinates), which is the image's y, so
  Caffe's (0, 1) is our (y, x) and our (x, y) is Caffe's (1, 0);
- Caffe's "horizontal" GateRecurrent scan (along its width axis) runs down the image's columns,
  so gate and direction blocks are reordered (see :data:`OUR_DIRECTIONS_AS_CAFFE`);
- concatenations whose parts are in another order than ours have their channels permuted.

Everything else is the same as ours: RGB frames in [0, 1] with no mean (``im2single``), frame t
first, output RGB in [0, 1], LeakyReLU(0.1), tanh gates, linear RNN with ``h[-1] = 0``.

=========================== ========================== ========================================
release layer               our parameter              channel order (ours <- release)
=========================== ========================== ========================================
conv1 .. conv6_1            flownet.conv1 .. conv6_1   unchanged
predict_conv6 .. 2          flownet.flow6 .. flow2     outputs: flow (x, y) <- (1, 0)
upsample_flow6to5 .. 2to1   flownet.up6to5 .. up2to1   inputs and outputs: flow (1, 0)
deconv5 .. deconv1          flownet.deconv6 .. deconv2 unchanged (names offset by one)
conv_rnnw2 / 3 / 4          flownet.rnnw1 / 2 / 3      gates [x1,y1,x2,y2] -> ours [y1,y2,x1,x2]
conv_rnne_1 / 2 / 3         deblurnet.d_conv1 / 2 / 3  inputs: RNN outputs [1,2,3,4] -> [3,4,1,2]
conv_rnne_4, conv_rnne_4_1  d_conv3_2, d_conv3_3       (d_conv3_2's input as above)
conv_rnnd_4 / 3 / 2         d_deconv3 / 2 / 1          inputs [skip, feature] -> [feature, skip]
conv_rnnd_4_1 / 3_1 / 2_1   d_deconv3_1 / 2_1 / 1_1    unchanged
conv_rnnd_1                 d_conv0                    inputs [frame, feature] -> [feature, frame]
rnn{2,3,4}_{1..4}           (no parameters)            3 unused blobs each, skipped (see below)
=========================== ========================== ========================================

The release's RNN layers are of type "GateRecurrent" (its code is in the authors' earlier
repository ``zhjwustc/cvpr18_rnn_deblur_matcaffe``, ``src/caffe/layers/gaterecurrent_layer.*``).
With the flags the release sets (``use_wx``, ``use_wh``, ``use_bias`` false, ``restrict_g`` 1,
``active`` LINEAR) it computes ``h_t = g_t (h_{t-1} - x_t) + x_t``, our Eq. 13, and has no
parameters; yet Caffe still allocates and saves three blobs per layer (W_x, W_h, bias). We check
those flags and skip the blobs. Layers without parameters (Slice, Concat, ReLU, TanH, and the
loss-side Downsample and FlowWarp) carry no blobs; their wiring is checked where it matters.

The release pads frames with ZEROS to a multiple of 64 (720 -> 768 rows) and transposes portrait
frames; :class:`FlowDeblurNet` pads by replicating the border. Evaluate imported weights with
``flowdeblur eval --protocol release`` to reproduce the authors' handling.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from torch import nn

from ..errors import UserError
from ..models import FlowDeblurNet
from . import save_weights

# ----------------------------------------------------------------------------- the schema
#
# A subset of caffe.proto (BVLC Caffe, as extended in the authors' repositories): only the
# messages and fields read here. Field numbers are those of caffe.proto; every other field of a
# real file is kept by protobuf as an unknown field and ignored.

_OPTIONAL, _REPEATED = 1, 3
_TYPES = {"double": 1, "float": 2, "int64": 3, "int32": 5, "bool": 8, "string": 9,
          "message": 11, "uint32": 13}
_PACKAGE = "flowdeblur_caffe_subset"

#: message -> [(field, number, type, label, default or message name)]
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
        ("blobs", 7, "message", _REPEATED, "BlobProto"),
        ("concat_param", 104, "message", _OPTIONAL, "ConcatParameter"),
        ("convolution_param", 106, "message", _OPTIONAL, "ConvolutionParameter"),
        ("relu_param", 123, "message", _OPTIONAL, "ReLUParameter"),
        ("slice_param", 126, "message", _OPTIONAL, "SliceParameter"),
        ("gaterecurrent_param", 1017, "message", _OPTIONAL, "GateRecurrentParameter"),
    ],
    "NetParameter": [
        ("name", 1, "string", _OPTIONAL, None),
        # Pre-2015 "V1" layers: only counted, to say such a file is not the release's.
        ("layers", 2, "message", _REPEATED, "Opaque"),
        ("layer", 100, "message", _REPEATED, "LayerParameter"),
    ],
    "Opaque": [],
}


@functools.lru_cache(maxsize=1)
def _net_parameter_class() -> type:
    """The ``NetParameter`` message class of the subset above (built once, in a private pool)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="flowdeblur_caffe_subset.proto", package=_PACKAGE, syntax="proto2"
    )
    for message, fields in _MESSAGES.items():
        m = proto.message_type.add(name=message)
        for name, number, kind, label, extra in fields:
            f = m.field.add(name=name, number=number, type=_TYPES[kind], label=label)
            if kind == "message":
                f.type_name = f".{_PACKAGE}.{extra}"
            elif extra is not None:
                f.default_value = extra
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName(f"{_PACKAGE}.NetParameter")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # pragma: no cover


# ------------------------------------------------------------------- the release's network
#
# Written from flownets_deblur_test.prototxt. Blob names are Caffe's "top" names.

#: Our scan directions in :func:`flowdeblur.ops.spatial_rnn` block order (left->right,
#: right->left, top->bottom, bottom->top) as the release's GateRecurrent flags
#: (horizontal, reverse). Caffe's width axis is the image's y (see the module docstring), so
#: its horizontal scans run along the image's columns and its vertical scans along the rows.
OUR_DIRECTIONS_AS_CAFFE = ((False, False), (False, True), (True, False), (True, True))

#: RNN scale of the release (suffix of rnnN_*, conv_rnnwN) -> (channels C, RNN input blob).
_RNN_SCALES = {2: (24, "conv_rnne_1"), 3: (48, "conv_rnne_2"), 4: (96, "conv_rnne_3")}

#: GateRecurrent layer rnnN_j -> (horizontal, reverse, its gate slice) for j = 1..4.
_RNN_LAYERS = {1: (True, False, "x1"), 2: (True, True, "x2"), 3: (False, False, "y1"),
               4: (False, True, "y2")}

#: Order of the gate head's slices (slice_rnnwN tops rnnwN_<part>).
_GATE_SLICES = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class _Conv:
    """A release (de)convolution: its name, our module, the Caffe blob it reads and writes."""

    caffe: str
    ours: str
    bottom: str
    deconv: bool = False


def _conv_layers() -> list[_Conv]:
    """All 40 parameterised layers of the release, in the prototxt's order."""
    layers = [_Conv("conv1", "flownet.conv1", "data")]
    trunk = ["conv1", "conv2", "conv3", "conv3_1", "conv4", "conv4_1", "conv5", "conv5_1",
             "conv6", "conv6_1"]
    layers += [_Conv(b, f"flownet.{b}", a) for a, b in zip(trunk, trunk[1:])]
    # Decoder scale s: predict_conv{s} reads Concat{7-s} (conv6_1 at s = 6), Concat{8-s} comes
    # after it. The release's deconv{s-1} is our deconv{s}: both read scale s, write scale s-1.
    for s in range(6, 1, -1):
        source = "conv6_1" if s == 6 else f"Concat{7 - s}"
        layers += [
            _Conv(f"predict_conv{s}", f"flownet.flow{s}", source),
            _Conv(f"deconv{s - 1}", f"flownet.deconv{s}", source, deconv=True),
            _Conv(f"upsample_flow{s}to{s - 1}", f"flownet.up{s}to{s - 1}", f"predict_conv{s}",
                  deconv=True),
        ]
    # Gate heads: the release's conv_rnnw{k} (k = 2, 3, 4: 1/2, 1/4, 1/8) is our rnnw{k-1}.
    layers += [_Conv(f"conv_rnnw{k}", f"flownet.rnnw{k - 1}", f"Concat{8 - k}")
               for k in (4, 3, 2)]
    d = "deblurnet"
    layers += [
        _Conv("conv_rnne_1", f"{d}.d_conv1", "leftdata"),
        _Conv("conv_rnne_2", f"{d}.d_conv2", "concat_rnn2"),
        _Conv("conv_rnne_3", f"{d}.d_conv3", "concat_rnn3"),
        _Conv("conv_rnne_4", f"{d}.d_conv3_2", "concat_rnn4"),
        _Conv("conv_rnne_4_1", f"{d}.d_conv3_3", "conv_rnne_4"),
        _Conv("conv_rnnd_4", f"{d}.d_deconv3", "concat_rnnd_5", deconv=True),
        _Conv("conv_rnnd_4_1", f"{d}.d_deconv3_1", "conv_rnnd_4"),
        _Conv("conv_rnnd_3", f"{d}.d_deconv2", "concat_rnnd_4", deconv=True),
        _Conv("conv_rnnd_3_1", f"{d}.d_deconv2_1", "conv_rnnd_3"),
        _Conv("conv_rnnd_2", f"{d}.d_deconv1", "concat_rnnd_3", deconv=True),
        _Conv("conv_rnnd_2_1", f"{d}.d_deconv1_1", "conv_rnnd_2"),
        _Conv("conv_rnnd_1", f"{d}.d_conv0", "concat_rnnd_2"),
    ]
    return layers


def _concats() -> dict[str, tuple[list[str], list[str]]]:
    """Concat top -> (its bottoms in the release's order, the same bottoms in OUR order)."""
    out = {}
    for s in range(6, 1, -1):  # Concat{8-s}: [skip, deconv, upsampled flow], as ours
        skip = {6: "conv5_1", 5: "conv4_1", 4: "conv3_1", 3: "conv2", 2: "conv1"}[s]
        parts = [skip, f"deconv{s - 1}", f"upsample_flow{s}to{s - 1}"]
        out[f"Concat{8 - s}"] = (parts, parts)
    for k in _RNN_SCALES:
        caffe = [f"rnn{k}_{j}" for j in _RNN_LAYERS]
        out[f"concat_rnn{k}"] = (caffe, [f"rnn{k}_{_rnn_for(d)}" for d in
                                         OUR_DIRECTIONS_AS_CAFFE])
    # The release puts the skip connection first, our decoder puts it last.
    for top, skip, feature in [("concat_rnnd_5", "concat_rnn4", "conv_rnne_4_1"),
                               ("concat_rnnd_4", "concat_rnn3", "conv_rnnd_4_1"),
                               ("concat_rnnd_3", "concat_rnn2", "conv_rnnd_3_1"),
                               ("concat_rnnd_2", "leftdata", "conv_rnnd_2_1")]:
        out[top] = ([skip, feature], [feature, skip])
    return out


def _rnn_for(direction: tuple[bool, bool]) -> int:
    """The j of the release's rnnN_j that scans in ``direction`` (horizontal, reverse)."""
    return next(j for j, (h, r, _) in _RNN_LAYERS.items() if (h, r) == direction)


def _activations() -> dict[str, float | None]:
    """Blob -> in-place activation the release applies to it: a LeakyReLU slope, or None (tanh)."""
    relu = ["conv1", "conv2", "conv3", "conv3_1", "conv4", "conv4_1", "conv5", "conv5_1", "conv6",
            "conv6_1", "deconv5", "deconv4", "deconv3", "deconv2", "deconv1", "conv_rnne_4",
            "conv_rnne_4_1", "conv_rnnd_4", "conv_rnnd_4_1", "conv_rnnd_3", "conv_rnnd_3_1",
            "conv_rnnd_2", "conv_rnnd_2_1"]
    acts: dict[str, float | None] = {b: 0.1 for b in relu}
    acts.update({f"conv_rnnw{k}": None for k in _RNN_SCALES})
    return acts


#: Layer types that do not touch the deblurred frame: the release's warping-loss branch, and
#: data/loss layers a training snapshot may hold.
_IGNORED_TYPES = ("Downsample", "FlowWarp", "Input", "Data", "MemoryData", "Silence")


# ------------------------------------------------------------------------- channel layouts
#
# A layout is an index array: our channel i holds the release's channel layout[i].


def _blocks(channels: int, order: list[int]) -> np.ndarray:
    """Layout of a tensor made of ``len(order)`` blocks of ``channels``: our block b is the
    release's block ``order[b]``."""
    return np.concatenate([np.arange(channels) + channels * k for k in order])


def _gate_layout(channels: int) -> np.ndarray:
    """Our gate blocks (directions as in ``spatial_rnn``) <- the release's slices x1, y1, x2, y2.

    For 24 channels: ours [y1, y2, x1, x2], i.e. release blocks [1, 3, 0, 2].
    """
    order = [_GATE_SLICES.index(_RNN_LAYERS[_rnn_for(d)][2]) for d in OUR_DIRECTIONS_AS_CAFFE]
    return _blocks(channels, order)


class _Layouts:
    """Channel count and layout of every release blob the parameterised layers read or write."""

    def __init__(self, model: FlowDeblurNet, convs: list[_Conv]) -> None:
        modules = _conv_modules(model)
        self.width: dict[str, int] = {"data": 6, "leftdata": 3}
        self.layout: dict[str, np.ndarray] = {"data": np.arange(6), "leftdata": np.arange(3)}
        for c in convs:
            m = modules[c.ours]
            out = m.out_channels
            self.width[c.caffe] = out
            if c.caffe.startswith(("predict_conv", "upsample_flow")):
                self.layout[c.caffe] = np.array([1, 0])  # flow (x, y) <- the release's (y, x)
            elif c.caffe.startswith("conv_rnnw"):
                self.layout[c.caffe] = _gate_layout(out // 4)
            else:
                self.layout[c.caffe] = np.arange(out)
        for k, (channels, _) in _RNN_SCALES.items():
            for j in _RNN_LAYERS:
                self.width[f"rnn{k}_{j}"] = channels
                self.layout[f"rnn{k}_{j}"] = np.arange(channels)
        for top, (caffe_order, our_order) in _concats().items():
            self._concat(top, caffe_order, our_order)

    def _concat(self, top: str, caffe_order: list[str], our_order: list[str]) -> None:
        offsets, at = {}, 0
        for part in caffe_order:
            offsets[part] = at
            at += self.width[part]
        self.width[top] = at
        self.layout[top] = np.concatenate([offsets[p] + self.layout[p] for p in our_order])


def _conv_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Our (transposed) convolutions by logical name ("flownet.conv1", not "...conv1.0")."""
    found = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            found[name.removesuffix(".0")] = m
    return found


# ----------------------------------------------------------------------------- reading


@dataclass
class ReleaseImport:
    """What :func:`load_release` found and built.

    model: the full :class:`FlowDeblurNet` with the release's weights (fp32, CPU, eval mode).
    layers: release layers whose blobs were mapped (40); values: parameters copied (8,281,696).
    skipped_blobs: the GateRecurrent layers' unused blobs (3 per layer, 36 in all).
    ignored_layers: layers of the file left aside (the warping-loss branch, data/loss layers).
    """

    model: FlowDeblurNet
    layers: int = 0
    values: int = 0
    skipped_blobs: int = 0
    ignored_layers: list[str] = field(default_factory=list)


def read_caffemodel(path: str | os.PathLike):
    """Parse a binary Caffe ``NetParameter``. UserError if the file is not one."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"caffemodel not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a .caffemodel file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    _refuse_other_formats(path, data)
    net = _net_parameter_class()()
    try:
        net.ParseFromString(data)
    except Exception:  # DecodeError, or the C implementation's RuntimeError
        raise UserError(
            f"{path} cannot be read as a Caffe model: the binary protobuf is truncated or corrupt"
        ) from None
    if not net.layer:
        detail = "old-style (V1) Caffe layers" if net.layers else "no Caffe layers"
        raise UserError(f"{path} is not a caffemodel of the authors' release ({detail})")
    return net


def _refuse_other_formats(path: Path, data: bytes) -> None:
    """Name the usual wrong files (an HDF5 snapshot, a text prototxt, an empty file)."""
    if not data:
        raise UserError(f"{path} is empty, not a caffemodel")
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise UserError(f"{path} is an HDF5 snapshot; import-release reads the binary .caffemodel")
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        raise UserError(
            f"{path} is a text file (a .prototxt?), not a binary .caffemodel"
        )


def load_release(path: str | os.PathLike, **model_kwargs) -> ReleaseImport:
    """Build the full :class:`FlowDeblurNet` holding the weights of the release's caffemodel.

    Args:
        path: the authors' trained ``.caffemodel`` (binary protobuf).
        model_kwargs: passed to :class:`FlowDeblurNet` (e.g. ``rnn_backend``).
    Raises:
        UserError: the file is unreadable, not a caffemodel, or not the release's network (the
            message names the first layer that does not fit).
    """
    net = read_caffemodel(path)
    model = FlowDeblurNet("full", **model_kwargs)
    convs = _conv_layers()
    layers = _layers_by_name(net, path)
    try:
        _check_graph(net, layers, convs)
        skipped = _check_rnns(layers)
        values = _copy_convs(layers, convs, model, _Layouts(model, convs))
    except _Mismatch as e:
        raise UserError(f"{path} is not the authors' released network: {e}") from None
    ignored = [lay.name for lay in net.layer if lay.type in _IGNORED_TYPES
               or lay.type.endswith("Loss")]
    return ReleaseImport(model.eval(), len(convs), values, skipped, ignored)


class _Mismatch(Exception):
    """The file is a caffemodel, but of another network; the message names what differs."""


def _layers_by_name(net, path) -> dict:
    layers = {}
    for lay in net.layer:
        if lay.name in layers:
            raise UserError(f"{path} has two layers named {lay.name!r}; not the release's network")
        layers[lay.name] = lay
    return layers


# ------------------------------------------------------------------------------ checking


def _check_graph(net, layers: dict, convs: list[_Conv]) -> None:
    """The wiring the mapping relies on: conv inputs, concat and slice orders, activations."""
    for c in convs:
        lay = _require(layers, c.caffe, "Deconvolution" if c.deconv else "Convolution")
        _check_bottoms(lay, [c.bottom])
    concats = _concats()
    slices = {f"conv_rnnw{k}": ([f"rnnw{k}_{p}" for p in _GATE_SLICES], [c, 2 * c, 3 * c])
              for k, (c, _) in _RNN_SCALES.items()}
    slices["data"] = (["leftdata", "rightdata"], [3])
    acts = _activations()
    params = {c.caffe for c in convs} | set(_rnn_names())
    sliced = {top for tops, _ in slices.values() for top in tops}
    graph = params | set(concats) | sliced | {"data", "leftdata"}
    seen: set[str] = set()
    for lay in net.layer:
        in_place = len(lay.bottom) == 1 and list(lay.top) == list(lay.bottom)
        if lay.type == "Concat" and len(lay.top) == 1 and lay.top[0] in concats:
            _check_bottoms(lay, concats[lay.top[0]][0])
            seen.add(f"concat {lay.top[0]}")
        elif lay.type == "Slice" and len(lay.bottom) == 1 and lay.bottom[0] in slices:
            tops, points = slices[lay.bottom[0]]
            if list(lay.top) != tops or list(lay.slice_param.slice_point) != points:
                raise _Mismatch(f"layer {lay.name!r} slices {lay.bottom[0]} into "
                                f"{list(lay.top)} at {list(lay.slice_param.slice_point)}, "
                                f"expected {tops} at {points}")
            seen.add(f"slice {lay.bottom[0]}")
        elif in_place and lay.bottom[0] in acts:
            _check_activation(lay, acts[lay.bottom[0]])
            seen.add(f"activation {lay.bottom[0]}")
        elif in_place and lay.bottom[0] in graph:
            raise _Mismatch(f"layer {lay.name!r} ({lay.type}) changes {lay.bottom[0]} in place; "
                            "the release's network has no such layer")
        elif lay.blobs and lay.name not in params:
            raise _Mismatch(f"layer {lay.name!r} ({lay.type}) has parameters the release's "
                            "network does not have")
    expected = ({f"concat {t}" for t in concats} | {f"slice {b}" for b in slices}
                | {f"activation {b}" for b in acts})
    missing = sorted(expected - seen)
    if missing:
        raise _Mismatch(f"no layer does the release's {missing[0]}")


def _check_activation(lay, slope: float | None) -> None:
    if slope is None:
        if lay.type != "TanH":
            raise _Mismatch(f"layer {lay.name!r} is {lay.type}, the release has TanH there")
        return
    if lay.type != "ReLU" or abs(lay.relu_param.negative_slope - slope) > 1e-6:
        found = f"{lay.type}({lay.relu_param.negative_slope:g})" if lay.type == "ReLU" else lay.type
        raise _Mismatch(f"layer {lay.name!r} is {found}, the release has ReLU({slope:g}) there")


def _require(layers: dict, name: str, kind: str):
    lay = layers.get(name)
    if lay is None:
        raise _Mismatch(f"layer {name!r} is missing (a truncated file, or another network)")
    if lay.type != kind:
        raise _Mismatch(f"layer {name!r} is of type {lay.type!r}, expected {kind!r}")
    return lay


def _check_bottoms(lay, expected: list[str]) -> None:
    # Caffe saves each layer's bottoms with its weights; an empty list means "not recorded".
    if lay.bottom and list(lay.bottom) != expected:
        raise _Mismatch(f"layer {lay.name!r} reads {list(lay.bottom)}, expected {expected}")


def _rnn_names() -> list[str]:
    return [f"rnn{k}_{j}" for k in _RNN_SCALES for j in _RNN_LAYERS]


def _check_rnns(layers: dict) -> int:
    """Check the 12 GateRecurrent layers compute Eq. 13 in the expected direction.

    Returns the number of blobs skipped. Each layer allocates W_x (1x1xCxC), W_h (1x1xCxC) and
    a bias (1x1x1xC) whatever its flags, and Caffe saves them; with use_wx, use_wh and use_bias
    false the forward pass never reads them (h_t = g_t (h_{t-1} - x_t) + x_t), so they are not
    parameters of the network and are left out.
    """
    skipped = 0
    for k, (channels, source) in _RNN_SCALES.items():
        for j, (horizontal, reverse, part) in _RNN_LAYERS.items():
            lay = _require(layers, f"rnn{k}_{j}", "GateRecurrent")
            _check_bottoms(lay, [source, f"rnnw{k}_{part}"])
            p = lay.gaterecurrent_param
            if not lay.HasField("gaterecurrent_param"):
                raise _Mismatch(f"layer {lay.name!r} has no gaterecurrent_param")
            used = [f for f in ("use_wx", "use_wh", "use_bias") if getattr(p, f)]
            if used:
                raise _Mismatch(f"layer {lay.name!r} sets {', '.join(used)}: its W_x/W_h/bias "
                                "blobs would be used, which the release's network does not do")
            # restrict_g < 1 would scale gates and input; active != LINEAR adds a nonlinearity.
            # (The GPU code reads "active" from spatialrecurrent_param, unset: LINEAR too.)
            if p.active != 0 or abs(p.restrict_g - 1.0) > 1e-6:
                raise _Mismatch(f"layer {lay.name!r} has active={p.active}, restrict_g="
                                f"{p.restrict_g:g}; the release's RNN is linear with restrict_g 1")
            if (p.horizontal, p.reverse) != (horizontal, reverse):
                raise _Mismatch(f"layer {lay.name!r} scans horizontal={p.horizontal}, "
                                f"reverse={p.reverse}; expected {horizontal}, {reverse}")
            if p.HasField("num_output") and p.num_output != channels:
                raise _Mismatch(f"layer {lay.name!r} has {p.num_output} outputs, "
                                f"expected {channels}")
            skipped += len(lay.blobs)
    return skipped


# ------------------------------------------------------------------------------- copying


def _blob_array(lay, index: int) -> np.ndarray:
    """Blob ``index`` of ``lay`` as a float32 array of its saved shape."""
    blob = lay.blobs[index]
    if blob.HasField("shape"):
        dims = tuple(blob.shape.dim)
    else:  # legacy 4-D blob
        dims = (blob.num, blob.channels, blob.height, blob.width)
    values = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    if values.size != int(np.prod(dims)):
        raise _Mismatch(f"blob {index} of layer {lay.name!r} holds {values.size} values for "
                        f"shape {dims}")
    return values.reshape(dims)


def _fit(array: np.ndarray, shape: tuple[int, ...], lay, what: str) -> np.ndarray:
    """``array`` with leading unit axes dropped (legacy 1x1x1xC biases) if it then has ``shape``."""
    dims = array.shape
    while len(dims) > len(shape) and dims[0] == 1:
        dims = dims[1:]
    if dims != shape:
        raise _Mismatch(f"layer {lay.name!r} {what} has shape {array.shape}, expected {shape}")
    return array.reshape(shape)


def _check_geometry(lay, module: nn.Module) -> None:
    """Kernel, stride, padding recorded in the file equal our layer's (square, so no swap)."""
    p = lay.convolution_param
    if not lay.HasField("convolution_param"):
        return
    want = {"kernel": module.kernel_size[0], "stride": module.stride[0],
            "pad": module.padding[0], "group": 1, "dilation": 1}
    got = {
        "kernel": _one(p.kernel_size, p.kernel_h, p.kernel_w, None),
        "stride": _one(p.stride, p.stride_h, p.stride_w, 1),
        "pad": _one(p.pad, p.pad_h, p.pad_w, 0),
        "group": p.group,
        "dilation": _one(p.dilation, 0, 0, 1),
    }
    for key, value in want.items():
        if got[key] is not None and got[key] != value:
            raise _Mismatch(f"layer {lay.name!r} has {key} {got[key]}, expected {value}")


def _one(values, h: int, w: int, default: int | None) -> int | None:
    """One number for a square setting given as a repeated field or as _h/_w (None: unclear)."""
    if h or w:
        return h if h == w else -1
    values = set(values)
    if not values:
        return default
    return values.pop() if len(values) == 1 else -1


def _copy_convs(layers: dict, convs: list[_Conv], model: FlowDeblurNet, lay_out: _Layouts) -> int:
    """Copy every (de)convolution's weight and bias into ``model``; returns the values copied."""
    modules = _conv_modules(model)
    filled = 0
    for c in convs:
        lay, module = layers[c.caffe], modules[c.ours]
        _check_geometry(lay, module)
        if len(lay.blobs) != 2:
            raise _Mismatch(f"layer {lay.name!r} has {len(lay.blobs)} blobs, expected 2 "
                            "(weight and bias)")
        weight = _fit(_blob_array(lay, 0), tuple(module.weight.shape), lay, "weight")
        bias = _fit(_blob_array(lay, 1), tuple(module.bias.shape), lay, "bias")
        w, b = _to_ours(weight, bias, lay_out.layout[c.bottom], lay_out.layout[c.caffe], c.deconv)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(b))
        filled += w.size + b.size
    total = sum(p.numel() for p in model.parameters())
    if filled != total:  # every parameter of Table I comes from exactly one release blob
        raise AssertionError(f"mapped {filled} of {total} parameters")
    return filled


def _to_ours(weight: np.ndarray, bias: np.ndarray, layout_in: np.ndarray,
             layout_out: np.ndarray, deconv: bool) -> tuple[np.ndarray, np.ndarray]:
    """One release layer's blobs in our layout.

    weight: (C_out, C_in, k, k) for a convolution, (C_in, C_out, k, k) for a deconvolution (both
    Caffe's and PyTorch's layouts); bias: (C_out,). ``layout_in``/``layout_out``: for each of our
    channels, the release's channel. The kernel's spatial axes are swapped because the release's
    feature maps are transposed images.
    """
    if deconv:
        w = weight[layout_in][:, layout_out]
    else:
        w = weight[layout_out][:, layout_in]
    w = np.ascontiguousarray(w.swapaxes(-1, -2), dtype=np.float32)
    return w, np.ascontiguousarray(bias[layout_out], dtype=np.float32)


# ------------------------------------------------------------------------------- writing


def import_release(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    dtype: str = "fp32",
    overwrite: bool = False,
) -> ReleaseImport:
    """Convert the authors' ``.caffemodel`` to a flowdeblur weights file (safetensors).

    The output loads with :func:`flowdeblur.weights.load_weights` and ``--weights`` (it holds
    the full model's config). Nothing is written unless the whole file was read and mapped.

    Args:
        source: the release's trained ``.caffemodel``.
        output: the weights file to write (e.g. ``release.safetensors``).
        dtype: "fp32" (default, exact), "bf16" or "fp16".
        overwrite: replace ``output`` if it exists.
    """
    source, output = Path(source), Path(output)
    if output.exists() and not overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it")
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise UserError(f"{output} is the input caffemodel; choose another output")
    if output.is_dir():
        raise UserError(f"{output} is a folder; give a file name such as release.safetensors")
    result = load_release(source)
    save_weights(
        result.model, output, dtype=dtype,
        extra_metadata={
            "source": f"{source.name}: the authors' MatCaffe release "
                      "(zhjwustc/tcsvt21_flow_deblur_matcaffe), imported by flowdeblur",
            "release_padding": "the release zero-pads frames to multiples of 64; "
                               "use eval --protocol release to reproduce it",
        },
    )
    return result
