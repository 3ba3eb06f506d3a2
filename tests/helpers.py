"""Plain helpers that several test files call: pictures, tiny videos and configs, a network
that returns its input, and the scripts of ``references/``.

Not a test module and not a conftest: test files import it by name (``from helpers import
smooth_frames``); fixtures, which pytest passes by name, are in ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import nn

from flowdeblur.media import VideoWriter
from flowdeblur.models import FlowDeblurOutput

if TYPE_CHECKING:
    from flowdeblur.training.config import TrainConfig

# The command line and the training code are imported inside the helpers that need them: the
# package's __init__ does not import them, and a child pytest of one file should not either.

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ROOT / "references"

H, W = 48, 64  # the frame size of smooth_frames and the `deblur` tests


# ----------------------------------------------------------------------------- pictures


def smooth_frames(count: int, h: int = H, w: int = W, seed: int = 0) -> list[torch.Tensor]:
    """A smooth random picture panning right by 2 pixels a frame."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 8, generator=g)
    big = torch.nn.functional.interpolate(coarse, size=(h, w + 2 * count), mode="bicubic")
    big = big.clamp(0, 1)[0]
    return [big[:, :, 2 * i : 2 * i + w].contiguous() for i in range(count)]


def random_gates(*shape: int, low: float = 0.0, generator: torch.Generator | None = None,
                 dtype=torch.float32) -> torch.Tensor:
    """Gates in (-1, 1) with |w| >= low and random signs."""
    mag = low + (1 - low) * torch.rand(*shape, generator=generator, dtype=torch.float64) * 0.999
    sign = torch.where(torch.rand(*shape, generator=generator) < 0.5, -1.0, 1.0).double()
    return (mag * sign).to(dtype)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two pictures in [0, 1], in float64; inf when they are equal."""
    mse = float((a.double() - b.double()).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# ----------------------------------------------------------------------------- files


def make_video(path: Path, frames, *, fps=24, rotation=0, audio=None, pts=None, time_base=None):
    """A video of ``frames`` written by flowdeblur's own writer (crf 10)."""
    with VideoWriter(
        path, fps=fps, width=frames[0].shape[-1], height=frames[0].shape[-2],
        rotation=rotation, audio_from=audio, time_base=time_base, crf=10,
    ) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, pts=None if pts is None else pts[i])
    return path


def make_wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A mono 16-bit tone of ``seconds`` at ``rate`` Hz, as a WAV file (an audio stream to mux)."""
    import wave

    samples = (torch.arange(int(seconds * rate)) * 0.05).sin().mul(8000).to(torch.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.numpy().tobytes())
    return path


def use_model_in_cli(monkeypatch, model: nn.Module) -> None:
    """Make ``flowdeblur deblur`` and ``flowdeblur batch`` run ``model`` whatever weights
    they are given."""
    import flowdeblur.cli.batch as cli_batch
    import flowdeblur.cli.deblur as cli_deblur

    monkeypatch.setattr(cli_batch, "load_model", lambda path, *rest: model)
    monkeypatch.setattr(cli_deblur, "load_model", lambda path, *rest: model)


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def no_temp_files(folder: Path) -> bool:
    """Whether ``folder`` holds no hidden entry (a writer's temporary)."""
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- networks


def deblur(*args, weights: Path) -> int:
    """`flowdeblur deblur ARGS --weights WEIGHTS --no-progress`; returns the exit code."""
    from flowdeblur.cli import main

    return main(["deblur", *map(str, args), "--weights", str(weights), "--no-progress"])


class Identity(nn.Module):
    """A 'deblurrer' that returns frame t unchanged: isolates what the file path, the frame
    pairing or the scoring does from the network.

    ``on_forward`` is called at every call; with ``record``, ``calls`` holds the
    ``(frame_t, frame_next)`` of every call.
    """

    in_frames = 2
    variant = "identity"
    flownet = None

    def __init__(self, on_forward=None, record: bool = False) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # so .to(device) has something to move
        self.on_forward = on_forward
        self.record = record
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, frame_t, frame_next=None, frame_prev=None):
        if self.on_forward is not None:
            self.on_forward()
        if self.record:
            self.calls.append((frame_t.clone(), frame_next.clone()))
        return FlowDeblurOutput(image=frame_t.clone())


# ----------------------------------------------------------------------------- training


def tiny_config(run_dir: Path, *overrides: str, steps: int = 2, checkpoint_every: int = 1,
                small_motion: bool = True) -> TrainConfig:
    """A few CPU steps at 64x64, batch 2, on the smallest variant, without progress bar or
    TensorBoard; ``small_motion`` caps synthetic camera and object motion at 4 pixels.
    ``overrides`` come last and win."""
    from flowdeblur.training.config import load_config

    base = [f"run_dir={run_dir}", "device=cpu", f"steps={steps}", "seed=3",
            "model.variant=no_rnn", "model.rnn_backend=torch", "data.crop_size=64",
            "data.batch_size=2", "data.num_workers=0", "log.progress=false",
            "log.tensorboard=false", f"log.checkpoint_every={checkpoint_every}"]
    if small_motion:
        base.append("data.synthetic={max_camera_motion: 4.0, max_object_motion: 4.0}")
    return load_config(None, base + list(overrides))


# ----------------------------------------------------------------------------- scripts


def import_reference(name: str) -> ModuleType:
    """``references/<name>.py`` as a module. The scripts import each other by name, with
    references/ first on sys.path as when run."""
    if str(REFERENCES) not in sys.path:
        sys.path.insert(0, str(REFERENCES))
    return importlib.import_module(name)


# ----------------------------------------------------------------------------- optional parts


def require(module: str) -> ModuleType:
    """Import an optional dependency, or skip the calling test module without it. CI installs
    every extra the slow suite needs, so under ``CI=true`` a missing one fails instead."""
    import os

    import pytest

    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)
