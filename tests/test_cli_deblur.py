"""`flowdeblur deblur` end to end on tiny videos and folders, and every way it must refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import H, W, deblur, make_video, make_wav, psnr, smooth_frames, snapshot
from safetensors.torch import save_file

from flowdeblur.cli import main
from flowdeblur.cli.deblur import speed
from flowdeblur.inference import deblur_frames, deblur_video
from flowdeblur.inference.outputs import MARKER
from flowdeblur.media import VideoReader, read_image, write_image
from flowdeblur.models import FlowDeblurNet
from flowdeblur.weights import load_weights, save_weights


def video_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        streams = [(s.type, s.codec_context.name) for s in c.streams]
    with VideoReader(path) as r:
        pts = [(p * r.info.time_base) for _, p in r.iterate_with_pts()]
        info = r.info
    return {"streams": streams, "seconds": pts, "info": info, "count": len(pts)}


@pytest.fixture(scope="module")
def model(weights) -> FlowDeblurNet:
    return load_weights(weights)


# ------------------------------------------------------------------------------ videos


def test_video_keeps_frames_size_fps_timestamps_rotation_and_audio(tmp_path, weights, capsys):
    src = make_video(
        tmp_path / "in.mp4", smooth_frames(5), fps=Fraction(30000, 1001), rotation=90,
        audio=make_wav(tmp_path / "a.wav"),
    )
    out = tmp_path / "out.mp4"
    assert deblur(src, "-o", out, weights=weights) == 0
    assert "wrote 5 frames to video" in capsys.readouterr().out
    before, after = video_facts(src), video_facts(out)
    assert after["count"] == 5  # the last frame is there
    assert (after["info"].height, after["info"].width) == (H, W)
    assert after["info"].fps == before["info"].fps == Fraction(30000, 1001)
    assert after["seconds"] == before["seconds"]
    assert after["info"].rotation == before["info"].rotation == 90
    assert ("audio", "pcm_s16le") in after["streams"]
    assert snapshot(tmp_path) == {"in.mp4", "a.wav", "out.mp4"}


def test_variable_frame_rate_timestamps_are_kept(tmp_path, weights):
    seconds = [Fraction(k, 25) for k in (0, 1, 3, 4, 7)]
    src = make_video(
        tmp_path / "vfr.mp4", smooth_frames(5), fps=25, pts=[0, 1, 3, 4, 7],
        time_base=Fraction(1, 25),
    )
    assert video_facts(src)["seconds"] == seconds
    assert deblur(src, "-o", tmp_path / "out.mp4", weights=weights) == 0
    assert video_facts(tmp_path / "out.mp4")["seconds"] == seconds


def test_video_frames_are_the_deblurred_frames(tmp_path, weights, model):
    frames = smooth_frames(3)
    src = make_video(tmp_path / "in.mkv", frames, fps=10)
    out = tmp_path / "out.mkv"
    # Lossless so the comparison sees the network, not the codec.
    assert deblur(src, "-o", out, "--lossless", weights=weights) == 0
    with VideoReader(src) as r:
        decoded = list(r)
    expected = list(deblur_frames(model, decoded, device="cpu"))
    with VideoReader(out) as r:
        written = list(r)
    assert len(written) == 3
    for got, want in zip(written, expected, strict=True):
        assert (got - want).abs().max() <= 1 / 255 + 1e-6
    # The last frame was deblurred (paired with its predecessor), not copied through.
    assert psnr(written[2], decoded[2]) < 40


def test_side_by_side_and_flow_pictures(tmp_path, weights):
    src = make_video(tmp_path / "in.mp4", smooth_frames(3))
    out, flow = tmp_path / "sbs.mkv", tmp_path / "flow"
    args = ["--side-by-side", "--save-flow", flow, "--lossless"]
    assert deblur(src, "-o", out, *args, weights=weights) == 0
    with VideoReader(out) as r:
        assert (r.info.width, r.info.height) == (2 * W, H)
        first = next(iter(r))
    with VideoReader(src) as r:
        original = next(iter(r))
    assert (first[:, :, :W] - original).abs().max() <= 1 / 255 + 1e-6  # left: the input
    assert psnr(first[:, :, W:], original) < 40  # right: the output, not a copy
    names = sorted(p.name for p in flow.iterdir())
    assert names == [MARKER, "000000.png", "000001.png", "000002.png"]
    picture = read_image(flow / "000000.png")
    assert picture.shape == (3, H, W)
    assert float(picture.std()) > 0  # a colour-coded field, not a blank image


def test_odd_size_is_kept_in_444_padded_in_420_with_a_warning_or_kept_losslessly(
        tmp_path, weights, capsys):
    src_dir = tmp_path / "odd"
    for i, frame in enumerate(smooth_frames(2, h=47, w=63)):
        write_image(src_dir / f"{i}.png", frame)
    assert deblur(src_dir, "-o", tmp_path / "exact.mp4", weights=weights) == 0
    assert "padded" not in capsys.readouterr().err
    with VideoReader(tmp_path / "exact.mp4") as r:  # 4:4:4, the default, holds any size
        assert (r.info.width, r.info.height, r.info.pix_fmt) == (63, 47, "yuv444p10le")
    assert deblur(src_dir, "-o", tmp_path / "a.mp4", "--chroma", "420", weights=weights) == 0
    err = capsys.readouterr().err
    assert "warning: padded 63x47 to 64x48" in err and "--lossless" in err
    assert deblur(src_dir, "-o", tmp_path / "b.mkv", "--lossless", weights=weights) == 0
    with VideoReader(tmp_path / "b.mkv") as r:
        assert (r.info.width, r.info.height) == (63, 47)
        assert r.count_frames() == 2


# ------------------------------------------------------------------------------ folders


def test_folder_to_folder_keeps_names_and_sizes(tmp_path, frames_dir, weights, model):
    out = tmp_path / "out"
    assert deblur(frames_dir, "-o", out, weights=weights) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"shot_{i:03d}.png" for i in range(4)]
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *names])
    inputs = [read_image(frames_dir / n) for n in names]
    expected = list(deblur_frames(model, inputs, device="cpu"))
    for name, want in zip(names, expected, strict=True):
        got = read_image(out / name)
        assert got.shape == (3, H, W)
        assert (got - want).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_video_to_folder_numbers_the_frames(tmp_path, weights):
    src = make_video(tmp_path / "in.mp4", smooth_frames(3))
    assert deblur(src, "-o", tmp_path / "out", weights=weights) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "000000.png", "000001.png", "000002.png"
    ]


def test_grey_rgba_and_16_bit_pngs_and_a_one_frame_input(tmp_path, weights, capsys):
    from PIL import Image

    rgb = (smooth_frames(1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb[:, :, 0], mode="L").save(tmp_path / "a_grey.png")
    rgba = np.concatenate([rgb, np.full((H, W, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "b_rgba.png")
    write_image(tmp_path / "c_16bit.png", smooth_frames(1, seed=3)[0], bits=16)
    files = [tmp_path / n for n in ("a_grey.png", "b_rgba.png", "c_16bit.png")]
    assert deblur(*files, "-o", tmp_path / "out", "--bits", "16", weights=weights) == 0
    for name in ("a_grey.png", "b_rgba.png", "c_16bit.png"):
        out = tmp_path / "out" / name
        assert read_image(out).shape == (3, H, W)
        with open(out, "rb") as f:
            assert f.read(25)[24] == 16  # IHDR bit depth: a 16-bit PNG as asked

    assert deblur(files[0], "-o", tmp_path / "single.png", weights=weights) == 0
    captured = capsys.readouterr()
    assert "warning: the input has a single frame" in captured.err
    assert "flow guidance is off" in captured.err
    assert read_image(tmp_path / "single.png").shape == (3, H, W)


def test_tiled_cli_output_agrees_with_untiled(tmp_path, weights):
    src = tmp_path / "big"
    for i, frame in enumerate(smooth_frames(2, h=96, w=130)):
        write_image(src / f"{i}.png", frame)
    assert deblur(src, "-o", tmp_path / "whole", weights=weights) == 0
    assert deblur(src, "-o", tmp_path / "tiled", "--tile", "96", weights=weights) == 0
    for name in ("0.png", "1.png"):
        whole, tiled = read_image(tmp_path / "whole" / name), read_image(tmp_path / "tiled" / name)
        assert psnr(tiled, whole) >= 35


def test_overwrite_is_refused_unless_asked(tmp_path, frames_dir, weights, capsys):
    out = tmp_path / "out"
    assert deblur(frames_dir, "-o", out, weights=weights) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert deblur(frames_dir, "-o", out, weights=weights) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert deblur(frames_dir, "-o", out, "--overwrite", weights=weights) == 0
    assert len(list(out.glob("shot_*.png"))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ refusals


def _corrupt_video(tmp_path: Path) -> list[str]:
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return [str(path), "-o", str(tmp_path / "out.mp4")]


def _empty_folder(tmp_path: Path) -> list[str]:
    (tmp_path / "empty").mkdir()
    return [str(tmp_path / "empty"), "-o", str(tmp_path / "out")]


def _mismatched_folder(tmp_path: Path) -> list[str]:
    folder = tmp_path / "mixed"
    for i, frame in enumerate(smooth_frames(3)):
        write_image(folder / f"{i}.png", frame)
    write_image(folder / "3.png", torch.rand(3, H, W - 2))
    return [str(folder), "-o", str(tmp_path / "out.mp4")]


def _mismatched_folder_to_pngs(tmp_path: Path) -> list[str]:
    args = _mismatched_folder(tmp_path)
    return args[:-1] + [str(tmp_path / "out")]


def _output_is_input(tmp_path: Path) -> list[str]:
    src = make_video(tmp_path / "in.mp4", smooth_frames(2))
    return [str(src), "-o", str(src)]


def _output_inside_input(tmp_path: Path) -> list[str]:
    folder = tmp_path / "frames"
    for i, frame in enumerate(smooth_frames(2)):
        write_image(folder / f"{i}.png", frame)
    return [str(folder), "-o", str(folder / "deblurred")]


def _mismatched_checkpoint(tmp_path: Path) -> list[str]:
    # Tensors of 'no_rnn' in a file whose metadata claims the 'full' network.
    bad = tmp_path / "wrong.safetensors"
    save_weights(FlowDeblurNet("no_rnn"), bad, extra_metadata={"config": '{"variant": "full"}'})
    src = make_video(tmp_path / "in.mp4", smooth_frames(2))
    return [str(src), "-o", str(tmp_path / "out.mp4"), "--weights", str(bad)]


def _truncated_checkpoint(tmp_path: Path, weights: Path) -> list[str]:
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(weights.read_bytes()[: 1 << 20])
    src = make_video(tmp_path / "in.mp4", smooth_frames(2))
    return [str(src), "-o", str(tmp_path / "out.mp4"), "--weights", str(bad)]


def _weights_with_config(config: str | None):
    """Weights of the right tensors whose metadata states ``config`` (None: no config)."""

    def make(tmp_path: Path) -> list[str]:
        bad = tmp_path / "odd.safetensors"
        state = {k: v.contiguous() for k, v in FlowDeblurNet("full").state_dict().items()}
        metadata = {"format": "flowdeblur"} if config is None else {"format": "flowdeblur",
                                                                    "config": config}
        save_file(state, str(bad), metadata=metadata)
        src = make_video(tmp_path / "in.mp4", smooth_frames(2))
        return [str(src), "-o", str(tmp_path / "out.mp4"), "--weights", str(bad)]

    return make


BAD_INPUTS = {
    "missing path": (lambda t: [str(t / "nope.mp4"), "-o", str(t / "out.mp4")], "not found"),
    "corrupt video": (_corrupt_video, "broken.mp4"),
    "empty folder": (_empty_folder, "no image files"),
    "mismatched sizes to video": (_mismatched_folder, "3.png is 62x48"),
    "mismatched sizes to pngs": (_mismatched_folder_to_pngs, "3.png is 62x48"),
    "output is input": (_output_is_input, "is the input"),
    "output inside input": (_output_inside_input, "inside the input folder"),
    "checkpoint of another model": (_mismatched_checkpoint, "does not fit the model"),
    "truncated checkpoint": (_truncated_checkpoint, "cut.safetensors"),
    "weights config not JSON": (_weights_with_config("{variant: full"), "not valid JSON"),
    "weights without config": (_weights_with_config(None), "no model description"),
    "weights config not an object": (_weights_with_config('["full"]'), "not a JSON object"),
    "weights of an unknown variant": (_weights_with_config('{"variant": "huge"}'),
                                      "unknown variant 'huge'"),
    "weights config with unknown keys": (_weights_with_config('{"variant": "full", "x": 1}'),
                                         "cannot be built"),
    "fp16 on cpu": (
        lambda t: [str(make_video(t / "in.mp4", smooth_frames(2))), "-o", str(t / "o.mp4"),
                   "--precision", "fp16", "--device", "cpu"],
        "fp16 needs a CUDA device",
    ),
    "tile too small": (
        lambda t: [str(make_video(t / "in.mp4", smooth_frames(2))), "-o", str(t / "o.mp4"),
                   "--tile", "16"],
        "--tile 16 is too small",
    ),
    "ensemble of 3": (
        lambda t: [str(make_video(t / "in.mp4", smooth_frames(2))), "-o", str(t / "o.mp4"),
                   "--ensemble", "3"],
        "--ensemble must be one of 1, 2, 4, 8",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_nonzero_exit_and_writes_nothing(case, tmp_path, weights, capsys):
    make_args, message = BAD_INPUTS[case]
    work = tmp_path / "work"
    work.mkdir()
    args = make_args(work, weights) if case == "truncated checkpoint" else make_args(work)
    if "--weights" not in args:
        args += ["--weights", str(weights)]
    before = snapshot(work)
    code = main(["deblur", *args, "--no-progress"])
    captured = capsys.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("flowdeblur: error:")]
    assert len(errors) == 1, captured.err
    assert message in errors[0]
    assert "Traceback" not in captured.err
    assert snapshot(work) == before  # no output, no temporary left behind


def test_failure_midway_leaves_nothing(tmp_path, frames_dir, weights, monkeypatch):
    import flowdeblur.inference.outputs as fio

    calls = 0
    real = fio.write_image

    def failing(path, image, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full")
        real(path, image, **kwargs)

    monkeypatch.setattr(fio, "write_image", failing)
    before = snapshot(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        deblur_video(frames_dir, tmp_path / "out", model=load_weights(weights),
                     save_flow=tmp_path / "flow", device="cpu", progress=False)
    assert snapshot(tmp_path) == before


def test_failure_midway_in_a_video_leaves_nothing(tmp_path, weights, monkeypatch):
    import flowdeblur.inference.output_frames as inference

    src = make_video(tmp_path / "in.mp4", smooth_frames(4))
    real = inference.deblur_frames

    def failing(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(inference, "deblur_frames", failing)
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        deblur_video(src, tmp_path / "out.mp4", model=load_weights(weights), device="cpu",
                     progress=False)
    assert snapshot(tmp_path) == before


def test_subprocess_error_has_no_traceback(tmp_path, weights):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(2048))
    result = subprocess.run(
        [sys.executable, "-m", "flowdeblur", "deblur", str(broken), "-o",
         str(tmp_path / "out.mp4"), "--weights", str(weights)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("flowdeblur: error:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("fps", ["inf", "1e12", "1e-9", "nan", "0"])
def test_impossible_frame_rates_are_one_line_errors(tmp_path, capsys, fps):
    for i in range(2):
        write_image(tmp_path / "in" / f"{i}.png", torch.rand(3, 16, 16))
    out = tmp_path / "out.mp4"
    rc = main(["deblur", str(tmp_path / "in"), "-o", str(out), "--fps", fps, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--fps must be a frame rate" in err
    assert not out.exists()


# ------------------------------------------------------------------------------ progress


def test_slow_rates_read_as_seconds_per_frame():
    assert speed(12.345) == "12.35 frames/s"
    assert speed(1 / 250) == "250.00 s/frame"
