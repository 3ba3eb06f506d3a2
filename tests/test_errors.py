"""User errors: ValueErrors that name an option the way the reader typed it (a Python
parameter from the library, a flag from the command line)."""

from __future__ import annotations

import argparse

import pytest
import torch

from flowdeblur.cli import deblur as deblur_command
from flowdeblur.cli import main, option_flags
from flowdeblur.errors import OptionError, UserError
from flowdeblur.inference import deblur_frames, deblur_video
from flowdeblur.media import write_image
from flowdeblur.models import FlowDeblurNet


def test_user_errors_are_value_errors():
    assert issubclass(UserError, ValueError) and issubclass(OptionError, UserError)


def test_an_option_error_spells_the_option_for_its_reader():
    e = OptionError("tile_overlap", "{option} 99 must be at most 32")
    assert str(e) == "tile_overlap 99 must be at most 32"
    assert e.with_flag("--tile-overlap") == "--tile-overlap 99 must be at most 32"
    switch = OptionError("overwrite", "x exists; pass {option}", python="overwrite=True")
    assert str(switch) == "x exists; pass overwrite=True"


def test_every_flag_of_a_command_is_found_by_its_destination():
    sub = argparse.ArgumentParser().add_subparsers()
    deblur_command.add_parser(sub)
    flags = option_flags(sub.choices["deblur"])
    assert flags["tile_overlap"] == "--tile-overlap" and flags["batch"] == "--batch"
    assert flags["no_progress"] == "--no-progress"


def test_library_functions_name_their_parameters(tmp_path):
    model = FlowDeblurNet("full")
    with pytest.raises(OptionError, match="^batch must be at least 1, got 0$"):
        deblur_frames(model, [torch.rand(3, 8, 8)], batch=0)
    write_image(tmp_path / "a.png", torch.rand(3, 8, 8))
    (tmp_path / "out.png").write_bytes(b"x")
    with pytest.raises(OptionError, match="pass overwrite=True to replace it"):
        deblur_video([tmp_path / "a.png"], tmp_path / "out.png", model=model, progress=False)


def test_the_command_line_names_the_flag(tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png", torch.rand(3, 8, 8))
    rc = main(["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tile", "64",
               "--tile-overlap", "40"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == ("flowdeblur: error: --tile-overlap 40 must be between 0 "
                                       "and half the tile size (32)")
