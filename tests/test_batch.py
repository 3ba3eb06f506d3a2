"""`flowdeblur batch`: many inputs into one folder; a bad file fails alone; resume after a
change or a kill; shards; what is refused before any work."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import Identity, make_video, smooth_frames, snapshot, use_model_in_cli

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.inference import batch as batch_module
from flowdeblur.inference.batch import find_items, parse_shard, shard_of
from flowdeblur.media import FrameSource, write_image

TESTS = Path(__file__).resolve().parent
H, W, FRAMES = 32, 48, 3

#: Counts the network calls of the test double, so that a test sees what was redone.
CALLS: list[int] = []


@pytest.fixture(autouse=True)
def _identity_weights(monkeypatch):
    CALLS.clear()
    use_model_in_cli(monkeypatch, Identity(on_forward=lambda: CALLS.append(1)))


def batch(*args) -> int:
    """`flowdeblur batch` with the identity model, one frame per call, no bars."""
    return main(["batch", *map(str, args), "--no-progress", "--no-scene-cuts", "--batch", "1"])


def clip(path: Path, seed: int, count: int = FRAMES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, smooth_frames(count, H, W, seed=seed))


def sequence(folder: Path, seed: int, count: int = FRAMES) -> Path:
    for i, frame in enumerate(smooth_frames(count, H, W, seed=seed)):
        write_image(folder / f"f{i}.png", frame)
    return folder


def footage(root: Path, corrupt: bool = False) -> Path:
    """Five inputs: four clips (two named alike in two folders) and a frame folder, or with
    ``corrupt`` a fifth clip that is not a video."""
    clip(root / "a.mp4", 1)
    clip(root / "day1" / "GOPR0001.mp4", 2)
    clip(root / "day2" / "GOPR0001.mp4", 3)
    clip(root / "day2" / "b.mkv", 4)
    if corrupt:
        (root / "day2" / "bad.mp4").write_bytes(b"not a video at all" * 50)
    else:
        sequence(root / "day3" / "frames", 5)
    return root


def decoded(path: Path) -> list[torch.Tensor]:
    return [frame for _, _, frame in FrameSource(path)]


def report(path: Path) -> dict[str, str]:
    """Input (relative to the test folder) -> status, from a --report file."""
    items = json.loads(path.read_text())["items"]
    return {Path(i["input"]).name if "GOPR" not in i["input"] else
            "/".join(Path(i["input"]).parts[-2:]): i["status"] for i in items}


# ----------------------------------------------------------------------------- batches


def test_a_corrupt_clip_fails_alone_and_is_named(tmp_path, capsys):
    src = footage(tmp_path / "src", corrupt=True)
    out = tmp_path / "out"
    assert batch(src, "-o", out, "--report", tmp_path / "r.json") == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.m*")) == [
        "a.mp4", "day1/GOPR0001.mp4", "day2/GOPR0001.mp4", "day2/b.mkv"]
    assert len(decoded(out / "day2" / "b.mkv")) == FRAMES
    err = capsys.readouterr().err
    assert "4 done, 0 skipped, 1 failed" in err and "bad.mp4" in err
    items = json.loads((tmp_path / "r.json").read_text())["items"]
    failed = [i for i in items if i["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["input"].endswith("bad.mp4") and failed[0]["reason"]
    assert "\n" not in failed[0]["reason"]


def test_lossless_outputs_equal_single_file_runs(tmp_path):
    src = footage(tmp_path / "src")
    out = tmp_path / "out"
    assert batch(src, "-o", out, "--lossless") == 0
    assert (out / "day3" / "frames" / "f0.png").is_file()
    for rel in ("a.mp4", "day2/GOPR0001.mp4", "day2/b.mkv", "day3/frames"):
        single = tmp_path / "single" / rel
        assert main(["deblur", str(src / rel), "-o", str(single), "--lossless",
                     "--no-progress", "--no-scene-cuts", "--batch", "1"]) == 0
        ours, theirs = decoded(out / rel), decoded(single)
        assert len(ours) == FRAMES and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_shards_are_disjoint_and_cover_the_batch(tmp_path):
    src = footage(tmp_path / "src")
    for i in range(4):
        clip(src / "more" / f"c{i}.mp4", 10 + i, count=2)
    out = tmp_path / "out"
    done = []
    for shard in ("1/2", "2/2"):
        assert batch(src, "-o", out, "--shard", shard, "--report", tmp_path / "r.json") == 0
        done.append({i["output"] for i in json.loads((tmp_path / "r.json").read_text())["items"]
                     if i["status"] == "done"})
    everything = {str(item.output) for item in find_items([src], out)}
    assert done[0] and done[1] and not done[0] & done[1] and done[0] | done[1] == everything


def test_the_shard_of_a_key_is_stable_and_spread():
    keys = [f"day{d}/GOPR{n:04d}.MP4" for d in range(5) for n in range(40)]
    counts = [sum(shard_of(k, 4) == i for k in keys) for i in (1, 2, 3, 4)]
    assert sum(counts) == len(keys) and min(counts) > 25
    assert shard_of("a/b.mp4", 7) == shard_of("a/b.mp4", 7)
    assert parse_shard("3/8") == (3, 8)
    for bad in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(UserError):
            parse_shard(bad)


# ----------------------------------------------------------------------------- resume


def test_resume_redoes_nothing_then_only_what_changed(tmp_path, capsys):
    src = footage(tmp_path / "src")
    out, r = tmp_path / "out", tmp_path / "r.json"
    assert batch(src, "-o", out) == 0
    capsys.readouterr()
    assert batch(src, "-o", out) == 2  # outputs exist: neither --resume nor --overwrite
    assert "--resume" in capsys.readouterr().err
    CALLS.clear()
    assert batch(src, "-o", out, "--resume", "--report", r) == 0
    assert set(report(r).values()) == {"skipped"} and CALLS == []
    assert "0 done, 5 skipped, 0 failed" in capsys.readouterr().out
    clip(src / "day2" / "b.mkv", 99)  # a changed input
    assert batch(src, "-o", out, "--resume", "--report", r) == 0
    assert [k for k, v in report(r).items() if v == "done"] == ["b.mkv"]
    assert len(CALLS) == FRAMES
    assert batch(src, "-o", out, "--resume", "--report", r, "--crf", "12") == 0  # an option
    statuses = report(r)
    assert statuses["frames"] == "skipped"  # crf does not change PNGs
    assert [v for k, v in statuses.items() if k != "frames"] == ["done"] * 4


def test_deblur_resume_of_one_video(tmp_path, capsys):
    src, out = clip(tmp_path / "a.mp4", 1), tmp_path / "out.mkv"
    args = ["deblur", str(src), "-o", str(out), "--no-progress", "--lossless", "--no-scene-cuts"]
    assert main(args) == 0
    before = out.stat().st_mtime_ns
    CALLS.clear()
    assert main([*args, "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert CALLS == [] and out.stat().st_mtime_ns == before
    assert main([*args, "--resume", "--ensemble", "2"]) == 0
    assert CALLS and out.stat().st_mtime_ns != before


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from helpers import Identity
    import flowdeblur.cli.batch as cli_batch
    cli_batch.load_model = lambda path, *rest: Identity(on_forward=lambda: time.sleep(0.25))
    from flowdeblur.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_a_killed_batch_resumes_without_redoing_a_finished_video(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        clip(src / f"c{i}.mkv", i, count=4)
    out, r = tmp_path / "out", tmp_path / "r.json"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(TESTS)))
    args = [sys.executable, str(driver), "batch", str(src), "-o", str(out), "--lossless",
            "--no-progress", "--batch", "1", "--no-scene-cuts"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(list(out.glob("c*.mkv"))) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "the batch published nothing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    finished = sorted(p.name for p in out.glob("c*.mkv"))
    assert 2 <= len(finished) < 5
    for name in finished:  # never a partial file under a final name
        assert len(decoded(out / name)) == 4
    assert batch(src, "-o", out, "--lossless", "--resume", "--report", r) == 0
    statuses = report(r)
    assert sorted(k for k, v in statuses.items() if v == "skipped") == finished
    assert sorted(k for k, v in statuses.items() if v == "done") == sorted(
        {f"c{i}.mkv" for i in range(5)} - set(finished))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no leftovers
    whole = tmp_path / "whole"
    assert batch(src, "-o", whole, "--lossless") == 0
    for i in range(5):
        a, b = decoded(out / f"c{i}.mkv"), decoded(whole / f"c{i}.mkv")
        assert len(a) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("second", ["day2/clip.mp4", "day2/CLIP.mp4"])
def test_a_name_clash_is_refused_before_any_work(tmp_path, capsys, second):
    clip(tmp_path / "day1" / "clip.mp4", 1)
    clip(tmp_path / second, 2)
    out = tmp_path / "out"
    assert batch(tmp_path / "day1", tmp_path / "day2", "-o", out) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert not out.exists() and CALLS == []


def test_list_files(tmp_path, capsys):
    clip(tmp_path / "cams" / "a" / "GOPR0001.mp4", 1)
    clip(tmp_path / "cams" / "b" / "GOPR0001.mp4", 2)
    clip(tmp_path / "other" / "x.mp4", 3)
    sequence(tmp_path / "cams" / "seq", 4)
    listing = tmp_path / "cams" / "todo.txt"
    listing.write_text("# to deblur\n\na/GOPR0001.mp4\n  b/GOPR0001.mp4  \n../other/x.mp4\n"
                       "seq\n# b/missing.mp4\n")
    out = tmp_path / "out"
    assert batch(f"@{listing}", "-o", out) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if not p.name.startswith(".")) == [
        "a", "a/GOPR0001.mp4", "b", "b/GOPR0001.mp4", "seq", "seq/f0.png", "seq/f1.png",
        "seq/f2.png", "x.mp4"]
    listing.write_text("a/GOPR0001.mp4\nmissing.mp4\n")
    assert batch(f"@{listing}", "-o", tmp_path / "out2") == 2
    assert "input not found" in capsys.readouterr().err


def test_dry_run_writes_nothing(tmp_path, capsys):
    src = footage(tmp_path / "src")
    before = snapshot(tmp_path)
    assert batch(src, "-o", tmp_path / "out", "--dry-run", "--report", tmp_path / "r.json") == 0
    assert snapshot(tmp_path) == before and CALLS == []
    shown = capsys.readouterr().out
    assert "5 inputs" in shown and str(tmp_path / "out" / "day1" / "GOPR0001.mp4") in shown


def test_output_dir_inside_an_input_folder_is_refused(tmp_path, capsys):
    src = footage(tmp_path / "src")
    assert batch(src, "-o", src / "out") == 2
    assert "is inside the input folder" in capsys.readouterr().err
    assert not (src / "out").exists()


def test_a_full_disk_stops_the_batch(tmp_path, monkeypatch, capsys):
    src = footage(tmp_path / "src")
    real = batch_module.deblur_video
    seen = []

    def deblur_video(input, output, **options):
        seen.append(output)
        if len(seen) == 2:
            raise UserError(f"cannot write OUTPUT {output}: {os.strerror(errno.ENOSPC)}")
        return real(input, output, **options)

    monkeypatch.setattr(batch_module, "deblur_video", deblur_video)
    assert batch(src, "-o", tmp_path / "out", "--report", tmp_path / "r.json") == 1
    assert sorted(report(tmp_path / "r.json").values()) == [
        "done", "failed", "not started", "not started", "not started"]
    err = capsys.readouterr().err
    assert "3 not started" in err and "the disk is full" in err and len(seen) == 2
