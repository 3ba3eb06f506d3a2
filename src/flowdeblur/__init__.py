"""flowdeblur: video deblurring from optical flow (Zhang et al., TCSVT 2021)."""

from .models import FlowDeblurNet, FlowDeblurOutput, count_parameters
from .ops import spatial_rnn, warp

__version__ = "0.1.0"

__all__ = [
    "FlowDeblurNet",
    "FlowDeblurOutput",
    "__version__",
    "count_parameters",
    "spatial_rnn",
    "warp",
]
