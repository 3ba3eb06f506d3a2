"""The memory estimate behind automatic tiling, and `deblur` choosing tiles by it."""

from __future__ import annotations

import pytest
import torch
from helpers import deblur, smooth_frames

import flowdeblur.inference.deblur as inference
from flowdeblur.inference import memory
from flowdeblur.media import write_image

GIB = 2**30


def test_the_estimate_matches_the_measured_peak_of_a_large_frame():
    # 4000x3000 measured 7,911 MiB (8.3 GB) whole and 723 MiB with 256-pixel tiles on a CPU
    # (docs/BENCHMARKS.md, "Memory of a frame"); the estimate must cover a whole frame's peak
    # with room (8.9 GB was seen on another machine) and stay modest for tiles.
    whole = memory.frame_peak_bytes(3000, 4000)
    assert 8.9e9 <= whole <= 1.2 * 8.9e9
    assert memory.tiled_peak_bytes(3000, 4000, 256) <= 1.5e9


def test_choose_tile_picks_the_largest_tile_that_fits():
    h, w = 3000, 4000
    assert memory.choose_tile(h, w, batch=1, available=None) is None  # unknown: whole
    assert memory.choose_tile(h, w, batch=1, available=64 * GIB) is None
    tile = memory.choose_tile(h, w, batch=1, available=4 * GIB)
    assert tile in memory.TILE_SIDES
    assert memory.tiled_peak_bytes(h, w, tile) <= memory.MARGIN * 4 * GIB
    larger = [t for t in memory.TILE_SIDES if t > tile]
    assert all(memory.tiled_peak_bytes(h, w, t) > memory.MARGIN * 4 * GIB for t in larger)
    # Four tiles per call need smaller tiles than one.
    assert memory.choose_tile(h, w, batch=4, available=4 * GIB) < tile
    assert memory.choose_tile(h, w, batch=1, available=1) == memory.TILE_SIDES[-1]
    assert memory.choose_tile(200, 200, batch=1, available=1) is None  # smaller than a tile


def test_available_memory_reads_meminfo_and_a_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   20000000 kB\n")
    no_cgroup = tmp_path / "none"
    cpu = torch.device("cpu")
    assert memory.available_bytes(cpu, meminfo=meminfo, cgroup=no_cgroup) == 20000000 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{8 * GIB}\n")
    (cgroup / "memory.current").write_text(f"{3 * GIB}\n")
    assert memory.available_bytes(cpu, meminfo=meminfo, cgroup=cgroup) == 5 * GIB
    (cgroup / "memory.max").write_text("max\n")
    assert memory.available_bytes(cpu, meminfo=meminfo, cgroup=cgroup) == 20000000 * 1024
    assert memory.available_bytes(cpu, meminfo=no_cgroup, cgroup=no_cgroup) is None


@pytest.fixture
def tiles_used(monkeypatch):
    """Records the ``tile`` of every network batch deblur_video runs."""
    seen: list[int | None] = []
    real = inference._deblur_batch

    def spy(*args, tile, **kwargs):
        seen.append(tile)
        return real(*args, tile=tile, **kwargs)

    monkeypatch.setattr(inference, "_deblur_batch", spy)
    return seen


def _memory_left(monkeypatch, available: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: available)


@pytest.fixture
def larger_frames(tmp_path, monkeypatch):
    """Two 96x128 frames, and tile sides of 96 and 64 to choose from (the real ones start at
    256, larger than a frame a test can afford)."""
    monkeypatch.setattr(memory, "TILE_SIDES", (96, 64))
    folder = tmp_path / "frames"
    for i, frame in enumerate(smooth_frames(2, h=96, w=128)):
        write_image(folder / f"{i}.png", frame)
    return folder


WHOLE = memory.frame_peak_bytes(96, 128)
TILE_96 = memory.tiled_peak_bytes(96, 128, 96)


@pytest.mark.parametrize("available, extra, expected, warned", [
    (64 * GIB, [], None, False),  # plenty: whole frames, nothing said
    (int((WHOLE + TILE_96) / 2 / memory.MARGIN), [], 96, True),  # 96 fits, whole does not
    (memory.FIXED_BYTES // 2, [], 64, True),  # nothing fits: the smallest tile
    (memory.FIXED_BYTES // 2, ["--tile", "0"], None, False),  # forced whole
    (memory.FIXED_BYTES // 2, ["--tile", "96"], 96, False),  # asked for
])
def test_deblur_tiles_only_when_a_frame_would_not_fit(available, extra, expected, warned,
                                                      tmp_path, larger_frames, weights,
                                                      monkeypatch, tiles_used, capsys):
    _memory_left(monkeypatch, available)
    assert deblur(larger_frames, "-o", tmp_path / "out", *extra, weights=weights) == 0
    assert tiles_used and set(tiles_used) == {expected}
    err = capsys.readouterr().err
    assert ("tiles (--tile 0 forces whole frames)" in err) == warned, err
    if warned:
        assert f"in {expected}x{expected} tiles" in err
