"""Training options of the recipe: image loss, weight average (EMA), input degradations,
a time limit and the export path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tiny_config

from flowdeblur.errors import UserError
from flowdeblur.training import loop as T
from flowdeblur.training.batches import TrainingBatches
from flowdeblur.training.checkpoint import (
    export_weights_from_checkpoint,
    latest_checkpoint,
    load_checkpoint,
)
from flowdeblur.training.losses import CHARBONNIER_EPS, image_error
from flowdeblur.weights import read_weights


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    """Four CPU steps, a checkpoint every two (helpers.tiny_config)."""
    return tiny_config(tmp_path / run, *overrides, steps=4, checkpoint_every=2)


def test_image_losses_follow_their_formulas():
    diff = torch.tensor([0.0, 0.5, -2.0, 1e-4]).view(1, 1, 2, 2).repeat(2, 3, 1, 1)
    per_sample = 3 * 4  # pixel-channels of one sample
    assert image_error(diff, "mse", "sum").item() == pytest.approx(3 * (0.25 + 4 + 1e-8))
    assert image_error(diff, "l1", "mean").item() == pytest.approx((0.5 + 2 + 1e-4) / 4)
    expected = sum(math.sqrt(d * d + CHARBONNIER_EPS**2) for d in (0.0, 0.5, -2.0, 1e-4))
    assert image_error(diff, "charbonnier", "sum").item() == pytest.approx(3 * expected)
    assert image_error(diff, "charbonnier", "mean").item() == pytest.approx(
        3 * expected / per_sample)


def test_bad_recipe_options_are_refused(tmp_path):
    with pytest.raises(UserError, match="image_loss"):
        tiny(tmp_path, "image_loss=huber")
    with pytest.raises(UserError, match="ema_decay"):
        tiny(tmp_path, "ema_decay=1.0")
    with pytest.raises(UserError, match="did you mean data.degrade.quality"):
        tiny(tmp_path, "data.degrade={qualty: [30, 90]}")
    with pytest.raises(UserError, match="noise_probability"):
        tiny(tmp_path, "data.degrade={noise_probability: 2}")


def test_degradations_reach_only_the_blurry_inputs_and_resume_exactly(tmp_path):
    clean = tiny(tmp_path)
    noisy = tiny(tmp_path, "data.degrade={noise_probability: 1.0, compression_probability: 1.0}")
    a = TrainingBatches(clean, device=torch.device("cpu"), batch_size=2).next()
    batches = TrainingBatches(noisy, device=torch.device("cpu"), batch_size=2)
    b = batches.next()
    assert torch.equal(a["sharp_t"], b["sharp_t"])
    assert not torch.equal(a["frame_t"], b["frame_t"])
    state = batches.state_dict()
    after = batches.next()
    again = TrainingBatches(noisy, device=torch.device("cpu"), batch_size=2)
    again.load_state_dict(state)
    assert torch.equal(again.next()["frame_t"], after["frame_t"])


def test_ema_weights_are_exported_checkpointed_and_resumed(tmp_path):
    c = tiny(tmp_path, "ema_decay=0.5", f"export_path={tmp_path / 'out' / 'w.safetensors'}")
    result = T.train(c)
    assert result["weights"] == str(tmp_path / "out" / "w.safetensors")
    exported = read_weights(result["weights"]).state
    ema = result["ema_model"].state_dict()
    raw = result["model"].state_dict()
    name = "deblurnet.d_conv0.weight"
    assert torch.equal(exported[name], ema[name])
    assert not torch.equal(exported[name], raw[name])  # the average lags the raw weights
    state = load_checkpoint(latest_checkpoint(c.run_dir))
    assert "ema" in state and int(state["ema"]["n_averaged"]) == 4
    # the last checkpoint exports either set: the average (as the run did) or the raw weights
    average_file = read_weights(export_weights_from_checkpoint(
        latest_checkpoint(c.run_dir), tmp_path / "avg.safetensors", average=True))
    average = average_file.state
    assert average_file.metadata == read_weights(result["weights"]).metadata
    trained = read_weights(export_weights_from_checkpoint(
        latest_checkpoint(c.run_dir), tmp_path / "raw.safetensors")).state
    assert average.keys() == exported.keys()
    assert all(torch.equal(average[k], exported[k]) for k in exported)
    assert torch.equal(trained[name], raw[name])
    resumed = T.train(tiny(tmp_path, "ema_decay=0.5", "steps=6"), resume=True)
    assert int(load_checkpoint(latest_checkpoint(c.run_dir))["ema"]["n_averaged"]) == 6
    assert resumed["final_step"] == 6


def test_a_checkpoint_without_an_average_refuses_to_export_one(tmp_path):
    c = tiny(tmp_path, "steps=2")
    T.train(c)
    with pytest.raises(UserError, match="no weight average"):
        export_weights_from_checkpoint(latest_checkpoint(c.run_dir), tmp_path / "w.safetensors",
                                       average=True)
    assert not (tmp_path / "w.safetensors").exists()


def test_time_limit_ends_the_run_like_a_finished_one(tmp_path):
    c = tiny(tmp_path, "steps=1000", "time_limit_s=1e-9")
    result = T.train(c)
    assert result["final_step"] == 1 and result["interrupted"] is None
    assert Path(result["weights"]).is_file()
    rows = (Path(c.run_dir) / "losses.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1]
    assert load_checkpoint(latest_checkpoint(c.run_dir))["step"] == 1


def test_finetune_config_runs_two_steps_on_the_cpu(tmp_path):
    """configs/finetune.yaml (the device-session command) end to end, shrunk to 2 CPU steps:
    it starts from the shipped weights and exports bf16 weights to export_path."""
    from flowdeblur.cli import main

    out = tmp_path / "OUT" / "weights.safetensors"
    rc = main(["train", "--config", str(ROOT / "configs" / "finetune.yaml"),
               f"run_dir={tmp_path / 'run'}", f"export_path={out}", "device=cpu", "steps=2",
               "data.batch_size=2", "data.crop_size=64", "model.rnn_backend=torch"])
    assert rc == 0
    state, meta = read_weights(out)
    assert state["deblurnet.d_conv0.weight"].dtype == torch.bfloat16
    assert meta["step"] == "2" and meta["ema_decay"] == "0.999"
