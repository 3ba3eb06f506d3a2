"""Dataset and folder evaluation: which frames each protocol scores, and how they are scored."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from helpers import Identity
from torch import nn

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.evaluation.folders import evaluate_folders
from flowdeblur.evaluation.metrics import psnr, ssim, temporal_error
from flowdeblur.evaluation.protocols import SU30_FRAMES, evaluate_model, protocol_frames
from flowdeblur.media import read_image, write_image
from flowdeblur.models import FlowDeblurNet, FlowDeblurOutput
from flowdeblur.weights import save_weights

# Real DVD test-video names, in case the reader keeps only the test split's videos.
LANDSCAPE = ("IMG_0003", "IMG_0021")
PORTRAIT = "IMG_0030"
H, W = 40, 96  # padded to 64 x 128 by the release protocol


def _frame(g: torch.Generator, h: int, w: int) -> torch.Tensor:
    """A smooth random image (JPEG keeps it well) plus a little texture."""
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth[0] + 0.1 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def _make_dvd(root: Path, videos: dict[str, tuple[int, int, int]], seed: int = 0) -> Path:
    """quantitative_datasets/<video>/{input,GT}/00000.jpg ... with (frames, h, w) per video."""
    g = torch.Generator().manual_seed(seed)
    for name, (n, h, w) in videos.items():
        for i in range(n):
            sharp = _frame(g, h, w)
            blur = (0.5 * sharp + 0.5 * sharp.roll(2, -1)).clamp(0, 1)
            base = root / "quantitative_datasets" / name
            write_image(base / "GT" / f"{i:05d}.jpg", sharp)
            write_image(base / "input" / f"{i:05d}.jpg", blur)
    return root


@pytest.fixture(scope="module")
def dvd(tmp_path_factory) -> Path:
    videos = {name: (5, H, W) for name in LANDSCAPE}
    videos[PORTRAIT] = (4, W, H)
    return _make_dvd(tmp_path_factory.mktemp("dvd"), videos)


def _files(root: Path, video: str, kind: str) -> list[Path]:
    return sorted((root / "quantitative_datasets" / video / kind).glob("*.jpg"))


def _expected(root: Path, video: str, indices: list[int]) -> dict[str, float]:
    """Per-sequence scores of the identity 'deblurrer' (output = blurry frame), by hand."""
    blur = [read_image(p)[None] for p in _files(root, video, "input")]
    sharp = [read_image(p)[None] for p in _files(root, video, "GT")]
    ps = [psnr(blur[i], sharp[i]).item() for i in indices]
    ss = [ssim(blur[i], sharp[i]).item() for i in indices]
    ts = [
        temporal_error(blur[i - 1], blur[i], sharp[i - 1], sharp[i]).item()
        for i in indices
        if i - 1 in indices
    ]
    def mean(v: list[float]) -> float:
        return sum(v) / len(v) if v else float("nan")

    return {"psnr": mean(ps), "ssim": mean(ss), "temporal_error": mean(ts), "frames": len(ps)}


def _check_sequence(result, name: str, expected: dict[str, float]) -> None:
    got = result.per_sequence[name]
    assert got["frames"] == expected["frames"]
    for key in ("psnr", "ssim", "temporal_error"):
        if math.isnan(expected[key]):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(expected[key], abs=1e-9), key


# ----------------------------------------------------------------------------- protocols


def test_protocol_frames():
    assert protocol_frames("all", 5) == [0, 1, 2, 3, 4]
    assert protocol_frames("release", 5) == [0, 1, 2, 3]
    su = protocol_frames("su30", 100)
    assert su == list(SU30_FRAMES)
    assert len(su) == len(set(su)) == 30 and su[0] == 2 and su[-1] == 97
    assert su[:4] == [2, 5, 8, 11]  # floor(2 + k * 95 / 29)
    with pytest.raises(UserError, match="su30"):
        protocol_frames("su30", 98, "short")
    with pytest.raises(UserError, match="unknown protocol"):
        protocol_frames("every", 5)


def test_release_protocol(dvd):
    stub = Identity(record=True)
    result = evaluate_model(stub, dvd, "dvd", protocol="release", progress=False)
    assert result.protocol == "release"
    assert set(result.per_sequence) == {*LANDSCAPE, PORTRAIT}
    assert result.frames == 4 + 4 + 3  # each video's last frame skipped
    for name in LANDSCAPE:
        _check_sequence(result, name, _expected(dvd, name, [0, 1, 2, 3]))
    # Portrait frames come back upright: the identity stub scores exactly like the blur.
    _check_sequence(result, PORTRAIT, _expected(dvd, PORTRAIT, [0, 1, 2]))
    frames = [r["frame"] for r in result.per_frame if r["sequence"] == LANDSCAPE[0]]
    assert frames == ["00000", "00001", "00002", "00003"]
    # The network saw landscape frames zero-padded to multiples of 64, paired with t+1.
    assert len(stub.calls) == result.frames
    for frame_t, frame_next in stub.calls:
        assert frame_t.shape[-2:] == (64, 128)
        for f in (frame_t, frame_next):
            assert f[..., :, W:].abs().max() == 0 and f[..., H:, :].abs().max() == 0
            assert f[..., :H, :W].abs().min(dim=1).values.mean() > 0
    portrait_t = read_image(_files(dvd, PORTRAIT, "input")[1])
    portrait_next = read_image(_files(dvd, PORTRAIT, "input")[2])
    start = [r["sequence"] for r in result.per_frame].index(PORTRAIT)
    seen_t, seen_next = stub.calls[start + 1]
    assert torch.equal(seen_t[0, :, :H, :W], portrait_t.transpose(-1, -2))
    assert torch.equal(seen_next[0, :, :H, :W], portrait_next.transpose(-1, -2))
    assert result.mean["psnr"] == pytest.approx(
        sum(r["psnr"] for r in result.per_frame) / result.frames, abs=1e-12
    )


def test_all_protocol_scores_every_frame_and_pairs_last_with_previous(dvd):
    stub = Identity(record=True)
    result = evaluate_model(stub, dvd, "dvd", protocol="all", progress=False)
    assert result.frames == 5 + 5 + 4
    for name in LANDSCAPE:
        _check_sequence(result, name, _expected(dvd, name, [0, 1, 2, 3, 4]))
    _check_sequence(result, PORTRAIT, _expected(dvd, PORTRAIT, [0, 1, 2, 3]))
    # The model's own (replicate) padding applies: no transposition, no zero padding here.
    seq_order = [r["sequence"] for r in result.per_frame]
    last = seq_order.index(LANDSCAPE[0]) + 4
    frame_t, frame_next = stub.calls[last]
    files = _files(dvd, LANDSCAPE[0], "input")
    assert torch.equal(frame_t[0], read_image(files[4]))
    assert torch.equal(frame_next[0], read_image(files[3]))
    portrait_call = stub.calls[seq_order.index(PORTRAIT)]
    assert portrait_call[0].shape[-2:] == (W, H)


class RampStub(Identity):
    """Frame t plus a ramp along W: not mirror-symmetric, so an ensemble changes its output."""

    def forward(self, frame_t, frame_next=None, frame_prev=None):
        ramp = 0.002 * torch.arange(frame_t.shape[-1], dtype=frame_t.dtype)
        return FlowDeblurOutput(image=frame_t + ramp)


def test_ensemble_averages_mirrored_copies_and_is_recorded(dvd):
    result = evaluate_model(RampStub(), dvd, "dvd", protocol="all", quantize=False,
                            max_frames=1, ensemble=2, progress=False)
    assert result.settings["ensemble"] == 2
    # The ramp and its mirror image average to a constant: half the ramp's last value.
    files_in, files_gt = _files(dvd, LANDSCAPE[0], "input"), _files(dvd, LANDSCAPE[0], "GT")
    blur, sharp = read_image(files_in[0])[None], read_image(files_gt[0])[None]
    expected = psnr((blur + 0.001 * (W - 1)).clamp(0, 1), sharp).item()
    assert result.per_sequence[LANDSCAPE[0]]["psnr"] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(UserError, match="^ensemble must be one of"):
        evaluate_model(RampStub(), dvd, "dvd", ensemble=3, progress=False)


def test_su30_protocol(tmp_path):
    root = _make_dvd(tmp_path, {LANDSCAPE[0]: (100, 16, 24)})
    stub = Identity()
    result = evaluate_model(stub, root, "dvd", protocol="su30", progress=False)
    assert result.frames == 30
    names = [r["frame"] for r in result.per_frame]
    assert names[0] == "00002" and names[-1] == "00097"
    assert names == [f"{i:05d}" for i in SU30_FRAMES]
    _check_sequence(result, LANDSCAPE[0], _expected(root, LANDSCAPE[0], list(SU30_FRAMES)))
    assert math.isnan(result.mean["temporal_error"])  # no two selected frames are adjacent
    # max_frames keeps the first K of the selection.
    short = evaluate_model(Identity(), root, "dvd", protocol="su30", max_frames=3,
                           progress=False)
    assert [r["frame"] for r in short.per_frame] == ["00002", "00005", "00008"]


def test_su30_rejects_short_videos(dvd):
    with pytest.raises(UserError, match="su30"):
        evaluate_model(Identity(), dvd, "dvd", protocol="su30", progress=False)


def test_scoring_options_and_quantisation(dvd):
    class Offset(Identity):
        def forward(self, frame_t, frame_next=None, frame_prev=None):
            return FlowDeblurOutput(image=frame_t + 0.3 / 255)  # not on the 8-bit grid

    name = LANDSCAPE[1]
    raw = evaluate_model(Offset(), dvd, "dvd", protocol="all", quantize=False, progress=False)
    quant = evaluate_model(Offset(), dvd, "dvd", protocol="all", progress=False)
    ident = evaluate_model(Identity(), dvd, "dvd", protocol="all", progress=False)
    # Rounding to 8 bits snaps the +0.3/255 offset back to the identity's output.
    assert quant.per_sequence[name]["psnr"] == pytest.approx(ident.per_sequence[name]["psnr"])
    assert raw.per_sequence[name]["psnr"] != pytest.approx(ident.per_sequence[name]["psnr"])
    cropped = evaluate_model(Identity(), dvd, "dvd", protocol="all", crop_border=4,
                             y_channel=True, progress=False)
    blur = read_image(_files(dvd, name, "input")[0])[None]
    sharp = read_image(_files(dvd, name, "GT")[0])[None]
    first = next(r for r in cropped.per_frame if r["sequence"] == name)
    assert first["psnr"] == pytest.approx(psnr(blur, sharp, crop_border=4, y_channel=True).item())
    assert first["ssim"] == pytest.approx(ssim(blur, sharp, crop_border=4, y_channel=True).item())
    with pytest.raises(UserError, match="release"):
        evaluate_model(Identity(), dvd, "dvd", protocol="release", quantize=False)


def test_real_network_runs(dvd):
    model = FlowDeblurNet("no_rnn")
    result = evaluate_model(model, dvd, "dvd", protocol="release", max_frames=1, progress=False)
    assert result.frames == 3
    for scores in result.per_sequence.values():
        assert math.isfinite(scores["psnr"]) and 0 < scores["ssim"] <= 1


# ----------------------------------------------------------------------------- folders


def test_saved_outputs_rescore_identically(dvd, tmp_path):
    out = tmp_path / "out"
    model_result = evaluate_model(Identity(), dvd, "dvd", protocol="release", save_dir=out,
                                  progress=False)
    assert sorted(p.name for p in (out / LANDSCAPE[0]).iterdir()) == [
        f"{i:05d}.png" for i in range(4)
    ]
    folder_result = evaluate_folders(out, dvd, layout="dvd")
    assert folder_result.frames == model_result.frames
    assert folder_result.settings["unscored_targets"] == 3  # the skipped last frames
    for name, scores in model_result.per_sequence.items():
        for key in ("psnr", "ssim", "temporal_error"):
            assert folder_result.per_sequence[name][key] == pytest.approx(scores[key], abs=1e-9)


def test_folders_match_by_relative_path_ignoring_extension(tmp_path):
    g = torch.Generator().manual_seed(3)
    outputs, targets = tmp_path / "o", tmp_path / "t"
    pairs = {}
    for rel in ("a/f1", "a/f2", "a/f10", "b/x", "flat"):
        target = _frame(g, 24, 32)
        output = (target + 0.05 * torch.randn(3, 24, 32, generator=g)).clamp(0, 1)
        write_image(targets / f"{rel}.png", target)
        write_image(outputs / f"{rel}.png" if rel.startswith("a") else outputs / f"{rel}.bmp",
                    output)
        pairs[rel] = (read_image(outputs / f"{rel}.png" if rel.startswith("a") else
                                 outputs / f"{rel}.bmp")[None],
                      read_image(targets / f"{rel}.png")[None])
    result = evaluate_folders(outputs, targets)
    assert set(result.per_sequence) == {"a", "b", "."}
    assert [r["frame"] for r in result.per_frame if r["sequence"] == "a"] == ["f1", "f2", "f10"]
    a = [pairs[f"a/{f}"] for f in ("f1", "f2", "f10")]
    expected = sum(psnr(o, t).item() for o, t in a) / 3
    assert result.per_sequence["a"]["psnr"] == pytest.approx(expected, abs=1e-9)
    t_expected = (temporal_error(a[0][0], a[1][0], a[0][1], a[1][1]).item()
                  + temporal_error(a[1][0], a[2][0], a[1][1], a[2][1]).item()) / 2
    assert result.per_sequence["a"]["temporal_error"] == pytest.approx(t_expected, abs=1e-9)
    assert result.per_sequence["."]["frames"] == 1


def test_folders_follow_symlinked_sequence_folders(tmp_path):
    """A results folder made of links to each sequence's folder is scored like a real one;
    a link back up the tree is not followed twice."""
    g = torch.Generator().manual_seed(4)
    store, outputs, targets = tmp_path / "store", tmp_path / "o", tmp_path / "t"
    for seq in ("s1", "s2"):
        for frame in ("f1", "f2"):
            target = _frame(g, 24, 32)
            write_image(targets / seq / f"{frame}.png", target)
            write_image(store / seq / f"{frame}.png", (target + 0.05).clamp(0, 1))
    outputs.mkdir()
    for seq in ("s1", "s2"):
        (outputs / seq).symlink_to(store / seq, target_is_directory=True)
    (store / "s1" / "loop").symlink_to(outputs, target_is_directory=True)
    result = evaluate_folders(outputs, targets)
    assert set(result.per_sequence) == {"s1", "s2"}
    assert [r["frames"] for r in result.per_sequence.values()] == [2, 2]


def test_folders_missing_counterpart_is_user_error(tmp_path):
    g = torch.Generator().manual_seed(4)
    write_image(tmp_path / "o" / "s" / "1.png", _frame(g, 16, 16))
    write_image(tmp_path / "o" / "s" / "2.png", _frame(g, 16, 16))
    write_image(tmp_path / "t" / "s" / "1.png", _frame(g, 16, 16))
    with pytest.raises(UserError, match="2.png has no target"):
        evaluate_folders(tmp_path / "o", tmp_path / "t")
    write_image(tmp_path / "t" / "s" / "2.png", _frame(g, 16, 24))
    with pytest.raises(UserError, match="16x16 but its target"):
        evaluate_folders(tmp_path / "o", tmp_path / "t")
    with pytest.raises(UserError, match="not found"):
        evaluate_folders(tmp_path / "o", tmp_path / "missing")


# ----------------------------------------------------------------------------- CLI


def test_cli_model_and_folders_end_to_end(dvd, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(FlowDeblurNet("no_rnn"), weights)
    js, cs, saved = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "saved"
    code = main([
        "eval", "--data", str(dvd), "--layout", "dvd", "--protocol", "release",
        "--weights", str(weights), "--device", "cpu", "--max-frames", "2", "--json", str(js),
        "--csv", str(cs), "--save-dir", str(saved), "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "protocol release" in printed and "mean" in printed
    data = json.loads(js.read_text())
    assert data["protocol"] == "release" and data["frames"] == 6
    assert set(data["per_sequence"]) == {*LANDSCAPE, PORTRAIT}
    assert data["settings"]["quantize"] is True and data["settings"]["model"] == {
        "variant": "no_rnn"
    }
    rows = list(csv.DictReader(cs.open()))
    assert [r["sequence"] for r in rows][-1] == "mean"
    assert float(rows[-1]["psnr"]) == pytest.approx(data["mean"]["psnr"])

    # Folder mode on what the model run saved gives the same numbers.
    js2 = tmp_path / "f.json"
    code = main(["eval", "--outputs", str(saved), "--targets", str(dvd), "--layout", "dvd",
                 "--json", str(js2), "--no-progress"])
    assert code == 0
    again = json.loads(js2.read_text())
    assert again["mean"]["psnr"] == pytest.approx(data["mean"]["psnr"], abs=1e-9)


def test_cli_user_errors(dvd, tmp_path, capsys):
    assert main(["eval", "--outputs", str(tmp_path)]) == 2
    assert "--targets" in capsys.readouterr().err
    assert main(["eval", "--outputs", str(tmp_path), "--targets", str(tmp_path),
                 "--protocol", "su30"]) == 2
    assert "--protocol" in capsys.readouterr().err
    assert main(["eval", "--data", str(dvd), "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert main(["eval", "--outputs", str(tmp_path), "--targets", str(tmp_path),
                 "--ensemble", "2"]) == 2
    assert "--ensemble applies only to model evaluation" in capsys.readouterr().err
