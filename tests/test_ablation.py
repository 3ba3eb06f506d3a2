"""references/ablation.py: the Table IV protocol, its summary and its command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REFERENCES, ROOT, import_reference

SCRIPT = REFERENCES / "ablation.py"

ablation = import_reference("ablation")


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
