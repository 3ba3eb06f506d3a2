"""Training configuration: typed dataclasses, read from small YAML files plus ``key=value``.

A config file mirrors :class:`TrainConfig`; any field left out keeps its default (the paper's
stage-2 recipe). Command-line overrides use dotted keys and YAML values::

    flowdeblur train --config configs/joint.yaml optim.lr=1e-4 model.variant=no_rnn

Unknown keys are rejected with a :class:`~flowdeblur.errors.UserError` that names the key and
suggests the closest valid one, so a typo never silently trains with a default.

YAML is read by :func:`read_yaml` (files, ``config.yaml`` of a run, override values): anchors
and aliases work, but a document whose aliases expand to more than :data:`MAX_YAML_NODES`
nodes (a "billion laughs" bomb), nested deeper than :data:`MAX_YAML_DEPTH` or larger than
:data:`MAX_YAML_BYTES` is refused in one line before anything walks it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.degrade import DegradeConfig
from ..errors import UserError
from ..models import VARIANTS
from ..ops import BACKENDS
from ..runtime.device import PRECISIONS
from .losses import IMAGE_LOSSES, REDUCTIONS
from .reblur import ReblurConfig, check_reblur_config

STAGES = ("flow", "joint")
SOURCES = ("synthetic", "real", "mix")
SCHEDULES = ("constant", "poly")
EXPORT_DTYPES = tuple(PRECISIONS)

#: Most nodes a config document may hold once its aliases are expanded.
MAX_YAML_NODES = 100_000
#: Deepest nesting of a config document (real configs use three or four levels).
MAX_YAML_DEPTH = 64
#: Largest config file read (real configs are a few KiB).
MAX_YAML_BYTES = 1 << 20


@dataclass
class ModelConfig:
    """Which network to train and where its first weights come from."""

    #: One of :data:`flowdeblur.models.VARIANTS` (Table IV ablations).
    variant: str = "full"
    #: Spatial RNN backend ("auto" picks triton on CUDA, the compiled kernel on CPU).
    rnn_backend: str = "auto"
    #: Weights-only start (a ``.safetensors`` file from ``flowdeblur.weights.save_weights``):
    #: stage 2 starts from the stage-1 flow weights, as the paper started from FlowNetS.
    #: "shipped": the weights shipped in the package (``flowdeblur.load_pretrained``).
    init_weights: str | None = None
    #: False: copy only the tensors whose name and shape fit (e.g. stage-1 weights of the
    #: 'full' model into the 'single_frame' variant, whose first conv differs).
    init_strict: bool = True
    #: "xavier" (the paper) or "identity": Xavier, then the last conv starts as a copy of
    #: the blurry frame (``DeblurNet.init_output_as_identity``); for short training budgets.
    output_init: str = "xavier"


@dataclass
class DataConfig:
    """Where training pairs come from and how they are cut."""

    #: "synthetic" (generated scenes), "real" (a dataset on disk) or "mix" (both per batch).
    source: str = "synthetic"
    #: Square training patch side in pixels (paper: 256). A multiple of 64 for stage 1.
    crop_size: int = 256
    #: Global batch: split evenly over the processes of a multi-GPU run (paper: 20).
    batch_size: int = 20
    #: Synthetic scenes are rendered at this side (0: ``crop_size``); with
    #: ``augment_synthetic`` the augmentation then crops ``crop_size`` out of them.
    scene_size: int = 0
    #: Overrides of :class:`flowdeblur.data.synthetic.SceneConfig` (e.g. max_camera_motion).
    synthetic: dict[str, Any] = field(default_factory=dict)
    #: Also augment synthetic scenes (they are already random; real data is always augmented).
    augment_synthetic: bool = False
    #: Render this many synthetic samples once (at ``scene_size``) and draw every batch from
    #: them under random crops, flips, transpositions and colour orders
    #: (:class:`flowdeblur.data.pool.ScenePool`); 0: render every batch afresh. For CPU runs,
    #: where rendering a sample costs about as much as training on it.
    synthetic_pool: int = 0
    #: Real dataset: root folder and layout, read by ``flowdeblur.data.readers.PairedFrames``.
    real_root: str | None = None
    real_layout: str = "dvd"
    #: "mix" only: the share of each batch drawn from the real dataset.
    real_fraction: float = 0.5
    #: Augmentation of real patches (paper: crop, resize, rotate, scale, colour permutation).
    scale_range: tuple[float, float] = (0.7, 1.3)
    max_rotation_deg: float = 10.0
    flips: bool = True
    permute_colors: bool = True
    #: DataLoader worker processes for real data (0: load in the training process).
    num_workers: int = 4
    #: Camera and codec degradations of the blurry inputs: fields of
    #: :class:`flowdeblur.data.degrade.DegradeConfig` (noise_probability, shot_noise,
    #: read_noise, compression_probability, quality); empty: clean inputs.
    degrade: dict[str, Any] = field(default_factory=dict)
    #: Real blurry videos without ground truth for the reblurring loss (``reblur``), read
    #: by :class:`flowdeblur.training.unlabelled.UnlabelledTriples`.
    unlabelled_videos: list[str] = field(default_factory=list)


@dataclass
class OptimConfig:
    """Adam, as in the paper (Sec. III-D)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6
    #: Clip the global gradient L2 norm to this value (the release: 5000); null: no clipping.
    grad_clip: float | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over ``steps``."""

    #: "constant" (the paper) or "poly": ``lr * (1 - step / steps) ** power`` (the release).
    kind: str = "constant"
    power: float = 2.0
    #: Linear warm-up from 0 over this many steps (0: none).
    warmup_steps: int = 0


@dataclass
class LogConfig:
    """Progress, logs and checkpoints (all written under ``run_dir``)."""

    #: Write TensorBoard scalars every this many steps (the loss goes to losses.jsonl
    #: at every step).
    every: int = 20
    #: TensorBoard images (blurry, output, sharp, flow, gates) every this many steps (0: never).
    image_every: int = 1000
    #: Write a checkpoint every this many steps (and at the end, and on SIGINT/SIGTERM).
    checkpoint_every: int = 1000
    #: How many of the newest checkpoints to keep.
    keep_checkpoints: int = 2
    tensorboard: bool = True
    #: tqdm progress bar on the terminal.
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults: the paper's stage 2 (joint training)."""

    #: Folder for checkpoints, losses.jsonl, TensorBoard events and the final weights.
    run_dir: str = "runs/joint"
    #: "flow": flow pre-training with the multi-scale EPE on synthetic ground-truth flow
    #: (replaces the paper's FlowNetS start); "joint": Eq. 14 (warping terms + MSE).
    stage: str = "joint"
    #: Number of optimiser steps (paper: 800,000).
    steps: int = 800_000
    seed: int = 0
    #: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    #: bf16 autocast on CUDA (ignored on CPU, which trains in fp32 unless ``cpu_amp``).
    amp: bool = True
    #: bf16 autocast on the CPU as well (off by default: of three CPUs with avx512_bf16 it made
    #: the step 2.2x faster on the one with AMX, 1.45x faster (with channels_last) on another
    #: and 1.4x slower on the third; docs/BENCHMARKS.md "Training throughput").
    cpu_amp: bool = False
    #: Weights and batches in NHWC (channels_last) instead of NCHW, on any device; with
    #: ``cpu_amp`` the fastest setting on the AMD EPYC of docs/BENCHMARKS.md "Training
    #: throughput", not on its Intel Xeon.
    channels_last: bool = False
    #: Stage 2: include the warping terms of Eq. 14 (false: Table IV "w/o flow losses").
    flow_loss: bool = True
    #: Stage 2: "sum" (paper/release: squared L2 summed over pixels) or "mean".
    loss_reduction: str = "sum"
    #: Stage 2: the image term: "mse" (Eq. 14), "charbonnier" or "l1".
    image_loss: str = "mse"
    #: Keep an exponential moving average of the weights with this decay per step (0: off);
    #: the exported weights are then the average's.
    ema_decay: float = 0.0
    #: Stop after this many seconds of training (0: no limit), checkpoint and export the
    #: weights as at the end of a run.
    time_limit_s: float = 0.0
    #: Where the final weights go (default: ``run_dir/weights.safetensors``).
    export_path: str | None = None
    #: dtype of the exported ``run_dir/weights.safetensors`` (bf16 halves it for shipping).
    export_dtype: str = "fp32"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reblur: ReblurConfig = field(default_factory=ReblurConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, with type checking and helpful errors


def read_yaml(text: str, where: str) -> Any:
    """Parse one YAML document (safe tags only), refusing it with a UserError naming
    ``where`` when its aliases expand past :data:`MAX_YAML_NODES` nodes or it nests deeper
    than :data:`MAX_YAML_DEPTH`. Malformed YAML raises ``yaml.YAMLError``."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            # The composer recurses once per level: a deep document fails here, before the
            # depth check can see it.
            node = loader.get_single_node()
        except RecursionError:
            raise UserError(f"{where} is nested too deeply (at most {MAX_YAML_DEPTH} "
                            "levels)") from None
        if node is None:
            return None
        _check_yaml_size(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_yaml_size(root: yaml.Node, where: str) -> None:
    """UserError if the node graph under ``root``, its aliases expanded, holds more than
    :data:`MAX_YAML_NODES` nodes, loops back on itself or nests deeper than
    :data:`MAX_YAML_DEPTH`.

    An alias is the very node object of its anchor, so sizes are memoised per node: a bomb
    costs the time of its text, not of its expansion.
    """
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_YAML_NODES:
                raise UserError(f"{where}: its YAML aliases expand to more than "
                                f"{MAX_YAML_NODES:,} nodes (an alias bomb?); refused")
            continue
        if key in size:
            continue
        if key in open_:
            raise UserError(f"{where}: a YAML alias refers to a value that contains it")
        if len(open_) >= MAX_YAML_DEPTH:
            raise UserError(f"{where} is nested too deeply (at most {MAX_YAML_DEPTH} levels)")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of ``cls``, nested sections included (e.g. ``optim.lr``)."""
    keys = []
    for name, tp in _field_types(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, f"{prefix}{name}."))
    return keys


