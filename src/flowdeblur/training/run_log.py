"""What a run writes while it trains (rank 0 only): its config, losses, TensorBoard, progress.

* ``run_dir/config.yaml``: the resolved config (``flowdeblur train --resume`` reads it back);
* ``run_dir/losses.jsonl``: one JSON line per step: step, loss, its parts, lr (and each
  process's loss in a multi-process run);
* ``run_dir/tb/``: TensorBoard scalars every ``log.every`` steps and images (blurry, output,
  sharp, flows, gates) every ``log.image_every`` steps;
* a tqdm progress bar and one line at the start and at the end on the terminal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..media.atomic import atomic_write_text
from ..viz import flow_to_color, gates_to_image
from .config import TrainConfig, to_yaml
from .distributed import StepStats


class LossLog:
    """``losses.jsonl``, continued from ``start_step``.

    A killed run may have logged steps past its last checkpoint: those lines are dropped on
    resume, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        kept = []
        if start_step > 0 and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    break  # a line cut by the kill: nothing valid follows it
        atomic_write_text(path, "".join(x + "\n" for x in kept))
        self.file = path.open("a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()


def log_images(writer: Any, step: int, batch: dict[str, torch.Tensor],
               visuals: dict[str, Any]) -> None:
    """TensorBoard images of the batch's first sample: blurry, output, sharp, flows, gates."""

    def put(tag: str, image: torch.Tensor) -> None:  # (1, 3, H, W) in [0, 1]
        writer.add_image(tag, image[0].detach().float().clamp(0, 1).cpu(), step)

    put("images/blurry", batch["frame_t"][:1])
    put("images/sharp", batch["sharp_t"][:1])
    if visuals["image"] is not None:
        put("images/output", visuals["image"][:1])
    if visuals["flows"]:
        put("flow/predicted", flow_to_color(visuals["flows"][0][:1, :2].detach().float()))
    if "flow" in batch:
        put("flow/ground_truth", flow_to_color(batch["flow"][:1].float()))
    if visuals["image"] is not None:  # gates only mean something once the RNNs train (stage 2)
        for i, g in enumerate(visuals["gates"], 1):
            put(f"gates/rnnw{i}", gates_to_image(g[:1].detach().float()))


class RunLog:
    """The logs of one run; on processes other than rank 0 (``enabled=False``) it writes
    nothing. Use as a context manager: the files close on exit."""

    def __init__(self, config: TrainConfig, *, start_step: int, enabled: bool) -> None:
        self.config = config
        self.enabled = enabled
        self.run_dir = Path(config.run_dir)
        self.losses: LossLog | None = None
        self.writer: Any = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", to_yaml(config))
            self.losses = LossLog(self.run_dir / "losses.jsonl", start_step)
            if config.log.tensorboard:
                # TensorBoard is heavy to import; only runs that log to it pay for it.
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"))
        self.pbar = tqdm(total=config.steps, initial=start_step, desc=config.stage,
                         dynamic_ncols=True, disable=not (enabled and config.log.progress))
        self.tick = time.perf_counter()  # start of the current TensorBoard interval

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def started(self, *, device: torch.device, world_size: int, note: str,
                frozen: list[str]) -> None:
        """The run's first line: what trains where, and where its weights came from."""
        if not self.enabled:
            return
        c = self.config
        print(f"flowdeblur train: stage={c.stage} variant={c.model.variant} device={device} "
              f"processes={world_size} batch={c.data.batch_size}x{c.data.crop_size} "
              f"steps={c.steps}; {note}"
              + (f"; {len(frozen)} tensors get no gradient and stay frozen" if frozen else ""),
              flush=True)

    def step(self, step: int, lr: float, stats: StepStats, batch: dict[str, torch.Tensor],
             visuals: dict[str, Any]) -> None:
        """Log the step just taken (``step`` steps done)."""
        if not self.enabled:
            return
        record = {"step": step, "loss": stats.loss, "lr": lr, **stats.parts}
        if len(stats.rank_losses) > 1:
            record["rank_losses"] = stats.rank_losses
        self.losses.write(record)
        self.pbar.set_postfix(loss=f"{stats.loss:.4g}", refresh=False)
        self.pbar.update(1)
        if self.writer is None:
            return
        log = self.config.log
        if step % log.every == 0:
            now = time.perf_counter()
            self.writer.add_scalar("loss/total", stats.loss, step)
            for k, v in stats.parts.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            self.writer.add_scalar("lr", lr, step)
            self.writer.add_scalar("steps_per_second", log.every / (now - self.tick), step)
            self.tick = now
        if log.image_every and (step % log.image_every == 0 or step == 1):
            log_images(self.writer, step, batch, visuals)

    def finished(self, *, step: int, loss: float, interrupted: str | None,
                 weights: Path | None) -> None:
        """The run's last line: how it ended and where its outputs are."""
        if not self.enabled:
            return
        self.pbar.close()
        where = f"{self.run_dir} (checkpoint step {step})"
        print(f"flowdeblur train: {'interrupted by ' + interrupted if interrupted else 'done'}"
              f" at step {step}, loss {loss:.5g}; {where}"
              + ("; continue with --resume" if interrupted else f"; weights: {weights}"),
              flush=True)

    def close(self) -> None:
        self.pbar.close()
        if self.writer is not None:
            self.writer.close()
        if self.losses is not None:
            self.losses.close()
