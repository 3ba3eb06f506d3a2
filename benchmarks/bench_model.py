"""Thin wrapper: ``python benchmarks/bench_model.py [options]`` == ``flowdeblur bench [options]``.

Every figure of docs/BENCHMARKS.md about the network's speed comes from this command; see
``flowdeblur bench --help`` for the options and src/flowdeblur/apps/bench.py for what is timed.
"""

from __future__ import annotations

import sys

from flowdeblur.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