def _unknown_key(key: str, cls: type, prefix: str) -> UserError:
    local = [f.name for f in dataclasses.fields(cls)]
    everywhere = valid_keys()
    # Prefer a near miss in the same section; else anywhere (e.g. "lr" -> "optim.lr").
    close = difflib.get_close_matches(key, local, n=1, cutoff=0.6)
    hint = prefix + close[0] if close else None
    if hint is None:
        tails = {k.rsplit(".", 1)[-1]: k for k in everywhere}
        close = difflib.get_close_matches(key, list(tails), n=1, cutoff=0.75)
        hint = tails[close[0]] if close else None
    where = f"in section '{prefix[:-1]}'" if prefix else "at the top level"
    message = f"unknown config key '{prefix}{key}' ({where})"
    return UserError(message + (f"; did you mean '{hint}'?" if hint else ""))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a YAML value to the annotated type ``tp``; UserError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if tp is Any:
        return value
    if origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp in _SCALARS:
        converted = _SCALARS[tp](value)
        if converted is not _MISMATCH:
            return converted
    else:  # pragma: no cover - a field type this module does not handle
        raise TypeError(f"unsupported config field type {tp!r} for {key}")
    raise UserError(f"config key '{key}' expects {_type_name(tp)}, got {_shown(value)}")


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters."""
    shorten = reprlib.Repr()  # also bounds nesting and list lengths, so a shared value is cheap
    shorten.maxstring = shorten.maxother = limit
    text = shorten.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


#: Returned by the scalar converters below for a value of the wrong type.
_MISMATCH = object()


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _MISMATCH


def _as_number(value: Any) -> Any:
    """int or float (not bool) as is; a string that parses as a float, as that float
    (PyYAML reads "1e-3" and "8e5", without a dot, as strings)."""
    if isinstance(value, bool):
        return _MISMATCH
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return _MISMATCH


def _as_int(value: Any) -> Any:
    number = _as_number(value)
    if isinstance(number, int) or (isinstance(number, float) and number.is_integer()):
        return int(number)
    return _MISMATCH


def _as_float(value: Any) -> Any:
    number = _as_number(value)
    return _MISMATCH if number is _MISMATCH else float(number)


def _as_str(value: Any) -> Any:
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return str(value) if ok else _MISMATCH


_SCALARS = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} numbers"
    if origin is list:
        return f"a list, each {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def from_dict(data: dict | None, cls: type = TrainConfig, prefix: str = "") -> Any:
    """Build ``cls`` from a (nested) dict; unknown keys and wrong types raise UserError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        section = prefix[:-1] or "<top>"
        raise UserError(f"config section '{section}' must be a mapping, got {_shown(data)}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key(str(key), cls, prefix)
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(value, tp, f"{prefix}{key}.")
        else:
            kwargs[key] = _convert(value, tp, prefix + key)
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """The config as plain nested dicts/lists (YAML- and JSON-safe)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A config dict (:func:`to_dict`) as dotted keys; ``data.synthetic`` and ``data.degrade``
    are free-form dicts (overrides of other dataclasses), kept whole."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key not in ("synthetic", "degrade"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML (what ``flowdeblur train --print-config`` prints)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted ``key=value`` pairs in the nested dict ``data`` (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
        try:
            value = read_yaml(raw, f"override {key}") if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def read_config_file(path: str | Path) -> dict:
    """The mapping a YAML config file holds (not yet checked against :class:`TrainConfig`);
    UserError in one line for a missing, oversized, non-UTF-8 or malformed file, or one that
    is not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"{path} is over {MAX_YAML_BYTES >> 20} MiB: not a config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    try:
        data = read_yaml(text, str(path)) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when ``path`` is None), apply ``key=value``
    overrides, check types and values. Raises UserError on any mistake."""
    data: dict = {}
    if path is not None:
        data = read_config_file(path)
    data = apply_overrides(data, list(overrides or []))
    config = from_dict(data)
    validate(config)
    return config


def _choice(key: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if not math.isfinite(value):
        raise UserError(f"{key} must be a finite number; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{key} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def degrade_config(data: DataConfig) -> DegradeConfig:
    """``data.degrade`` as a checked :class:`DegradeConfig` (UserError naming a bad key)."""
    known = [f.name for f in dataclasses.fields(DegradeConfig)]
    for key in data.degrade:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean data.degrade.{close[0]}?" if close else ""
            raise UserError(f"unknown key data.degrade.{key}{hint}")
    try:
        return DegradeConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in data.degrade.items()})
    except (TypeError, ValueError) as e:
        raise UserError(f"data.degrade: {e}") from None


def validate(config: TrainConfig) -> None:
    """Check values that the types alone do not (choices, ranges, combinations)."""
    c = config
    _choice("stage", c.stage, STAGES)
    _choice("loss_reduction", c.loss_reduction, REDUCTIONS)
    _choice("image_loss", c.image_loss, IMAGE_LOSSES)
    if not 0 <= c.ema_decay < 1:
        raise UserError(f"ema_decay must be in [0, 1); got {c.ema_decay!r}")
    _positive("time_limit_s", c.time_limit_s, allow_zero=True)
    degrade_config(c.data)
    _choice("export_dtype", c.export_dtype, EXPORT_DTYPES)
    _choice("model.variant", c.model.variant, sorted(VARIANTS))
    _choice("model.rnn_backend", c.model.rnn_backend, BACKENDS)
    _choice("model.output_init", c.model.output_init, ["identity", "xavier"])
    _choice("data.source", c.data.source, SOURCES)
    _choice("schedule.kind", c.schedule.kind, SCHEDULES)
    _positive("steps", c.steps)
    _positive("data.batch_size", c.data.batch_size)
    _positive("data.crop_size", c.data.crop_size)
    _positive("data.scene_size", c.data.scene_size, allow_zero=True)
    _positive("data.num_workers", c.data.num_workers, allow_zero=True)
    _positive("data.synthetic_pool", c.data.synthetic_pool, allow_zero=True)
    _positive("optim.lr", c.optim.lr)
    _positive("optim.weight_decay", c.optim.weight_decay, allow_zero=True)
    if c.optim.grad_clip is not None:
        _positive("optim.grad_clip", c.optim.grad_clip)
    for i, b in enumerate(c.optim.betas):
        if not 0 <= b < 1:
            raise UserError(f"optim.betas[{i}] must be in [0, 1); got {b!r}")
    _positive("schedule.power", c.schedule.power)
    _positive("schedule.warmup_steps", c.schedule.warmup_steps, allow_zero=True)
    _positive("log.every", c.log.every)
    _positive("log.image_every", c.log.image_every, allow_zero=True)
    _positive("log.checkpoint_every", c.log.checkpoint_every)
    _positive("log.keep_checkpoints", c.log.keep_checkpoints)
    if not 0 <= c.data.real_fraction <= 1:
        raise UserError(f"data.real_fraction must be in [0, 1]; got {c.data.real_fraction!r}")
    lo, hi = c.data.scale_range
    if not 0 < lo <= hi:
        raise UserError(f"data.scale_range must be 0 < low <= high; got {[lo, hi]}")
    if c.data.scene_size and c.data.scene_size < c.data.crop_size:
        raise UserError(
            f"data.scene_size ({c.data.scene_size}) must be >= data.crop_size ({c.data.crop_size})"
        )
    if c.data.source in ("real", "mix") and not c.data.real_root:
        raise UserError(f"data.source={c.data.source} needs data.real_root (the dataset folder)")
    if "size" in c.data.synthetic or "three_frames" in c.data.synthetic:
        raise UserError(
            "data.synthetic.size/three_frames are set by the trainer: use data.crop_size or "
            "data.scene_size (three frames follow the model variant)"
        )
    if c.stage == "flow":
        if c.data.source != "synthetic":
            raise UserError("stage=flow needs ground-truth flow: data.source must be synthetic")
        if VARIANTS[c.model.variant].in_frames == 0:
            raise UserError(f"model.variant={c.model.variant} has no flow network to pre-train")
        if c.data.crop_size % 64:
            raise UserError(
                f"stage=flow needs data.crop_size to be a multiple of 64; got {c.data.crop_size}"
            )
    if c.device != "auto" and not (c.device == "cpu" or c.device.startswith("cuda")):
        raise UserError(f"device must be auto, cpu, cuda or cuda:N; got {c.device!r}")
    check_reblur_config(c)
