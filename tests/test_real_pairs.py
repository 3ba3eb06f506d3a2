"""references/real_pairs.py: which source times each take averages, the pairs' folder layout as
the trainer reads it, and the rebuild only on a changed manifest (no Debian package needed:
the videos are replaced by synthetic frames)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import import_reference

from flowdeblur.data.readers import PairedFrames


@pytest.fixture(scope="module")
def pairs():
    return import_reference("real_pairs")


class RecordingCache:
    """A FlowCache stand-in: frames ``first..`` whose value is their index; records every
    time asked for."""

    def __init__(self, first: int, last: int):
        self.first = first
        self.frames = [np.full((4, 6, 3), i, np.uint8) for i in range(first, last + 1)]
        self.times: list[float] = []

    def at(self, time_: float) -> np.ndarray:
        self.times.append(time_)
        return np.zeros((4, 6, 3), np.float32)


@pytest.mark.parametrize("stride,span", [(1, 1), (2, 1), (4, 4), (6, 3)])
def test_takes_stay_inside_their_segment_and_pair_the_centre_frame(pairs, stride, span):
    lo, hi = 10, 40
    cache = RecordingCache(lo, hi)
    blurry, sharp = pairs.take_frames(cache, (lo, hi), stride, span, interp=4)
    assert min(cache.times) >= lo and max(cache.times) <= hi
    centres = [int(f[0, 0, 0]) for f in sharp]
    assert np.all(np.diff(centres) == stride)
    # Each exposure is centred on its sharp frame and lasts span frame intervals.
    samples = span * 4 + 1
    assert len(cache.times) == samples * len(blurry)
    for k, centre in enumerate(centres):
        window = cache.times[k * samples:(k + 1) * samples]
        assert window[0] == pytest.approx(centre - span / 2)
        assert window[-1] == pytest.approx(centre + span / 2)
    # As many outputs as fit: one more stride would cross the segment's end.
    assert centres[-1] + stride + span / 2 > hi


def test_pairs_are_a_folders_dataset_built_once(pairs, monkeypatch, tmp_path):
    pytest.importorskip("cv2")
    video = {"package": "p", "version": "1", "path": "v.avi", "sha256": "0" * 64}
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    frames = [np.roll(base, i, axis=1) for i in range(12)]  # content moving 1 px per frame
    reads = []

    def read_video(path, lo, hi, dedup=False):
        reads.append(path)
        return frames[lo:hi + 1]

    monkeypatch.setattr(pairs, "recorded_videos", lambda: [video])
    monkeypatch.setattr(pairs, "training_videos", lambda cache: [tmp_path / "v.avi"])
    monkeypatch.setattr(pairs, "read_video", read_video)
    monkeypatch.setattr(pairs, "TAKES", {"v.avi": {"segments": [(0, 5), (6, 11)], "shrink": 1,
                                                   "takes": [(2, 2, 4)]}})
    out = tmp_path / "pairs"
    n = pairs.build(out, tmp_path)
    # Per segment of 6 frames: centres 1 and 3 (5 would need frame 6, past the segment).
    assert n == 4
    assert not (tmp_path / "pairs.partial").exists()
    assert len(PairedFrames(out, "folders", split="train")) == n
    # The sharp target is the source frame at the centre, untouched.
    import cv2

    sharp = cv2.imread(str(out / "sharp" / "v_0-5_stride2_span2" / "00000.png"))
    assert np.array_equal(cv2.cvtColor(sharp, cv2.COLOR_BGR2RGB), frames[1])
    # The same manifest: nothing is read or written again; another take: rebuilt.
    assert pairs.build(out, tmp_path) == n and len(reads) == 1
    monkeypatch.setattr(pairs, "TAKES", {"v.avi": {"segments": [(0, 11)], "shrink": 1,
                                                   "takes": [(2, 2, 4)]}})
    assert pairs.build(out, tmp_path) == 5 and len(reads) == 2
