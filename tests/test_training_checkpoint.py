"""training/checkpoint.py: checkpoints never run code, carry a checksum and are verified
before use; resuming and rotation skip a refused one (damaged, unsafe, unverified, malformed,
non-finite); a full disk and an unwritable export path are one-line errors."""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.media import write_image
from flowdeblur.training import loop as T
from flowdeblur.training.checkpoint import (
    CorruptCheckpoint,
    TrainingDiverged,
    UnverifiedCheckpoint,
    checkpoint_path,
    checksum_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    newest_usable_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from flowdeblur.training.objective import StepLoss


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    """Two CPU steps, a checkpoint at each (helpers.tiny_config)."""
    return tiny_config(tmp_path / run, *overrides)


def tiny_at(run: Path, *overrides: str):
    """The same steps in the run folder ``run``, at the synthetic data's default motion."""
    return tiny_config(run, *overrides, small_motion=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-step run keeping both checkpoints (steps 1 and 2); copy it before changing it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    T.train(tiny_at(run, "log.keep_checkpoints=2"))
    return run


def copy_run(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace(str(trained), str(run)))
    return run


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# -- unsafe, damaged and unverified checkpoints


def test_a_pickled_object_in_a_checkpoint_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    T.train(tiny(tmp_path))
    real = load_checkpoint(latest_checkpoint(run))
    # a real checkpoint with one extra object inside, saved with a valid checksum
    poisoned = run / "checkpoints" / "step_00000009.pt"
    save_checkpoint(poisoned, {**real, "extra": _Payload(marker)})
    with pytest.raises(CorruptCheckpoint, match="unsafe"):
        load_checkpoint(poisoned)
    # and a bare malicious file with no checksum: refused unread, and unsafe when accepted
    bare = tmp_path / "bare.pt"
    torch.save({"format": "flowdeblur-checkpoint", "x": _Payload(marker)}, bare)
    with pytest.raises(UnverifiedCheckpoint, match="no checksum"):
        load_checkpoint(bare)
    with pytest.warns(UserWarning, match="no checksum"), pytest.raises(UserError):
        load_checkpoint(bare, accept_unverified=True)
    # resuming skips the poisoned newest checkpoint for the intact one before it
    with pytest.warns(UserWarning, match="skipping"):
        result = T.train(tiny(tmp_path, "steps=3"), resume=True)
    assert result["final_step"] == 3
    assert not marker.exists()


def _folders_dataset(root: Path) -> Path:
    g = torch.Generator().manual_seed(1)
    for seq in ("a", "b"):
        for i in range(3):
            for kind in ("blur", "sharp"):
                write_image(root / "train" / kind / seq / f"{i:03d}.png",
                            torch.rand(3, 72, 90, generator=g))
    return root


@pytest.mark.parametrize("kind", ["synthetic", "pool", "flow_stage", "real", "mix",
                                  "ema_degrade"])
def test_every_kind_of_checkpoint_loads_with_the_safe_loader(tmp_path, kind):
    data = _folders_dataset(tmp_path / "data") if kind in ("real", "mix") else None
    overrides = {
        "synthetic": [],
        "pool": ["data.synthetic_pool=4"],
        "flow_stage": ["stage=flow", "model.variant=full"],
        "real": ["data.source=real", f"data.real_root={data}", "data.real_layout=folders"],
        "mix": ["data.source=mix", f"data.real_root={data}", "data.real_layout=folders"],
        "ema_degrade": ["ema_decay=0.9", "data.degrade={noise_probability: 1.0}"],
    }[kind]
    config = tiny(tmp_path, *overrides)
    T.train(config)
    path = latest_checkpoint(config.run_dir)
    state = torch.load(path, map_location="cpu", weights_only=True)  # raises if unsafe
    assert state["step"] == 2
    assert checksum_path(path).is_file()


def test_a_damaged_checkpoint_is_refused_and_resume_uses_the_newest_intact_one(tmp_path):
    config = tiny(tmp_path, "steps=2", "log.keep_checkpoints=2")
    T.train(config)
    first, newest = [c.path for c in list_checkpoints(config.run_dir)]
    size = newest.stat().st_size
    with open(newest, "r+b") as f:  # 4 KB overwritten inside, size kept
        f.seek(size // 2)
        f.write(os.urandom(4096))
    assert newest.stat().st_size == size
    with pytest.raises(CorruptCheckpoint, match="SHA-256"):
        load_checkpoint(newest)
    assert first.is_file()
    with pytest.warns(UserWarning, match=f"skipping {newest}"):
        result = T.train(tiny(tmp_path, "steps=3", "log.keep_checkpoints=2"), resume=True)
    assert result["final_step"] == 3  # continued from step 1, the intact checkpoint
    assert load_checkpoint(latest_checkpoint(config.run_dir))["step"] == 3


def test_a_checkpoint_without_checksum_loads_only_when_accepted(tmp_path):
    config = tiny(tmp_path, "steps=1")
    T.train(config)
    path = latest_checkpoint(config.run_dir)
    checksum_path(path).unlink()
    with pytest.raises(UnverifiedCheckpoint, match="--accept-unverified"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="no checksum"):
        assert load_checkpoint(path, accept_unverified=True)["step"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checksum_path(path).write_text("0" * 64 + "\n")
        with pytest.raises(CorruptCheckpoint):
            load_checkpoint(path)


def _bad_checkpoint(run: Path, kind: str, step: int = 9) -> Path:
    """A refused checkpoint at ``step``, made from the run's newest one."""
    state = load_checkpoint(checkpoint_path(run, 2))
    target = checkpoint_path(run, step)
    if kind == "corrupt":
        save_checkpoint(target, dict(state, step=step))
        data = bytearray(target.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        target.write_bytes(bytes(data))
    elif kind == "unsafe":
        save_checkpoint(target, dict(state, step=step, extra=_Payload(run / "pwned")))
    elif kind == "unverified":
        save_checkpoint(target, dict(state, step=step))
        checksum_path(target).unlink()
    elif kind == "malformed":
        save_checkpoint(target, dict(state, step=True))
    elif kind == "nan":
        model = {k: torch.full_like(v, float("nan")) for k, v in state["model"].items()}
        save_checkpoint(target, dict(state, step=step, model=model))
    return target


# -- rotation counts only usable checkpoints and never deletes a refused one

@pytest.mark.parametrize("kind", ["corrupt", "unsafe", "unverified", "malformed", "nan"])
def test_rotation_keeps_intact_checkpoints_beside_a_refused_newer_one(trained, tmp_path, kind):
    run = copy_run(trained, tmp_path)
    bad = _bad_checkpoint(run, kind)
    before = bad.read_bytes()
    with pytest.warns(UserWarning, match=f"skipping {bad}"):
        result = T.train(tiny_at(run, "steps=4", "log.keep_checkpoints=1"), resume=True)
    assert result["final_step"] == 4
    assert [s for s, _ in list_checkpoints(run)] == [4, 9]  # the refused one stays, uncounted
    assert load_checkpoint(checkpoint_path(run, 4))["step"] == 4
    assert bad.read_bytes() == before
    assert newest_usable_checkpoint(run) == checkpoint_path(run, 4)
    assert not (run / "pwned").exists()


def test_prune_alone_keeps_the_newest_usable(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    bad = _bad_checkpoint(run, "corrupt")
    prune_checkpoints(run, keep=1)
    assert [s for s, _ in list_checkpoints(run)] == [2, 9]
    assert bad.is_file() and checksum_path(bad).is_file()


# -- checkpoints without a checksum: skipped unless --accept-unverified

def test_resume_skips_an_unverified_checkpoint_unless_accepted(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    checksum_path(checkpoint_path(run, 2)).unlink()
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "steps=3"]) == 0
    captured = capsys.readouterr()
    assert "--accept-unverified" in captured.err and "step_00000002.pt" in captured.err
    assert "at step 1" in captured.out  # resumed from the verified step 1
    # the new step 2 did not overwrite the skipped one, and rotation did not delete it
    assert "kept the skipped checkpoint" in captured.err
    assert (run / "checkpoints" / "step_00000002.pt.skipped").is_file()

    run = copy_run(trained, tmp_path / "second")
    checksum_path(checkpoint_path(run, 2)).unlink()
    assert main(["train", "--resume", "--accept-unverified", "--run-dir", str(run),
                 "steps=3"]) == 0
    captured = capsys.readouterr()
    assert "loaded unverified" in captured.err and "at step 2" in captured.out


def test_no_verified_checkpoint_is_one_line_naming_the_flag(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    for step in (1, 2):
        checksum_path(checkpoint_path(run, step)).unlink()
    assert main(["train", "--resume", "--run-dir", str(run), "steps=3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("flowdeblur: error: --resume: no usable checkpoint")
    assert "--accept-unverified" in err.splitlines()[-1]
    assert main(["train", "--accept-unverified", "--run-dir", str(run)]) == 2
    assert "applies only with --resume" in capsys.readouterr().err


# -- checkpoints with a valid checksum but malformed contents

def _mutate(state: dict, kind: str) -> dict:
    state = dict(state)
    if kind == "step_bool":
        state["step"] = True
    elif kind == "step_str":
        state["step"] = "1"
    elif kind == "version_bool":
        state["version"] = True
    elif kind == "config_list":
        state["config"] = [1, 2]
    elif kind == "config_no_model":
        state["config"] = {"stage": "joint"}
    elif kind == "model_list":
        state["model"] = [torch.zeros(1)]
    elif kind == "model_int":
        state["model"] = {k: v.to(torch.int32) for k, v in state["model"].items()}
    elif kind == "rng_empty":
        state["rng"] = []
    elif kind == "rng_missing_keys":
        state["rng"] = [{"torch": torch.zeros(3)}]
    elif kind == "optimizer_list":
        state["optimizer"] = [1]
    elif kind == "optimizer_garbage":
        state["optimizer"] = {"state": 3, "param_groups": "x"}
    elif kind == "world_size":
        state["world_size"] = 4
    elif kind == "model_meta":
        state["model"] = {k: v.to("meta") for k, v in state["model"].items()}
    elif kind == "config_bomb":  # shared lists, as pickle keeps them: 10**9 values expanded
        bomb = ["lol"] * 10
        for _ in range(8):
            bomb = [bomb] * 10
        config = dict(state["config"], data=dict(state["config"]["data"]))
        config["data"]["synthetic"] = {"bomb": bomb}
        config["optim"] = dict(config["optim"], betas=bomb)
        state["config"] = config
    return state


@pytest.mark.parametrize("kind", ["step_bool", "step_str", "version_bool", "config_list",
                                  "config_no_model", "model_list", "model_int", "rng_empty",
                                  "rng_missing_keys", "optimizer_list", "optimizer_garbage",
                                  "world_size", "model_meta", "config_bomb"])
def test_malformed_checkpoints_are_one_line_errors(trained, tmp_path, capsys, kind):
    run = copy_run(trained, tmp_path)
    checkpoint_path(run, 1).unlink()  # nothing to fall back to
    newest = checkpoint_path(run, 2)
    save_checkpoint(newest, _mutate(load_checkpoint(newest), kind))  # a valid checksum
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "steps=3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("flowdeblur: error: ") and str(newest) in last
    assert [s for s, _ in list_checkpoints(run)] == [2]


# -- non-finite weights are never "the last good checkpoint"

def test_nan_weights_are_not_saved_nor_called_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = T.compute_loss
    calls = []

    def poison_weights_after_a_finite_loss(net, batch, cfg):
        loss = real(net, batch, cfg)
        calls.append(1)
        if len(calls) == 2:
            # .data: past autograd's version check, like an update gone wrong
            next(net.parameters()).data.fill_(float("nan"))
        return StepLoss(*loss)

    monkeypatch.setattr(T, "compute_loss", poison_weights_after_a_finite_loss)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite at step 2"
                                                r".*last good checkpoint is .*step_00000001"):
        T.train(tiny_at(run, "steps=3"))
    assert [s for s, _ in list_checkpoints(run)] == [1]


def test_a_nan_checkpoint_on_disk_is_not_the_last_good_one(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path)
    _bad_checkpoint(run, "nan", step=3)
    real = T.compute_loss

    def nan_loss(net, batch, cfg):
        loss, parts, vis = real(net, batch, cfg)
        return StepLoss(loss * float("nan"), parts, vis)

    monkeypatch.setattr(T, "compute_loss", nan_loss)
    with pytest.warns(UserWarning, match="not finite"), \
            pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*step_00000002"):
        T.train(tiny_at(run, "steps=5"), resume=True)


# -- a full disk while a checkpoint is written

@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),
    OSError(errno.ENOSPC, "No space left on device", ".step_00000002.pt.1-abcdef01.tmp"),
])
def test_a_full_disk_names_the_checkpoint_in_one_line(tmp_path, capsys, monkeypatch, error):
    real_save = torch.save
    saves = []

    def save_then_fail(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise error
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    run = tmp_path / "run"
    args = ["train", f"run_dir={run}", "device=cpu", "steps=2", "model.variant=no_rnn",
            "model.rnn_backend=torch", "data.crop_size=64", "data.batch_size=2",
            "data.num_workers=0", "log.progress=false", "log.tensorboard=false",
            "log.checkpoint_every=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot write checkpoint {checkpoint_path(run, 2)}" in err and ".tmp" not in err
    assert [s for s, _ in list_checkpoints(run)] == [1]
    assert not list((run / "checkpoints").glob(".*"))


# -- export_path that cannot be written: refused before the work

@pytest.mark.parametrize("where", ["under_file", "folder"])
def test_unwritable_export_path_is_refused_before_training(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "afolder").mkdir()
    export = tmp_path / "afile" / "w.safetensors" if where == "under_file" else \
        tmp_path / "afolder"
    run = tmp_path / "run"
    args = ["train", f"run_dir={run}", f"export_path={export}", "device=cpu", "steps=1",
            "model.variant=no_rnn", "data.crop_size=64", "data.batch_size=2",
            "data.num_workers=0", "log.progress=false", "log.tensorboard=false"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "export_path" in err
    assert not run.exists()  # nothing trained, nothing written


def test_python_api_resume_is_not_compared(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    # train() without overrides takes the config it is given (the caller's own)
    assert T.train(tiny_at(run, "steps=3", "optim.lr=0.5"), resume=True)["final_step"] == 3
    with pytest.raises(UserError, match="optim.lr"):
        T.train(tiny_at(run, "steps=4", "optim.lr=0.1"), resume=True, overrides=["steps"])
