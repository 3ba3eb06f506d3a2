"""training/run_lock.py: one training per run folder, the lock of a killed process released,
and one-line errors for run folders that cannot be made or written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import tiny_config

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.training import loop as T
from flowdeblur.training.run_lock import LOCK_NAME, RunLock


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    """Two CPU steps at the synthetic data's default motion (helpers.tiny_config)."""
    return tiny_config(tmp_path / run, *overrides, small_motion=False)


def test_a_second_training_on_a_locked_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(UserError, match="in use by another training"):
            T.train(tiny(tmp_path))
    assert not any(p.name.startswith("step_") for p in run.rglob("*"))
    T.train(tiny(tmp_path))  # released: the run goes through


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from flowdeblur.training.run_lock import RunLock
        with RunLock({str(run)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"process {holder.pid}"):
            RunLock(run).__enter__()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with RunLock(run):  # kill -9 left nothing stuck
        pass


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        T.train(tiny(tmp_path, "model.init_weights=missing.safetensors"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_unusable_run_dirs_are_one_line_errors(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("x")
    run = tmp_path / "afile" if where == "file" else tmp_path / "afile" / "run"
    rc = main(["train", f"run_dir={run}", "device=cpu", "steps=1", "model.variant=no_rnn",
               "data.crop_size=64", "data.batch_size=2", "log.progress=false",
               "log.tensorboard=false"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "not a folder" in err
    assert (tmp_path / "afile").read_text() == "x"


def test_read_only_run_dir_is_a_one_line_error(tmp_path, monkeypatch):
    import flowdeblur.training.run_lock as run_lock

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(run_lock.os, "open", read_only)
    with pytest.raises(UserError, match="Read-only file system"):
        T.train(tiny(tmp_path))


def test_lock_file_is_named_in_the_run_folder(tmp_path):
    T.train(tiny(tmp_path))
    assert (tmp_path / "run" / LOCK_NAME).is_file()
