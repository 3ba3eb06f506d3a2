"""A fast forward pass for fixed frame sizes.

This is the implementation behind :meth:`flowdeblur.runtime.Runtime.prepare`.
:func:`prepare_for_inference` turns a :class:`~flowdeblur.models.FlowDeblurNet` into a callable
``fast(frame_t, frame_next) -> image`` that runs

- on a private copy of the model (eval mode, no gradients), so the caller's model is untouched
  (or, where nothing about the weights changes, on the model itself: ``private_copy=False``);
- under ``torch.autocast`` in bf16/fp16 on CUDA (fp32, or bf16 if asked, on CPU), with the
  copy's weights cast once to that dtype: autocast would round them the same way on every call,
  so the result is identical and the per-call cast kernels disappear;
- on CUDA, with weights and inputs in ``channels_last`` (NHWC), the layout cuDNN's
  tensor-core convolutions prefer (on CPU the default stays NCHW: the compiled CPU RNN works
  on NCHW, and converting its 720p inputs and outputs costs about as much as the RNN itself);
- optionally through ``torch.compile`` for the fixed input size (``dynamic=False``), with CUDA
  graphs (``mode="max-autotune"`` or ``"reduce-overhead"``), or with the eager forward captured
  whole in one CUDA graph (``cuda_graph=True``): either way a 720p frame becomes one graph
  launch instead of a few hundred kernel launches.

The forward has no host synchronisation (no ``.item()``, no data-dependent shapes); that is what
lets it be captured in a CUDA graph at all (capture fails on a sync), and
``tests/test_runtime.py`` checks it with ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..models import FlowDeblurOutput, SpatialRNN
from ..ops import backend_available, resolve_backend
from .device import autocast_dtype, default_channels_last, resolve_device, resolve_precision
from .int8 import KEEP_FLOAT, Int8FastForward

#: ``torch.compile`` modes accepted by :func:`prepare_for_inference`.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: The compile modes that wrap the compiled graph in CUDA graphs (inductor's cudagraph trees).
CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")

#: Calls made by ``example_size`` warm-up: cudagraph trees run eagerly once, record on the
#: second call and replay from the third, so three calls leave everything compiled and captured.
WARMUP_CALLS = 3


# ----------------------------------------------------------------------------- validation


def _check_compile(
    compile: bool | str | None, cuda_graph: bool, device: torch.device
) -> str | None:
    if compile is None or compile is False:
        mode = None
    elif compile is True:
        mode = "default"
    elif compile in COMPILE_MODES:
        mode = compile
    else:
        raise UserError(
            f"unknown compile mode {compile!r}; use False or one of {', '.join(COMPILE_MODES)}"
        )
    if device.type != "cuda" and (cuda_graph or mode in CUDAGRAPH_COMPILE_MODES):
        what = "cuda_graph=True" if cuda_graph else f"compile={mode!r}"
        raise UserError(f"{what} uses CUDA graphs, which need a CUDA device, not {device.type}")
    if cuda_graph and mode in CUDAGRAPH_COMPILE_MODES:
        raise UserError(f"compile={mode!r} already uses CUDA graphs; leave cuda_graph=False")
    return mode


def _resolve_rnn_backends(net: nn.Module, device: torch.device) -> None:
    """Pin every RNN layer to a concrete backend that runs on ``device``.

    Resolving ``"auto"`` here, once, keeps the availability probes, imports and fallback
    warning out of the compiled or captured forward.
    """
    for m in net.modules():
        if isinstance(m, SpatialRNN) and m.mode == "rnn":
            name = resolve_backend(m.backend, device)
            if not backend_available(name, device):
                raise UserError(f"spatial_rnn backend {name!r} is not available on {device.type}")
            m.backend = name


# ----------------------------------------------------------------------------- fast forward


class FastForward:
    """Callable made by :func:`prepare_for_inference`; see there.

    ``fast(frame_t, frame_next=None, frame_prev=None)``: (N, 3, H, W) float frames in [0, 1],
    on any device (moved to ``fast.device``) -> on ``fast.device``, either the (N, 3, H, W)
    float32 image or, with ``full_output``, a :class:`~flowdeblur.models.FlowDeblurOutput`
    whose image and flows are float32 (gates left out: inference never reads them, and with
    CUDA graphs they would be copied out of graph memory on every call).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        compile_mode: str | None,
        freeze: bool,
        cuda_graph: bool,
        clone_output: bool,
        full_output: bool = False,
    ) -> None:
        self.net = net
        self.device = device
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.compile_mode = compile_mode
        self.cuda_graph = cuda_graph
        self.clone_output = clone_output
        self.full_output = full_output
        self._fn = self._build(compile_mode, freeze)
        # Inductor's cudagraph trees reuse output memory on the next replay.
        self._tree_graphs = compile_mode in CUDAGRAPH_COMPILE_MODES
        # Manual capture: one graph per input signature, all sharing one memory pool.
        self._graphs: dict[tuple, _CapturedGraph] = {}
        self._pool = torch.cuda.graph_pool_handle() if cuda_graph else None

    def _build(self, compile_mode: str | None, freeze: bool):
        net, device, amp_dtype = self.net, self.device, self.amp_dtype
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        full_output = self.full_output

        def forward(frame_t, frame_next, frame_prev):
            frames = [f if f is None else f.contiguous(memory_format=layout)
                      for f in (frame_t, frame_next, frame_prev)]
            # cache_enabled=False: a CUDA graph must not keep autocast's cast cache alive
            # across replays (and the weights are already in amp_dtype, so nothing is cached).
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16,
                                enabled=amp_dtype is not None, cache_enabled=False):
                out = net(*frames)
            if not full_output:
                return out.image.float()
            # Plain containers out of the compiled or captured function: every compiler and
            # capture handles dicts of tensors; FlowDeblurOutput is built outside (_finish).
            return {"image": out.image.float(), "flows": [f.float() for f in out.flows],
                    "padded_size": out.padded_size}

        if compile_mode is None:
            return forward
        _compile_settings()
        if freeze:
            # Freezing folds the (constant) weights into the graph: layout conversions and casts
            # happen once at compile time. It needs inductor options, which torch.compile will
            # not take together with `mode`, so spell the mode out as its options. Imported
            # here: loading inductor takes seconds and only compiled forwards need it.
            from torch._inductor import list_mode_options

            options = dict(list_mode_options(compile_mode, dynamic=False))
            options["freezing"] = True
            return torch.compile(forward, dynamic=False, options=options)
        return torch.compile(forward, dynamic=False, mode=compile_mode)

    def _to_device(self, frame: torch.Tensor | None) -> torch.Tensor | None:
        if frame is None:
            return None
        return frame.to(self.device, non_blocking=True)

    def __call__(
        self,
        frame_t: torch.Tensor,
        frame_next: torch.Tensor | None = None,
        frame_prev: torch.Tensor | None = None,
    ) -> torch.Tensor | FlowDeblurOutput:
        frames = [self._to_device(f) for f in (frame_t, frame_next, frame_prev)]
        if self.cuda_graph:
            return self._replay(frames)
        if self._tree_graphs:
            # Tell cudagraph trees a new inference step begins, so the previous step's output
            # memory may be reused (we cloned it below if the caller keeps it).
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            out = self._fn(*frames)
        return _finish(out, clone=self._tree_graphs and self.clone_output)

    # -- manual CUDA graph capture of the whole forward

    def _replay(self, frames: list[torch.Tensor | None]) -> torch.Tensor | FlowDeblurOutput:
        key = tuple(None if f is None else (tuple(f.shape), f.dtype) for f in frames)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(frames)
            self._graphs[key] = entry
        for buf, f in zip(entry.inputs, frames):
            if buf is not None:
                buf.copy_(f, non_blocking=True)
        entry.graph.replay()
        return _finish(entry.output, clone=self.clone_output)

    def _capture(self, frames: list[torch.Tensor | None]) -> _CapturedGraph:
        # torch.cuda.graph captures on the current device: make that ours.
        with torch.cuda.device(self.device):
            static_in = [None if f is None else f.clone() for f in frames]
            # Warm up on a side stream first (cuDNN/cuBLAS choose algorithms and allocate
            # workspaces, Triton kernels compile), as torch.cuda.graphs requires.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(WARMUP_CALLS):
                    self._fn(*static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph, pool=self._pool):
                static_out = self._fn(*static_in)
        return _CapturedGraph(inputs=static_in, output=static_out, graph=graph)

    @property
    def captured_shapes(self) -> list[tuple]:
        """The input signatures captured as CUDA graphs so far (one per frame shape)."""
        return list(self._graphs)

    def describe(self) -> str:
        """One line: device, precision, layout and how the forward runs."""
        prec = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        how = "eager" if self.compile_mode is None else f"torch.compile({self.compile_mode})"
        if self.cuda_graph:
            how += " + CUDA graph"
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{self.device} {prec} {layout} {how}"


