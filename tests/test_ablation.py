"""references/ablation.py: the Table IV protocol, its summary and its command line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from helpers import REFERENCES, ROOT, import_reference

from flowdeblur.errors import UserError
from flowdeblur.training.config import to_yaml

SCRIPT = REFERENCES / "ablation.py"

ablation = import_reference("ablation")
common = import_reference("common")


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _scores(**psnrs):
    return {name: {seed: {"psnr": p, "ssim": 0.5 + p / 100} for seed, p in enumerate(values)}
            for name, values in psnrs.items()}


def test_summary_marks_gaps_beyond_the_seed_spread():
    runs = _scores(full=[30.0, 30.2], no_flow_loss=[29.0, 29.1], single_frame=[29.9, 30.3],
                   no_rnn=[27.0, 27.4])
    s = ablation.summarize(runs)
    assert s["full"]["psnr"]["mean"] == pytest.approx(30.1)
    assert s["full"]["psnr"]["std"] == pytest.approx(0.2 / 2**0.5)
    assert s["no_flow_loss"]["gap_vs_full"] == pytest.approx(-1.05)
    assert s["no_flow_loss"]["beyond_spread"] is True
    assert s["single_frame"]["beyond_spread"] is False  # [29.9, 30.3] overlaps [30.0, 30.2]
    assert s["no_rnn"]["paired_gaps"] == pytest.approx([-3.0, -2.8])
    assert "gap_vs_full" not in s["full"]
    line = ablation.ordering_check(s)
    # single_frame (30.1 mean) is not below no_flow_loss (29.05): the order is broken there
    assert "does NOT hold" in line
    assert "w/o flow losses <= w/o flow" in line
    assert "Ours > w/o flow losses (+1.05 dB, beyond the seed spread)" in line


def test_ordering_holds_and_one_seed_is_never_beyond_spread():
    s = ablation.summarize(_scores(full=[30.0, 30.1], no_flow_loss=[29.9, 30.05],
                                   single_frame=[29.5, 29.6], no_rnn=[28.0, 28.2]))
    line = ablation.ordering_check(s)
    assert "HOLDS" in line
    assert "Ours > w/o flow losses (+0.07 dB, within the seed spread)" in line
    one = ablation.summarize(_scores(full=[30.0], no_rnn=[20.0]))
    assert "beyond_spread" not in one["no_rnn"]
    assert one["full"]["psnr"]["std"] == 0.0


def test_diverged_seeds_are_reported_not_averaged():
    runs = _scores(full=[30.0, 30.2], concat_gates=[29.0, 29.1])
    runs["concat_gates"][1] = None
    s = ablation.summarize(runs)
    assert s["concat_gates"]["seeds"] == [0] and s["concat_gates"]["diverged"] == [1]
    assert s["concat_gates"]["psnr"]["mean"] == pytest.approx(29.0)


def test_every_variant_of_table_iv_is_planned():
    assert set(ablation.ARMS) == {"full", "no_flow_loss", "single_frame", "no_rnn",
                                  "concat_gates", "bidirectional", "decoder_rnn"}
    assert ablation.ARMS["no_flow_loss"].variant == "full"
    assert ablation.ARMS["no_flow_loss"].flow_loss is False


def test_variants_and_seeds_are_distinct_known_items():
    assert common.comma_list("full, no_rnn", "--variants", choices=ablation.ARMS) == \
        ["full", "no_rnn"]
    assert common.comma_list("0,2", "--seeds", int) == [0, 2]
    for text, kind, message in (("full,nope", str, "unknown ['nope']"),
                                ("full,full", str, "distinct"), ("0,x", int, "integers"),
                                (" , ", int, "integers")):
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            common.comma_list(text, "--x", kind, ablation.ARMS if kind is str else None)


def test_a_run_folder_of_another_protocol_is_refused_and_a_moved_one_matches(tmp_path):
    def config(out, *extra):
        args = ablation.parse_args(["--quick", "--out", str(out), *extra])
        return ablation.stage2_config(args, "full", 0, out / "stage1_full" / "flownet_init.st")

    old = config(tmp_path / "old")  # written where the runs were, found in their new folder
    moved = config(tmp_path / "new")
    (tmp_path / "new" / "full_seed0").mkdir(parents=True)
    (tmp_path / "new" / "full_seed0" / "config.yaml").write_text(to_yaml(old))
    common.check_same_run(moved)
    common.check_same_run(config(tmp_path / "new", "--device", "cuda"))  # device aside
    with pytest.raises(UserError, match="steps=3, this one has 4"):
        common.check_same_run(config(tmp_path / "new", "--steps", "4"))
    with pytest.raises(UserError, match="optim.lr"):
        common.check_same_run(config(tmp_path / "new", "--set", "optim.lr=1e-5"))


def test_a_score_is_reused_only_for_the_same_inputs_and_weights(tmp_path):
    weights, path = tmp_path / "weights.safetensors", tmp_path / "score.json"
    weights.write_bytes(b"w")
    calls = []

    def score():
        calls.append(1)
        return {"psnr": float(len(calls))}

    first = common.cached_json(path, score, inputs={"heldout": {"seed": 1}}, source=weights)
    assert first == {"psnr": 1.0, "heldout": {"seed": 1}}
    assert common.cached_json(path, score, inputs={"heldout": {"seed": 1}},
                              source=weights) == first
    assert common.cached_json(path, score, inputs={"heldout": {"seed": 2}},
                              source=weights)["psnr"] == 2.0  # another held-out set
    os.utime(weights, (path.stat().st_mtime + 10,) * 2)  # weights trained again since
    assert common.recorded_json(path, {"heldout": {"seed": 2}}, weights) is None
    weights.unlink()  # a score kept without its weights (an exported state) still counts
    assert common.recorded_json(path, {"heldout": {"seed": 2}}, weights)["psnr"] == 2.0


@pytest.mark.slow
def test_an_interrupted_run_resumes_and_one_killed_before_its_export_is_exported(tmp_path):
    args = ablation.parse_args(["--quick", "--out", str(tmp_path)])
    config = ablation.stage2_config(args, "no_rnn", 0, None)  # 3 steps
    weights, timing = tmp_path / "no_rnn_seed0" / "weights.safetensors", \
        tmp_path / "no_rnn_seed0" / common.TIMING
    assert ablation.run_training(dataclasses.replace(config, steps=2), deadline=None) == weights
    weights.unlink()  # as if stopped after step 2 of 3, with its checkpoint
    assert ablation.run_training(config, deadline=None) == weights
    assert json.loads(timing.read_text())["steps"] == 3  # 2 + the one step resumed
    weights.unlink()  # as if killed after the last checkpoint, before the export
    assert ablation.run_training(config, deadline=0.0) == weights  # no training: no budget
    assert json.loads(timing.read_text())["steps"] == 3
    assert ablation.run_training(config, deadline=0.0) == weights


@pytest.mark.slow
def test_bad_options_fail_with_one_line(tmp_path):
    r = _run("--variants", "full,nope", "--out", str(tmp_path / "a"), timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "nope" in r.stderr and "Traceback" not in r.stderr
    r = _run("--quick", "--set", "optim.lrr=1", "--out", str(tmp_path / "b"), timeout=120)
    assert r.returncode == 2 and "optim.lr" in r.stderr


@pytest.mark.slow
def test_budget_stops_before_training_and_says_so(tmp_path):
    out = tmp_path / "abl"
    r = _run("--quick", "--budget-s", "1e-9", "--out", str(out), timeout=300)
    assert r.returncode == ablation.EXIT_INCOMPLETE, r.stderr
    assert "run the same command again" in r.stdout
    assert "INCOMPLETE" in (out / "ablation.md").read_text()
    assert not (out / "stage1_full" / "weights.safetensors").exists()


@pytest.mark.slow
def test_quick_protocol_end_to_end_and_resume(tmp_path):
    out = tmp_path / "abl"
    r = _run("--quick", "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads((out / "ablation.json").read_text())
    assert result["complete"]
    assert set(result["runs"]) == {"full", "no_rnn"}
    for name in ("full", "no_rnn"):
        assert sorted(result["runs"][name]) == ["0", "1"]
        assert result["summary"][name]["psnr"]["n"] == 2
        assert (out / f"{name}_seed1" / "weights.safetensors").is_file()
    assert "flow" in result["runs"]["full"]["0"] and "flow" not in result["runs"]["no_rnn"]["0"]
    stage1 = result["stage1_flow"]["full"]
    assert stage1["motorcycle"]["zero_epe"] > 0 and stage1["synthetic"]["valid_pixels"] > 0
    table = (out / "ablation.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| Ours |")
            or line.startswith("| w/o RNNs |")]
    assert len(rows) == 2 and all("| 0,1 |" in row for row in rows)
    assert "paper ordering" in table and "short-budget synthetic" in table
    # seeds differ in more than data: the deblurring U-Net starts from the seed's own init
    assert result["runs"]["full"]["0"]["psnr"] != result["runs"]["full"]["1"]["psnr"]

    exported = tmp_path / "exported"
    again = _run("--quick", "--out", str(out), "--export", str(exported))
    assert again.returncode == 0
    assert "flowdeblur train:" not in again.stdout  # every run was found done
    assert json.loads((out / "ablation.json").read_text())["runs"] == result["runs"]
    # the exported state (no weights) continues the protocol elsewhere: nothing to train
    assert not list(exported.rglob("weights.safetensors"))
    (exported / "ablation.json").unlink()
    moved = _run("--quick", "--out", str(exported))
    assert moved.returncode == 0, moved.stderr
    assert "flowdeblur train:" not in moved.stdout
    assert json.loads((exported / "ablation.json").read_text())["runs"] == result["runs"]

    other = _run("--quick", "--steps", "4", "--out", str(out))
    assert other.returncode == 2 and "steps=3" in other.stderr
