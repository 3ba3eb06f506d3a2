"""What `flowdeblur deblur` leaves on disk in hard cases: colours through a video round trip,
signals, stale temporaries, replacing a previous output, truncated inputs, rotated video,
unwritable destinations, memory-bounded tiling."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import H, Identity, W, deblur, make_video, smooth_frames, snapshot
from skimage import data

from flowdeblur.cli import main
from flowdeblur.inference import deblur_frames, deblur_video
from flowdeblur.media import (
    VideoReader,
    read_image,
    rotate_flow_for_display,
    rotate_for_display,
    write_image,
)
from flowdeblur.viz import flow_to_color
from flowdeblur.weights import load_weights


def read_all(path) -> torch.Tensor:
    with VideoReader(path) as reader:
        return torch.stack(list(reader))


def write_untagged_h264(path, pictures: list[np.ndarray]) -> None:
    """An H.264 yuv420p file without colour tags, as many cameras and tools write them."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = pictures[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "8"}
        for picture in pictures:
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# ------------------------------------------------------------------------------ colours


@pytest.mark.parametrize("tagged_output_of_ours", [False, True])
def test_video_round_trip_keeps_the_colours(tmp_path, tagged_output_of_ours):
    """An identity model through `deblur` (decode, encode, decode again) moves the mean by
    less than 0.2/255: the matrix and range the reader uses are the ones the writer wrote
    with, and neither conversion rounds one way (swscale's default path reads 1.1/255 dark)."""
    photo = data.astronaut()[96:288, 128:384]
    src = tmp_path / "src.mp4"
    if tagged_output_of_ours:  # a BT.709-tagged file of our own writer as the input
        make_video(src, [torch.from_numpy(np.roll(photo, 3 * i, 1).copy()).permute(2, 0, 1)
                         .float() / 255 for i in range(3)])
    else:
        write_untagged_h264(src, [np.roll(photo, 3 * i, 1).copy() for i in range(3)])
    out = tmp_path / "out.mp4"
    deblur_video(src, out, model=Identity(), device="cpu", crf=0, progress=False,
                 scene_cuts=False)
    before, after = read_all(src), read_all(out)
    assert after.shape == before.shape
    shift = (after - before).mean(dim=(0, 2, 3)) * 255
    assert shift.abs().max() < 0.2, shift


# ------------------------------------------------------------------------------ signals


