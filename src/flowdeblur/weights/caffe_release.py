"""Import the authors' trained Caffe model into :class:`~flowdeblur.models.FlowDeblurNet`.

The authors published their network as a MatCaffe release (repository
``zhjwustc/tcsvt21_flow_deblur_matcaffe``; network
``matlab/exp/model/flownets_deblur_test.prototxt``, test scripts ``matlab/exp/test.m`` and
``testall.m``) with a trained ``.caffemodel``: a binary protobuf ``NetParameter``. This
module reads that file with :mod:`flowdeblur.weights.caffemodel` (the ``protobuf`` package, in
bounded memory), checks that it holds the release's network, and maps every parameter blob onto
Table I's parameters. :func:`import_release`
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

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..media.atomic import check_can_create
from ..models import FlowDeblurNet
from . import save_weights, short_repr
from .caffemodel import CaffeModel, Layer, open_caffemodel

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


def load_release(
    path: str | os.PathLike, *, max_bytes: int | None = None, **model_kwargs
) -> ReleaseImport:
    """Build the full :class:`FlowDeblurNet` holding the weights of the release's caffemodel.

    Args:
        path: the authors' trained ``.caffemodel`` (binary protobuf).
        max_bytes: the largest file accepted (default
            :data:`flowdeblur.weights.caffemodel.MAX_BYTES`, 256 MB).
        model_kwargs: passed to :class:`FlowDeblurNet` (e.g. ``rnn_backend``).
    Raises:
        UserError: the file is unreadable, too large, not a caffemodel, or not the release's
            network (the message names the first layer that does not fit).
    """
    with open_caffemodel(path, max_bytes=max_bytes) as net:
        model = FlowDeblurNet("full", **model_kwargs)
        convs = _conv_layers()
        layers = _layers_by_name(net)
        try:
            _check_graph(net, layers, convs)
            skipped = _check_rnns(layers)
            values = _copy_convs(layers, convs, model, _Layouts(model, convs))
        except _Mismatch as e:
            raise UserError(f"{path} is not the authors' released network: {e}") from None
        ignored = [lay.name for lay in net.layers if lay.type in _IGNORED_TYPES
                   or lay.type.endswith("Loss")]
    return ReleaseImport(model.eval(), len(convs), values, skipped, ignored)


class _Mismatch(Exception):
    """The file is a caffemodel, but of another network; the message names what differs."""


def _layers_by_name(net: CaffeModel) -> dict[str, Layer]:
    layers = {}
    for lay in net.layers:
        if lay.name in layers:
            raise UserError(f"{net.path} has two layers named {short_repr(lay.name)}; not the "
                            "release's network")
        layers[lay.name] = lay
    return layers


# ------------------------------------------------------------------------------ checking


def _check_graph(net: CaffeModel, layers: dict[str, Layer], convs: list[_Conv]) -> None:
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
    for lay in net.layers:
        in_place = len(lay.bottom) == 1 and list(lay.top) == list(lay.bottom)
        if lay.type == "Concat" and len(lay.top) == 1 and lay.top[0] in concats:
            _check_bottoms(lay, concats[lay.top[0]][0])
            seen.add(f"concat {lay.top[0]}")
        elif lay.type == "Slice" and len(lay.bottom) == 1 and lay.bottom[0] in slices:
            tops, points = slices[lay.bottom[0]]
            found = list(lay.params.slice_param.slice_point)
            if list(lay.top) != tops or found != points:
                raise _Mismatch(f"layer {short_repr(lay.name)} slices {lay.bottom[0]} into "
                                f"{short_repr(list(lay.top))} at {short_repr(found)}, "
                                f"expected {tops} at {points}")
            seen.add(f"slice {lay.bottom[0]}")
        elif in_place and lay.bottom[0] in acts:
            _check_activation(lay, acts[lay.bottom[0]])
            seen.add(f"activation {lay.bottom[0]}")
        elif in_place and lay.bottom[0] in graph:
            raise _Mismatch(f"layer {short_repr(lay.name)} ({short_repr(lay.type)}) changes "
                            f"{lay.bottom[0]} in place; the release's network has no such layer")
        elif lay.blob_count and lay.name not in params:
            raise _Mismatch(f"layer {short_repr(lay.name)} ({short_repr(lay.type)}) has "
                            "parameters the release's network does not have")
    expected = ({f"concat {t}" for t in concats} | {f"slice {b}" for b in slices}
                | {f"activation {b}" for b in acts})
    missing = sorted(expected - seen)
    if missing:
        raise _Mismatch(f"no layer does the release's {missing[0]}")


def _check_activation(lay: Layer, slope: float | None) -> None:
    if slope is None:
        if lay.type != "TanH":
            raise _Mismatch(f"layer {short_repr(lay.name)} is {short_repr(lay.type)}, the "
                            "release has TanH there")
        return
    negative_slope = lay.params.relu_param.negative_slope
    if lay.type != "ReLU" or not _close(negative_slope, slope):
        found = f"ReLU({negative_slope:g})" if lay.type == "ReLU" else short_repr(lay.type)
        raise _Mismatch(f"layer {short_repr(lay.name)} is {found}, the release has ReLU({slope:g}) "
                        "there")


def _close(value: float, expected: float) -> bool:
    """``value`` equals ``expected`` up to float32 rounding (a NaN equals nothing)."""
    return abs(value - expected) <= 1e-6


def _require(layers: dict[str, Layer], name: str, kind: str) -> Layer:
    lay = layers.get(name)
    if lay is None:
        raise _Mismatch(f"layer {name!r} is missing (a truncated file, or another network)")
    if lay.type != kind:
        raise _Mismatch(f"layer {name!r} is of type {short_repr(lay.type)}, expected {kind!r}")
    return lay


def _check_bottoms(lay: Layer, expected: list[str]) -> None:
    # Caffe saves each layer's bottoms with its weights; an empty list means "not recorded".
    if lay.bottom and list(lay.bottom) != expected:
        raise _Mismatch(f"layer {short_repr(lay.name)} reads {short_repr(list(lay.bottom))}, "
                        f"expected {expected}")


def _rnn_names() -> list[str]:
    return [f"rnn{k}_{j}" for k in _RNN_SCALES for j in _RNN_LAYERS]


def _check_rnns(layers: dict[str, Layer]) -> int:
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
            p = lay.params.gaterecurrent_param
            if not lay.params.HasField("gaterecurrent_param"):
                raise _Mismatch(f"layer {lay.name!r} has no gaterecurrent_param")
            used = [f for f in ("use_wx", "use_wh", "use_bias") if getattr(p, f)]
            if used:
                raise _Mismatch(f"layer {lay.name!r} sets {', '.join(used)}: its W_x/W_h/bias "
                                "blobs would be used, which the release's network does not do")
            # restrict_g < 1 would scale gates and input; active != LINEAR adds a nonlinearity.
            # (The GPU code reads "active" from spatialrecurrent_param, unset: LINEAR too.)
            if p.active != 0 or not _close(p.restrict_g, 1.0):
                raise _Mismatch(f"layer {lay.name!r} has active={p.active}, restrict_g="
                                f"{p.restrict_g:g}; the release's RNN is linear with restrict_g 1")
            if (p.horizontal, p.reverse) != (horizontal, reverse):
                raise _Mismatch(f"layer {lay.name!r} scans horizontal={p.horizontal}, "
                                f"reverse={p.reverse}; expected {horizontal}, {reverse}")
            if p.HasField("num_output") and p.num_output != channels:
                raise _Mismatch(f"layer {lay.name!r} has {p.num_output} outputs, "
                                f"expected {channels}")
            skipped += lay.blob_count
    return skipped


# ------------------------------------------------------------------------------- copying


def _blob_values(lay: Layer, index: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Blob ``index`` of ``lay`` as a float32 array of ``shape``. Its saved shape may only add
    leading unit axes (legacy 1x1x1xC biases); its values are read once the shape fits, so a
    file never makes us read more values than our layer holds."""
    blob = lay.blob(index)
    dims = blob.dims
    while len(dims) > len(shape) and dims[0] == 1:
        dims = dims[1:]
    if dims != shape:
        raise _Mismatch(f"layer {lay.name!r} {what} has shape {blob.dims}, expected {shape}")
    values = blob.values().reshape(shape)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:  # they would turn every output frame into NaN, shown black or white
        raise UserError(f"{lay.source.path}: layer {lay.name!r} {what} holds {bad:,} NaN or "
                        "infinite values; not usable weights")
    return values


