"""Blur synthesis by linear-light frame averaging, and `flowdeblur synth`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from flowdeblur.cli import main
from flowdeblur.data.blur_synthesis import (
    average_frames,
    frame_groups,
    from_linear,
    linear_to_srgb,
    sharp_index,
    srgb_to_linear,
    synthesize_blur,
    to_linear,
)
from flowdeblur.data.readers import PairedFrames, find_sequences
from flowdeblur.errors import UserError
from flowdeblur.media import VideoWriter, list_images, read_image, write_image


def _np_srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _np_linear_to_srgb(y: np.ndarray) -> np.ndarray:
    return np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)


def _sharp_folder(folder: Path, n: int, size=(6, 8), seed: int = 0) -> list[torch.Tensor]:
    """n random 8-bit frames (exactly representable in 8- and 16-bit PNG)."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for i in range(n):
        f = torch.randint(0, 256, (3, *size), generator=g).double().div(255).float()
        write_image(folder / f"{i:04d}.png", f)
        frames.append(f)
    return frames


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_srgb_curve():
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert torch.allclose(srgb_to_linear(x), torch.from_numpy(_np_srgb_to_linear(x.numpy())))
    assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.21404, abs=1e-5)
    assert torch.allclose(from_linear(to_linear(x, "gamma"), "gamma"), x, atol=1e-12)
    assert torch.equal(to_linear(x, "none"), x)
    with pytest.raises(UserError, match="curve"):
        to_linear(x, "log")


def test_average_is_linear_light_mean():
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(5, 3, 4, 4, generator=g)
    expected = _np_linear_to_srgb(_np_srgb_to_linear(frames.double().numpy()).mean(axis=0))
    out = average_frames(frames)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    assert np.allclose(out.numpy(), expected, atol=1e-6)
    # Not the plain mean: the two differ for varied content (so the test can tell them apart).
    assert (out - frames.mean(0)).abs().max() > 0.01
    assert torch.allclose(average_frames(frames, "none"), frames.mean(0), atol=1e-6)
    assert torch.allclose(average_frames(list(frames)), out)


def test_frame_groups_and_sharp_index():
    frames = [torch.tensor(float(i)) for i in range(10)]
    starts = [s for s, _ in frame_groups(frames, 3, 3)]
    assert starts == [0, 3, 6]
    overlapping = [(s, [int(f) for f in grp]) for s, grp in frame_groups(frames, 4, 2)]
    assert overlapping == [(0, [0, 1, 2, 3]), (2, [2, 3, 4, 5]), (4, [4, 5, 6, 7]),
                           (6, [6, 7, 8, 9])]
    assert [s for s, _ in frame_groups(frames, 2, 5)] == [0, 5]
    assert (sharp_index(1), sharp_index(3), sharp_index(4), sharp_index(7)) == (0, 1, 1, 3)


def test_synth_round_trip(tmp_path):
    src = tmp_path / "sharp_in"
    frames = _sharp_folder(src, 7)
    before = _digest(src)
    out = tmp_path / "dataset"
    result = synthesize_blur(src, out, average=3, bits=16, progress=False)
    assert result.num_pairs == 2 and result.frames_used == 6  # frame 6 starts no full group
    assert result.sequence_dir == out / "sharp_in"
    assert _digest(src) == before  # input untouched
    blur = list_images(out / "sharp_in" / "blur")
    assert [p.name for p in blur] == ["000000.png", "000001.png"]
    for k, start in enumerate((0, 3)):
        group = np.stack([f.double().numpy() for f in frames[start:start + 3]])
        expected = _np_linear_to_srgb(_np_srgb_to_linear(group).mean(axis=0))
        got = read_image(blur[k]).double().numpy()
        assert np.abs(got - expected).max() < 2e-5  # 16-bit quantisation
        sharp = read_image(out / "sharp_in" / "sharp" / blur[k].name)
        assert torch.equal(sharp, frames[start + 1])  # the middle frame
    # The output is a GoPro-style tree: the dataset readers take it as it is.
    (seq,) = find_sequences(out, "gopro", "train")
    assert seq.name == "sharp_in" and len(seq) == 2
    ds = PairedFrames(out, "gopro")
    assert len(ds) == 2 and torch.equal(ds[0]["frame_next"], read_image(blur[1]))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_synth_even_average_stride_and_name(tmp_path):
    frames = _sharp_folder(tmp_path / "in", 6)
    result = synthesize_blur(tmp_path / "in", tmp_path / "o", average=4, stride=1,
                             seq_name="clip", progress=False)
    assert result.num_pairs == 3
    sharp = list_images(tmp_path / "o" / "clip" / "sharp")
    # even N: the earlier of the two middle frames, (N - 1) // 2 = 1
    assert [torch.equal(read_image(p), frames[k + 1]) for k, p in enumerate(sharp)] == [True] * 3
    frame_t = read_image(tmp_path / "o" / "clip" / "blur" / "000000.png")
    assert (frame_t - average_frames(frames[:4])).abs().max() <= 0.5 / 255 + 1e-6


