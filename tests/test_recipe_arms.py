"""references/recipe_arms.py: the budget of each arm, the two-phase flow pre-training arm and
the table (no training runs here: the training command is recorded instead)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REFERENCES, import_reference


@pytest.fixture(scope="module")
def arms():
    return import_reference("recipe_arms")


@pytest.fixture
def recorded(arms, monkeypatch):
    """Every training command an arm would run, as (run folder, seed, overrides); each
    "run" leaves the files a finished run leaves."""
    calls = []

    def fake_training(run, name, seed, overrides):
        calls.append((run, seed, overrides))
        run.mkdir(parents=True, exist_ok=True)
        (run / "weights.safetensors").write_bytes(b"")

    def fake_export(checkpoint, output, **kwargs):
        Path(output).write_bytes(b"")

    monkeypatch.setattr(arms, "run_training", fake_training)
    monkeypatch.setattr(arms, "latest_checkpoint", lambda run: Path(run) / "checkpoints" / "x")
    monkeypatch.setattr(arms, "export_weights_from_checkpoint", fake_export)
    return calls


def test_budget_is_the_recipe_steps_unless_overridden(arms):
    recipe = yaml.safe_load((REFERENCES / "configs" / "cpu_recipe.yaml").read_text())["steps"]
    assert arms.recipe_steps([]) == recipe
    assert arms.recipe_steps(["model.init_weights=x", "steps=7"]) == 7


def test_every_two_phase_arm_has_a_second_phase(arms):
    assert set(arms.FIRST_PHASE) <= set(arms.ARMS)


def test_flow_pretrain_splits_the_budget_and_chains_the_weights(arms, recorded, tmp_path):
    common = ["model.init_weights=start.safetensors", "steps=7"]
    weights = arms.train_arm(tmp_path, "flow_pretrain", 3, common)

    (first_run, seed1, first), (second_run, seed2, second) = recorded
    assert first_run == tmp_path / "flow_pretrain_s3" / "phase1"
    assert seed1 == seed2 == 3
    assert "stage=flow" in first and first[-1] == "steps=3"
    assert first.index("steps=3") > first.index("steps=7")  # the later override wins
    # The second phase: joint training from the first phase's export, for the other 4 steps.
    assert "stage=flow" not in second
    init = f"model.init_weights={first_run / 'weights.safetensors'}"
    assert second.index(init) > second.index(common[0]) and second[-1] == "steps=4"
    assert set(weights) == {"flow_pretrain_s3", "flow_pretrain+ema_s3"}


def test_a_one_phase_arm_trains_once_with_the_shared_overrides(arms, recorded, tmp_path):
    weights = arms.train_arm(tmp_path, "baseline", 21, ["cpu_amp=true"])
    assert recorded == [(tmp_path / "baseline_s21", 21, ["cpu_amp=true"])]
    assert weights == {"baseline_s21": tmp_path / "baseline_s21" / "weights.safetensors"}
    arms.train_arm(tmp_path, "baseline", 21, ["cpu_amp=true"])  # weights exist: not again
    assert len(recorded) == 1


def _clips(*psnrs):
    names = ("a", "b")
    return {"clips": {n: {"blurry": {"psnr": 20.0}, "flowdeblur": {"psnr": p}}
                      for n, p in zip(names, psnrs)}}


def test_table_differences_are_against_the_baseline_of_the_same_seed(arms):
    weights = {"start": Path("s"), "baseline_s1": Path("b"), "flow_pretrain_s1": Path("f")}
    dev = {"start": _clips(30.0, 32.0), "baseline_s1": _clips(31.0, 33.0),
           "flow_pretrain_s1": _clips(31.5, 33.5)}
    heldout = {"rows": {"blurry input": {"psnr": 28.0}, "flowdeblur (s)": {"psnr": 30.0},
                        "flowdeblur (b)": {"psnr": 30.25}, "flowdeblur (f)": {"psnr": 30.0}}}
    cells = [[c.strip() for c in line.strip("|").split("|")]
             for line in arms.table(weights, dev, heldout).splitlines()[2:]]
    # dev mean, vs baseline, held-out, vs baseline (moving-pixel, flicker and time columns
    # are left out: these clips have no moving-pixel scores and the runs no clock)
    rows = {row[0]: [row[3], row[4], row[7], row[8]] for row in cells}
    assert rows["blurry input"] == ["20.00", "", "28.00", ""]
    assert rows["start"] == ["31.00", "", "30.00", ""]
    assert rows["baseline_s1"] == ["32.00", "+0.00", "30.25", "+0.00"]
    assert rows["flow_pretrain_s1"] == ["32.50", "+0.50", "30.00", "-0.25"]
    assert all(row[5] == "nan" for row in cells)  # no moving-pixel scores in these clips


def test_start_weights_are_copied_once_and_never_mixed(arms, tmp_path):
    first, other = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    first.write_bytes(b"one")
    other.write_bytes(b"two")
    out = tmp_path / "out"
    start = arms.start_weights(out, first)
    assert start.read_bytes() == b"one" and start.parent == out / "start"
    assert arms.start_weights(out, first) == start  # the same weights again: fine
    with pytest.raises(arms.UserError, match="other weights"):
        arms.start_weights(out, other)
    with pytest.raises(arms.UserError, match="no such file"):
        arms.start_weights(out, tmp_path / "missing.safetensors")
