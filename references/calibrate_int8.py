"""Write the int8 activation scales of a weights file beside it (``NAME.int8.json``).

The scales are measured on synthetic scenes only (``flowdeblur.weights.int8.CALIBRATION``),
never on dev or test clips. ``--precision int8`` reads them; without a matching file it
measures them on every start.

    python references/calibrate_int8.py [--weights FILE]   # default: the shipped weights
"""

from __future__ import annotations

import argparse

import flowdeblur
from flowdeblur.weights import PRETRAINED
from flowdeblur.weights.int8 import write_scales


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(PRETRAINED))
    args = p.parse_args()
    path = write_scales(flowdeblur.load_weights(args.weights), args.weights)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
