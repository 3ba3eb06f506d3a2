"""Counter-based randomness: uniform numbers from a hash of (seed, sample index, draw number).

A stateful generator would make sample i depend on how many numbers the samples before it
consumed, so on the batch size. Hashing the counter instead fixes every number by its
coordinates alone.
"""

from __future__ import annotations

import math

import numpy as np

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit hash (uint64 arithmetic wraps)."""
    x = np.asarray(x, dtype=np.uint64)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def hash_seed(*parts: int) -> int:
    """Hash integers to one non-negative 63-bit int (a seed for torch generators)."""
    # One-element arrays: NumPy wraps array arithmetic silently but warns on scalars.
    h = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    for p in parts:
        h = mix64(h ^ mix64(np.array([p % (1 << 64)], dtype=np.uint64) + _GOLDEN))
    return int(h[0]) >> 1


class Draws:
    """Per-sample random streams for the samples ``indices`` of the stream of ``seed``.

    Every call consumes the same number of draws whatever the values, so the k-th draw of
    sample i is fixed by (seed, i, k) alone. Each method returns an array of shape
    (N, *shape), N = ``count``, float64 unless it says otherwise.
    """

    def __init__(self, seed: int, indices: np.ndarray):
        base = np.array([hash_seed(seed, 0x5CE4E)], dtype=np.uint64)
        self._keys = mix64(base ^ mix64(indices.astype(np.uint64) * _GOLDEN + _U64(1)))
        self._next = 0

    @property
    def count(self) -> int:
        """N, the number of samples drawn for."""
        return len(self._keys)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        cols = np.arange(self._next, self._next + count, dtype=np.uint64)
        self._next += count
        bits = mix64(self._keys[:, None] ^ mix64(cols * _GOLDEN + _U64(7))[None, :])
        u = (bits >> _U64(11)).astype(np.float64) * 2.0**-53  # 53 bits: a float64 mantissa
        return (low + (high - low) * u).reshape((len(self._keys), *shape))

    def pair(self, bounds: tuple[float, float], *shape: int) -> np.ndarray:
        """Uniform in ``bounds`` = (low, high)."""
        return self.uniform(*shape, low=bounds[0], high=bounds[1])

    def log_uniform(self, bounds: tuple[float, float], *shape: int) -> np.ndarray:
        """Log-uniform in ``bounds`` = (low, high), both positive."""
        return np.exp(self.pair((math.log(bounds[0]), math.log(bounds[1])), *shape))

    def sign(self, *shape: int) -> np.ndarray:
        """-1.0 or 1.0 with equal odds."""
        return np.where(self.uniform(*shape) < 0.5, -1.0, 1.0)

    def integers(self, low: int, high: int, *shape: int) -> np.ndarray:
        """Integers in [low, high] inclusive, int64."""
        u = self.uniform(*shape)
        return np.minimum(low + np.floor(u * (high - low + 1)), high).astype(np.int64)
