"""What `flowdeblur deblur` may replace: only its own earlier outputs, never an input, never a
file it did not write, and never what another run is writing at the same time."""

from __future__ import annotations

import errno
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import Identity
from PIL import Image

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.inference import deblur_frames, deblur_video, outputs
from flowdeblur.media import VideoWriter, read_alpha, write_image
from flowdeblur.media.atomic import TargetLock
from flowdeblur.media.ownership import (
    MARKER,
    file_written_by_us,
    foreign_entries,
    tag_image_file,
)


def _frames(count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 16, 24, generator=g) for _ in range(count)]


def _folder(path: Path, count: int = 3, seed: int = 0) -> Path:
    for i, frame in enumerate(_frames(count, seed)):
        write_image(path / f"f{i}.png", frame)
    return path


def run(*args) -> int:
    """`flowdeblur deblur` with the identity model in place of the shipped weights."""
    return main(["deblur", *map(str, args), "--no-progress", "--no-scene-cuts",
                 "--weights", "IDENTITY"])


@pytest.fixture(autouse=True)
def _identity_weights(monkeypatch):
    import flowdeblur.cli.deblur as cli_deblur

    monkeypatch.setattr(cli_deblur, "load_model", lambda path, *rest: Identity())


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- inputs


def test_an_input_folder_inside_a_previous_output_is_never_deleted(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(_folder(tmp_path / "a"), "-o", out) == 0
    inner = _folder(out / "sub", seed=1)
    before = _contents(inner)
    assert run(inner, "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "lies inside OUTPUT" in err and "Traceback" not in err
    assert _contents(inner) == before


def test_an_input_file_inside_a_previous_output_is_never_deleted(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(_folder(tmp_path / "a"), "-o", out) == 0
    only_copy = out / "keep" / "my_only_copy.png"
    write_image(only_copy, _frames(1)[0])
    data = only_copy.read_bytes()
    assert run(only_copy, "-o", out, "--overwrite") == 2
    assert "lies inside OUTPUT" in capsys.readouterr().err
    assert only_copy.read_bytes() == data


# ----------------------------------------------------------------------------- folders


def test_a_folder_output_lists_its_files(tmp_path):
    out = tmp_path / "out"
    assert run(_folder(tmp_path / "a"), "-o", out) == 0
    assert foreign_entries(out) == []
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "f0.png", "f1.png", "f2.png"]


@pytest.mark.parametrize("added", ["notes.txt", "holiday.png", "subfolder"])
def test_a_file_the_user_added_to_an_output_folder_is_kept(tmp_path, capsys, added):
    out = tmp_path / "out"
    assert run(_folder(tmp_path / "a"), "-o", out) == 0
    if added == "subfolder":
        (out / added).mkdir()
        (out / added / "x.txt").write_text("mine")
    else:
        (out / added).write_bytes(b"mine")
    before = _contents(out)
    assert run(_folder(tmp_path / "b", seed=2), "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert f"holds files flowdeblur did not write ({added})" in err
    assert _contents(out) == before


def test_a_folder_whose_marker_lists_no_files_is_not_ours(tmp_path, capsys):
    out = tmp_path / "out"
    _folder(out)
    (out / MARKER).write_text('{"written_by": "flowdeblur deblur"}\n')
    assert run(_folder(tmp_path / "a"), "-o", out, "--overwrite") == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "f0.png").exists()


# ----------------------------------------------------------------------------- files


def _untagged_video(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 24, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "one.png", "one.jpg"])
def test_overwrite_never_replaces_a_file_flowdeblur_did_not_write(tmp_path, capsys, name):
    out = tmp_path / name
    if out.suffix in (".mp4", ".mkv"):
        _untagged_video(out)
    else:
        Image.fromarray(np.full((16, 24, 3), 99, np.uint8)).save(out)
    data = out.read_bytes()
    src = _folder(tmp_path / "a", count=1 if out.suffix in (".png", ".jpg") else 3)
    assert run(src, "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not an output of flowdeblur" in err and "Traceback" not in err
    assert out.read_bytes() == data


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "one.png", "one.jpg"])
def test_overwrite_replaces_a_tagged_output(tmp_path, name):
    out = tmp_path / name
    count = 1 if out.suffix in (".png", ".jpg") else 3
    assert run(_folder(tmp_path / "a", count=count), "-o", out) == 0
    assert file_written_by_us(out)
    first = out.read_bytes()
    assert run(_folder(tmp_path / "b", count=count, seed=5), "-o", out, "--overwrite") == 0
    assert file_written_by_us(out) and out.read_bytes() != first


