"""flowdeblur: video deblurring from optical flow (Zhang et al., TCSVT 2021)."""

from .inference import deblur_frames, deblur_image_pair, deblur_tiled, deblur_video
from .models import FlowDeblurNet, FlowDeblurOutput, count_parameters
from .ops import spatial_rnn, warp
from .viz import flow_to_color
from .weights import load_pretrained, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "FlowDeblurNet",
    "FlowDeblurOutput",
    "__version__",
    "count_parameters",
    "deblur_frames",
    "deblur_image_pair",
    "deblur_tiled",
    "deblur_video",
    "flow_to_color",
    "load_pretrained",
    "load_weights",
    "save_weights",
    "spatial_rnn",
    "warp",
]
