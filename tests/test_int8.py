"""--precision int8: the rules (CPU only, compiled), the scales file beside the weights, and the
quantized forward against the fp32 one (slow: it exports and compiles)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import require, smooth_frames

from flowdeblur.errors import UserError
from flowdeblur.runtime import Runtime
from flowdeblur.runtime.device import resolve_precision


def test_int8_is_a_cpu_precision_that_runs_compiled():
    assert resolve_precision("int8", torch.device("cpu")) == "int8"
    with pytest.raises(UserError, match="CPU"):
        resolve_precision("int8", torch.device("cuda"))
    runtime = Runtime.resolve("cpu", "int8")
    assert (runtime.mode, runtime.freeze) == ("compile", True)
    with pytest.raises(UserError, match="compiled"):
        Runtime.resolve("cpu", "int8", "eager")
    assert Runtime.resolve("cpu", "bf16", "eager").freeze is False


def test_int8_without_scales_says_how_to_get_them(weights):
    require("torchao")
    from flowdeblur.weights import load_weights

    with pytest.raises(UserError, match="int8 scales"):
        Runtime.resolve("cpu", "int8").prepare(load_weights(weights))


def test_scales_are_read_only_for_the_same_weights_and_versions(tmp_path, weights):
    require("torchao")
    from flowdeblur.models import FlowDeblurNet
    from flowdeblur.weights import int8 as scales
    from flowdeblur.weights import load_weights, save_weights

    model = load_weights(weights)
    own = tmp_path / "own.safetensors"
    save_weights(model, own)
    record = {"format": scales.FORMAT, "weights_sha256": scales.weights_sha256(model),
              **scales._versions(), "calibration": scales.CALIBRATION,
              "qparams": {"activation_post_process_0": [0.01, 3]}}
    scales.scales_path(own).write_text(json.dumps(record))
    assert scales.read_scales(model, own) == {"activation_post_process_0": (0.01, 3)}
    assert scales.read_scales(FlowDeblurNet(), own) is None  # other weights
    scales.scales_path(own).write_text(json.dumps({**record, "torch": "0.0"}))
    assert scales.read_scales(model, own) is None  # another torch numbers them differently
    scales.scales_path(own).write_text("{not json")
    with pytest.raises(UserError, match="not a valid int8 scales file"):
        scales.read_scales(model, own)


class _Convs(torch.nn.Module):
    """Four convolutions named as the U-Net's, one of them outside KEEP_FLOAT."""

    def __init__(self) -> None:
        super().__init__()
        self.deblurnet = torch.nn.Module()
        for name in ("d_conv1", "d_conv2", "d_deconv1_1", "d_conv0"):
            setattr(self.deblurnet, name, torch.nn.Conv2d(3, 3, 3, padding=1))

    def forward(self, frame_t, frame_next):
        from flowdeblur.models import FlowDeblurOutput

        d = self.deblurnet
        x = d.d_conv0(d.d_deconv1_1(d.d_conv2(d.d_conv1(frame_t + frame_next))))
        return FlowDeblurOutput(image=x, flows=[x[:, :2]])


def _quantized_layers(prepared) -> set[str]:
    """The modules whose convolution reads an observed (quantized) input."""
    names = set()
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.conv2d.default:
            observed = node.args[0].op == "call_module" and "activation_post_process" in \
                str(node.args[0].target)
            if observed:
                names.add(list(node.meta["nn_module_stack"].values())[-1][0].removeprefix("net."))
    return names


def test_keep_float_chooses_the_layers_left_in_float():
    require("torchao")
    from flowdeblur.models import FlowDeblurNet
    from flowdeblur.runtime import int8

    layers = dict(FlowDeblurNet().named_modules())
    for name in int8.KEEP_FLOAT:  # a convolution, or one with its activation
        assert any(isinstance(m, torch.nn.Conv2d) for m in layers[name].modules())
    net = _Convs().eval().requires_grad_(False)
    pair = (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    everything = {"deblurnet.d_conv1", "deblurnet.d_conv2", "deblurnet.d_deconv1_1",
                  "deblurnet.d_conv0"}
    assert _quantized_layers(int8._prepared(net, pair, int8.KEEP_FLOAT)) == {"deblurnet.d_conv2"}
    assert _quantized_layers(int8._prepared(net, pair, ())) == everything
    assert _quantized_layers(int8._prepared(net, pair, ["deblurnet.d_conv2"])) == \
        everything - {"deblurnet.d_conv2"}
    # Scales fit the choice they were calibrated for.
    default, full = int8.calibrate(net, [pair]), int8.calibrate(net, [pair], keep_float=())
    assert len(full) > len(default)
    with pytest.raises(ValueError, match="recalibrate"):
        int8.quantize(net, default, (16, 16), keep_float=())
    with pytest.raises(ValueError, match="names no layer"):
        int8.calibrate(net, [pair], keep_float=("deblurnet.d_conv9",))


@pytest.mark.slow
def test_int8_forward_and_cli_match_fp32_closely(tmp_path, frames_dir):
    require("torchao")
    from helpers import psnr

    from flowdeblur.cli import main
    from flowdeblur.media import read_image
    from flowdeblur.runtime import int8
    from flowdeblur.weights import load_pretrained
    from flowdeblur.weights.int8 import attach_scales

    model = attach_scales(load_pretrained(), None)  # calibrated on the spot, with a warning
    a, b = smooth_frames(2, h=70, w=97)
    fp32 = Runtime.resolve("cpu", "fp32").prepare(model)(a[None], b[None])
    fast = Runtime.resolve("cpu", "int8").prepare(model)
    out = fast(a[None], b[None])
    assert out.image.shape == fp32.image.shape and out.flows[0].shape == fp32.flows[0].shape
    assert psnr(out.image.clamp(0, 1), fp32.image.clamp(0, 1)) > 45
    with pytest.raises(ValueError, match="recalibrate"):
        int8.quantize(model.eval().requires_grad_(False), {"x": (1.0, 0)}, (64, 64))

    # The CLI with the shipped weights reads the shipped scales.
    assert main(["deblur", str(frames_dir), "-o", str(tmp_path / "q"), "--precision", "int8",
                 "--device", "cpu", "-q"]) == 0
    assert main(["deblur", str(frames_dir), "-o", str(tmp_path / "f"), "--precision", "fp32",
                 "--device", "cpu", "-q"]) == 0
    for name in sorted(p.name for p in frames_dir.iterdir()):
        assert psnr(read_image(tmp_path / "q" / name), read_image(tmp_path / "f" / name)) > 45
