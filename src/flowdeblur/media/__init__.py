"""Reading and writing images and videos; files that appear only once complete (atomic).

Other subpackages import the I/O names from here, not from the modules that define them.
"""

from .video import (
    IMAGE_EXTENSIONS,
    FrameSource,
    VideoInfo,
    VideoReader,
    VideoWriter,
    is_image_path,
    is_video_path,
    list_images,
    natural_key,
    read_image,
    rotate_for_display,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "FrameSource",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_image_path",
    "is_video_path",
    "list_images",
    "natural_key",
    "read_image",
    "rotate_for_display",
    "write_image",
]