def test_synth_from_video(tmp_path):
    g = torch.Generator().manual_seed(5)
    frames = [torch.randint(0, 256, (3, 6, 8), generator=g).float() / 255 for _ in range(9)]
    with VideoWriter(tmp_path / "fast.mkv", fps=240, width=8, height=6, codec="ffv1") as w:
        for f in frames:
            w.write(f)
    result = synthesize_blur(tmp_path / "fast.mkv", tmp_path / "out", average=3,
                             curve="gamma", progress=False)
    assert result.sequence_dir.name == "fast" and result.num_pairs == 3
    blur2 = read_image(tmp_path / "out" / "fast" / "blur" / "000002.png")
    stack = torch.stack(frames[6:9]).double()
    expected = (stack ** 2.2).mean(0) ** (1 / 2.2)
    assert (blur2.double() - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_synth_errors_leave_nothing(tmp_path):
    _sharp_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="^average"):
        synthesize_blur(tmp_path / "in", out, average=0, progress=False)
    with pytest.raises(UserError, match="at least 4 frames"):
        synthesize_blur(tmp_path / "in", out, average=4, progress=False)
    with pytest.raises(UserError, match="not found"):
        synthesize_blur(tmp_path / "missing", out, average=2, progress=False)
    with pytest.raises(UserError, match="^stride must be at least 1"):
        synthesize_blur(tmp_path / "in", out, average=2, stride=0, progress=False)
    assert not out.exists()
    # A frame of the wrong size mid-stream: error naming it, and no partial dataset.
    write_image(tmp_path / "in" / "0003.png", torch.zeros(3, 5, 8))
    with pytest.raises(UserError, match="0003.png"):
        synthesize_blur(tmp_path / "in", out, average=2, progress=False)
    assert not out.exists()


def test_synth_adds_sequences_and_replaces_one_only_when_asked(tmp_path):
    _sharp_folder(tmp_path / "in", 4)
    _sharp_folder(tmp_path / "other", 4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    synthesize_blur(tmp_path / "in", out, average=2, progress=False)  # into a non-empty folder
    synthesize_blur(tmp_path / "other", out, average=2, progress=False)  # a second sequence
    assert len(list_images(out / "in" / "blur")) == 2
    assert len(list_images(out / "other" / "blur")) == 2
    before = {p: p.read_bytes() for p in (out / "in").rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="sequence in already exists"):
        synthesize_blur(tmp_path / "in", out, average=4, progress=False)
    assert {p: p.read_bytes() for p in (out / "in").rglob("*") if p.is_file()} == before
    # --overwrite replaces that sequence folder (no stale frames), leaves the rest alone.
    synthesize_blur(tmp_path / "in", out, average=4, progress=False, overwrite=True)
    assert len(list_images(out / "in" / "blur")) == 1
    assert len(list_images(out / "other" / "blur")) == 2
    assert (out / "keep.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(UserError, match="overwrite the input"):
        synthesize_blur(tmp_path / "in", tmp_path, average=2, seq_name="in", overwrite=True,
                        progress=False)


def test_cli_synth(tmp_path, capsys):
    _sharp_folder(tmp_path / "in", 5)
    rc = main(["synth", str(tmp_path / "in"), "-o", str(tmp_path / "ds"), "--average", "2",
               "--seq-name", "walk", "--quiet"])
    assert rc == 0
    assert "wrote 2 blurry/sharp pairs" in capsys.readouterr().out
    assert len(list_images(tmp_path / "ds" / "walk" / "sharp")) == 2
    rc = main(["synth", str(tmp_path / "in"), "-o", str(tmp_path / "ds"), "--average", "2",
               "--seq-name", "walk", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("flowdeblur: error:") and err.count("\n") == 1
    assert "sequence walk already exists" in err
