"""Test helper: the authors' released network, rebuilt independently of flowdeblur's code.

Three things, each written from the release's own files and not from flowdeblur:

- :func:`release_layers`: the layers of ``matlab/exp/model/flownets_deblur_test.prototxt``
  (repository ``zhjwustc/tcsvt21_flow_deblur_matcaffe``), in file order, with their blobs'
  wiring and settings;
- :func:`run_release`: a forward pass of those layers in Caffe's own blob layout, with plain
  torch ops doing what each Caffe layer does (float32, as Caffe computes, or float64):
  Convolution, Deconvolution, ReLU with a negative slope, TanH, Slice, Concat, GateRecurrent
  (its loop as in the authors' ``gaterecurrent_layer.cpp`` of
  ``zhjwustc/cvpr18_rnn_deblur_matcaffe``), Downsample (the release's ``downsample_layer.cu``)
  and FlowWarp (FlowNet 2.0's ``flow_warp_layer.cpp``);
- :func:`encode_caffemodel`: a writer of binary ``NetParameter`` files made of hand-rolled
  protobuf wire format (varints, length-delimited fields), with the release's layer names and
  blob shapes, the GateRecurrent layers' three unused blobs and the parameter-less layers.

Frames reach the network "the release's way": ``test.m`` builds MATLAB ``H x W x 6`` arrays
(``im2single`` RGB, frame t then t+1) and MatCaffe passes them as ``1 x 6 x W x H`` blobs, so a
Caffe blob is the transpose of the picture (:func:`to_caffe`, :func:`from_caffe`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------ the layers


@dataclass
class Layer:
    """One prototxt layer. ``p`` holds its settings (num_output, kernel, stride, pad, filler,
    negative_slope, slice_point, horizontal, reverse, ...)."""

    name: str
    type: str
    bottom: list[str]
    top: list[str]
    p: dict = field(default_factory=dict)


def _conv(name, bottom, n, k, s, pad, filler="msra", deconv=False):
    kind = "Deconvolution" if deconv else "Convolution"
    return Layer(name, kind, [bottom], [name],
                 dict(num_output=n, kernel=k, stride=s, pad=pad, filler=filler))


def _relu(name, blob):
    return Layer(name, "ReLU", [blob], [blob], dict(negative_slope=0.1))


def _flow_scale(s: int, concat_in: str, relu: int) -> list[Layer]:
    """predict_conv{s}, its warping-loss branch, deconv{s-1}, upsampling, Concat{8-s}."""
    warp = "FlowWarp_predict_conv6_1" if s == 6 else f"FlowWarp_predict_conv{s}"
    warped = "right_warp_conv6_1" if s == 6 else f"right_warp_conv{s}"
    skip = {6: "conv5_1", 5: "conv4_1", 4: "conv3_1", 3: "conv2", 2: "conv1"}[s]
    width = {6: 192, 5: 96, 4: 48, 3: 24, 2: 12}[s]
    return [
        _conv(f"predict_conv{s}", concat_in, 2, 3, 1, 1),
        Layer(f"Downsample{7 - s}", "Downsample", ["rightdata", f"predict_conv{s}"],
              [f"Downsample{7 - s}"]),
        Layer(warp, "FlowWarp", [f"Downsample{7 - s}", f"predict_conv{s}"], [warped],
              dict(loss_weight=1.0)),
        _conv(f"deconv{s - 1}", concat_in, width, 4, 2, 1, deconv=True),
        _relu(f"ReLU{relu}", f"deconv{s - 1}"),
        _conv(f"upsample_flow{s}to{s - 1}", f"predict_conv{s}", 2, 4, 2, 1, deconv=True),
        Layer(f"Concat{8 - s}", "Concat", [skip, f"deconv{s - 1}", f"upsample_flow{s}to{s - 1}"],
              [f"Concat{8 - s}"]),
    ]


def _gate_head(k: int, bottom: str, n: int) -> list[Layer]:
    c = n // 4
    return [
        _conv(f"conv_rnnw{k}", bottom, n, 3, 1, 1, filler="xavier"),
        Layer(f"tanh_rnnw{k}", "TanH", [f"conv_rnnw{k}"], [f"conv_rnnw{k}"]),
        Layer(f"slice_rnnw{k}", "Slice", [f"conv_rnnw{k}"],
              [f"rnnw{k}_x1", f"rnnw{k}_y1", f"rnnw{k}_x2", f"rnnw{k}_y2"],
              dict(slice_point=[c, 2 * c, 3 * c])),
    ]


def _rnn_scale(k: int, x: str, c: int) -> list[Layer]:
    """rnn{k}_1..4 (GateRecurrent) and concat_rnn{k}, as in the prototxt."""
    flags = {1: (True, False, "x1"), 2: (True, True, "x2"), 3: (False, False, "y1"),
             4: (False, True, "y2")}
    layers = [
        Layer(f"rnn{k}_{j}", "GateRecurrent", [x, f"rnnw{k}_{g}"], [f"rnn{k}_{j}"],
              dict(horizontal=h, reverse=r, num_output=c))
        for j, (h, r, g) in flags.items()
    ]
    layers.append(Layer(f"concat_rnn{k}", "Concat", [f"rnn{k}_{j}" for j in flags],
                        [f"concat_rnn{k}"]))
    return layers


def release_layers() -> list[Layer]:
    """flownets_deblur_test.prototxt, layer by layer, in file order."""
    layers = [Layer("slice_data", "Slice", ["data"], ["leftdata", "rightdata"],
                    dict(slice_point=[3]))]
    trunk = [("conv1", "data", 24, 7, 2, 3), ("conv2", "conv1", 48, 5, 2, 2),
             ("conv3", "conv2", 96, 5, 2, 2), ("conv3_1", "conv3", 96, 3, 1, 1),
             ("conv4", "conv3_1", 192, 3, 2, 1), ("conv4_1", "conv4", 192, 3, 1, 1),
             ("conv5", "conv4_1", 192, 3, 2, 1), ("conv5_1", "conv5", 192, 3, 1, 1),
             ("conv6", "conv5_1", 384, 3, 2, 1), ("conv6_1", "conv6", 384, 3, 1, 1)]
    for i, (name, bottom, n, k, s, pad) in enumerate(trunk, start=1):
        layers += [_conv(name, bottom, n, k, s, pad), _relu(f"ReLU{i}", name)]
    layers += _flow_scale(6, "conv6_1", 11)
    layers += _flow_scale(5, "Concat2", 12)
    layers += _flow_scale(4, "Concat3", 13)
    layers += _flow_scale(3, "Concat4", 14)
    layers += _flow_scale(2, "Concat5", 15)
    layers += _gate_head(4, "Concat4", 384) + _gate_head(3, "Concat5", 192)
    layers += _gate_head(2, "Concat6", 96)
    layers.append(_conv("conv_rnne_1", "leftdata", 24, 5, 2, 2, filler="xavier"))
    layers += _rnn_scale(2, "conv_rnne_1", 24)
    layers.append(_conv("conv_rnne_2", "concat_rnn2", 48, 5, 2, 2, filler="xavier"))
    layers += _rnn_scale(3, "conv_rnne_2", 48)
    layers.append(_conv("conv_rnne_3", "concat_rnn3", 96, 5, 2, 2, filler="xavier"))
    layers += _rnn_scale(4, "conv_rnne_3", 96)
    layers += [
        _conv("conv_rnne_4", "concat_rnn4", 96, 5, 1, 2, filler="xavier"),
        _relu("relu_rnne_4", "conv_rnne_4"),
        _conv("conv_rnne_4_1", "conv_rnne_4", 48, 5, 1, 2, filler="xavier"),
        _relu("relu_rnne_4_1", "conv_rnne_4_1"),
        Layer("concat_rnnd_5", "Concat", ["concat_rnn4", "conv_rnne_4_1"], ["concat_rnnd_5"]),
    ]
    for level, (width, skip) in {4: (48, "concat_rnn3"), 3: (24, "concat_rnn2"),
                                 2: (12, "leftdata")}.items():
        up, conv = f"conv_rnnd_{level}", f"conv_rnnd_{level}_1"
        layers += [
            _conv(up, f"concat_rnnd_{level + 1}", width, 4, 2, 1, deconv=True),
            _relu(f"relu_rnnd_{level}", up),
            _conv(conv, up, width, 5, 1, 2),
            _relu(f"relu_rnnd_{level}_1", conv),
            Layer(f"concat_rnnd_{level}", "Concat", [skip, conv], [f"concat_rnnd_{level}"]),
        ]
    layers.append(_conv("conv_rnnd_1", "concat_rnnd_2", 3, 5, 1, 2, filler="xavier"))
    return layers


# ---------------------------------------------------------------------------- the weights


def blob_shapes(layers: list[Layer]) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> shapes of the blobs Caffe saves for it (layers with parameters only)."""
    channels = {"data": 6}
    shapes = {}
    for lay in layers:
        ins = [channels[b] for b in lay.bottom]
        if lay.type in ("Convolution", "Deconvolution"):
            n, k = lay.p["num_output"], lay.p["kernel"]
            # Caffe: a convolution's weight is out x in x k x k, a deconvolution's in x out x k x k.
            w = (n, ins[0], k, k) if lay.type == "Convolution" else (ins[0], n, k, k)
            shapes[lay.name] = [w, (n,)]
            channels[lay.top[0]] = n
        elif lay.type == "GateRecurrent":
            c = lay.p["num_output"]
            shapes[lay.name] = [(1, 1, ins[0], c), (1, 1, c, c), (1, 1, 1, c)]  # W_x, W_h, bias
            channels[lay.top[0]] = c
        elif lay.type == "Slice":
            cuts = [0, *lay.p["slice_point"], ins[0]]
            channels.update({t: b - a for t, a, b in zip(lay.top, cuts, cuts[1:])})
        elif lay.type == "Concat":
            channels[lay.top[0]] = sum(ins)
        else:  # ReLU, TanH (in place), Downsample, FlowWarp: the first bottom's channels
            channels[lay.top[0]] = ins[0]
    return shapes


