"""The network and its weights as an ONNX file: ``flowdeblur export OUT.onnx``.

The graph (docs/EXPORT.md) has one input ``frames`` (N, 6, H, W) float32: frame t (channels
0-2) then its pairing neighbour (3-5), RGB in [0, 1], any N, H and W. Inside, the frames are
replicate-padded on the bottom and right to multiples of 64, as the network pads them
(docs/DESIGN.md, "Padding"), and the image is cropped back. Outputs: ``image`` (N, 3, H, W),
the deblurred frame t, unclamped, equal to ``model(frame_t, frame_next).image``; ``flow``
(N, 2, Hp/4, Wp/4), the finest flow t -> neighbour at 1/4 of the padded size (Hp, Wp) in
pixels of that scale, which ``deblur``'s scene-cut test reads (left out with ``image_only``,
for tools that read one output). The spatial RNNs run as the chunked scan of
:mod:`flowdeblur.ops.rnn_scan`, so every node is a standard ONNX operator. The metadata
(``metadata_props``) holds the input convention, the outputs, flowdeblur's version, the
variant, the weights' digest (:func:`flowdeblur.weights.weights_sha256`) and the ownership
record by which ``--overwrite`` knows the file as ours.

The graph is made by ``torch.onnx.export(..., dynamo=True)`` (torch.export with dynamic N, H
and W, then onnxscript), which needs the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.metadata
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError, UserError
from ..media.atomic import (
    PathLike,
    TargetLock,
    atomic_file,
    check_can_create,
    remove_stale_temporaries,
)
from ..models import PAD_MULTIPLE, FlowDeblurNet
from ..ops.rnn_scan import MAX_LENGTH
from ..runtime import backends
from . import weights_sha256

#: The opset written by default, and the lowest one accepted.
DEFAULT_OPSET = 18

#: The largest frame side the graph handles: the first RNN runs at half the padded size.
MAX_SIDE = 2 * MAX_LENGTH

#: The example traced: (batch, height, width). Any size works; this one needs padding on
#: both sides, and no dimension is 1 (torch.export would fix a dimension of 1 as a constant).
EXAMPLE_SHAPE = (2, 72, 136)

#: ONNX files larger than this are not read when looking for our record (ours are ~33 MB;
#: protobuf cannot hold a single-file model of 2 GiB or more anyway).
MAX_RECORD_FILE = 2**31

#: Variants the graph can hold: the network reads frame t and its neighbour and makes flow.
EXPORTABLE_VARIANTS = ("full", "concat_gates", "decoder_rnn")

INPUT_CONVENTION = (
    "frames: (N, 6, H, W) float32, frame t (channels 0-2) then its pairing neighbour (3-5: "
    "t+1, or t-1 for a clip's last frame), RGB in [0, 1]; any H, W up to "
    f"{MAX_SIDE}: replicate-padded to multiples of {PAD_MULTIPLE} inside the graph"
)
OUTPUTS = (
    "image: (N, 3, H, W) float32, deblurred frame t, unclamped (clamp to [0, 1]); "
    "flow: (N, 2, Hp/4, Wp/4) float32, flow frame t -> neighbour at 1/4 of the size padded "
    f"to multiples of {PAD_MULTIPLE}, in pixels of that scale, channel 0 x (right), 1 y (down)"
)


class ExportGraph(nn.Module):
    """What the ONNX graph computes: ``frames`` (N, 6, H, W) -> (image, flow) or (image,).

    The padding is written with the padded size as ``64 * ceil(H / 64)``, so that
    torch.export sees whole multiples of 64 and keeps H and W dynamic; the network's own
    padding then has nothing left to do.
    """

    def __init__(self, net: FlowDeblurNet, *, image_only: bool = False) -> None:
        super().__init__()
        self.net = net
        self.image_only = image_only

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, w = frames.shape[-2], frames.shape[-1]
        hp = (h + PAD_MULTIPLE - 1) // PAD_MULTIPLE * PAD_MULTIPLE
        wp = (w + PAD_MULTIPLE - 1) // PAD_MULTIPLE * PAD_MULTIPLE
        padded = F.pad(frames, (0, wp - w, 0, hp - h), mode="replicate")
        out = self.net(padded[:, :3], padded[:, 3:6])
        image = out.image[:, :, :h, :w]
        if self.image_only:
            return (image,)
        return image, out.flows[0][:, :2]


def _require_exporter() -> None:
    """UserError naming the extra when the exporter's packages are missing."""
    for module in ("onnx", "onnxscript"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError("flowdeblur export needs the onnx extra: "
                            "pip install 'flowdeblur[onnx]'") from None


def check_opset(opset: int) -> int:
    """``opset`` if the exporter can write it (18 up to what the installed onnx knows)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not DEFAULT_OPSET <= opset <= newest:
        raise OptionError("opset", f"{{option}} must be from {DEFAULT_OPSET} to {newest} (the "
                                   f"newest the installed onnx knows), got {opset}")
    return opset


def _graph_net(model: FlowDeblurNet) -> FlowDeblurNet:
    """A float32 eval-mode copy of ``model`` with its RNNs on the chunked scan."""
    if getattr(model, "variant", None) not in EXPORTABLE_VARIANTS:
        raise UserError(f"variant {getattr(model, 'variant', type(model).__name__)!r} cannot "
                        f"be exported: the graph takes frame t and its neighbour and returns "
                        f"the flow (variants {', '.join(EXPORTABLE_VARIANTS)})")
    net = copy.deepcopy(model).float().cpu().eval().requires_grad_(False)
    net.set_rnn_backend("scan")
    return net


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and warnings (the command says what it did)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), open(os.devnull, "w") as null, \
            contextlib.redirect_stdout(null):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def onnx_model(model: FlowDeblurNet, *, opset: int = DEFAULT_OPSET, image_only: bool = False):
    """The ``onnx.ModelProto`` of ``model`` (see the module docstring), checked by
    ``onnx.checker`` and holding only standard-domain nodes."""
    _require_exporter()
    import onnx

    check_opset(opset)
    graph = ExportGraph(_graph_net(model), image_only=image_only)
    dim = torch.export.Dim
    dynamic = {"frames": {0: dim("N", min=1, max=4096), 2: dim("H", min=1, max=MAX_SIDE),
                          3: dim("W", min=1, max=MAX_SIDE)}}
    n, h, w = EXAMPLE_SHAPE
    example = torch.rand(n, 6, h, w, generator=torch.Generator().manual_seed(0))
    outputs = [backends.IMAGE_NAME] + ([] if image_only else [backends.FLOW_NAME])
    with _quiet_exporter():
        program = torch.onnx.export(
            graph, (example,), dynamo=True, input_names=[backends.INPUT_NAME],
            output_names=outputs, dynamic_shapes=dynamic, opset_version=opset,
            optimize=True, verbose=False)
    proto = program.model_proto
    _check_dynamic(proto)
    onnx.helper.set_model_props(proto, {
        backends.FORMAT_KEY: backends.FORMAT,
        backends.INPUT_KEY: INPUT_CONVENTION,
        backends.OUTPUTS_KEY: OUTPUTS if not image_only else OUTPUTS.split("; flow:")[0],
        backends.VERSION_KEY: _version(),
        backends.VARIANT_KEY: model.variant,
        backends.WEIGHTS_KEY: weights_sha256(model),
        backends.OWNER_KEY: backends.OWNER_TAG,
    })
    proto.doc_string = f"flowdeblur {model.variant} network. {INPUT_CONVENTION}. {OUTPUTS}."
    onnx.checker.check_model(proto)
    custom = custom_domain_nodes(proto)
    if custom:  # the exporter's output, not the user's doing
        raise RuntimeError(f"the exported graph holds custom-domain nodes: {custom[:5]}")
    return proto


def _check_dynamic(proto) -> None:
    """RuntimeError unless the input's N, H and W are symbolic: the exporter, when torch.export
    finds a size fixed by the code, exports for that size instead of failing."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    fixed = [name for d, name in zip(dims, "NCHW") if name != "C" and not d.dim_param]
    if fixed:
        raise RuntimeError(f"the exporter fixed the input's {', '.join(fixed)} to the traced "
                           "example's size; the graph would not take other sizes")


def custom_domain_nodes(proto) -> list[str]:
    """``domain::op`` of every node (in the graph, its subgraphs and functions) outside the
    standard ONNX domain; empty for a graph any ONNX runtime runs without extra libraries."""
    found = []

    def visit(nodes) -> None:
        for node in nodes:
            if node.domain not in ("", "ai.onnx"):
                found.append(f"{node.domain}::{node.op_type}")
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs]:
                    visit(sub.node)

    visit(proto.graph.node)
    for function in proto.functions:
        found.append(f"{function.domain}::{function.name} (function)")
        visit(function.node)
    return found


