"""One training per run folder; clear errors for unusable run folders and non-finite values."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.training import loop as T
from flowdeblur.training.config import load_config
from flowdeblur.training.run_lock import LOCK_NAME, RunLock


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    base = [f"run_dir={tmp_path / run}", "device=cpu", "steps=2", "seed=3",
            "model.variant=no_rnn", "model.rnn_backend=torch", "data.crop_size=64",
            "data.batch_size=2", "data.num_workers=0", "log.progress=false",
            "log.tensorboard=false", "log.checkpoint_every=1"]
    return load_config(None, base + list(overrides))


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


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_learning_rates_are_refused(tmp_path, value):
    with pytest.raises(UserError, match="optim.lr must be a finite number"):
        tiny(tmp_path, f"optim.lr={value}")
    assert not (tmp_path / "run").exists()


def test_lock_file_is_named_in_the_run_folder(tmp_path):
    T.train(tiny(tmp_path))
    assert (tmp_path / "run" / LOCK_NAME).is_file()


@pytest.mark.parametrize("fps", ["inf", "1e12", "1e-9", "nan", "0"])
def test_impossible_frame_rates_are_one_line_errors(tmp_path, capsys, fps):
    import torch

    from flowdeblur.media import write_image

    for i in range(2):
        write_image(tmp_path / "in" / f"{i}.png", torch.rand(3, 16, 16))
    out = tmp_path / "out.mp4"
    rc = main(["deblur", str(tmp_path / "in"), "-o", str(out), "--fps", fps, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--fps must be a frame rate" in err
    assert not out.exists()


def _cli_base(tmp_path: Path) -> tuple[Path, list[str]]:
    config = tmp_path / "tiny.yaml"
    config.write_text(textwrap.dedent("""\
        device: cpu
        steps: 2
        model: {variant: no_rnn, rnn_backend: torch}
        data: {crop_size: 64, batch_size: 2, num_workers: 0}
        log: {progress: false, tensorboard: false, checkpoint_every: 1, every: 1}
    """))
    return config, [f"run_dir={tmp_path / 'run'}"]


def test_resume_keeps_the_saved_config_and_lists_overrides(tmp_path, capsys):
    config, run = _cli_base(tmp_path)
    assert main(["train", "--config", str(config), *run]) == 0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("batch_size: 2", "batch_size: 4"))
    capsys.readouterr()
    assert main(["train", "--config", str(other), "--resume", *run, "steps=3"]) == 2
    err = capsys.readouterr().err
    assert "differs from the run's saved" in err and "data.batch_size" in err
    assert (tmp_path / "run" / "config.yaml").read_text() == saved  # untouched
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "run"), "steps=3"]) == 0
    assert "resuming with steps=3" in capsys.readouterr().out


def test_adopt_config_takes_the_new_file(tmp_path, capsys):
    config, run = _cli_base(tmp_path)
    assert main(["train", "--config", str(config), *run]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("every: 1}", "every: 2}"))
    capsys.readouterr()
    assert main(["train", "--config", str(other), "--resume", "--adopt-config", *run,
                 "steps=3"]) == 0
    out = capsys.readouterr().out
    assert "log.every=2" in out and "steps=3" in out
    assert "every: 2" in (tmp_path / "run" / "config.yaml").read_text()
