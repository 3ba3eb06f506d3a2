"""Weights files: round trip, dtype casting, and clear errors for files that do not fit or
hold unusable values (NaN, infinities, integers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from flowdeblur import FlowDeblurNet
from flowdeblur.errors import UserError
from flowdeblur.weights import load_state_into, load_weights, read_weights, save_weights


def test_round_trip_rebuilds_the_variant_and_outputs(tmp_path):
    torch.manual_seed(3)
    model = FlowDeblurNet("decoder_rnn", rnn_backend="torch").eval()
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    loaded = load_weights(path, rnn_backend="torch")
    assert loaded.variant == "decoder_rnn"
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(a, b).image, model(a, b).image)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_weights_file_gets_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)  # pinned, so the expected mode does not depend on the caller's
    try:
        save_weights(FlowDeblurNet("no_rnn"), tmp_path / "w.safetensors")
    finally:
        os.umask(umask)
    # 0o666 less the umask, as open() gives; safetensors' own save_file writes 0o600
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644


def test_bf16_export_is_half_the_size_and_close(tmp_path):
    model = FlowDeblurNet("no_rnn")
    save_weights(model, tmp_path / "a.safetensors")
    save_weights(model, tmp_path / "b.safetensors", dtype="bf16")
    full = (tmp_path / "a.safetensors").stat().st_size
    half = (tmp_path / "b.safetensors").stat().st_size
    assert half < 0.55 * full
    w = load_weights(tmp_path / "b.safetensors").deblurnet.d_conv1.weight
    torch.testing.assert_close(w, model.deblurnet.d_conv1.weight, rtol=1e-2, atol=1e-3)


def test_weights_of_another_variant_are_refused(tmp_path):
    save_weights(FlowDeblurNet("no_rnn"), tmp_path / "w.safetensors")
    with pytest.raises(UserError, match="does not fit"):
        load_state_into(FlowDeblurNet("full"), tmp_path / "w.safetensors")


def test_corrupt_and_missing_files_are_user_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(UserError, match="not a readable"):
        load_weights(bad)
    with pytest.raises(UserError, match="not found"):
        load_weights(tmp_path / "absent.safetensors")


# ------------------------------------------------------------- weights that are not usable


def _file_with(tmp_path, name: str, change) -> tuple:
    """A weights file of a 'no_rnn' model whose tensor ``name`` is ``change(tensor)``."""
    from safetensors.torch import save_file

    model = FlowDeblurNet("no_rnn")
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    state[name] = change(state[name])
    path = tmp_path / "w.safetensors"
    save_file(state, str(path), metadata={"format": "flowdeblur",
                                          "config": json.dumps(model.config)})
    return path, model


def _nan(t):
    t.view(-1)[7] = float("nan")
    return t


def _inf(t):
    t.view(-1)[:3] = float("-inf")
    return t


UNUSABLE = {
    "NaN": (_nan, "holds 1 NaN or infinite values"),
    "inf": (_inf, "holds 3 NaN or infinite values"),
    "int32": (lambda t: t.round().to(torch.int32), "holds int32 values, not floating point"),
    "bool": (lambda t: t > 0, "holds bool values, not floating point"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_tensors_are_refused_naming_the_file_and_tensor(case, tmp_path):
    change, message = UNUSABLE[case]
    path, model = _file_with(tmp_path, "deblurnet.d_conv3_2.0.weight", change)
    for load in (lambda: load_weights(path), lambda: load_state_into(model, path),
                 lambda: read_weights(path)):
        with pytest.raises(UserError) as e:
            load()
        text = str(e.value)
        assert "\n" not in text and str(path) in text
        assert f"tensor 'deblurnet.d_conv3_2.0.weight' {message}" in text


def test_init_weights_with_nan_are_refused(tmp_path):
    from flowdeblur.training.setup import load_init_weights

    path, model = _file_with(tmp_path, "deblurnet.d_deconv3.0.weight", _nan)
    for strict in (True, False):
        with pytest.raises(UserError, match="'deblurnet.d_deconv3.0.weight' holds 1 NaN"):
            load_init_weights(FlowDeblurNet("no_rnn"), str(path), strict)


def test_deblur_with_nan_weights_is_one_line_exit_2(tmp_path, capsys):
    from flowdeblur.cli import main

    path, _ = _file_with(tmp_path, "deblurnet.d_deconv3.0.weight", _inf)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(frames / f"{i}.png")
    code = main(["deblur", str(frames), "-o", str(tmp_path / "out"), "--weights", str(path),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "NaN or infinite" in err, err
    assert not (tmp_path / "out").exists()


def test_save_weights_can_refuse_what_overflows_fp16(tmp_path):
    model = FlowDeblurNet("no_rnn")
    with torch.no_grad():
        model.deblurnet.d_conv3_2[0].weight.view(-1)[0] = 1e5  # beyond fp16's 65504
    path = tmp_path / "w.safetensors"
    with pytest.raises(UserError, match="in fp16, tensor 'deblurnet.d_conv3_2.0.weight' holds 1"):
        save_weights(model, path, dtype="fp16", require_finite=True)
    assert not list(tmp_path.iterdir())
    save_weights(model, path, dtype="bf16", require_finite=True)  # bf16 has fp32's range
    assert load_weights(path).deblurnet.d_conv3_2[0].weight.view(-1)[0] == 99840.0


def test_deeply_nested_model_description_is_one_clear_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    nested = "[" * 100_000 + "]" * 100_000
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "flowdeblur",
                                                           "config": nested})
    with pytest.raises(UserError, match="nested too deeply") as e:
        load_weights(path)
    assert len(str(e.value)) < 300
