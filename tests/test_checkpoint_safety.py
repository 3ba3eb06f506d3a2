"""Checkpoints never run code, carry a checksum, and resuming skips a damaged one."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from flowdeblur.errors import UserError
from flowdeblur.media import write_image
from flowdeblur.training import loop as T
from flowdeblur.training.checkpoint import (
    CorruptCheckpoint,
    UnverifiedCheckpoint,
    checksum_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from flowdeblur.training.config import load_config


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    base = [f"run_dir={tmp_path / run}", "device=cpu", "steps=2", "seed=3",
            "model.variant=no_rnn", "model.rnn_backend=torch", "data.crop_size=64",
            "data.batch_size=2", "data.num_workers=0", "log.progress=false",
            "log.tensorboard=false", "log.checkpoint_every=1",
            "data.synthetic={max_camera_motion: 4.0, max_object_motion: 4.0}"]
    return load_config(None, base + list(overrides))


class _Payload:
    """Unpickling this object would create ``marker``: the attack a checkpoint must not run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


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
