"""Table I network: parameter counts, shapes for any size, gradients, variants, golden output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from flowdeblur import FlowDeblurNet, count_parameters
from flowdeblur.models import VARIANTS, pad_to_multiple, padded_size

GOLDEN = Path(__file__).with_name("golden") / "model_full_64x64.json"

EXPECTED_PARAMETERS = {
    "full": 8_281_696,
    "no_rnn": 725_280,
    "concat_gates": 8_752_864,
    "single_frame": 8_278_168,
    "bidirectional": 8_327_388,
    "decoder_rnn": 7_282_912,
}


def test_table_one_parameter_count():
    model = FlowDeblurNet()
    assert count_parameters(model) == 8_281_696
    # docs/PAPER_NOTES.md's split: flow encoder/decoder 5,476,960 + three gate heads 665,952,
    # U-Net 2,138,784.
    heads = sum(count_parameters(getattr(model.flownet, f"rnnw{i}")) for i in (1, 2, 3))
    assert heads == 665_952
    assert count_parameters(model.flownet) - heads == 5_476_960
    assert count_parameters(model.deblurnet) == 2_138_784


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_parameter_counts_match_docstring(variant):
    assert count_parameters(FlowDeblurNet(variant)) == EXPECTED_PARAMETERS[variant]
    from flowdeblur.models import network

    assert f"{EXPECTED_PARAMETERS[variant]:,}" in network.__doc__


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (64, 64), (65, 2)])
def test_output_keeps_any_size(size):
    model = FlowDeblurNet(rnn_backend="torch")
    frame = torch.rand(1, 3, *size)
    out = model(frame, torch.rand(1, 3, *size))
    assert out.image.shape == (1, 3, *size)
    hp, wp = out.padded_size
    assert hp % 64 == 0 and wp % 64 == 0 and hp >= size[0] and wp >= size[1]
    assert [f.shape[-2:] for f in out.flows] == [(hp // s, wp // s) for s in (4, 8, 16, 32, 64)]
    assert [g.shape[1] for g in out.gates] == [96, 192, 384]
    assert all(bool(((g > -1) & (g < 1)).all()) for g in out.gates)


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(1)
    model = FlowDeblurNet(rnn_backend="torch")
    a, b = torch.rand(2, 3, 40, 70), torch.rand(2, 3, 40, 70)
    out = model(a, b)
    loss = out.image.square().mean() + sum(f.square().mean() for f in out.flows)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_trains(variant):
    torch.manual_seed(2)
    model = FlowDeblurNet(variant, rnn_backend="torch")
    frames = [torch.rand(1, 3, 64, 64) for _ in range(3)]
    out = model(frames[0], frames[1], frames[2])
    assert out.image.shape == (1, 3, 64, 64)
    if variant == "no_rnn":
        assert out.flows == [] and out.gates == []
    else:
        assert len(out.flows) == 5
        assert out.flows[0].shape[1] == (4 if variant == "bidirectional" else 2)
    out.image.mean().backward()
    grads = [p.grad for p in model.deblurnet.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_inputs_are_rejected():
    model = FlowDeblurNet(rnn_backend="torch")
    with pytest.raises(ValueError, match="frame_next"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="float"):
        frame = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
        model(frame, frame)
    with pytest.raises(ValueError, match="unknown variant"):
        FlowDeblurNet("fast")


def test_xavier_init_and_zero_biases():
    model = FlowDeblurNet()
    conv1 = model.flownet.conv1[0]
    fan_in, fan_out = conv1.in_channels * 49, conv1.out_channels * 49
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv1.weight.abs().max() <= bound and conv1.weight.abs().max() > 0.9 * bound
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    biases = [m.bias for m in model.modules() if isinstance(m, convs)]
    assert len(biases) == 40 and all(float(b.detach().abs().sum()) == 0 for b in biases)


def _golden_output() -> dict:
    torch.manual_seed(1234)
    model = FlowDeblurNet(rnn_backend="torch").eval()
    g = torch.Generator().manual_seed(99)
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        out = model(a, b)
    return {
        "image_mean": out.image.mean().item(),
        "image_std": out.image.std().item(),
        "image_corner": out.image[0, :, :4, :4].flatten().tolist(),
        "flow2_sum": out.flows[0].sum().item(),
        "flow2_corner": out.flows[0][0, :, :2, :2].flatten().tolist(),
        "gate1_mean": out.gates[0].mean().item(),
    }


def test_seeded_golden_output():
    """Fixed seed -> fixed output. Regenerate with FLOWDEBLUR_REGEN_GOLDEN=1 after an
    intended change of the architecture or initialisation."""
    got = _golden_output()
    if os.environ.get("FLOWDEBLUR_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())
    for key, value in expected.items():
        torch.testing.assert_close(
            torch.tensor(got[key], dtype=torch.float64), torch.tensor(value, dtype=torch.float64),
            rtol=1e-4, atol=1e-5, msg=key,
        )


def test_identity_output_init_copies_frame_t():
    model = FlowDeblurNet(rnn_backend="torch")
    model.deblurnet.init_output_as_identity(feature_scale=0.0)
    frame = torch.rand(1, 3, 40, 50)
    with torch.no_grad():
        out = model(frame, torch.rand(1, 3, 40, 50)).image
    torch.testing.assert_close(out, frame)


@pytest.mark.parametrize("size", [(1, 1), (64, 64), (65, 127), (720, 1280), (721, 1)])
def test_padded_size_is_what_padding_gives(size):
    assert padded_size(size) == tuple(pad_to_multiple(torch.zeros(1, 1, *size)).shape[-2:])
