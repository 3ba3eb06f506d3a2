"""Weights on disk: safetensors files that carry the architecture in their metadata.

A weights file holds the model's state dict (optionally cast to bf16/fp16 to ship small) and,
in the safetensors metadata, ``{"format": "flowdeblur", "config": <model.config as JSON>}``,
so a file can rebuild its own network and a mismatch is caught before any tensor is copied.
Every file is read by :func:`read_weights`, which refuses tensors that are not floating point
or hold NaN or infinite values (they would turn every output frame black or white).
Shipped weights live beside this file and load offline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize

from ..errors import UserError
from ..media.atomic import PathLike, atomic_write_bytes
from ..models import FlowDeblurNet
from ..runtime.backends import ExportedNetwork
from ..runtime.device import PRECISIONS  # name -> dtype, the storage dtypes too

#: The weights shipped inside the package (trained on synthetic data only; see README).
PRETRAINED = Path(__file__).with_name("flowdeblur_synthetic.safetensors")

class WeightsFile(NamedTuple):
    """The contents of a weights file."""

    state: dict[str, torch.Tensor]  #: the state dict, in the file's storage dtype
    metadata: dict[str, str]  #: safetensors metadata ("format", "config", extras)


def save_weights(
    model: FlowDeblurNet,
    path: PathLike,
    *,
    dtype: str = "fp32",
    extra_metadata: dict[str, str] | None = None,
    require_finite: bool = False,
) -> None:
    """Write ``model``'s weights to ``path``, whole or not at all (:func:`atomic_write_bytes`),
    with the permissions a plain ``open(path, "wb")`` would give it.

    ``dtype`` ("fp32", "bf16", "fp16") is the storage dtype of the tensors; ``extra_metadata``
    adds string entries beside the format and config. ``require_finite``: UserError, and
    nothing written, when a tensor holds NaN or infinite values once stored in ``dtype``
    (values beyond 65504 overflow fp16), since :func:`read_weights` would refuse the file.
    """
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {sorted(PRECISIONS)}, got {dtype!r}")
    model = getattr(model, "module", model)  # unwrap DDP
    state = {
        k: v.detach().to("cpu", PRECISIONS[dtype]).contiguous()
        for k, v in model.state_dict().items()
    }
    if require_finite:
        bad = _first_unusable(state)
        if bad is not None:
            name, problem = bad
            hint = ""
            if dtype == "fp16":
                hint = " (fp16 holds magnitudes up to 65504; store bf16 or fp32)"
            raise UserError(f"{path} not written: in {dtype}, tensor {name} {problem}{hint}")
    metadata = {"format": "flowdeblur", "config": json.dumps(model.config)}
    metadata.update(extra_metadata or {})
    # Serialised in memory and written by atomic_write_bytes, not by safetensors' save_file,
    # which replaces the file with one of mode 0600 whatever the umask (safetensors 0.8).
    atomic_write_bytes(path, serialize(state, metadata=metadata))


def read_weights(path: PathLike) -> WeightsFile:
    """Read a weights file -> ``WeightsFile(state, metadata)``. UserError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors weights file ({e})") from None
    bad = _first_unusable(state)
    if bad is not None:  # such weights give black or white frames, with no other sign
        name, problem = bad
        raise UserError(f"{path}: tensor {name} {problem}; these are not usable weights")
    return WeightsFile(state, metadata)


def _first_unusable(state: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """(name, what is wrong) of the first tensor that is not floating point or holds NaN or
    infinite values; None when all are usable."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            return short_repr(name), f"holds {str(tensor.dtype).removeprefix('torch.')} values, " \
                                 "not floating point ones"
        bad = int(tensor.numel() - torch.isfinite(tensor).sum())
        if bad:
            return short_repr(name), f"holds {bad:,} NaN or infinite values"
    return None


def short_repr(value: object, limit: int = 100) -> str:
    """``repr(value)`` cut to at most ``limit`` characters: names and values read from a file
    can be as long as the file, and an error line quoting one must stay a line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_state_into(model: FlowDeblurNet, path: PathLike) -> FlowDeblurNet:
    """Copy the weights in ``path`` into ``model``; UserError if they do not fit it exactly."""
    return _copy_into(model, read_weights(path), path)


def _copy_into(model: FlowDeblurNet, weights: WeightsFile, path: PathLike) -> FlowDeblurNet:
    """Copy ``weights`` (read from ``path``, named in errors) into ``model`` after checking that
    the config, the tensor names and every shape match."""
    state = weights.state
    config = _stated_config(weights, path, required=False)
    if config is not None and config != model.config:
        raise UserError(f"{path} holds weights for {short_repr(config)}, which does not fit the "
                        f"model {model.config}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        if missing:
            detail = f"missing {missing[0]}"
        elif unexpected:
            detail = f"unexpected {unexpected[0]}"
        else:
            k = wrong[0]
            detail = f"{k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        raise UserError(
            f"{path} does not fit the model ({detail}; {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors)"
        )
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))
    return model


def load_weights(path: PathLike, **model_kwargs) -> FlowDeblurNet:
    """Build the network a weights file describes and load it (fp32, CPU, eval mode)."""
    weights = read_weights(path)
    if weights.metadata.get("format") != "flowdeblur":
        raise UserError(f"{path} is not a flowdeblur weights file (no flowdeblur metadata)")
    config = _stated_config(weights, path, required=True)
    try:
        model = FlowDeblurNet(**config, **model_kwargs)
    except (TypeError, ValueError) as e:  # unknown keys or values, e.g. a variant not built
        raise UserError(f"{path}: its model description {short_repr(config)} cannot be built "
                        f"({short_repr(str(e))})") from None
    return _copy_into(model, weights, path).eval()


def _stated_config(weights: WeightsFile, path: PathLike, *, required: bool) -> dict | None:
    """The model config a weights file's metadata states (a JSON object), or None when it
    states none and none is ``required``; UserError for a missing or malformed one."""
    text = weights.metadata.get("config")
    if text is None:
        if required:
            raise UserError(f"{path} has no model description (metadata 'config')")
        return None
    try:
        config = json.loads(text)
    except ValueError as e:  # JSONDecodeError, or an integer of over 4300 digits
        raise UserError(f"{path}: its model description is not valid JSON ({e})") from None
    except RecursionError:
        raise UserError(f"{path}: its model description is nested too deeply to be a model's "
                        "settings") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: its model description is not a JSON object: {text[:80]}")
    return config


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a network's weights: every state-dict entry's name, dtype, shape and bytes,
    in order (the same for the same weights whichever file or device they came from). For an
    exported model (:class:`~flowdeblur.runtime.backends.ExportedNetwork`), the digest of
    the weights it was exported from, as its metadata records it."""
    if isinstance(model, ExportedNetwork):
        return model.weights_sha256
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_pretrained(**model_kwargs) -> FlowDeblurNet:
    """The network with the weights shipped in the package (offline; no download)."""
    if not PRETRAINED.is_file():
        raise UserError(
            f"no pretrained weights are shipped in this installation ({PRETRAINED} is missing)"
        )
    return load_weights(PRETRAINED, **model_kwargs)