def _version() -> str:
    """The installed flowdeblur's version ("unknown" when run from a source tree)."""
    try:
        return importlib.metadata.version("flowdeblur")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------- files


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int
    bytes: int
    weights_sha256: str
    outputs: tuple[str, ...]


def read_metadata(path: PathLike) -> dict[str, str] | None:
    """The ``metadata_props`` of the ONNX file at ``path``; None for a file that is not a
    readable ONNX model of at most :data:`MAX_RECORD_FILE` bytes. Parsed as a protobuf
    message (nothing in the file is run); external tensor data is not read."""
    import onnx

    path = Path(path)
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_RECORD_FILE:
            return None
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError, OSError, onnx's own errors: not a model
        return None
    return {p.key: p.value for p in proto.metadata_props}


def written_by_export(path: PathLike) -> bool:
    """Whether ``path`` is an ONNX file carrying the record of ``flowdeblur export``."""
    metadata = read_metadata(path)
    return metadata is not None and metadata.get(backends.OWNER_KEY) == backends.OWNER_TAG


def check_export_target(output: Path, *, overwrite: bool) -> None:
    """UserError unless ``output`` may be written: an .onnx name, not a folder, and either
    new or (with ``overwrite``) an earlier export of ours."""
    if output.suffix.lower() != backends.ONNX_SUFFIX:
        raise UserError(f"OUTPUT {output} must end in {backends.ONNX_SUFFIX}")
    if output.is_dir():
        raise UserError(f"OUTPUT {output} is a folder; give a file name ending in .onnx")
    if not (output.exists() or output.is_symlink()):
        return
    if not written_by_export(output):
        raise UserError(f"OUTPUT {output} exists and was not written by flowdeblur export: "
                        "it is never replaced; choose another name")
    if not overwrite:
        raise OptionError("overwrite", f"OUTPUT {output} exists (an earlier export); "
                          "{option} replaces it", python="overwrite=True")


