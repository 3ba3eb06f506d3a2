"""A long video made in chunks (inference/chunks.py, media/video_join.py): the joined file
equals a video made in one go (frames, timestamps, audio, rotation), the pairing and the frame
grouping do not see the chunk boundaries, and a run killed with SIGKILL continues from the
last finished chunk."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import Identity, make_video, smooth_frames, use_model_in_cli

from flowdeblur.cli import main
from flowdeblur.inference.chunks import pieces_folder, plan_chunks
from flowdeblur.inference.files import deblur_video
from flowdeblur.inference.stream import frame_triples
from flowdeblur.media import FrameSource
from flowdeblur.weights import load_weights

TESTS = Path(__file__).resolve().parent
H, W = 32, 48

#: Counts the network calls of the test double, so that a test sees what was redone.
CALLS: list[int] = []


@pytest.fixture(autouse=True)
def _identity_weights(monkeypatch):
    CALLS.clear()
    use_model_in_cli(monkeypatch, Identity(on_forward=lambda: CALLS.append(1)))


def decoded(path: Path) -> tuple[list[torch.Tensor], list[int | None]]:
    items = list(FrameSource(path).iterate_with_pts())
    return [i.image for i in items], [i.pts for i in items]


def same_frames(a: Path, b: Path) -> bool:
    (fa, pa), (fb, pb) = decoded(a), decoded(b)
    return pa == pb and len(fa) == len(fb) and all(torch.equal(x, y) for x, y in zip(fa, fb))


# ----------------------------------------------------------------------------- the plan


def test_chunks_are_multiples_of_the_batch_and_the_last_runs_to_the_end():
    chunks = plan_chunks(10, 3, batch=2)
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8), (8, None)]
    assert [(c.start, c.stop) for c in plan_chunks(5, 300)] == [(0, None)]
    assert [(c.start, c.stop) for c in plan_chunks(6, 3)] == [(0, 3), (3, None)]


@pytest.mark.filterwarnings("ignore:the input has a single frame")
@pytest.mark.parametrize("count", [1, 2, 5, 7])
def test_a_window_pairs_its_frames_as_the_whole_stream_does(count):
    frames = [torch.full((3, 2, 2), float(i)) for i in range(count)]

    def pairs(triples):
        return [(t.index, int(t.frame_next[0, 0, 0]), int(t.frame_prev[0, 0, 0]))
                for t in triples]

    whole = pairs(frame_triples(frames))
    for start in range(count):
        for stop in [*range(start + 1, count + 1), None]:
            given = frames[max(start - 1, 0):None if stop is None else stop + 1]
            window = pairs(frame_triples(given, start=start, stop=stop))
            assert window == whole[start:stop], (start, stop)


# ----------------------------------------------------------------------------- the joined video


def clip_with_audio(path: Path, frames: int) -> Path:
    """A 10 fps clip of ``frames`` frames with a sine tone as long as it."""
    rate = 22050
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        samples = (0.3 * np.sin(np.arange(rate * frames // 10) * 2 * np.pi * 440 / rate))
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None], format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
        for i, image in enumerate(smooth_frames(frames, H, W)):
            picture = av.VideoFrame.from_ndarray(
                (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode())
    return path


def audio_packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(p.pts, p.size) for p in container.demux(stream) if p.size]


@pytest.mark.parametrize("name", ["out.mkv", "out.mp4", "out.mov"])
def test_a_video_made_in_chunks_equals_one_made_in_one_go(tmp_path, name):
    src = clip_with_audio(tmp_path / "in.mp4", 11)
    options = dict(model=Identity(), progress=False, scene_cuts=False, lossless=True, batch=2)
    whole = deblur_video(src, tmp_path / "whole" / name, chunk_frames=0, **options)
    chunked = deblur_video(src, tmp_path / "chunked" / name, chunk_frames=3, **options)
    assert whole.num_frames == chunked.num_frames == 11
    assert same_frames(whole.output, chunked.output)
    assert audio_packets(whole.output) == audio_packets(chunked.output)
    assert not pieces_folder(chunked.output).exists()
    assert [p.name for p in chunked.output.parent.iterdir()] == [name]


def test_rotation_and_timestamps_of_a_chunked_video(tmp_path):
    pts = [0, 1000, 2000, 3500, 4500, 5500, 7000, 8000, 9000]  # variable frame rate
    src = make_video(tmp_path / "in.mp4", smooth_frames(9, H, W), fps=Fraction(30), rotation=90,
                     pts=pts, time_base=Fraction(1, 30000))
    for chunks, name in ((0, "whole.mp4"), (2, "chunked.mp4")):
        deblur_video(src, tmp_path / name, model=Identity(), progress=False, scene_cuts=False,
                     lossless=True, chunk_frames=chunks)
    assert same_frames(tmp_path / "whole.mp4", tmp_path / "chunked.mp4")
    assert decoded(tmp_path / "chunked.mp4")[1] == pts
    assert FrameSource(tmp_path / "chunked.mp4").info.rotation == 90


def test_a_lossy_video_made_in_chunks_differs_only_by_its_encoding(tmp_path):
    src = make_video(tmp_path / "in.mp4", smooth_frames(8, H, W))
    for chunks, name in ((0, "whole.mp4"), (3, "chunked.mp4")):
        deblur_video(src, tmp_path / name, model=Identity(), progress=False, scene_cuts=False,
                     chunk_frames=chunks)
    (a, pa), (b, pb) = decoded(tmp_path / "whole.mp4"), decoded(tmp_path / "chunked.mp4")
    assert pa == pb and len(a) == len(b) == 8
    given = decoded(src)[0]  # what the identity network returned, before encoding

    def error(frames):
        return sum(float((x - y).abs().mean()) for x, y in zip(frames, given)) / len(given)

    assert error(b) < 1.5 * error(a) + 0.2 / 255  # the encoder restarted: no worse than that


@pytest.mark.slow
def test_chunks_see_the_pairs_and_scene_cuts_of_the_whole_video(tmp_path, weights):
    """The real network with scene cuts and --batch 2: every frame equals the one-go run's,
    bit for bit, however the video is cut into chunks."""
    frames = smooth_frames(5, H, W, seed=1) + smooth_frames(4, H, W, seed=2)  # a cut at 5
    src = make_video(tmp_path / "in.mkv", frames)
    model = load_weights(weights)
    options = dict(model=model, progress=False, lossless=True, batch=2, device="cpu",
                   precision="fp32")
    deblur_video(src, tmp_path / "whole.mkv", chunk_frames=0, **options)
    for chunks in (2, 3):
        out = tmp_path / f"chunks{chunks}.mkv"
        deblur_video(src, out, chunk_frames=chunks, **options)
        assert same_frames(tmp_path / "whole.mkv", out), chunks


# ----------------------------------------------------------------------------- resume


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from helpers import Identity
    import flowdeblur.cli.batch as cli_batch, flowdeblur.cli.deblur as cli_deblur
    model = Identity(on_forward=lambda: time.sleep(0.2))
    cli_batch.load_model = cli_deblur.load_model = lambda path, *rest: model
    from flowdeblur.cli import main
    sys.exit(main(sys.argv[1:]))
""")

