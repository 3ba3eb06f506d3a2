"""Which frames the network sees beside frame t: the one rule for clips of any length.

The network deblurs the first frame of its input; the second is frame t's pairing neighbour,
t+1, or t-1 for a clip's last frame, or t itself for a one-frame clip (the flow guidance is
then off). The three-frame variant also takes the other neighbour, t-1, mirrored the same way
at the clip's start. docs/DESIGN.md ("Frame pairing") states the convention.
"""

from __future__ import annotations


def neighbours(t: int, n: int) -> tuple[int, int]:
    """(paired frame, other neighbour) for frame ``t`` of a clip of ``n`` frames.

    paired: t+1, or t-1 for the last frame, or t for a one-frame clip.
    other:  t-1, or t+1 for the first frame, or t for a one-frame clip.
    """
    if not 0 <= t < n:
        raise IndexError(f"frame {t} is outside a clip of {n} frames")
    paired = t + 1 if t + 1 < n else max(t - 1, 0)
    other = t - 1 if t > 0 else min(t + 1, n - 1)
    return paired, other
