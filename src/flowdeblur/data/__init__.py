"""Training and evaluation data: synthetic scenes, real datasets, augmentation, pairing.

Modules: ``synthetic`` (the scene engine: blurry frames with ground-truth flow, its torch
renderer and the fused numba and Triton renderers beside it), ``textures`` (its texture bank),
``augment`` (one random transform for every frame, flow and mask of a sample), ``readers``
(DVD, GoPro, REDS, BSD and plain folders), ``blur_synthesis`` (blurry/sharp pairs from sharp
high-fps footage), ``pool`` (pre-rendered synthetic samples), ``pairing`` (which frames the
network sees beside frame t).
"""

from .augment import augment
from .synthetic import SceneConfig, SyntheticScenes, clip_config, make_clip
from .textures import TextureBank, texture_bank

__all__ = [
    "SceneConfig",
    "SyntheticScenes",
    "TextureBank",
    "augment",
    "clip_config",
    "make_clip",
    "texture_bank",
]
