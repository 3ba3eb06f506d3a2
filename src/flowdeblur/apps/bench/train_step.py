"""Timer of one training step (forward, Eq. 14 loss, backward, Adam): ``bench --train``."""

from __future__ import annotations

import copy

import torch

from ...errors import UserError
from ...models import FlowDeblurNet, SpatialRNN
from ...ops import resolve_backend
from ...runtime import Runtime
from ...runtime.fastpath import CUDAGRAPH_COMPILE_MODES
from ...training.config import OptimConfig
from ...training.losses import eq14_loss
from ...training.setup import build_optimizer
from .results import Timing
from .timing import check_mode, random_frames, reset_compiler, time_callable, torch_compile_mode


def time_train_step(
    model: FlowDeblurNet,
    *,
    device: torch.device,
    precision: str,
    mode: str,
    batch: int,
    size: tuple[int, int],
    repeats: int,
    warmup: int,
    channels_last: bool | None = None,
    graph_mode: str = "max-autotune",
) -> Timing:
    """Time one training step: forward under autocast, Eq. 14 loss, backward, Adam.

    Works on a copy of ``model`` (train mode) with the trainer's Adam
    (:func:`flowdeblur.training.setup.build_optimizer`: the paper's betas 0.9/0.999 and weight
    decay 1e-6, the fused kernel on CPU and CUDA). ``compile``/``cudagraphs`` compile forward +
    loss (the backward comes from AOTAutograd); the optimizer step stays eager. ``graph`` is not
    supported here.
    """
    check_mode(mode)
    if mode == "graph":
        raise UserError("mode 'graph' (manual CUDA graph capture) is for inference only")
    runtime = Runtime.resolve(device, precision, "eager", purpose="report",
                              channels_last=channels_last)
    reset_compiler()
    net = copy.deepcopy(model).to(device).train()
    for m in net.modules():  # pin "auto" outside the (possibly compiled) step
        if isinstance(m, SpatialRNN) and m.backend == "auto":
            m.backend = resolve_backend("auto", device)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = build_optimizer(list(net.parameters()), OptimConfig(lr=1e-4), None)
    frame_t, frame_next, sharp = random_frames(batch, size, 3, device)
    layout = torch.channels_last if runtime.channels_last else torch.contiguous_format

    def loss_fn(frame_t, frame_next, sharp):
        with runtime.autocast():
            out = net(frame_t.contiguous(memory_format=layout),
                      frame_next.contiguous(memory_format=layout))
            return eq14_loss(out, frame_t, frame_next, sharp).total

    compile_mode = torch_compile_mode(mode, graph_mode) if mode != "eager" else None
    graphs = compile_mode in CUDAGRAPH_COMPILE_MODES
    if compile_mode:
        loss_fn = torch.compile(loss_fn, mode=compile_mode, dynamic=False)

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(frame_t, frame_next, sharp)
        loss.backward()
        opt.step()

    return time_callable(step, device=device, repeats=repeats, warmup=warmup)

