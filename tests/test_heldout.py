"""evaluation/heldout.py: the held-out synthetic set, the tuned baseline and scores on it."""

from __future__ import annotations

import pytest
import torch

from flowdeblur.evaluation.heldout import (
    HELDOUT_SEED,
    VALIDATION_SEED,
    format_heldout_table,
    heldout_scores,
    heldout_synthetic_batches,
    score_methods,
)
from flowdeblur.evaluation.metrics import psnr, quantize_8bit
from flowdeblur.models import FlowDeblurNet


def test_the_set_is_fixed_by_its_seed_and_the_validation_set_differs():
    a = heldout_synthetic_batches(samples=3, size=32, batch=2, three_frames=False)
    b = heldout_synthetic_batches(samples=3, size=32, batch=2, three_frames=False)
    assert [x["frame_t"].shape[0] for x in a] == [2, 1]
    assert all(torch.equal(x["frame_t"], y["frame_t"]) for x, y in zip(a, b))
    other = heldout_synthetic_batches(samples=3, size=32, batch=2, seed=VALIDATION_SEED,
                                      three_frames=False)
    assert not torch.equal(a[0]["sharp_t"], other[0]["sharp_t"])
    assert HELDOUT_SEED != VALIDATION_SEED


def test_score_methods_scores_8_bit_outputs_in_order():
    batches = heldout_synthetic_batches(samples=2, size=32, batch=1, three_frames=False)
    rows = score_methods({"input": lambda b0, b1: b0, "half": lambda b0, b1: b0 * 0.5}, batches)
    assert list(rows) == ["input", "half"]
    expected = torch.cat([psnr(quantize_8bit(b["frame_t"]), b["sharp_t"])
                          for b in batches]).mean().item()
    assert rows["input"]["psnr"] == pytest.approx(expected, abs=0)
    assert rows["half"]["psnr"] < rows["input"]["psnr"] and rows["input"]["seconds"] >= 0
    assert format_heldout_table(rows).splitlines()[2].startswith("| input | ")


def test_heldout_scores_names_every_row_and_says_how_unsharp_was_tuned():
    torch.manual_seed(0)
    model = FlowDeblurNet("full", rnn_backend="torch")
    report = heldout_scores({"w.safetensors": model}, samples=2, size=64, tune_samples=8)
    assert (report["samples"], report["size"], report["seed"]) == (2, 64, HELDOUT_SEED)
    sigma, amount = report["unsharp"]["sigma"], report["unsharp"]["amount"]
    assert list(report["rows"]) == ["blurry input",
                                    f"unsharp mask (sigma {sigma}, amount {amount})",
                                    "flowdeblur (w.safetensors)"]
    assert report["tuning_psnr"] > 0
    two = heldout_scores({"w": model}, samples=2, size=64, tune_samples=8, ensemble=2)
    assert "flowdeblur (w) ensemble 2" in two["rows"]
    assert two["rows"]["blurry input"]["psnr"] == report["rows"]["blurry input"]["psnr"]
