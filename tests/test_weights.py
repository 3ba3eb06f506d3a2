"""Weights files: round trip, dtype casting, and clear errors for files that do not fit."""

from __future__ import annotations

import pytest
import torch

from flowdeblur import FlowDeblurNet
from flowdeblur.errors import UserError
from flowdeblur.weights import load_state_into, load_weights, save_weights


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
