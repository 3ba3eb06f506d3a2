"""`flowdeblur demo`: a synthetic clip with known ground truth, deblurred and scored."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowdeblur.apps.demo import run_demo
from flowdeblur.cli import main
from flowdeblur.media import VideoReader, read_image
from flowdeblur.weights import PRETRAINED


def test_run_demo_scores_and_writes_its_pictures(tmp_path, weights):
    from flowdeblur.apps.demo import demo_scene
    from flowdeblur.data.synthetic import make_clip
    from flowdeblur.evaluation.metrics import psnr
    from flowdeblur.weights import load_weights

    result = run_demo(
        tmp_path / "demo", model=load_weights(weights), num_frames=3, size=(64, 96), seed=1,
        device="cpu", progress=False,
    )
    # The "before" score is the clip's own blurry-vs-sharp PSNR: recompute it independently.
    clip = make_clip(3, (64, 96), seed=1, config=demo_scene((64, 96)), device="cpu")
    expected = psnr(clip["blur"].clamp(0, 1), clip["sharp"].clamp(0, 1)).mean().item()
    assert result.psnr_blurry == pytest.approx(expected, abs=1e-3)
    for value in (result.psnr_deblurred, result.ssim_blurry, result.ssim_deblurred):
        assert value == value and abs(value) < 100  # finite numbers
    assert -1 <= result.ssim_deblurred <= 1
    assert set(result.files) == {"video", "still", "flow"}
    with VideoReader(result.files["video"]) as r:
        assert (r.info.width, r.info.height) == (3 * 96, 64)
        assert r.count_frames() == 3
    assert read_image(result.files["still"]).shape == (3, 64, 3 * 96)
    assert read_image(result.files["flow"]).shape == (3, 64, 2 * 96)


def test_demo_cli_prints_before_and_after(tmp_path, weights, capsys):
    out = tmp_path / "demo_out"
    code = main([
        "demo", "--weights", str(weights), "--out", str(out), "--frames", "2",
        "--size", "96x64", "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "PSNR (dB)" in printed and "SSIM" in printed
    assert "blurry" in printed and "deblurred" in printed
    assert sorted(p.name for p in out.iterdir()) == ["flow.png", "frame.png", "side_by_side.mp4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "1"], "--frames must be at least 2"),
        (["--size", "32x32"], "at least 64x64"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
        (["--ensemble", "5"], "--ensemble must be one of 1, 2, 4, 8"),
    ],
)
def test_demo_refuses_bad_options_in_one_line(tmp_path, weights, capsys, args, message):
    code = main(["demo", "--weights", str(weights), "--out", str(tmp_path / "d"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(PRETRAINED.is_file(), reason="weights are shipped in this checkout")
def test_demo_without_shipped_weights_says_to_pass_weights(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flowdeblur", "demo", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pass --weights FILE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_default_demo_runs(tmp_path, weights, capsys):
    # The default clip (8 frames of 256 x 384), as `flowdeblur demo` runs it.
    assert main(["demo", "--weights", str(weights), "--out", str(tmp_path / "d"),
                 "--no-progress"]) == 0
    assert "deblurred" in capsys.readouterr().out
