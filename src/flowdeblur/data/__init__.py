"""Training data: synthetic blurry scenes with ground-truth flow, textures, augmentation."""

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
