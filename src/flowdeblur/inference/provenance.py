"""What made an output: the provenance its ownership record carries
(:mod:`flowdeblur.media.ownership`), by which ``--resume`` skips an output that is complete
and current and redoes one whose input, weights, backend or options have changed.

A provenance is a JSON object::

    {"flowdeblur": "0.1.0",
     "input": {"bytes": 1234567, "sha256": "..."},
     "weights_sha256": "...",
     "backend": {"name": "torch"},
     "options": {"crf": 6, "ensemble": 1, "precision": "fp32", ...}}

``backend`` names what ran the network (``deblur --backend``): ``{"name": "torch"}`` for the
PyTorch network; for an exported model, ``{"name": "onnxruntime" | "openvino",
"model_sha256": ...}``, the runtime and the SHA-256 of the ``.onnx`` file (its graph, weights
and metadata; a renamed or moved copy is the same model). The runtimes' outputs differ from the
PyTorch network's in the last bits, so ``--resume`` redoes an output made by another backend or
another export. ``weights_sha256`` is the digest of the network's weights either way (an
export's from its metadata: the weights it was made from), and for an exported model
``options`` records the precision and device it runs in (the runtime's, not the ones
``--precision`` and ``--device`` resolve to for the PyTorch network).

``options`` holds only what changes the output's pixels or encoding for its kind (the crf of
a video, the bit depth of PNGs, the frame rate of a video made from images, ...); ``--batch``,
progress bars and the like are left out. ``tile`` is the tile size as asked (None: chosen from
the memory available), so that a resume on a machine with other free memory does not redo
finished outputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

from torch import nn

from ..media import FrameSource
from ..media.atomic import file_sha256
from ..media.ownership import read_provenance
from ..runtime.backends import ExportedNetwork
from ..weights import weights_sha256

__all__ = ["backend_record", "flowdeblur_version", "input_digest", "is_current",
           "make_provenance", "weights_sha256"]


def flowdeblur_version() -> str:
    """The installed flowdeblur's version ("unknown" when run from a source tree)."""
    try:
        return importlib.metadata.version("flowdeblur")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def input_digest(source: FrameSource, given: Path) -> dict:
    """``{"bytes", "sha256"}`` of an input: the file's own for a video; for image frames, the
    total size and the SHA-256 of each frame's name and SHA-256, in order (a renamed, added or
    changed frame changes it)."""
    if source.paths is None:
        return {"bytes": given.stat().st_size, "sha256": file_sha256(given)}
    digest = hashlib.sha256()
    for path in source.paths:
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return {"bytes": sum(p.stat().st_size for p in source.paths), "sha256": digest.hexdigest()}


def backend_record(model: nn.Module | ExportedNetwork) -> dict:
    """What runs ``model``: ``{"name": "torch"}`` for the PyTorch network; for an exported model
    (:class:`~flowdeblur.runtime.backends.ExportedNetwork`) its runtime and the SHA-256 of its
    file."""
    if not isinstance(model, ExportedNetwork):
        return {"name": "torch"}
    return {"name": model.backend, "model_sha256": file_sha256(model.path)}


def make_provenance(source: FrameSource, given: Path, model: nn.Module | ExportedNetwork, *,
                    kind: str, options: dict) -> dict:
    """The provenance of an output of ``kind`` ("video", "images", "image") deblurred from
    ``source`` (read from ``given``) by ``model`` with ``options`` (every option of
    :func:`~.deblur.deblur_video` that can change an output; those that do not matter for
    this kind of output or input are dropped here; for an exported model, the precision and
    device are those it runs in)."""
    if isinstance(model, ExportedNetwork):
        options = dict(options, precision=model.precision, device="cpu")
    drop = set()
    if kind != "video":
        drop |= {"crf", "chroma", "lossless", "video_codec"}
    else:
        drop.add("bits")
    if kind != "video" or source.info is not None:
        drop.add("fps")  # only a video made from images takes it
    record = {
        "flowdeblur": flowdeblur_version(),
        "input": input_digest(source, given),
        "weights_sha256": weights_sha256(model),
        "backend": backend_record(model),
        "options": {k: v for k, v in sorted(options.items()) if k not in drop},
    }
    return json.loads(json.dumps(record))  # as it reads back from a record: lists, not tuples


def is_current(output: Path, flow_dir: Path | None, provenance: dict) -> bool:
    """Whether ``output`` (and the ``flow_dir`` folder if given) is a complete output of ours
    carrying ``provenance``: what this run would write is there already."""
    places = [output] if flow_dir is None else [output, flow_dir]
    return all(read_provenance(place) == provenance for place in places)