FRAMES, CHUNK = 12, 3


def kill_after_chunks(tmp_path: Path, args: list[str], output: Path, count: int) -> None:
    """Run the command in a child process and SIGKILL it once ``count`` chunks of ``output``
    are published."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(TESTS)))
    proc = subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    folder = pieces_folder(output)
    deadline = time.monotonic() + 300
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no chunk was published"
        if folder.is_dir() and len([p for p in folder.iterdir()
                                    if not p.name.startswith(".")]) >= count:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


def test_a_killed_deblur_resumes_from_its_last_finished_chunk(tmp_path, capsys):
    src = make_video(tmp_path / "in.mp4", smooth_frames(FRAMES, H, W))
    out = tmp_path / "out.mkv"
    args = ["deblur", str(src), "-o", str(out), "--lossless", "--no-progress", "--batch", "1",
            "--no-scene-cuts", "--chunk-frames", str(CHUNK)]
    kill_after_chunks(tmp_path, args, out, 2)
    assert not out.exists()  # never a partial file under the final name
    finished = [p for p in pieces_folder(out).iterdir() if not p.name.startswith(".")]
    assert 2 <= len(finished) < FRAMES // CHUNK
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr().out
    reused = CHUNK * len(finished)
    assert len(CALLS) == FRAMES - reused  # no finished chunk is redone
    assert f"resumed: {reused} frames from finished chunks" in said
    recomputed = int(said.split("deblurred, ")[1].split()[0])
    assert recomputed <= CHUNK  # at most the chunk being written when killed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driver.py", "in.mp4", "out.mkv"]
    CALLS.clear()
    assert main(args[:3] + [str(tmp_path / "whole.mkv")] + args[4:]) == 0
    assert same_frames(out, tmp_path / "whole.mkv")


def test_a_killed_batch_redoes_no_finished_video_or_chunk(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / "a.mkv", smooth_frames(2, H, W, seed=1))
    make_video(src / "b.mkv", smooth_frames(FRAMES, H, W, seed=2))
    out = tmp_path / "out"
    args = ["batch", str(src), "-o", str(out), "--lossless", "--no-progress", "--batch", "1",
            "--no-scene-cuts", "--chunk-frames", str(CHUNK)]
    kill_after_chunks(tmp_path, args, out / "b.mkv", 1)
    assert (out / "a.mkv").is_file() and not (out / "b.mkv").exists()
    finished = [p for p in pieces_folder(out / "b.mkv").iterdir() if not p.name.startswith(".")]
    capsys.readouterr()
    assert main([*args, "--resume", "--report", str(tmp_path / "r.json")]) == 0
    said = capsys.readouterr().out
    reused = CHUNK * len(finished)
    assert len(CALLS) == FRAMES - reused
    assert "1 done, 1 skipped, 0 failed" in said
    assert f"{reused} frames from finished chunks" in said
    recomputed = int(said.split("chunks, ")[1].split()[0])
    assert recomputed <= CHUNK
    assert main(["batch", str(src), "-o", str(tmp_path / "whole"), "--lossless",
                 "--no-progress", "--batch", "1", "--no-scene-cuts"]) == 0
    for name in ("a.mkv", "b.mkv"):
        assert same_frames(out / name, tmp_path / "whole" / name)
