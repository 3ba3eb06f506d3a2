"""int8 inference on the CPU: post-training static quantization of the convolutions.

The network is captured whole with ``torch.export`` (the CPU spatial RNN is one opaque
operator, ``flowdeblur::spatial_rnn_cpu``), annotated by torchao's x86 inductor quantizer
(uint8 activations per tensor, int8 weights per output channel), given its activation scales,
converted, and compiled by inductor with the weights frozen, which lowers each quantized
convolution to one oneDNN int8 kernel (VNNI or AMX where the CPU has them). Transposed
convolutions, the RNNs and the tanh gates stay in float32; so do the three full-resolution
layers in :data:`KEEP_FLOAT`, which carry the picture itself (the input convolution and the
two that make the output image): they cost few of the frame's operations, and an output
quantized to 256 levels per tensor is what a restoration network can least afford. With them
in float, int8 loses under 0.02 dB on the real dev clips (docs/BENCHMARKS.md, "The CPU speed
plan"). The layers left in float are a parameter (``keep_float`` of :func:`calibrate`,
:func:`quantize` and :class:`Int8FastForward`, default :data:`KEEP_FLOAT`), so that what
keeping them costs or saves can be measured (``references/cpu_speed.py``, path "int8 all
layers"); scales are calibrated for one choice of it and fit only that one.

Activation scales come from a calibration that the caller runs (:func:`calibrate`: frames in,
``{observer: (scale, zero_point)}`` out); ``flowdeblur.weights.int8`` calibrates on synthetic
scenes and keeps the result in a small JSON file beside the weights. torchao is an optional
dependency (the ``int8`` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import UserError
from ..models import FlowDeblurOutput, padded_size

#: Layers left in float32 (module names in FlowDeblurNet): the first and the last two
#: full-resolution convolutions of the deblurring U-Net.
KEEP_FLOAT = ("deblurnet.d_conv1", "deblurnet.d_deconv1_1", "deblurnet.d_conv0")

#: What an int8 forward returns: the image and the finest flow (N, F, Hp/4, Wp/4).
Int8Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: Activation observer name -> (scale, zero point) of its uint8 quantization.
QParams = dict[str, tuple[float, int]]


def torchao_modules():
    """torchao's pt2e entry points, or UserError naming the extra that provides them."""
    # torchao's import logs a warning for each of its GPU kernel libraries that cannot load on
    # a CPU-only torch, and torch one about an enum torchao registers: neither concerns int8
    # on the CPU, so they are kept off the user's terminal.
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError:
        raise UserError("precision int8 needs torchao: pip install 'flowdeblur[int8]'") from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return quantize_pt2e, x86_inductor_quantizer


class _ImageAndFlow(nn.Module):
    """The network as export sees it: two frames in, (image, finest flow) out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, frame_t: torch.Tensor, frame_next: torch.Tensor):
        out = self.net(frame_t, frame_next)
        return out.image, out.flows[0]


def _prepared(net: nn.Module, example: tuple[torch.Tensor, torch.Tensor],
              keep_float: Iterable[str]) -> nn.Module:
    """``net`` exported for ``example``'s shape with observers inserted (torchao pt2e), the
    modules named in ``keep_float`` left unquantized."""
    quantize_pt2e, xiq = torchao_modules()
    if net.training or any(p.requires_grad for p in net.parameters()):
        raise ValueError("quantize a network in eval mode without gradients")
    keep_float = tuple(keep_float)
    unknown = sorted(set(keep_float) - {name for name, _ in net.named_modules()})
    if unknown:
        raise ValueError(f"keep_float names no layer of this network: {unknown}")
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    for name in keep_float:
        quantizer.set_module_name_qconfig(f"net.{name}", None)
    with torch.no_grad():
        exported = torch.export.export(_ImageAndFlow(net), example)
    return quantize_pt2e.prepare_pt2e(exported.module(), quantizer)


def _activation_observers(prepared: nn.Module) -> dict[str, nn.Module]:
    """The observers of activations (per-tensor), by name; weight observers are per channel."""
    return {name: m for name, m in prepared.named_modules()
            if hasattr(m, "calculate_qparams") and m.qscheme == torch.per_tensor_affine}


def calibrate(net: nn.Module, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              keep_float: Iterable[str] = KEEP_FLOAT) -> QParams:
    """Activation scales of ``net`` (eval mode, CPU) from (frame_t, frame_next) pairs of
    (1, 3, H, W) frames in [0, 1], all of one size, with the layers named in ``keep_float``
    left in float."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("calibration needs at least one pair of frames")
    prepared = _prepared(net, pairs[0], keep_float)
    with torch.no_grad():
        for frame_t, frame_next in pairs:
            prepared(frame_t, frame_next)
    qparams = {}
    for name, observer in _activation_observers(prepared).items():
        scale, zero_point = observer.calculate_qparams()
        qparams[name] = (float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]))
    return qparams