def _check_geometry(lay: Layer, module: nn.Module) -> None:
    """Kernel, stride, padding recorded in the file equal our layer's (square, so no swap)."""
    p = lay.params.convolution_param
    if not lay.params.HasField("convolution_param"):
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


def _copy_convs(layers: dict[str, Layer], convs: list[_Conv], model: FlowDeblurNet,
                lay_out: _Layouts) -> int:
    """Copy every (de)convolution's weight and bias into ``model``; returns the values copied."""
    modules = _conv_modules(model)
    filled = 0
    for c in convs:
        lay, module = layers[c.caffe], modules[c.ours]
        _check_geometry(lay, module)
        if lay.blob_count != 2:
            raise _Mismatch(f"layer {lay.name!r} has {lay.blob_count} blobs, expected 2 "
                            "(weight and bias)")
        weight = _blob_values(lay, 0, tuple(module.weight.shape), "weight")
        bias = _blob_values(lay, 1, tuple(module.bias.shape), "bias")
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
    max_bytes: int | None = None,
) -> ReleaseImport:
    """Convert the authors' ``.caffemodel`` to a flowdeblur weights file (safetensors).

    The output loads with :func:`flowdeblur.weights.load_weights` and ``--weights`` (it holds
    the full model's config). Nothing is written unless the whole file was read and mapped and
    every value is finite in ``dtype`` (fp16 overflows beyond 65504).

    Args:
        source: the release's trained ``.caffemodel``.
        output: the weights file to write (e.g. ``release.safetensors``).
        dtype: "fp32" (default, exact), "bf16" or "fp16".
        overwrite: replace ``output`` if it exists.
        max_bytes: the largest caffemodel accepted (default 256 MB; the release's is 33 MB).
    """
    source, output = Path(source), Path(output)
    if output.exists() and not overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it")
    if output.exists() and source.exists() and output.resolve() == source.resolve():
        raise UserError(f"{output} is the input caffemodel; choose another output")
    if output.is_dir():
        raise UserError(f"{output} is a folder; give a file name such as release.safetensors")
    check_can_create(output, "WEIGHTS")  # before the work, not after it
    result = load_release(source, max_bytes=max_bytes)
    save_weights(
        result.model, output, dtype=dtype, require_finite=True,
        extra_metadata={
            "source": f"{source.name}: the authors' MatCaffe release "
                      "(zhjwustc/tcsvt21_flow_deblur_matcaffe), imported by flowdeblur",
            "release_padding": "the release zero-pads frames to multiples of 64; "
                               "use eval --protocol release to reproduce it",
        },
    )
    return result
