"""Deblurring frames, images and videos with a trained network.

Modules by job: :mod:`.stream` pairs a stream of frames with their neighbours, :mod:`.forward`
makes one network call, :mod:`.ensemble` averages it over flipped copies of the frames,
:mod:`.tiling` deblurs a frame tile by tile, :mod:`.outputs` writes videos, folders and images
that appear only once complete; :mod:`.deblur` puts them together for frames in memory
and :mod:`.files` for files.
"""

from .deblur import deblur_frames, deblur_image_pair
from .ensemble import ENSEMBLE_SIZES, self_ensemble
from .files import DeblurResult, deblur_video
from .outputs import check_output_path
from .stream import SINGLE_FRAME_WARNING, FrameTriple, frame_triples
from .tiling import (
    DEFAULT_TILE,
    MAX_DEFAULT_TILE_OVERLAP,
    MIN_TILE,
    check_tiling,
    deblur_tiled,
    default_tile_overlap,
)

__all__ = [
    "DEFAULT_TILE",
    "ENSEMBLE_SIZES",
    "MAX_DEFAULT_TILE_OVERLAP",
    "MIN_TILE",
    "SINGLE_FRAME_WARNING",
    "DeblurResult",
    "FrameTriple",
    "check_output_path",
    "check_tiling",
    "deblur_frames",
    "deblur_image_pair",
    "deblur_tiled",
    "deblur_video",
    "default_tile_overlap",
    "frame_triples",
    "self_ensemble",
]
