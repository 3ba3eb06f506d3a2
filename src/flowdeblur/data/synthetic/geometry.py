"""Where every layer is at a time t: 3x3 maps from layer coordinates to image pixels.

The camera's map ``C(t)`` is a homography (pan, rotation, zoom, perspective about the view's
centre) from world coordinates, which are image pixels at ``t_ref``, to image pixels at t. An
object's map ``A_l(t)`` is a similarity (translation, rotation, scale about its centre) from
its own coordinates to the world. Layer l is seen through ``M_0 = C`` (background) or
``M_l = C A_l``. Everything here is NumPy float64 on the host.
"""

from __future__ import annotations

import numpy as np

from .draw import Scenes


def camera_matrices(sc: Scenes, times: np.ndarray) -> np.ndarray:
    """World (= image pixels at t_ref) -> image pixels at ``times`` (N, T): (N, T, 3, 3)."""
    d = sc.camera.values((times - sc.t_ref)[:, None, :])  # (N, 6, T)
    tx, ty, rot, logz, px, py = (d[:, i] for i in range(6))
    z = np.exp(logz)
    c, s = z * np.cos(rot), z * np.sin(rot)
    cx, cy = (sc.width - 1) / 2, (sc.height - 1) / 2
    # Centred coordinates: x -> [zR | t] [I 0; p^T 1] x, then back to pixels.
    core = np.zeros(times.shape + (3, 3))
    core[..., 0, 0], core[..., 0, 1] = c + tx * px, -s + tx * py
    core[..., 1, 0], core[..., 1, 1] = s + ty * px, c + ty * py
    core[..., 0, 2], core[..., 1, 2] = tx, ty
    core[..., 2, 0], core[..., 2, 1], core[..., 2, 2] = px, py, 1.0
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    back = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return back @ core @ to_centre


def object_matrices(sc: Scenes, times: np.ndarray) -> np.ndarray:
    """Object layer coordinates (origin at the object's centre) -> world: (N, L, T, 3, 3)."""
    d = sc.objects.values((times - sc.t_ref)[:, None, None, :])  # (N, L, 4, T)
    z = np.exp(d[:, :, 3])
    c, s = z * np.cos(d[:, :, 2]), z * np.sin(d[:, :, 2])
    a = np.zeros(c.shape + (3, 3))
    a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1] = c, -s, s, c
    a[..., 0, 2] = sc.centres[..., 0, None] + d[:, :, 0]
    a[..., 1, 2] = sc.centres[..., 1, None] + d[:, :, 1]
    a[..., 2, 2] = 1.0
    return a


def layer_matrices(sc: Scenes, times: np.ndarray) -> np.ndarray:
    """Layer coordinates -> image pixels at ``times`` (N, T): (N, L + 1, T, 3, 3), the
    background first."""
    cam = camera_matrices(sc, times)  # (N, T, 3, 3)
    obj = object_matrices(sc, times)  # (N, L, T, 3, 3)
    return np.concatenate([cam[:, None], cam[:, None] @ obj], axis=1)


def render_rows(sc: Scenes, mats: np.ndarray) -> np.ndarray:
    """Per layer and time, the 5x3 map from homogeneous pixels to [u (2), q (2), w]:
    u = layer coordinates and q = tile pixels are (row / w). ``mats``: (N, L+1, T, 3, 3) from
    :func:`layer_matrices`. Returns (N, L+1, T, 5, 3) float64."""
    inv = np.linalg.inv(mats)  # image -> layer coordinates
    tq = sc.tex_affine[:, :, None] @ inv  # image -> tile pixels (same denominator row)
    return np.concatenate([inv[..., :2, :], tq[..., :2, :], inv[..., 2:, :]], axis=-2)