def test_tags_are_read_from_the_file_structure_only(tmp_path):
    png = tmp_path / "a.png"
    write_image(png, _frames(1)[0])
    assert not file_written_by_us(png)
    assert tag_image_file(png) and file_written_by_us(png)
    assert np.asarray(Image.open(png)).shape == (16, 24, 3)  # still a valid PNG
    sixteen = tmp_path / "b.png"
    write_image(sixteen, _frames(1)[0], bits=16)
    assert tag_image_file(sixteen) and file_written_by_us(sixteen)
    # The tag text elsewhere in a file (not as its record) does not make it ours.
    text = tmp_path / "c.mp4"
    text.write_bytes(b"written by flowdeblur deblur")
    assert not file_written_by_us(text)
    with VideoWriter(tmp_path / "d.mkv", fps=24, width=24, height=16) as writer:
        writer.write(_frames(1)[0])
    assert file_written_by_us(tmp_path / "d.mkv")


# ----------------------------------------------------------------------------- concurrency


def test_a_second_run_to_the_same_output_is_refused_while_the_first_writes(tmp_path, capsys):
    out = tmp_path / "new.mp4"
    with TargetLock(out):  # as a first run holds it from its checks to its publishing
        assert run(_folder(tmp_path / "a"), "-o", out) == 2
        err = capsys.readouterr().err
        assert "being written by another flowdeblur process" in err
        assert not out.exists()
    assert run(_folder(tmp_path / "a"), "-o", out) == 0  # released: the next run goes ahead


def test_an_output_made_by_another_program_during_the_run_is_kept(tmp_path):
    out = tmp_path / "new.png"

    def someone_else_writes() -> None:
        if not out.exists():
            out.write_bytes(b"theirs")

    src = _folder(tmp_path / "a", count=1)
    with pytest.raises(UserError, match="created by another program while deblurring"):
        deblur_video(src, out, model=Identity(someone_else_writes), progress=False,
                     scene_cuts=False)
    assert out.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- other faults


def test_a_non_finite_frame_is_refused_by_index():
    frames = _frames(4)
    frames[2][1, 5, 7] = float("nan")
    with pytest.raises(ValueError, match="frame 2 holds NaN or infinite values"):
        list(deblur_frames(Identity(), frames, device="cpu", precision="fp32",
                           scene_cuts=False))
    frames[2][1, 5, 7] = float("inf")
    with pytest.raises(ValueError, match="frame 2"):
        list(deblur_frames(Identity(), frames, device="cpu", precision="fp32",
                           scene_cuts=False))


def test_sixteen_bit_jpeg_is_refused_before_the_network_runs(tmp_path):
    def explode() -> None:
        raise AssertionError("the network ran")

    src = _folder(tmp_path / "a", count=1)
    with pytest.raises(UserError, match="16-bit output needs .png or .tif"):
        deblur_video(src, tmp_path / "out.jpg", model=Identity(explode), bits=16,
                     progress=False, scene_cuts=False)


def test_a_full_disk_is_reported_with_the_output_name(tmp_path, monkeypatch, capsys):
    def full(path, image, bits=8, alpha=None):
        raise UserError(f"cannot write image {path}: No space left on device") from OSError(
            errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "write_image", full)
    out = tmp_path / "out"
    assert run(_folder(tmp_path / "a"), "-o", out) == 2
    err = capsys.readouterr().err
    assert f"cannot write OUTPUT {out}: No space left on device" in err
    assert ".tmp" not in err and not out.exists()


# ----------------------------------------------------------------------------- alpha


def _rgba_folder(path: Path, count: int = 2) -> list[np.ndarray]:
    """PNG frames with an alpha channel; returns the alphas."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    alphas = []
    for i in range(count):
        rgba = rng.integers(0, 256, (16, 24, 4), dtype=np.uint8)
        Image.fromarray(rgba, "RGBA").save(path / f"f{i}.png")
        alphas.append(rgba[..., 3])
    return alphas


def test_an_input_alpha_channel_is_passed_through_unchanged(tmp_path):
    alphas = _rgba_folder(tmp_path / "a")
    assert run(tmp_path / "a", "-o", tmp_path / "out") == 0
    for i, alpha in enumerate(alphas):
        with Image.open(tmp_path / "out" / f"f{i}.png") as im:
            assert im.mode == "RGBA"
            np.testing.assert_array_equal(np.array(im)[..., 3], alpha)
    assert run(tmp_path / "a" / "f1.png", "-o", tmp_path / "one.tif") == 0
    np.testing.assert_array_equal(read_alpha(tmp_path / "one.tif"), alphas[1])


def test_an_alpha_channel_an_output_cannot_hold_is_dropped_with_a_warning(tmp_path, capsys):
    _rgba_folder(tmp_path / "a")
    assert run(tmp_path / "a", "-o", tmp_path / "out.mp4") == 0
    assert "alpha channel, which a video cannot hold" in capsys.readouterr().err
    assert run(tmp_path / "a" / "f0.png", "-o", tmp_path / "one.jpg") == 0
    assert "a .jpg file cannot hold" in capsys.readouterr().err