def _dead_pid() -> int:
    """The pid of a process that has exited (its temporaries are stale)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_sigterm_mid_run_leaves_nothing_and_exits_143(tmp_path, frames_dir, weights,
                                                      monkeypatch, capsys):
    import flowdeblur.inference.outputs as outputs

    written = 0
    real = outputs.write_image

    def write_then_terminate(path, image, **kwargs):
        nonlocal written
        real(path, image, **kwargs)
        written += 1
        if written == 2:  # as `kill PID` from another shell would, between two frames
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(outputs, "write_image", write_then_terminate)
    before = snapshot(tmp_path)
    code = deblur(frames_dir, "-o", tmp_path / "out", "--save-flow", tmp_path / "flow",
                  weights=weights)
    assert code == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "flowdeblur: terminated"
    assert snapshot(tmp_path) == before  # no output, no hidden temporary
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_a_killed_runs_temporaries_are_removed_a_live_runs_kept(tmp_path, frames_dir,
                                                                weights):
    out = tmp_path / "out.mp4"
    dead, live = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".out.mp4.{dead}-0123abcd.tmp"
    stale_dir.mkdir()
    (stale_dir / "000000.png").write_bytes(b"partial")
    stale_file = tmp_path / f".out.mp4.{dead}-89abcdef.tmp.mp4"
    stale_file.write_bytes(b"partial")
    live_file = tmp_path / f".out.mp4.{live}-00ff00ff.tmp.mp4"
    live_file.write_bytes(b"being written")
    other = tmp_path / f".other.mp4.{dead}-0123abcd.tmp.mp4"  # another target's: not ours
    other.write_bytes(b"x")
    assert deblur(frames_dir, "-o", out, weights=weights) == 0
    assert out.is_file()
    assert not stale_dir.exists() and not stale_file.exists()
    assert live_file.read_bytes() == b"being written"
    assert other.exists()


# ------------------------------------------------------------------------------ --overwrite


def _pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_overwrite_replaces_a_previous_output_whole(tmp_path, frames_dir, weights):
    out = tmp_path / "out"
    other = tmp_path / "other"
    for i, frame in enumerate(smooth_frames(3, seed=1)):
        write_image(other / f"old_{i}.png", frame)
    assert deblur(other, "-o", out, weights=weights) == 0
    assert _pngs(out) == {"old_0.png", "old_1.png", "old_2.png"}
    assert deblur(frames_dir, "-o", out, "--overwrite", weights=weights) == 0
    assert _pngs(out) == {f"shot_{i:03d}.png" for i in range(4)}  # nothing merged
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_refuses_a_folder_it_did_not_write(tmp_path, frames_dir, weights, capsys):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    write_image(out / "holiday.png", smooth_frames(1)[0])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert deblur(frames_dir, "-o", out, "--overwrite", weights=weights) == 2
    err = capsys.readouterr().err
    assert "flowdeblur did not write" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_folder_and_file_outputs_do_not_replace_each_other(tmp_path, frames_dir, weights,
                                                           capsys):
    a_file = tmp_path / "frames_out"
    a_file.write_text("not a folder")
    a_folder = tmp_path / "clip.mp4"
    a_folder.mkdir()
    (a_folder / "x").write_text("x")
    assert deblur(frames_dir, "-o", a_file, "--overwrite", weights=weights) == 2
    assert "is a file" in capsys.readouterr().err
    assert deblur(frames_dir, "-o", a_folder, "--overwrite", weights=weights) == 2
    assert "is a folder" in capsys.readouterr().err
    assert a_file.read_text() == "not a folder" and (a_folder / "x").read_text() == "x"


# ------------------------------------------------------------------------------ warnings


def _truncated_mp4(path: Path, frames: int = 30) -> Path:
    """An MP4 whose index (moov, written first) declares ``frames`` frames but whose data
    stops half-way, as a copy cut short leaves it."""
    full = path.with_name("full.mp4")
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(frames):
            picture = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def _warnings_start_their_lines(err: str) -> bool:
    """Whether every warning begins a line (not glued to a progress bar's text)."""
    starts = [i for i in range(len(err)) if err.startswith("flowdeblur: warning:", i)]
    return bool(starts) and all(i == 0 or err[i - 1] in "\r\n" for i in starts)


def test_a_truncated_video_warns_with_declared_and_decoded_counts(tmp_path, weights, capsys):
    src = _truncated_mp4(tmp_path / "cut.mp4")
    with VideoReader(src) as reader:
        decoded = sum(1 for _ in reader)
    assert 0 < decoded < 30
    out = tmp_path / "out"
    assert main(["deblur", str(src), "-o", str(out), "--weights", str(weights)]) == 0
    err = capsys.readouterr().err
    assert f"declares 30 frames but only {decoded} could be decoded" in err
    assert _warnings_start_their_lines(err), err
    assert len(list(out.glob("*.png"))) == decoded


def test_the_one_frame_warning_is_not_printed_inside_the_progress_bar(tmp_path, weights,
                                                                      capsys):
    write_image(tmp_path / "only.png", smooth_frames(1)[0])
    assert main(["deblur", str(tmp_path / "only.png"), "-o", str(tmp_path / "out.png"),
                 "--weights", str(weights)]) == 0
    err = capsys.readouterr().err
    assert "paired with itself" in err
    assert _warnings_start_their_lines(err), err


# ------------------------------------------------------------------------------ unwritable


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: creating anything directly in ``folder`` fails with EROFS, as on
    a read-only file system (tests run as root, where permissions would not stop a write)."""
    folders: list[Path] = []
    real_open, real_mkdir = os.open, os.mkdir

    def blocked(path) -> bool:
        return Path(os.path.abspath(path)).parent in folders

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and blocked(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if blocked(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return lambda folder: folders.append(Path(folder).absolute())


@pytest.mark.parametrize("target", ["out.mp4", "out", "flow"])
def test_deblur_into_a_read_only_place_fails_before_any_work(target, tmp_path, frames_dir,
                                                             weights, read_only, monkeypatch,
                                                             capsys):
    import flowdeblur.inference.files as inference

    def no_work(*args, **kwargs):
        raise AssertionError("frames were deblurred before the output was checked")

    monkeypatch.setattr(inference, "deblurred_frames", no_work)
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    before = snapshot(tmp_path)
    if target == "flow":
        args = ["-o", tmp_path / "out", "--save-flow", locked / "flow"]
    else:
        args = ["-o", locked / target]
    assert deblur(frames_dir, *args, weights=weights) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0], err
    assert snapshot(tmp_path) == before


def _scored_folders(tmp_path: Path) -> list[str]:
    for name in ("o", "t"):
        write_image(tmp_path / name / "s" / "f.png", smooth_frames(1)[0])
    return ["eval", "--outputs", str(tmp_path / "o"), "--targets", str(tmp_path / "t")]


def test_eval_json_to_a_folder_or_a_read_only_place_is_one_line(tmp_path, read_only, capsys):
    args = _scored_folders(tmp_path)
    (tmp_path / "results").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    before = snapshot(tmp_path)
    for option, path, message in (("--json", tmp_path / "results", "is a folder"),
                                  ("--json", locked / "r.json", "Read-only file system"),
                                  ("--csv", locked / "r.csv", "Read-only file system")):
        assert main([*args, option, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert snapshot(tmp_path) == before
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0  # the check lets this pass


# ------------------------------------------------------------------------------ rotation


def test_flow_turned_for_display_turns_its_vectors():
    """A pattern moving right on the stored frames moves up once the frames are turned a
    quarter counter-clockwise, left after a half turn, down after three quarters."""
    right = torch.zeros(2, 5, 7)
    right[0] = 2.0
    expected = {0: (2.0, 0.0), 90: (0.0, -2.0), 180: (-2.0, 0.0), 270: (0.0, 2.0)}
    for rotation, (x, y) in expected.items():
        turned = rotate_flow_for_display(right, rotation)
        assert turned.shape == ((2, 7, 5) if rotation % 180 else (2, 5, 7))
        assert torch.equal(turned[0], torch.full_like(turned[0], x))
        assert torch.equal(turned[1], torch.full_like(turned[1], y))
    field = torch.randn(2, 2, 6, 9)
    assert torch.equal(rotate_flow_for_display(rotate_flow_for_display(field, 90), 270), field)


def test_rotated_video_side_by_side_and_flow_pictures_are_upright(tmp_path, weights):
    model = load_weights(weights)
    src = make_video(tmp_path / "in.mp4", smooth_frames(3), rotation=90)
    with VideoReader(src) as reader:
        assert reader.info.rotation == 90
        decoded = list(reader)
    out, flow_dir, pngs = tmp_path / "sbs.mkv", tmp_path / "flow", tmp_path / "pngs"
    assert deblur(src, "-o", out, "--side-by-side", "--lossless", "--save-flow", flow_dir,
                  weights=weights) == 0
    assert deblur(src, "-o", pngs, weights=weights) == 0
    expected = list(deblur_frames(model, decoded, device="cpu", return_flow=True))

    with VideoReader(out) as reader:
        assert reader.info.rotation == 0  # composed upright, nothing left for a player to turn
        first = next(iter(reader))
    h, w = first.shape[-2], first.shape[-1] // 2
    assert (h, w) == (W, H)  # the displayed size of a 64x48 frame turned a quarter
    upright_input = rotate_for_display(decoded[0], 90)
    assert (first[:, :, :w] - upright_input).abs().max() <= 1 / 255 + 1e-6  # left: the input
    upright_output = rotate_for_display(expected[0][0], 90)
    assert (first[:, :, w:] - upright_output).abs().max() <= 1 / 255 + 1e-6  # right: output

    picture = read_image(flow_dir / "000000.png")
    want = flow_to_color(rotate_flow_for_display(expected[0][1], 90))
    assert picture.shape == (3, W, H)
    assert (picture - want).abs().max() <= 0.5 / 255 + 1e-6

    png = read_image(pngs / "000000.png")
    assert (png - upright_output).abs().max() <= 0.5 / 255 + 1e-6