@dataclass
class _CapturedGraph:
    """One captured forward: its static input buffers, its output in graph memory."""

    inputs: list[torch.Tensor | None]
    output: torch.Tensor | dict
    graph: torch.cuda.CUDAGraph


def _finish(out: torch.Tensor | dict, *, clone: bool) -> torch.Tensor | FlowDeblurOutput:
    """The caller's result from the inner forward's: the image, or a FlowDeblurOutput;
    ``clone``: copied out of memory that the next graph replay overwrites."""
    if isinstance(out, torch.Tensor):
        return out.clone() if clone else out
    image, flows = out["image"], out["flows"]
    if clone:
        image, flows = image.clone(), [f.clone() for f in flows]
    return FlowDeblurOutput(image=image, flows=flows, padded_size=out["padded_size"])


def _compile_settings() -> None:
    """Inductor's on-disk cache in the user's cache folder (``$TORCHINDUCTOR_CACHE_DIR``
    wins), so a frame size compiled once starts in seconds in later runs; and room for
    recompiles: every chunk of a long video prepares its own copy of the network, and each
    new copy recompiles (from that cache) under dynamo's guards."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(base, "flowdeblur", "inductor")
    import torch._dynamo  # imported here: loading dynamo takes seconds

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def _inference_net(
    model: nn.Module, device: torch.device, *, private_copy: bool, weight_dtype: torch.dtype | None,
    channels_last: bool,
) -> nn.Module:
    """The module the fast forward runs: a private copy in eval mode with its RNN backends
    pinned, weights cast and laid out; or, without ``private_copy``, ``model`` itself moved to
    ``device`` and put in eval mode (weights as they are: autocast casts them per call)."""
    if not private_copy:
        if channels_last:
            raise ValueError("channels_last changes the weights' layout: it needs private_copy")
        return model.to(device).eval()
    net = copy.deepcopy(model)
    net.eval().requires_grad_(False)
    _resolve_rnn_backends(net, device)
    net.to(device)
    if weight_dtype is not None:
        net.to(weight_dtype)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def prepare_for_inference(
    model: nn.Module,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    channels_last: bool | None = None,
    compile: bool | str = False,
    cuda_graph: bool = False,
    freeze: bool = False,
    cast_weights: bool = True,
    cudnn_benchmark: bool = True,
    example_size: Sequence[int] | None = None,
    example_batch: int = 1,
    clone_output: bool = True,
    private_copy: bool = True,
    full_output: bool = False,
) -> FastForward:
    """A fast ``(frame_t, frame_next) -> image`` function for ``model`` on ``device``.

    Args:
        model: a :class:`~flowdeblur.models.FlowDeblurNet` (or any module called as
            ``model(frame_t, frame_next, frame_prev)`` returning an object with ``.image``).
            A private copy is made (eval mode, no gradients, on ``device``): later changes to
            ``model`` do not reach the returned function, and ``model`` is not modified.
            RNN layers on backend ``"auto"`` are pinned to the concrete backend for ``device``.
        device: ``"cuda"``, ``"cpu"``, ``"cuda:1"``, ``"auto"`` or a ``torch.device``.
        precision: ``"bf16"``/``"fp16"`` run under autocast (fp16 only on CUDA); ``"fp32"``
            runs without autocast (cuDNN's TF32 setting, ``torch.backends.cudnn.allow_tf32``,
            then decides the conv arithmetic on CUDA); ``"auto"``: the deblurring default of
            :func:`flowdeblur.runtime.device.resolve_precision`.
        channels_last: store weights and run inputs in NHWC, which tensor-core convolutions
            prefer. RNN backends that need NCHW copy their inputs, so this helps only where
            the convolutions gain more than the copies cost. Default (None): True on CUDA,
            False on CPU (see :func:`~flowdeblur.runtime.device.default_channels_last`).
        compile: False, True (= ``"default"``) or a ``torch.compile`` mode from
            :data:`COMPILE_MODES`; compiled for fixed sizes (``dynamic=False``): a new input
            size recompiles. ``"max-autotune"`` and ``"reduce-overhead"`` also use CUDA graphs.
            Tip: ``torch._dynamo.reset()`` before preparing many differently configured
            functions, or dynamo's recompile limit sends later ones back to eager.
        cuda_graph: capture the (eager or ``compile="default"``) forward in one CUDA graph per
            input shape, replayed on every call; CUDA only.
        freeze: with ``compile``, let inductor fold the weights in as constants.
        cast_weights: store the copy's weights in the autocast dtype (same numbers as autocast
            casting them on every call, without the per-call casts).
        cudnn_benchmark: on CUDA, set ``torch.backends.cudnn.benchmark = True`` (a global
            switch: fixed sizes let cuDNN time and keep its fastest algorithms).
        example_size: (H, W): compile / capture now with zero frames of that size, batch
            ``example_batch``, instead of on the first call.
        clone_output: with CUDA graphs the output lives in graph memory that the next call
            overwrites; return a copy (False: return that memory, valid until the next call).
        private_copy: False runs ``model`` itself (moved to ``device``, eval mode, weights
            uncast): nothing to copy where nothing about the weights changes; needs
            ``channels_last=False``.
        full_output: return the whole :class:`~flowdeblur.models.FlowDeblurOutput` (image and
            flows, float32) instead of the image alone.
    Returns:
        :class:`FastForward` ``fast``: ``fast(frame_t, frame_next=None, frame_prev=None)``
        with (N, 3, H, W) float frames in [0, 1] -> (N, 3, H, W) float32 image on ``device``
        (not clamped, like the model's own output). No host synchronisation inside.
    """
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    if precision == "int8":
        return _int8_forward(model, compile=compile, cuda_graph=cuda_graph,
                             example_size=example_size)
    amp_dtype = autocast_dtype(precision)
    if channels_last is None:
        channels_last = default_channels_last(dev)
    compile_mode = _check_compile(compile, cuda_graph, dev)
    if freeze and compile_mode is None:
        raise UserError("freeze=True only applies to a compiled forward; set compile too")
    net = _inference_net(model, dev, private_copy=private_copy, channels_last=channels_last,
                         weight_dtype=amp_dtype if cast_weights else None)
    if cudnn_benchmark and dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    fast = FastForward(
        net, device=dev, amp_dtype=amp_dtype, channels_last=channels_last,
        compile_mode=compile_mode, freeze=freeze, cuda_graph=cuda_graph,
        clone_output=clone_output, full_output=full_output,
    )
    if example_size is not None:
        h, w = (int(v) for v in example_size)
        n_frames = max(1, getattr(net, "in_frames", 2))
        frames = [torch.zeros(example_batch, 3, h, w, device=dev)] * n_frames
        for _ in range(WARMUP_CALLS):
            fast(*frames)
    return fast


def _int8_forward(model: nn.Module, *, compile: bool | str, cuda_graph: bool,
                  example_size: Sequence[int] | None) -> Int8FastForward:
    """The int8 forward of ``model`` (CPU, always compiled): see :mod:`.int8`. The scales are
    ``model.int8_qparams``, calibrated with the layers in ``model.int8_keep_float`` (default
    :data:`~.int8.KEEP_FLOAT`) left in float."""
    if cuda_graph or compile not in (False, True, "default"):
        raise UserError("precision int8 compiles its own CPU forward; leave the mode as it is")
    qparams = getattr(model, "int8_qparams", None)
    if qparams is None:
        raise UserError("precision int8 needs the network's int8 scales: give them with "
                        "flowdeblur.weights.int8.attach_scales(model, weights_path)")
    net = _inference_net(model, torch.device("cpu"), private_copy=True, weight_dtype=None,
                         channels_last=False)
    fast = Int8FastForward(net, qparams,
                           keep_float=getattr(model, "int8_keep_float", KEEP_FLOAT))
    if example_size is not None:
        frame = torch.zeros(1, 3, *(int(v) for v in example_size))
        fast(frame, frame)
    return fast
