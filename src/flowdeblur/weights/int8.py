"""int8 activation scales beside a weights file: ``<weights>.int8.json``.

``--precision int8`` (:mod:`flowdeblur.runtime.int8`) needs one scale and zero point per
quantized activation. They are measured once by :func:`calibrate_on_synthetic_scenes` (the
network runs on synthetic scenes only, never on dev or test clips) and kept in a small JSON
file next to the weights, tied to them by the SHA-256 of their tensors and to the torch and
torchao versions that numbered the activations. Where no matching file exists, the scales are
measured on the spot (a few seconds) and the file is not written.

    {"format": "flowdeblur-int8-scales", "weights_sha256": "...", "torch": "2.13.0+cpu",
     "torchao": "0.18.0", "calibration": {"size": [256, 448], "pairs": 8, "seed": 0},
     "qparams": {"activation_post_process_0": [0.0039, 0], ...}}
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.synthetic import make_clip
from ..errors import UserError
from ..media.atomic import PathLike, atomic_write_text
from ..runtime import int8
from . import weights_sha256

FORMAT = "flowdeblur-int8-scales"

#: Calibration: pairs of consecutive blurry frames from synthetic clips of this size.
CALIBRATION = {"size": [256, 448], "pairs": 8, "seed": 0}

#: What replaces the weights file's extension in its scales file's name.
SCALES_SUFFIX = ".int8.json"


def scales_path(weights_path: PathLike) -> Path:
    """Where the int8 scales of ``weights_path`` live: ``a.safetensors`` -> ``a.int8.json``."""
    path = Path(weights_path)
    return path.with_name(path.stem + SCALES_SUFFIX)


def _versions() -> dict[str, str]:
    int8.torchao_modules()  # imports torchao quietly, or says which extra provides it
    import torchao

    return {"torch": torch.__version__, "torchao": torchao.__version__}


def calibrate_on_synthetic_scenes(model: nn.Module, *,
                                  keep_float: tuple[str, ...] = int8.KEEP_FLOAT) -> int8.QParams:
    """The activation scales of ``model`` measured on :data:`CALIBRATION`'s synthetic pairs,
    with the layers in ``keep_float`` left in float (:func:`flowdeblur.runtime.int8.calibrate`;
    the scales files hold those of the default)."""
    size, pairs, seed = tuple(CALIBRATION["size"]), CALIBRATION["pairs"], CALIBRATION["seed"]
    frames = []
    for clip_seed in range(seed, seed + (pairs + 1) // 2):
        blur = make_clip(3, size, seed=clip_seed)["blur"]
        frames += [(blur[0:1], blur[1:2]), (blur[1:2], blur[2:3])]
    net = _eval_copy(model)
    return int8.calibrate(net, frames[:pairs], keep_float=keep_float)


def _eval_copy(model: nn.Module) -> nn.Module:
    import copy

    net = copy.deepcopy(model).cpu().float().eval().requires_grad_(False)
    if hasattr(net, "set_rnn_backend"):
        net.set_rnn_backend("cpu")  # the backend that exports as one operator
    return net


def write_scales(model: nn.Module, weights_path: PathLike) -> Path:
    """Calibrate ``model`` (loaded from ``weights_path``) and write its scales file."""
    record = {"format": FORMAT, "weights_sha256": weights_sha256(model), **_versions(),
              "calibration": CALIBRATION,
              "qparams": {k: list(v) for k, v in calibrate_on_synthetic_scenes(model).items()}}
    path = scales_path(weights_path)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_scales(model: nn.Module, weights_path: PathLike | None) -> int8.QParams | None:
    """The scales stored beside ``weights_path`` for exactly these weights and versions, or
    None (no file, or one made for other weights or versions)."""
    if weights_path is None:
        return None
    path = scales_path(weights_path)
    if not path.is_file() or path.stat().st_size > 1_000_000:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        current = (record["format"] == FORMAT
                   and record["weights_sha256"] == weights_sha256(model)
                   and all(record[k] == v for k, v in _versions().items()))
        if not current:
            return None
        return {str(k): (float(s), int(z)) for k, (s, z) in record["qparams"].items()}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserError(f"{path} is not a valid int8 scales file; delete it") from None


def attach_scales(model: nn.Module, weights_path: PathLike | None) -> nn.Module:
    """Give ``model`` the ``int8_qparams`` that ``--precision int8`` runs with: read beside
    ``weights_path``, else measured now (with a warning saying so)."""
    int8.torchao_modules()
    qparams = read_scales(model, weights_path)
    if qparams is None:
        warnings.warn("no int8 scales for these weights and versions: calibrating on "
                      "synthetic scenes (a few seconds)", UserWarning, stacklevel=2)
        qparams = calibrate_on_synthetic_scenes(model)
    model.int8_qparams = qparams
    return model