def export_onnx(model: FlowDeblurNet, output: PathLike, *, opset: int = DEFAULT_OPSET,
                overwrite: bool = False, image_only: bool = False) -> ExportResult:
    """Write ``model`` as an ONNX file at ``output`` (see the module docstring), whole or not
    at all (:mod:`flowdeblur.media.atomic`); an existing file is replaced only with
    ``overwrite`` and only when it is an earlier export (its metadata says so)."""
    _require_exporter()
    output = Path(output)
    check_opset(opset)
    check_export_target(output, overwrite=overwrite)
    with TargetLock(output, "OUTPUT"):
        check_export_target(output, overwrite=overwrite)
        check_can_create(output, "OUTPUT")  # a read-only place fails now, not after the work
        remove_stale_temporaries(output)
        data = onnx_model(model, opset=opset, image_only=image_only).SerializeToString()
        check_export_target(output, overwrite=overwrite)  # nothing appeared there meanwhile
        with atomic_file(output) as tmp:
            tmp.write_bytes(data)
    outputs = (backends.IMAGE_NAME,) if image_only else (backends.IMAGE_NAME, backends.FLOW_NAME)
    return ExportResult(output, opset, len(data), weights_sha256(model), outputs)


def cache_folder() -> Path:
    """Where exports made for ``deblur --backend`` are kept: ``$FLOWDEBLUR_CACHE/onnx``, else
    ``$XDG_CACHE_HOME/flowdeblur/onnx``, else ``~/.cache/flowdeblur/onnx``."""
    if os.environ.get("FLOWDEBLUR_CACHE"):
        return Path(os.environ["FLOWDEBLUR_CACHE"]).expanduser() / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "flowdeblur" / "onnx"


def cached_export(model: FlowDeblurNet) -> Path:
    """The export of ``model`` in :func:`cache_folder`, named by its weights' digest; made on
    first use, and again when flowdeblur's version differs from the one that made it (with a
    warning: it takes about a minute on a 2-core CPU)."""
    digest = weights_sha256(model)
    path = cache_folder() / f"{model.variant}-{digest[:24]}-opset{DEFAULT_OPSET}.onnx"
    metadata = read_metadata(path) or {}
    if metadata.get(backends.OWNER_KEY) == backends.OWNER_TAG and \
            metadata.get(backends.WEIGHTS_KEY) == digest and \
            metadata.get(backends.VERSION_KEY) == _version():
        return path
    warnings.warn(f"exporting the network to ONNX once for this backend (about a minute on "
                  f"a 2-core CPU), kept in {path}", UserWarning, stacklevel=2)
    export_onnx(model, path, overwrite=True)
    return path


def open_exported(backend: str, weights: PathLike | None, model: FlowDeblurNet | None = None,
                  *, precision: str = "fp32") -> backends.ExportedNetwork:
    """The network for ``deblur --backend onnxruntime|openvino``: ``weights`` if it is an
    .onnx file, else the cached export (:func:`cached_export`) of ``model`` (the network of
    the weights, loaded by the caller)."""
    if weights is not None and Path(weights).suffix.lower() == backends.ONNX_SUFFIX:
        return backends.ExportedNetwork(weights, backend, precision)
    if model is None:
        raise ValueError("give the network whose export to use, or an .onnx weights file")
    _require_exporter()
    return backends.ExportedNetwork(cached_export(model), backend, precision)
