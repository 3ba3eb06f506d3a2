"""How much memory deblurring a frame takes, and the tile size that keeps it within reach.

The peak of one whole-frame forward grows linearly with the frame's pixels. The constants were
measured by benchmarks/deblur_memory.py (fp32 on the CPU, the shipped network, one frame pair,
peak resident memory of a fresh process; docs/BENCHMARKS.md, "Memory of a frame") and rounded
up. The same constants are used on CUDA, where they were not measured: activations in bf16
take less, so the estimate errs on the safe side.

:func:`choose_tile` compares the estimate with the memory available (Linux ``MemAvailable``,
capped by a cgroup limit when the process runs in a container; free device memory on CUDA),
keeping a margin, and returns the largest tile that fits, or None when the whole frame does.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Peak bytes per pixel of one frame pair in one forward (measured about 760-790, fp32, CPU).
BYTES_PER_PIXEL = 800
#: Peak bytes of one forward that do not grow with the frame (measured about 62 MiB).
FIXED_BYTES = 64 * 2**20
#: Bytes per pixel of the whole frame held besides the tiles in a tiled run: the input frames
#: (three float32 RGB) and the blending sums (image, weight, flow).
TILED_FRAME_BYTES_PER_PIXEL = 64
#: Share of the available memory an estimate may use (the rest is left to everything else).
MARGIN = 0.8
#: Tile sides tried, largest first (multiples of 64: no padding waste).
TILE_SIDES = (2048, 1536, 1024, 768, 512, 384, 256)


def frame_peak_bytes(height: int, width: int, *, batch: int = 1) -> int:
    """Estimated peak bytes of deblurring ``batch`` whole (height, width) frames per call."""
    return batch * BYTES_PER_PIXEL * height * width + FIXED_BYTES


def tiled_peak_bytes(height: int, width: int, tile: int, *, batch: int = 1) -> int:
    """Estimated peak bytes of deblurring one (height, width) frame in ``tile``-pixel tiles,
    ``batch`` tiles per call."""
    side_h, side_w = min(tile, height), min(tile, width)
    return (frame_peak_bytes(side_h, side_w, batch=batch)
            + TILED_FRAME_BYTES_PER_PIXEL * height * width)


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(cgroup: Path) -> int | None:
    """Room left under a cgroup v2 memory limit (None without one)."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        used = int((cgroup / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    return max(int(limit) - used, 0)


def available_bytes(device: torch.device, *, meminfo: Path = Path("/proc/meminfo"),
                    cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Memory free for a new allocation on ``device``; None where it cannot be told."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = [b for b in (_meminfo_available(meminfo), _cgroup_available(cgroup)) if b is not None]
    return min(found) if found else None


def choose_tile(height: int, width: int, *, batch: int, available: int | None) -> int | None:
    """None when ``batch`` whole frames fit in ``MARGIN`` of ``available`` bytes (or nothing
    is known about the memory, or the frame is no larger than the smallest tile), else the
    largest of :data:`TILE_SIDES` whose tiled run fits (the smallest one when none does)."""
    if available is None:
        return None
    budget = MARGIN * available
    if frame_peak_bytes(height, width, batch=batch) <= budget:
        return None
    # A tile as large as the frame is the whole frame.
    sides = [t for t in TILE_SIDES if t < max(height, width)]
    for tile in sides:
        if tiled_peak_bytes(height, width, tile, batch=batch) <= budget:
            return tile
    return sides[-1] if sides else None
