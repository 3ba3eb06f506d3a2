"""Reading and writing images and videos; files that appear only once complete (atomic).

Modules: ``images`` (image files, folders of frames), ``video_reader`` (decoding),
``video_writer`` (encoding, audio muxing), ``frames`` (:class:`FrameSource`: a video, a folder
or a list of images as one stream), ``atomic`` (temporary file, then rename), ``pixels``
(float tensors <-> integer arrays). Other subpackages import the I/O names from here, not from
the modules that define them.
"""

from .frames import FrameSource
from .images import (
    ALPHA_EXTENSIONS,
    IMAGE_EXTENSIONS,
    is_image_path,
    list_images,
    natural_key,
    read_alpha,
    read_image,
    write_image,
)
from .video_reader import (
    ColourTags,
    VideoInfo,
    VideoReader,
    is_video_path,
    rotate_flow_for_display,
    rotate_for_display,
)
from .video_writer import VideoWriter, choose_encoding

__all__ = [
    "ALPHA_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "ColourTags",
    "FrameSource",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_image_path",
    "is_video_path",
    "list_images",
    "natural_key",
    "read_alpha",
    "read_image",
    "rotate_flow_for_display",
    "rotate_for_display",
    "choose_encoding",
    "write_image",
]