def random_weights(layers: list[Layer], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """float32 blobs for every layer with parameters, scaled like the release's fillers.

    Weights: "msra" is N(0, 2 / fan_in), "xavier" U(-a, a) with a = sqrt(3 / fan_in), where
    Caffe's fan_in is count / shape[0]. Biases: the fillers start them at 0 and training moves
    them; small random values here make every bias's placement visible. GateRecurrent's unused
    W_x (xavier), W_h (bounded by restrict_w 0.5) and bias get random values too: the import
    must ignore them.
    """
    rng = np.random.default_rng(seed)
    out = {}
    shapes = blob_shapes(layers)
    for lay in layers:
        if lay.name not in shapes:
            continue
        w_shape, *rest = shapes[lay.name]
        fan_in = int(np.prod(w_shape)) // w_shape[0]
        if lay.type == "GateRecurrent":
            a = np.sqrt(3.0 / fan_in)
            blobs = [rng.uniform(-a, a, w_shape), rng.uniform(-0.5, 0.5, rest[0]),
                     rng.normal(0, 0.1, rest[1])]
        elif lay.p["filler"] == "msra":
            blobs = [rng.normal(0, np.sqrt(2.0 / fan_in), w_shape), rng.normal(0, 0.02, rest[0])]
        else:
            a = np.sqrt(3.0 / fan_in)
            blobs = [rng.uniform(-a, a, w_shape), rng.normal(0, 0.02, rest[0])]
        out[lay.name] = [b.astype(np.float32) for b in blobs]
    return out


# ------------------------------------------------------------------------ the forward pass


def to_caffe(frame_t: torch.Tensor, frame_next: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) frames -> the release's (N, 6, W, H) input blob."""
    return torch.cat([frame_t, frame_next], dim=1).transpose(-1, -2)


def from_caffe(blob: torch.Tensor) -> torch.Tensor:
    """A Caffe (N, C, W, H) blob -> our (N, C, H, W) picture layout."""
    return blob.transpose(-1, -2)


def flow_from_caffe(blob: torch.Tensor) -> torch.Tensor:
    """A release flow (channel 0 along the blob's width = image y) -> (x right, y down)."""
    return from_caffe(blob)[:, [1, 0]]


def _gate_recurrent(x: torch.Tensor, g: torch.Tensor, p: dict) -> torch.Tensor:
    """GateRecurrent with use_wx/use_wh/use_bias false, restrict_g 1, LINEAR, as the layer does.

    "horizontal" scans the blob's width axis (last), "vertical" its height axis; "reverse"
    starts from the far end. Per step: L = -x_t (+ h_{t-1} after the first step),
    h_t = g_t * L + restrict_g * x_t.
    """
    axis = -1 if p["horizontal"] else -2
    length = x.shape[axis]
    steps = range(length - 1, -1, -1) if p["reverse"] else range(length)
    out = torch.empty_like(x)
    prev = None
    for t in steps:
        xt, gt = x.select(axis, t), g.select(axis, t)
        low = -xt if prev is None else prev - xt
        h = gt * low + 1.0 * xt
        out.select(axis, t).copy_(h)
        prev = h
    return out


def _downsample(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The release's Downsample: a tent filter around corner-aligned sample points."""
    def weights(src: int, dst: int) -> torch.Tensor:
        scale = (src - 1) / (dst - 1)
        radius = int(np.ceil(scale))
        m = torch.zeros(dst, src, dtype=image.dtype)
        for d in range(dst):
            centre = d / (dst - 1) * (src - 1)
            nearest = int(np.floor(centre + 0.5))  # C's round() of a positive number
            for s in range(max(nearest - radius, 0), min(nearest + radius, src - 1) + 1):
                m[d, s] = max(0.0, 1.0 - abs(s - centre) / scale)
        return m / m.sum(dim=1, keepdim=True)

    if (height, width) == tuple(image.shape[-2:]):
        return image
    rows, cols = weights(image.shape[-2], height), weights(image.shape[-1], width)
    return rows @ image @ cols.T


def _flow_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """FlowWarp: out[y, x] = bilinear image[y + f1, x + f0] in blob coordinates; 0 outside."""
    n, c, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype),
                            torch.arange(w, dtype=image.dtype), indexing="ij")
    x2, y2 = xs + flow[:, 0], ys + flow[:, 1]  # (n, h, w)
    valid = (x2 >= 0) & (y2 >= 0) & (x2 < w) & (y2 < h)
    x2, y2 = torch.where(valid, x2, 0.0), torch.where(valid, y2, 0.0)
    xl, yt = x2.long(), y2.long()  # truncation, as int() in C (non-negative here)
    xr, yb = (xl + 1).clamp(max=w - 1), (yt + 1).clamp(max=h - 1)
    a, b = (x2 - xl).unsqueeze(1), (y2 - yt).unsqueeze(1)

    def at(yy, xx):
        index = (yy * w + xx).view(n, 1, -1).expand(n, c, -1)
        return image.reshape(n, c, -1).gather(2, index).view(n, c, h, w)

    out = ((1 - a) * (1 - b) * at(yt, xl) + a * (1 - b) * at(yt, xr)
           + (1 - a) * b * at(yb, xl) + a * b * at(yb, xr))
    return torch.where(valid.unsqueeze(1), out, torch.zeros((), dtype=out.dtype))


