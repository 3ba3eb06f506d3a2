"""`flowdeblur train --resume`: the run's saved config.yaml is kept, a changed --config or a
hand-edited config.yaml is refused by name unless given as overrides or adopted."""

from __future__ import annotations

from pathlib import Path

from flowdeblur.cli import main
from flowdeblur.training.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint

TINY_YAML = ("device: cpu\n"
             "steps: 2\n"
             "model: {variant: no_rnn, rnn_backend: torch}\n"
             "data: {crop_size: 64, batch_size: 2, num_workers: 0}\n")


def _config_file(tmp_path: Path, *lines: str) -> Path:
    """tmp_path/tiny.yaml: two CPU steps of the smallest variant, then ``lines``."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML + "".join(f"{line}\n" for line in lines))
    return config


# ----------------------------------------------------------------------------- --config


def _cli_base(tmp_path: Path) -> tuple[Path, list[str]]:
    config = _config_file(
        tmp_path, "log: {progress: false, tensorboard: false, checkpoint_every: 1, every: 1}")
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


# ----------------------------------------------------------------------------- config.yaml


def _cli_run(tmp_path: Path) -> tuple[Path, list[str]]:
    config = _config_file(tmp_path, "optim: {lr: 0.001}",
                          "log: {progress: false, tensorboard: false, checkpoint_every: 1}")
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), f"run_dir={run}"]) == 0
    return run, ["train", "--resume", "--run-dir", str(run)]


def test_a_hand_edited_config_yaml_is_refused_on_resume_by_name(tmp_path, capsys):
    run, resume = _cli_run(tmp_path)
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("lr: 0.001", "lr: 0.5"))
    capsys.readouterr()
    assert main([*resume, "steps=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optim.lr" in err and "--adopt-config" in err
    assert " in optim.lr (" in err  # steps, given, is not refused
    assert [s for s, _ in list_checkpoints(run)] == [1, 2]
    # given as an override, the change is the user's own
    assert main([*resume, "steps=3", "optim.lr=0.5"]) == 0
    assert load_checkpoint(checkpoint_path(run, 3))["config"]["optim"]["lr"] == 0.5


def test_adopt_config_accepts_a_hand_edited_config_yaml(tmp_path, capsys):
    run, resume = _cli_run(tmp_path)
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("lr: 0.001", "lr: 0.0005"))
    assert main([*resume, "--adopt-config", "steps=3"]) == 0
    assert load_checkpoint(checkpoint_path(run, 3))["config"]["optim"]["lr"] == 0.0005
