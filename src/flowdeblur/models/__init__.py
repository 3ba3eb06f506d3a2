"""The networks of Table I and their Table IV variants."""

from .deblurnet import DeblurNet
from .flownet import FlowNet
from .layers import SpatialRNN
from .network import (
    PAD_MULTIPLE,
    VARIANTS,
    FlowDeblurNet,
    FlowDeblurOutput,
    VariantSpec,
    count_parameters,
    full_resolution_flow,
    pad_to_multiple,
    padded_size,
    stack_frames,
)

__all__ = [
    "PAD_MULTIPLE",
    "VARIANTS",
    "DeblurNet",
    "FlowDeblurNet",
    "FlowDeblurOutput",
    "FlowNet",
    "SpatialRNN",
    "VariantSpec",
    "count_parameters",
    "full_resolution_flow",
    "pad_to_multiple",
    "padded_size",
    "stack_frames",
]
