"""A fixed pool of pre-rendered synthetic samples, drawn with lossless augmentation.

On a CPU, rendering a synthetic sample (tens of sub-frames per blurry frame) costs about as
much as the training step that uses it. A pool renders ``size`` samples once and then serves
every batch from them, each draw under one of the 8 symmetries of the square (flips,
transposition) and one of the 6 orders of the colour channels, with a random crop when the
pool's scenes are larger than the crop. These transforms move whole pixels only, so the targets
stay as sharp as rendered (a resampling augmentation would soften them). On a GPU the renderer
is fast enough to draw every batch afresh; the pool is meant for CPU runs.

The pool is rebuilt from its seed when a run resumes (it is not stored in checkpoints), so it
is the same pool; which samples a batch draws follows the generator passed to ``sample``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .synthetic import SyntheticScenes

#: Keys holding images in [0, 1] that were quantised to 8 bits by the renderer.
_IMAGE_KEYS = ("frame_t", "frame_next", "frame_prev", "sharp_t", "sharp_next", "sharp_prev")
#: Keys holding flows (channel 0 = x, 1 = y), transformed as vectors.
_FLOW_KEYS = ("flow", "flow_prev")


class ScenePool:
    """``size`` samples of a synthetic stream, kept in memory (images as uint8).

    Args:
        scenes: the synthetic stream (its next ``size`` samples are rendered, ``chunk`` at a
            time).
        size: number of samples in the pool.
        crop: side of the square crops that ``sample`` returns (<= the scenes' side).
        keys: the sample keys to keep (default: all of them).
        progress: called with the number of samples rendered so far, after every chunk.

    Shapes: ``sample(n)`` returns the kept keys as (n, C, crop, crop) float32 tensors, images
    in [0, 1], flows in pixels, valid masks in {0, 1}.
    """

    def __init__(self, scenes: SyntheticScenes, size: int, crop: int, *, chunk: int = 8,
                 keys: tuple[str, ...] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        side_h, side_w = scenes.config.size
        if crop > min(side_h, side_w):
            raise ValueError(f"crop {crop} is larger than the scenes ({side_h}x{side_w})")
        self.crop = crop
        parts: dict[str, list[torch.Tensor]] = {}
        done = 0
        while done < size:
            batch = scenes.sample(min(chunk, size - done))
            for key, value in batch.items():
                if keys is not None and key not in keys:
                    continue
                parts.setdefault(key, []).append(self._store(key, value.cpu()))
            done += len(next(iter(batch.values())))
            if progress is not None:
                progress(done)
        self.data = {k: torch.cat(v) for k, v in parts.items()}
        self.size = size

    @staticmethod
    def _store(key: str, value: torch.Tensor) -> torch.Tensor:
        if key in _IMAGE_KEYS:
            # The renderer quantises to k/255, so the round trip through uint8 is exact.
            return torch.round(value * 255.0).to(torch.uint8)
        if key.startswith("valid"):
            return value > 0.5
        return value.float()

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` random samples (with replacement), each cropped and transformed at random.

        All random choices come from ``generator`` (a CPU generator), in a fixed number of
        draws per call, so the same generator state gives the same batch.
        """
        index = torch.randint(self.size, (n,), generator=generator)
        _, _, h, w = next(iter(self.data.values())).shape
        top = torch.randint(h - self.crop + 1, (n,), generator=generator)
        left = torch.randint(w - self.crop + 1, (n,), generator=generator)
        symmetry = torch.randint(8, (n,), generator=generator)  # bits: flip x, flip y, transpose
        colours = torch.argsort(torch.rand(n, 3, generator=generator), dim=1)
        out: dict[str, list[torch.Tensor]] = {k: [] for k in self.data}
        for i in range(n):
            ys = slice(int(top[i]), int(top[i]) + self.crop)
            xs = slice(int(left[i]), int(left[i]) + self.crop)
            s = int(symmetry[i])
            for key, store in self.data.items():
                x = store[index[i], :, ys, xs]
                if key in _IMAGE_KEYS:
                    x = x[colours[i]].float() / 255.0
                else:
                    x = x.float()
                out[key].append(_transform(x, key in _FLOW_KEYS, s & 1, s & 2, s & 4))
        return {k: torch.stack(v) for k, v in out.items()}


def _transform(x: torch.Tensor, is_flow: bool, flip_x: int, flip_y: int,
               transpose: int) -> torch.Tensor:
    """One symmetry of the square on a (C, H, W) tensor: flip x, then flip y, then transpose.

    A flow field moves with the pixels: flipping x negates its x component, flipping y its y
    component, and transposing swaps the two components.
    """
    if flip_x:
        x = x.flip(-1)
        if is_flow:
            x = x * torch.tensor([-1.0, 1.0]).view(2, 1, 1)
    if flip_y:
        x = x.flip(-2)
        if is_flow:
            x = x * torch.tensor([1.0, -1.0]).view(2, 1, 1)
    if transpose:
        x = x.transpose(-1, -2)
        if is_flow:
            x = x.flip(0)
    return x.contiguous()
