"""Set-up of a training run: device, model, first weights and optimiser.

Every process builds the same initial model (``torch.manual_seed(config.seed)`` before the
constructor), then loads the resume checkpoint, or ``model.init_weights``, or keeps its Xavier
start.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import UserError
from ..models import VARIANTS, FlowDeblurNet
from ..runtime import Runtime
from ..weights import PRETRAINED, load_state_into, read_weights
from .checkpoint import ResumePoint
from .config import OptimConfig, TrainConfig
from .distributed import Processes
from .reblur import FrozenFlow


def training_runtime(device: torch.device, local_rank: int, amp: bool,
                     cpu_amp: bool = False, channels_last: bool = False) -> Runtime:
    """Where and in what precision this process trains.

    ``device`` is ``config.device`` resolved by :func:`flowdeblur.runtime.resolve_device`; a
    bare "cuda" becomes this process's own GPU, ``cuda:{local_rank}``. With ``amp`` the forward
    runs under bf16 autocast on CUDA, with ``cpu_amp`` on the CPU (the weights, their
    gradients and the optimiser stay fp32); otherwise in fp32. ``channels_last``: weights and
    batches in NHWC (:func:`to_layout`).
    """
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    bf16 = cpu_amp if device.type == "cpu" else amp and device.type == "cuda"
    precision = "bf16" if bf16 else "fp32"
    return Runtime(device=device, precision=precision, channels_last=channels_last,
                   mode="eager")


def to_layout(batch: dict[str, torch.Tensor], runtime: Runtime) -> dict[str, torch.Tensor]:
    """``batch`` with its 4-D tensors in the runtime's memory layout (NHWC or NCHW)."""
    if not runtime.channels_last:
        return batch
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
            for k, v in batch.items()}


def per_process_batch(batch_size: int, processes: Processes) -> int:
    """This process's share of the global ``data.batch_size``."""
    if batch_size % processes.world_size:
        raise UserError(f"data.batch_size={batch_size} does not split evenly "
                        f"over {processes.world_size} processes")
    return batch_size // processes.world_size


class ModelStart(NamedTuple):
    """The model a run starts from, and a one-line note of where its weights came from."""

    model: FlowDeblurNet
    note: str


def build_model(config: TrainConfig, resume: ResumePoint | None) -> ModelStart:
    """The run's FlowDeblurNet (on the CPU) and a note of where its weights came from."""
    torch.manual_seed(config.seed)  # the same initial weights on every process
    model = FlowDeblurNet(config.model.variant, rnn_backend=config.model.rnn_backend)
    if resume is not None:
        try:
            model.load_state_dict(resume.state["model"])
        except RuntimeError as e:
            raise UserError(f"{resume.path} does not fit model.variant={config.model.variant} "
                            f"({str(e).splitlines()[0]})") from None
        _check_dtypes(model, resume)
        return ModelStart(model, f"resumed from {resume.path} at step {resume.step}")
    if config.model.init_weights:
        note = load_init_weights(model, config.model.init_weights, config.model.init_strict)
        return ModelStart(model, note)
    note = "initialised with Xavier weights"
    if config.model.output_init == "identity":
        model.deblurnet.init_output_as_identity()
        note += ", the output conv starting as a copy of frame t"
    return ModelStart(model, note)


def frozen_flow(config: TrainConfig, runtime: Runtime) -> FrozenFlow | None:
    """The reblurring loss's frozen copy of the flow network as the run starts (None when the
    loss is off): rebuilt from the start weights (``model.init_weights``), so that a resumed
    run takes its flows from the same weights as the run it continues."""
    if not config.reblur.weight:
        return None
    flownet = build_model(config, None).model.flownet.to(runtime.device)
    if runtime.channels_last:
        flownet.to(memory_format=torch.channels_last)
    return FrozenFlow(flownet, VARIANTS[config.model.variant].in_frames)


def _check_dtypes(model: nn.Module, resume: ResumePoint) -> None:
    """UserError when a resumed tensor's dtype is not the model's: ``load_state_dict`` would
    cast integer or bool tensors into the float weights without a word."""
    own = model.state_dict()
    for name, tensor in resume.state["model"].items():
        if tensor.dtype != own[name].dtype:
            raise UserError(f"{resume.path} holds {name} as {tensor.dtype}, the model's is "
                            f"{own[name].dtype}: not a checkpoint of this model")


def load_init_weights(model: FlowDeblurNet, path: str, strict: bool) -> str:
    """Weights-only start from a safetensors file; returns a one-line note of what was loaded.

    ``strict``: every tensor must fit. Otherwise the tensors whose name and shape fit are
    copied (e.g. stage-1 weights of 'full' into 'single_frame', whose conv1 differs).
    ``path`` "shipped" names the weights shipped in the package.
    """
    if path == "shipped":
        path = str(PRETRAINED)
    if strict:
        load_state_into(model, path)
        return f"initialised from {path}"
    state = read_weights(path).state
    own = model.state_dict()
    fits = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    if not fits:
        raise UserError(f"no tensor of {path} fits model.variant={model.variant}")
    with torch.no_grad():
        for k in fits:
            own[k].copy_(state[k].to(own[k].dtype))
    return f"initialised {len(fits)} of {len(own)} tensors from {path}"


def build_optimizer(
    params: list[nn.Parameter], optim: OptimConfig, resume: ResumePoint | None
) -> torch.optim.Adam:
    """Adam over ``params`` (the paper's optimiser), with its state when resuming."""
    # The fused kernel makes one pass over each tensor instead of a chain of elementwise ops
    # (measured on CPU-2: 4-7 ms instead of 27-100 ms, against a 0.5-0.67 s step;
    # docs/BENCHMARKS.md).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=optim.lr, betas=optim.betas,
                                 weight_decay=optim.weight_decay, fused=fused)
    if resume is not None:
        try:
            optimizer.load_state_dict(resume.state["optimizer"])
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AttributeError) as e:
            raise UserError(f"the optimiser state in {resume.path} does not fit this run "
                            f"({_first_line(e)})") from None
        for group in optimizer.param_groups:  # the checkpoint's flag came back with it
            group["fused"] = fused
    return optimizer


def build_ema(model: nn.Module, decay: float, resume: ResumePoint | None
              ) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (None when ``decay`` is 0),
    restored from the resume checkpoint when it holds one; a checkpoint without an average
    starts it from the resumed weights."""
    if decay == 0:
        return None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    if resume is not None and "ema" in resume.state:
        try:
            ema.load_state_dict(resume.state["ema"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"the weight average in {resume.path} does not fit this run "
                            f"({_first_line(e)})") from None
    return ema


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message (its type when it has none), for a one-line
    UserError."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def wrap_distributed(net: nn.Module, processes: Processes, device: torch.device) -> nn.Module:
    """``net`` itself for one process, else ``net`` in DistributedDataParallel."""
    if not processes.enabled:
        return net
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None
    )