def run_release(layers: list[Layer], weights: dict[str, list[np.ndarray]],
                data: torch.Tensor, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Run the layers on the (N, 6, W, H) input blob; returns every blob by name."""
    blobs = {"data": data.to(dtype)}
    for lay in layers:
        ins = [blobs[b] for b in lay.bottom]
        p = lay.p
        if lay.type in ("Convolution", "Deconvolution"):
            w, b = (torch.from_numpy(a).to(dtype) for a in weights[lay.name])
            op = F.conv2d if lay.type == "Convolution" else F.conv_transpose2d
            outs = [op(ins[0], w, b, stride=p["stride"], padding=p["pad"])]
        elif lay.type == "ReLU":
            outs = [torch.where(ins[0] > 0, ins[0], ins[0] * p["negative_slope"])]
        elif lay.type == "TanH":
            outs = [torch.tanh(ins[0])]
        elif lay.type == "Slice":
            cuts = [0, *p["slice_point"], ins[0].shape[1]]
            outs = [ins[0][:, a:b] for a, b in zip(cuts, cuts[1:])]
        elif lay.type == "Concat":
            outs = [torch.cat(ins, dim=1)]
        elif lay.type == "GateRecurrent":
            outs = [_gate_recurrent(ins[0], ins[1], p)]
        elif lay.type == "Downsample":
            outs = [_downsample(ins[0], *ins[1].shape[-2:])]
        elif lay.type == "FlowWarp":
            outs = [_flow_warp(ins[0], ins[1])]
        else:
            raise ValueError(f"no reference for layer type {lay.type}")
        blobs.update(zip(lay.top, outs))
    return blobs


# ------------------------------------------------------------------- protobuf wire format
#
# Field numbers from caffe.proto (BVLC, as extended in the authors' repositories). Written by
# hand so that the importer's message classes are tested against bytes they did not make.


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 are 10-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _int(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(int(value))


def _float(number: int, value: float) -> bytes:
    return _key(number, 5) + struct.pack("<f", value)


def _bytes(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _str(number: int, text: str) -> bytes:
    return _bytes(number, text.encode())


def _blob(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """BlobProto: shape (7) = BlobShape {dim (1), packed int64}, data (5), packed float.
    ``dims``: the shape to state instead of the array's (negative values allowed)."""
    packed = b"".join(_varint(d) for d in (array.shape if dims is None else dims))
    shape = _bytes(1, packed)
    return _bytes(7, shape) + _bytes(5, np.ascontiguousarray(array, "<f4").tobytes())


def encode_blob(array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """A BlobProto as :func:`encode_caffemodel` writes it, for a weights entry given as bytes."""
    return _blob(array, dims)


def encode_layer(name: str, kind: str, bottom: list[str], top: list[str],
                 blobs: list[bytes] = ()) -> bytes:
    """A NetParameter ``layer`` field (100) of a layer without settings: to append to a file."""
    body = _str(1, name) + _str(2, kind)
    body += b"".join(_str(3, b) for b in bottom) + b"".join(_str(4, t) for t in top)
    return _bytes(100, body + b"".join(_bytes(7, b) for b in blobs))


def _filler(kind: str) -> bytes:
    return _str(1, kind)  # FillerParameter.type


def _layer_params(lay: Layer, overrides: dict) -> bytes:
    p = {**lay.p, **overrides}
    if lay.type in ("Convolution", "Deconvolution"):
        conv = (_int(1, p["num_output"]) + _int(3, p["pad"]) + _int(4, p["kernel"])
                + _int(6, p["stride"]) + _bytes(7, _filler(p["filler"]))
                + _bytes(8, _filler("constant")))
        return _bytes(106, conv)
    if lay.type == "ReLU":
        return _bytes(123, _float(1, p["negative_slope"]))
    if lay.type == "Slice":
        return _bytes(126, b"".join(_int(2, s) for s in p["slice_point"]))
    if lay.type == "GateRecurrent":
        gr = (_int(1, p["num_output"]) + _int(2, p.get("use_bias", False))
              + _int(3, p.get("use_wx", False)) + _int(4, p.get("use_wh", False))
              + _bytes(7, _filler("xavier")) + _bytes(8, _filler("constant"))
              + _int(16, p["horizontal"]) + _int(17, p["reverse"]) + _int(18, 0)
              + _float(20, 0.5) + _float(21, p.get("restrict_g", 1.0)))
        return _bytes(1017, gr)
    if lay.type == "FlowWarp":
        return _float(5, p["loss_weight"])  # LayerParameter.loss_weight
    return b""


def _layer(lay: Layer, blobs: list[np.ndarray | bytes], overrides: dict) -> bytes:
    """LayerParameter: name 1, type 2, bottom 3, top 4, phase 10, param 6, blobs 7, params.
    A blob given as bytes is an encoded BlobProto, written as it is."""
    out = _str(1, lay.name) + _str(2, lay.type)
    out += b"".join(_str(3, b) for b in lay.bottom) + b"".join(_str(4, t) for t in lay.top)
    out += _int(10, 0)  # phase TRAIN: Caffe snapshots the training net
    for lr, decay in ((1.0, 1.0), (1.0, 0.0))[: len(blobs)]:
        out += _bytes(6, _float(3, lr) + _float(4, decay))  # ParamSpec lr_mult, decay_mult
    out += b"".join(_bytes(7, b if isinstance(b, bytes) else _blob(b)) for b in blobs)
    return out + _layer_params(lay, overrides)


def encode_caffemodel(
    layers: list[Layer],
    weights: dict[str, list[np.ndarray]],
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    overrides: dict[str, dict] | None = None,
    extra: bytes = b"",
) -> bytes:
    """A binary NetParameter (name 1, layer 100) as Caffe snapshots it: an "Input" layer for
    the deprecated ``input:`` lines, then every layer with its blobs. ``skip``: layer names to
    leave out; ``overrides``: per-layer settings to change (e.g. ``{"rnn3_2": {"use_wx": 1}}``);
    ``extra``: encoded fields appended (e.g. :func:`encode_layer`'s).
    """
    overrides = overrides or {}
    parts = [_str(1, "flownets_deblur"),
             _bytes(100, _str(1, "input") + _str(2, "Input") + _str(4, "data") + _int(10, 0))]
    for lay in layers:
        if lay.name not in skip:
            body = _layer(lay, weights.get(lay.name, []), overrides.get(lay.name, {}))
            parts.append(_bytes(100, body))
    return b"".join(parts) + extra
