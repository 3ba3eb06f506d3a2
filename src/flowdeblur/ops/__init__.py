"""Operators of the method: the spatially variant RNN (Eq. 13) and backward warping."""

from .spatial_rnn import BACKENDS, backend_available, resolve_backend, spatial_rnn
from .warp import warp

__all__ = ["BACKENDS", "backend_available", "resolve_backend", "spatial_rnn", "warp"]
