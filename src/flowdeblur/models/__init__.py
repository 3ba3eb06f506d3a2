"""The networks of Table I and their Table IV variants."""

from .deblurnet import DeblurNet
from .flownet import FlowNet
from .layers import SpatialRNN
from .network import (
    PAD_MULTIPLE,
    VARIANTS,
    FlowDeblurNet,
    FlowDeblurOutput,
    count_parameters,
    pad_to_multiple,
)

__all__ = [
    "PAD_MULTIPLE",
    "VARIANTS",
    "DeblurNet",
    "FlowDeblurNet",
    "FlowDeblurOutput",
    "FlowNet",
    "SpatialRNN",
    "count_parameters",
    "pad_to_multiple",
]
