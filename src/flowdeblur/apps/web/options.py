"""The page's options, read through ``flowdeblur deblur``'s own option parser.

The page offers the options that matter to someone with one clip (self-ensemble, precision,
scene cuts, output format, the frame rate of a video made from images); precision int8 only
where ``deblur --precision int8`` can run (:func:`int8_refusal`). Each choice becomes
the command-line flags it stands for and is parsed by the parser :func:`add_deblur_options`
builds for ``deblur``. So the page's defaults are ``deblur``'s, its checks are ``deblur``'s,
and the keyword arguments handed to :func:`flowdeblur.inference.deblur_video` are the ones
``flowdeblur deblur`` would pass for the same flags.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ...cli.common import (
    PRECISION_CHOICES,
    add_deblur_options,
    check_deblur_options,
    deblur_options,
)
from ...errors import UserError
from ...inference.ensemble import ENSEMBLE_SIZES
from ...runtime import Runtime
from ...runtime.int8 import torchao_modules

#: Output formats: name -> (flags of ``deblur``, file extension or None for the input's own,
#: label on the page). "png" writes a folder of PNGs, downloaded as a .zip.
FORMATS: dict[str, tuple[list[str], str | None, str]] = {
    "video": ([], None, "video, as flowdeblur deblur writes it"),
    "video420": (["--chroma", "420"], None, "video, 4:2:0 (plays on phones and in browsers)"),
    "lossless": (["--lossless"], ".mkv", "lossless video (FFV1 in .mkv), for further editing"),
    "png": ([], "", "PNG frames (.zip)"),
}
DEFAULT_FORMAT = "video"
#: Containers an output video keeps from a video input; any other input writes .mp4.
KEPT_CONTAINERS = (".mp4", ".mkv", ".mov")


class _PageParser(argparse.ArgumentParser):
    """``deblur``'s options; a bad value is a UserError (shown on the page), not an exit."""

    def error(self, message: str):
        raise UserError(f"bad option: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _PageParser(prog="flowdeblur serve", add_help=False)
    add_deblur_options(parser, "outputs")
    return parser


@dataclass
class JobOptions:
    """What one job runs with: ``deblur_video``'s keyword arguments and the output format."""

    deblur: dict
    format: str
    flags: list[str]

    def extension(self, input_suffix: str | None) -> str:
        """The output's extension for an input with ``input_suffix`` (None: image frames):
        "" for a folder of PNGs."""
        fixed = FORMATS[self.format][1]
        if fixed is not None:
            return fixed
        suffix = (input_suffix or "").lower()
        return suffix if suffix in KEPT_CONTAINERS else ".mp4"


def int8_refusal(device: str) -> str | None:
    """Why ``--precision int8`` cannot run on the server's ``device``, or None where it can:
    the checks ``deblur`` makes (the CPU, a C++ compiler for the compile) and the import of the
    int8 extra (torchao)."""
    try:
        Runtime.resolve(device, "int8")
        torchao_modules()
    except UserError as e:
        return str(e)
    return None


def page_config(device: str = "auto") -> dict:
    """The choices and defaults the page shows, the defaults read from ``deblur``'s parser;
    int8 among the precisions only where it can run on ``device`` (the server's
    ``--device``)."""
    defaults = _parser().parse_args([])
    offered = int8_refusal(device) is None
    return {
        "ensemble": {"choices": list(ENSEMBLE_SIZES), "default": defaults.ensemble},
        "precision": {"choices": [p for p in PRECISION_CHOICES if p != "int8" or offered],
                      "default": defaults.precision},
        "scene_cuts": {"default": not defaults.no_scene_cuts},
        "format": {"choices": [{"value": k, "label": v[2]} for k, v in FORMATS.items()],
                   "default": DEFAULT_FORMAT},
        "fps": {"default": defaults.fps or 30.0},
    }


def page_flags(choices: dict) -> list[str]:
    """The ``deblur`` flags for the page's ``choices`` (keys of :func:`page_config`; a missing
    key keeps ``deblur``'s default)."""
    flags: list[str] = []
    if "ensemble" in choices:
        flags += ["--ensemble", str(choices["ensemble"])]
    if "precision" in choices:
        flags += ["--precision", str(choices["precision"])]
    if choices.get("scene_cuts") is False:
        flags.append("--no-scene-cuts")
    fmt = choices.get("format", DEFAULT_FORMAT)
    if fmt not in FORMATS:
        raise UserError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    flags += FORMATS[fmt][0]
    if choices.get("fps") not in (None, ""):
        flags += ["--fps", str(choices["fps"])]
    return flags


def job_options(choices: dict, *, device: str) -> JobOptions:
    """The page's ``choices`` as :class:`JobOptions`, checked as ``deblur`` checks its flags
    (UserError naming the problem); ``device`` is the server's ``--device``."""
    flags = page_flags(choices)
    args = _parser().parse_args([*flags, "--device", device])
    check_deblur_options(args)
    if args.precision == "int8" and (why := int8_refusal(device)) is not None:
        raise UserError(why)
    return JobOptions(deblur=deblur_options(args), format=choices.get("format", DEFAULT_FORMAT),
                      flags=flags)
