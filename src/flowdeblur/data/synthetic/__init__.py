"""Synthetic dynamic scenes: physically based blurry frames with ground-truth optical flow.

A scene is a textured background plus up to ``max_layers`` foreground objects (soft-edged
opaque shapes cut from other textures) stacked on it. The camera follows a smooth random
homography trajectory (pan, rotation, zoom, perspective, shake) and every object a smooth
random affine one (translation, rotation, scale, shake) on top of it. Time is measured in
frame intervals; frame ``k``'s exposure is centred on ``t = k`` and lasts ``duty`` intervals.

How a batch is made (batched over samples, no loop over them), module by module:

1. ``draw``: every random parameter of N scenes, from counter-based hashes (``hashing``) of
   (seed, sample index, draw number), so sample ``i`` of the stream is the same whatever the
   batch size; motions come from ``trajectories``, object outlines from ``shapes``.
2. ``geometry``: every layer is a texture seen through a 3x3 map ``M_l(t)`` from layer
   coordinates to image pixels: ``M_0 = C(t)`` for the background, ``M_l = C(t) A_l(t)`` for
   objects.
3. ``subframes``: the exposure is cut into S sub-frames so that nothing moves more than
   ``max_subframe_step`` (1 pixel) between two of them (no ghosting); exposures are grouped
   by their need.
4. ``compositing``: each sub-frame samples all layers from one texture atlas, composites them
   with ``over`` in linear light, and the sub-frames are averaged (light adds linearly;
   textures were linearised once with ``srgb ** gamma``). The camera response
   ``x ** (1 / gamma)`` is re-applied, Gaussian noise added and the result quantised to 8
   bits. Sharp frames are single sub-frames at the middle of the exposure, with the same
   response and quantisation but no noise.
5. ``flow``: the ground-truth flow and its valid mask, analytically from the maps.
6. ``render``: picks the linear-light renderer (fused Triton on CUDA, ``render_triton``;
   numba on the CPU, ``render_cpu``; or the torch reference of ``compositing``) and runs
   steps 2-5: host maps in float64 sent in one pinned, asynchronous copy, so nothing in
   ``sample`` waits for the GPU.
7. ``scenes``: :class:`SyntheticScenes` (the training stream) and :func:`make_clip`.

A batch is the same on every run on the same device and renderer; sensor noise comes from a
per-batch torch generator on the device.
"""

from .config import CAMERA_MOTIONS, OBJECT_MOTIONS, RENDERERS, SceneConfig
from .scenes import SyntheticScenes, clip_config, make_clip

__all__ = [
    "CAMERA_MOTIONS",
    "OBJECT_MOTIONS",
    "RENDERERS",
    "SceneConfig",
    "SyntheticScenes",
    "clip_config",
    "make_clip",
]
