"""Unlabelled real video for the reblurring loss (:mod:`flowdeblur.training.reblur`): random
consecutive triples (t-1, t, t+1) of ``data.unlabelled_videos``, cropped and flipped.

Each video is decoded once, when training starts (``flowdeblur.media.VideoReader``: frames as
decoded, not turned for display), and held in memory as 8-bit RGB, frames x H x W x 3 bytes
(0.77 GB for 280 frames of 720p). No triple spans a scene cut: two consecutive frames whose
colour histograms (:data:`HISTOGRAM_BINS` per channel) differ by more than
:data:`CUT_DISTANCE` in total variation are taken to be from different shots, where no flow
would explain one frame from the other. A draw picks one of the remaining triples of all the
videos uniformly (a video weighs by its number of triples), a square crop position uniformly, a
left-right and an up-down flip with probability 1/2 each when ``data.flips`` (the same for the
three frames), and the triple's duty from ``U(reblur.duty_range)``. The frames are not
degraded (``data.degrade``): real footage has its own noise and compression. Every draw comes
from one CPU generator per process, seeded by ``rank_seed(seed, rank, 9)``, whose state a
checkpoint keeps, so a resumed run draws what the interrupted one would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..media import VideoReader, is_video_path
from .rng import rank_seed

#: Batch keys of a triple's frames, in the order they are stored (t-1, t, t+1).
TRIPLE_KEYS = ("unlabelled_prev", "unlabelled_t", "unlabelled_next")
#: Bins per channel of the histograms that find scene cuts.
HISTOGRAM_BINS = 32
#: Total variation between consecutive frames' histograms above which they count as a cut.
#: Measured: 0.42 at the cut of kivy's cityCC0.mpg (0.05 at most elsewhere in it, median
#: 0.007); 0.18 at most in imageio's cockatoo.mp4, a hand-held clip of fast motion (median
#: 0.022). Motion moves colours about a frame, a cut replaces them.
CUT_DISTANCE = 0.3


def histogram(frame: torch.Tensor) -> torch.Tensor:
    """(3, HISTOGRAM_BINS) share of a (3, H, W) uint8 frame's pixels in each bin."""
    bins = frame.flatten(1).long() * HISTOGRAM_BINS // 256
    counts = torch.stack([torch.bincount(b, minlength=HISTOGRAM_BINS) for b in bins])
    return counts.float() / bins.shape[1]


def uncut_triples(frames: list[torch.Tensor]) -> list[int]:
    """The middle frames t of the triples (t-1, t, t+1) of ``frames`` that span no cut."""
    shares = [histogram(f) for f in frames]
    cut = [0.5 * float((b - a).abs().sum()) / 3 > CUT_DISTANCE for a, b in zip(shares, shares[1:])]
    return [t for t in range(1, len(frames) - 1) if not (cut[t - 1] or cut[t])]


def read_video(path: str) -> list[torch.Tensor]:
    """Every frame of the video at ``path``, each (3, H, W) uint8; UserError in one line for a
    missing path, a file that is not a video or does not decode, or one under three frames."""
    where = Path(path).expanduser()
    if not where.exists():
        raise UserError(f"data.unlabelled_videos: {path} not found")
    if not where.is_file() or not is_video_path(where):
        raise UserError(f"data.unlabelled_videos: {path} is not a video file")
    try:
        with VideoReader(where) as reader:
            frames = [frame.mul_(255.0).round_().to(torch.uint8) for frame in reader]
    except UserError as e:
        raise UserError(f"data.unlabelled_videos: {e}") from None
    if len(frames) < 3:
        raise UserError(f"data.unlabelled_videos: {path} has {len(frames)} frame(s); the "
                        "reblurring loss needs at least 3 (t-1, t, t+1)")
    return frames


class UnlabelledTriples:
    """Random cropped triples of real videos (see the module docstring).

    Args:
        paths: the video files.
        side: the crops' side in pixels (every video must be at least this large).
        flips: also flip triples left-right and up-down at random.
        duty_range: (low, high) of the uniform duty draw.
        seed, rank: the run's seed and this process's rank.
    """

    def __init__(self, paths: Sequence[str], *, side: int, flips: bool,
                 duty_range: tuple[float, float], seed: int, rank: int) -> None:
        self.videos = [read_video(p) for p in paths]
        for path, frames in zip(paths, self.videos):
            h, w = frames[0].shape[-2:]
            if min(h, w) < side:
                raise UserError(f"data.unlabelled_videos: {path} is {w}x{h}, smaller than the "
                                f"{side}x{side} training crops")
        #: (video, middle frame) of every triple to draw from.
        self.triples = [(v, t) for v, frames in enumerate(self.videos)
                        for t in uncut_triples(frames)]
        if not self.triples:
            raise UserError("data.unlabelled_videos: every frame triple spans a scene cut")
        self.side, self.flips, self.duty_range = side, flips, duty_range
        self.generator = torch.Generator().manual_seed(rank_seed(seed, rank, 9))

    def __len__(self) -> int:
        """The number of triples to draw from."""
        return len(self.triples)

    def sample(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        """``n`` random triples: :data:`TRIPLE_KEYS` (n, 3, side, side) float32 in [0, 1] and
        ``unlabelled_duty`` (n,) float32, on ``device``."""
        g = self.generator
        index = torch.randint(len(self), (n,), generator=g)
        corner = torch.rand(n, 2, generator=g, dtype=torch.float64)
        flip = torch.rand(n, 2, generator=g) < 0.5
        lo, hi = self.duty_range
        duty = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        crops = torch.stack([self._crop(int(i), corner[k], flip[k])
                             for k, i in enumerate(index)])  # (n, 3 frames, 3, side, side)
        crops = crops.to(device).float().div_(255.0)
        batch = {key: crops[:, j] for j, key in enumerate(TRIPLE_KEYS)}
        batch["unlabelled_duty"] = duty.float().to(device)
        return batch

    def _crop(self, index: int, corner: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Triple number ``index`` of :attr:`triples`, cropped at ``corner`` (two numbers in
        [0, 1): y, x as a share of the room) and flipped as ``flip`` says: (3, 3, side, side)."""
        video, t = self.triples[index]
        frames = self.videos[video][t - 1: t + 2]
        h, w = frames[0].shape[-2:]
        y = int(corner[0] * (h - self.side + 1))
        x = int(corner[1] * (w - self.side + 1))
        crop = torch.stack([f[:, y: y + self.side, x: x + self.side] for f in frames])
        if self.flips and flip[0]:
            crop = crop.flip(-1)
        if self.flips and flip[1]:
            crop = crop.flip(-2)
        return crop

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