def quantize(net: nn.Module, qparams: QParams, size: tuple[int, int], *,
             keep_float: Iterable[str] = KEEP_FLOAT) -> Int8Forward:
    """The int8 forward of ``net`` for (1, 3, H, W) frames of ``size`` = (H, W), compiled by
    inductor with frozen weights (the compile happens on the first call), the layers named in
    ``keep_float`` left in float.

    ``qparams``: from :func:`calibrate` on this network with the same ``keep_float``;
    ValueError if they do not match its activation observers (another network, another
    ``keep_float``, or another torch/torchao).
    """
    quantize_pt2e, _ = torchao_modules()
    example = (torch.zeros(1, 3, *size), torch.zeros(1, 3, *size))
    prepared = _prepared(net, example, keep_float)
    observers = _activation_observers(prepared)
    if set(observers) != set(qparams):
        raise ValueError(f"the int8 scales name {len(qparams)} activations, this network has "
                         f"{len(observers)}: recalibrate")
    with torch.no_grad():
        prepared(*example)  # fills the weight observers (per channel, from the weights)
    for name, observer in observers.items():
        scale, zero_point = qparams[name]
        observer.calculate_qparams = _fixed_qparams(scale, zero_point)
    converted = quantize_pt2e.convert_pt2e(prepared)
    compiled = torch.compile(converted, dynamic=False)
    from torch._inductor import config as inductor_config  # seconds to import: only here

    def forward(frame_t: torch.Tensor, frame_next: torch.Tensor):
        # The int8 lowering reads inductor's global freezing switch (a per-compile option
        # does not reach it); set it around these calls only, where the compile happens.
        with inductor_config.patch(freezing=True):
            return compiled(frame_t, frame_next)

    return forward


def _fixed_qparams(scale: float, zero_point: int) -> Callable[[], tuple]:
    def calculate_qparams() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([scale]), torch.tensor([zero_point], dtype=torch.int32)

    return calculate_qparams


class Int8FastForward:
    """The int8 counterpart of :class:`~flowdeblur.runtime.fastpath.FastForward`:
    ``fast(frame_t, frame_next=None, frame_prev=None)`` with (N, 3, H, W) CPU frames in [0, 1]
    -> :class:`~flowdeblur.models.FlowDeblurOutput` (float32 image, unclamped, and the finest
    flow). One compiled forward per frame size; a batch runs frame by frame.

    ``net``: the network in eval mode without gradients; ``qparams``: its :func:`calibrate`
    scales (``flowdeblur.weights.int8`` finds or makes them) for the same ``keep_float``.
    """

    def __init__(self, net: nn.Module, qparams: QParams, *,
                 keep_float: Iterable[str] = KEEP_FLOAT) -> None:
        torchao_modules()  # fail now, not on the first frame
        self.net, self.qparams, self.keep_float = net, qparams, tuple(keep_float)
        self.device = torch.device("cpu")
        self._forwards: dict[tuple[int, int], Int8Forward] = {}

    def __call__(self, frame_t: torch.Tensor, frame_next: torch.Tensor | None = None,
                 frame_prev: torch.Tensor | None = None):
        if frame_next is None or frame_prev is not None:
            raise UserError("precision int8 runs the two-frame network (frame t and t+1)")
        size = (int(frame_t.shape[-2]), int(frame_t.shape[-1]))
        forward = self._forwards.get(size)
        if forward is None:
            forward = self._forwards[size] = quantize(self.net, self.qparams, size,
                                                      keep_float=self.keep_float)
        images, flows = [], []
        with torch.no_grad():
            for a, b in zip(frame_t.float().cpu(), frame_next.float().cpu()):
                image, flow = forward(a[None], b[None])
                images.append(image.float())
                flows.append(flow.float())
        return FlowDeblurOutput(image=torch.cat(images), flows=[torch.cat(flows)],
                                padded_size=padded_size(size))

    def describe(self) -> str:
        return "cpu int8 NCHW torch.compile(freezing)"
