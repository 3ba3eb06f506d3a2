"""`flowdeblur info` and the CLI's error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowdeblur.cli import main


def test_info_prints_table_one_parameter_count(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "8,281,696" in out
    assert "spatial_rnn backends on cpu" in out


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code != 0


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "flowdeblur", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("flowdeblur ")
