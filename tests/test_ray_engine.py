"""`flowdeblur batch --engine ray` (inference/ray_engine.py) on a local Ray with 2 CPUs started
here: a bad file fails alone, lossless outputs equal single-file runs, a long video is shared
by workers, a killed worker's chunk is run again, and a killed batch resumes without redoing a
finished video or chunk. Slow: Ray starts worker processes."""

from __future__ import annotations

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
from helpers import Identity, make_video, require, smooth_frames

from flowdeblur.cli import main
from flowdeblur.inference.batch import deblur_batch
from flowdeblur.inference.chunks import pieces_folder
from flowdeblur.inference.files import deblur_video
from flowdeblur.media import FrameSource

pytestmark = pytest.mark.slow

ray = require("ray")

TESTS = Path(__file__).resolve().parent
H, W = 32, 48
RUN = dict(lossless=True, scene_cuts=False, batch=1, progress=False)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """A local Ray of 2 CPUs whose workers can import the tests' helpers (the test double)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved]))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="WARNING", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


class Slow:
    """The test double's delay per frame, so that chunks overlap in time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self) -> None:
        time.sleep(self.seconds)


class DieOnce:
    """Kills its worker process at its second frame, once in the whole test (a marker file
    says it happened)."""

    def __init__(self, marker: Path) -> None:
        self.marker, self.calls = marker, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == 2 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def clip(path: Path, seed: int, count: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, smooth_frames(count, H, W, seed=seed))


def same_frames(a: Path, b: Path) -> bool:
    fa, fb = list(FrameSource(a).iterate_with_pts()), list(FrameSource(b).iterate_with_pts())
    return len(fa) == len(fb) and all(
        x.pts == y.pts and torch.equal(x.image, y.image) for x, y in zip(fa, fb))


def local_run(src: Path, out: Path, **options) -> Path:
    deblur_video(src, out, model=Identity(), **dict(RUN, **options))
    return out


def statuses(report: Path) -> dict[str, dict]:
    return {Path(i["input"]).name: i for i in json.loads(report.read_text())["items"]}


def test_a_corrupt_clip_fails_alone_and_outputs_equal_single_runs(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        clip(src / f"c{i}.mkv", i)
    (src / "bad.mp4").write_bytes(b"not a video at all" * 50)
    report = tmp_path / "r.json"
    result = deblur_batch([src], tmp_path / "out", engine="ray", model=Identity(),
                          report=report, **RUN)
    assert (result.count("done"), result.count("failed"), result.exit_status) == (4, 1, 1)
    items = statuses(report)
    assert items["bad.mp4"]["status"] == "failed" and items["bad.mp4"]["reason"]
    for i in range(4):
        name = f"c{i}.mkv"
        assert items[name]["status"] == "done" and items[name]["workers"]
        single = local_run(src / name, tmp_path / "single" / name)
        assert same_frames(tmp_path / "out" / name, single)
    for shard in ((1, 2), (2, 2)):  # shards of a Ray batch cover it as well
        deblur_batch([src / f"c{i}.mkv" for i in range(4)], tmp_path / "shards", shard=shard,
                     engine="ray", model=Identity(), **RUN)
    for i in range(4):
        assert same_frames(tmp_path / "shards" / f"c{i}.mkv", tmp_path / "out" / f"c{i}.mkv")


def test_a_long_video_is_shared_by_workers_and_equals_the_local_output(tmp_path):
    src = clip(tmp_path / "src" / "long.mkv", 7, count=12)
    report = tmp_path / "r.json"
    result = deblur_batch([src], tmp_path / "out", engine="ray", chunk_frames=2,
                          model=Identity(on_forward=Slow(0.3)), report=report, **RUN)
    assert result.exit_status == 0
    item = statuses(report)["long.mkv"]
    assert item["frames"] == 12 and len(set(item["workers"])) >= 2, item
    assert same_frames(tmp_path / "out" / "long.mkv",
                       local_run(src, tmp_path / "local.mkv", chunk_frames=0))
    assert not pieces_folder(tmp_path / "out" / "long.mkv").exists()


def test_a_worker_killed_mid_chunk_is_retried_and_the_batch_completes(tmp_path):
    src = clip(tmp_path / "src" / "long.mkv", 8, count=9)
    marker = tmp_path / "killed"
    result = deblur_batch([src], tmp_path / "out", engine="ray", chunk_frames=3,
                          model=Identity(on_forward=DieOnce(marker)), **RUN)
    assert marker.exists()  # a worker died ...
    assert result.exit_status == 0  # ... and its chunk was run again
    assert same_frames(tmp_path / "out" / "long.mkv",
                       local_run(src, tmp_path / "local.mkv", chunk_frames=0))


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from helpers import Identity
    from test_ray_engine import Slow
    from flowdeblur.inference.batch import deblur_batch
    deblur_batch([{src!r}], {out!r}, engine="ray", ray_address={address!r}, chunk_frames=2,
                 model=Identity(on_forward=Slow(0.4)), lossless=True, scene_cuts=False,
                 batch=1, progress=False)
""")


def test_a_killed_batch_resumes_without_redoing_a_finished_video_or_chunk(tmp_path,
                                                                         local_ray):
    src, out = tmp_path / "src", tmp_path / "out"
    clip(src / "a.mkv", 1, count=2)
    clip(src / "long.mkv", 2, count=12)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(TESTS), src=str(src), out=str(out),
                                    address=local_ray))
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    folder = pieces_folder(out / "long.mkv")
    deadline = time.monotonic() + 300
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk was published"
        pieces = [p for p in folder.iterdir() if not p.name.startswith(".")] \
            if folder.is_dir() else []
        if len(pieces) >= 2 and (out / "a.mkv").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "long.mkv").exists()
    time.sleep(1)  # Ray ends the killed driver's workers
    finished = len([p for p in folder.iterdir() if not p.name.startswith(".")])
    report = tmp_path / "r.json"
    result = deblur_batch([src], out, engine="ray", chunk_frames=2, resume=True,
                          model=Identity(), report=report, **RUN)
    assert result.exit_status == 0
    items = statuses(report)
    assert items["a.mkv"]["status"] == "skipped"
    long = items["long.mkv"]
    assert long["reused"] >= 2 * finished and long["frames"] == 12 - long["reused"]
    assert long["recomputed"] <= 2 * 2  # at most the chunks the two workers were writing
    assert same_frames(out / "long.mkv", local_run(src / "long.mkv", tmp_path / "local.mkv"))


def test_the_command_line_runs_on_ray(tmp_path, capsys, weights):
    src = clip(tmp_path / "src" / "a.mkv", 3)
    assert main(["batch", str(src), "-o", str(tmp_path / "out"), "--engine", "ray",
                 "--weights", str(weights), "--lossless", "--no-progress", "--batch", "1",
                 "--device", "cpu", "--precision", "fp32"]) == 0
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert len(list(FrameSource(tmp_path / "out" / "a.mkv"))) == 3
