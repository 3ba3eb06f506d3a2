"""`flowdeblur info`: versions, backends and parameter counts (Table I and Table IV)."""

from __future__ import annotations

import argparse
import platform

import torch

from .. import __version__
from ..models import VARIANTS, FlowDeblurNet, count_parameters
from ..ops import BACKENDS, backend_available


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, available RNN backends and parameter counts")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    py = platform.python_version()
    print(f"flowdeblur {__version__}  python {py}  torch {torch.__version__}")
    cuda = torch.cuda.is_available()
    print(f"cuda: {torch.cuda.get_device_name(0) if cuda else 'not available'}")
    devices = ["cpu"] + (["cuda"] if cuda else [])
    for dev in devices:
        names = [b for b in BACKENDS if b != "auto" and backend_available(b, dev)]
        print(f"spatial_rnn backends on {dev}: {', '.join(names)}")
    print("parameters (biases included):")
    for variant in VARIANTS:
        model = FlowDeblurNet(variant)
        total = count_parameters(model)
        flow = count_parameters(model.flownet) if model.flownet is not None else 0
        deblur = count_parameters(model.deblurnet)
        print(f"  {variant:<14} {total:>10,}  (flow network {flow:,}, deblurring U-Net {deblur:,})")
    return 0
